"""Modelled GPU generation time per step: uniform, one-shot, ``rounds`` (two barriers),
``stream`` (no barrier) and ``pipelined`` (one call per step), at the paper's scale, from the whole step's capacity down
to a quarter of it.

    python benchmarks/bench_gentime.py [--seeds 5] [--steps 4] [--write]

A uniform step is 512 prompts x 16 rollouts = 8192 rollouts; ``rounds`` and ``stream``
draw 1024 prompts for the same 8192 (oversample 2, pilot 2). True success rates are
``sigmoid(N(-1, 4.25))`` (the simulator's paper preset); rewards are Bernoulli. Every
rollout's duration comes from the generation-time model (``simulation/gentime.py``:
lognormal lengths, longer when failed, a per-prompt length, capped at 8192 tokens,
20 ms per token). A barrier method's step time is the sum over its generation calls
of each call's FIFO makespan on ``capacity`` slots; ``stream`` runs on the same engine
and its makespan is the time of its last completion; with ``concurrency`` set to the
engine's slots it also fills every free slot at once (work-conserving). Each seed runs ``steps`` steps
over a pool of 16384 prompts with one tracker, so later steps plan from history.
``pipelined`` runs :func:`knapsack_rl.planning.base.run_pipelined`: each step's rest
shares one generation call with the next step's pilot, so its step time is that one
call's makespan (the first step of a run also pays a call for its own pilot, once per
run; it is left out here, so every row is the steady state). Reported: mean seconds per step, and each
method's ratio to uniform paired by seed and step (mean +- standard error). ``--write`` saves ``benchmarks/RESULTS_gentime.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from knapsack_rl.atomic import atomic_write_text  # noqa: E402
from knapsack_rl.planning.base import (  # noqa: E402
    makespan,
    positions,
    run_batched,
    run_pipelined,
    run_streaming,
)
from knapsack_rl.planning.session import AllocationConfig  # noqa: E402
from knapsack_rl.simulation.gentime import GpuClock  # noqa: E402

PROMPTS, N, POOL = 512, 16, 16384
BUDGET = PROMPTS * N
METHODS = {
    "uniform": dict(method="uniform"),
    "knapsack (one-shot)": dict(method="knapsack"),
    "rounds (2 barriers)": dict(method="rounds"),
    "pipelined (1 call per step)": dict(method="pipelined"),
    "stream (commit 0.5, default)": dict(method="stream"),
    "stream (commit 0.1)": dict(method="stream", commit=0.1),
    "stream (concurrency = capacity)": dict(method="stream", concurrency="capacity"),
}


def run_method(spec: dict, seed: int, steps: int, capacity: int | None) -> list[float]:
    """Seconds per step of one method and seed."""
    if spec.get("concurrency") == "capacity":
        spec = {**spec, "concurrency": capacity}
    cfg = AllocationConfig(rollouts_per_prompt=N, **spec).validate()
    rng = np.random.default_rng(seed)
    p = 1.0 / (1.0 + np.exp(-rng.normal(-1.0, 4.25, POOL)))
    clock = GpuClock(seed=seed)
    tracker = cfg.make_tracker()
    planner = cfg.make_planner(tracker)
    order = np.random.default_rng([seed, 1]).permutation(POOL)
    m = cfg.step_prompts(PROMPTS)
    blocks = [order[(k * m) % (POOL - POOL % m) :][:m].tolist() for k in range(steps + 1)]
    out, carried = [], None
    for step in range(steps):
        ids = blocks[step]
        draw = np.random.default_rng([seed, 2, step])
        calls = [0]

        def generate(pos, ids=ids, draw=draw):
            return (draw.random(pos.size) < p[np.asarray(ids)[pos]]).astype(float)

        if cfg.method == "pipelined":  # this step's rest and the next step's pilot, one call
            nxt, spent = blocks[step + 1], []
            ahead = positions(planner.pilot_counts(len(nxt), BUDGET))
            nxt_draw = np.random.default_rng([seed, 2, step + 1, 0])

            def call(pos, apos, ids=ids, nxt=nxt, nxt_draw=nxt_draw, spent=spent, step=step):
                r = generate(pos)
                got = (nxt_draw.random(apos.size) < p[np.asarray(nxt)[apos]]).astype(float)
                units = [ids[i] for i in pos] + [nxt[i] for i in apos]
                d = clock.durations(units, np.r_[r, got] <= 0, step, len(spent) + 1)
                spent.append(makespan(d, capacity))
                return r, got

            _, carried = run_pipelined(planner, ids, BUDGET, call, carried, ahead)
            out.append(spent[-1])  # the step's one call (step 0's own pilot call left out)
            continue

        def durations(pos, r, ids=ids, step=step, calls=calls):
            calls[0] += 1
            return clock.durations([ids[i] for i in pos], r <= 0, step, calls[0])

        if cfg.method == "stream":
            _, engine = run_streaming(planner, ids, BUDGET, generate, durations, capacity)
            out.append(engine.makespan)
        else:
            spent = [0.0]

            def barrier(pos, generate=generate, durations=durations, spent=spent):
                r = generate(pos)
                spent[0] += makespan(durations(pos, r), capacity)
                return r

            run_batched(planner, ids, BUDGET, barrier)
            out.append(spent[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = []
    for capacity, label in (
        (None, "whole step (8192)"),
        (4096, "half (4096)"),
        (2048, "quarter (2048)"),
    ):
        times = {
            name: np.array([run_method(spec, s, args.steps, capacity) for s in range(args.seeds)])
            for name, spec in METHODS.items()
            if capacity is not None or spec.get("concurrency") != "capacity"
        }
        base = times["uniform"]
        for name, t in times.items():
            ratio = (t / base).reshape(-1)
            se = ratio.std(ddof=1) / np.sqrt(ratio.size)
            rows.append((label, name, float(t.mean()), float(ratio.mean()), float(se)))
            print(f"{label:18s} {name:30s} {t.mean():8.1f} s  {ratio.mean():.3f}x +- {se:.3f}")
    seconds = time.perf_counter() - t0
    lines = [
        "# Modelled GPU generation time per step",
        "",
        f"`python benchmarks/bench_gentime.py --seeds {args.seeds} --steps {args.steps}`; "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"{seconds:.0f} s. {args.seeds} seeds x {args.steps} steps; 512 prompts x 16 "
        "(8192 rollouts) per step, 1024 prompts for rounds, stream and pipelined. Ratio: to uniform, "
        "paired by seed and step, mean +- standard error.",
        "",
        "| engine capacity | method | seconds per step | ratio to uniform |",
        "| --- | --- | ---: | ---: |",
    ]
    for label, name, mean, ratio, se in rows:
        lines.append(f"| {label} | {name} | {mean:.1f} | {ratio:.3f} +- {se:.3f} |")
    text = "\n".join(lines) + "\n"
    if args.write:
        atomic_write_text(Path(__file__).with_name("RESULTS_gentime.md"), text)
    print(text)


if __name__ == "__main__":
    main()
