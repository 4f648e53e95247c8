"""Test-time allocation: the planner against uniform, Adaptive-Consistency and ESC.

    python benchmarks/bench_testtime.py [--replays 20] [--write]

1. Replays the sample caches in benchmarks/caches/ (64 samples per question, made once by
   benchmarks/testtime_cache.py) over ``--replays`` seeded orders: majority vote and
   coverage, every rule at equal samples, paired by order.
2. The planner's overhead beside live sampling from the built-in model.
3. The planner's time per decision at 10,000 questions (synthetic answers).

``--write`` saves the tables to benchmarks/RESULTS_testtime.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

from knapsack_rl.reports.html import format_table
from knapsack_rl.testtime import TestTimePlanner, compare, read_cache
from knapsack_rl.testtime.compare import summarise

HERE = Path(__file__).parent
CACHES = {
    "builtin": HERE / "caches/testtime_builtin.jsonl",
    "smollm2": HERE / "caches/testtime_smollm2.jsonl",
}
COLS = ["method", "setting", "samples", "accuracy", "se", "vs", "diff", "diff_se"]


def _table(rows):
    return format_table([{c: r.get(c, "") for c in COLS} for r in rows], COLS)


def replays(name: str, path: Path, n: int, out: list[str]) -> None:
    pool = read_cache(path)
    rates = pool.pass_rates()
    out.append(f"\n## {name}: {path.name}\n")
    out.append(
        f"{len(pool.ids)} questions x {int(pool.sizes.min())} samples; mean pass rate "
        f"{rates.mean():.3f}; {np.mean((rates > 0) & (rates < 1)):.2f} of questions strictly "
        f"between 0 and 1; {n} replays.\n"
    )
    for objective, budgets in (
        ("majority", (1, 2, 3, 4, 5, 6.4, 8, 16)),
        ("coverage", (2, 4, 8, 16)),
    ):
        t = time.perf_counter()
        rows = compare(pool, objective, budgets=budgets, replays=n, max_samples=64, reference=16)
        s = summarise(rows, 16)
        out.append(
            f"\n### {objective} ({time.perf_counter() - t:.0f} s)\n\n```\n{_table(rows)}\n```\n"
        )
        if s.get("knapsack_matches_at"):
            m = s["knapsack_matches_at"]
            out.append(
                f"knapsack is within one standard error of uniform@16 ({s['uniform_reference']['accuracy']:.4f} "
                f"+- {s['uniform_reference']['se']:.4f}) from {m['samples']:.2f} samples per question "
                f"({m['share_of_reference']:.2f}x).\n"
            )
        if objective == "coverage":  # pass@1 estimated from what each rule drew
            est = [
                {
                    "method": r["method"],
                    "setting": r["setting"],
                    "samples": r["samples"],
                    "pooled": r["pass@1_pooled"],
                    "posterior": r["pass@1_posterior"],
                    "pool": rates.mean(),
                }
                for r in rows
            ]
            out.append(f"\npass@1 from the samples drawn:\n\n```\n{format_table(est)}\n```\n")
        print("".join(out[-3:]), flush=True)


def overhead(out: list[str], questions: int = 200, per: int = 8) -> None:
    """Planner time beside the built-in model's sampling time, driven in batches (each
    batch of samples goes back to the planner in one ``record`` call, and one sample at
    a time)."""
    from knapsack_rl.testtime.sampling import ModelSampler, SamplerConfig

    sampler = ModelSampler(SamplerConfig(questions=questions, seed=0).validate())
    ids = [q.id for q in sampler.questions]
    lines = [
        "\n## Overhead beside live sampling (built-in model)\n",
        f"{questions} questions, {per} samples per question, majority.\n",
        "| record calls | planner | sampling | planner / sampling |",
        "|---|---|---|---|",
    ]
    for batched in (True, False):
        planner = TestTimePlanner("majority")
        t_plan = t_sample = 0.0
        t = time.perf_counter()
        sends = planner.start(ids, per * len(ids))
        t_plan += time.perf_counter() - t
        while sends.size:
            t = time.perf_counter()
            got = sampler.sample(sends)
            t_sample += time.perf_counter() - t
            a, c, s = zip(*got, strict=True)
            t = time.perf_counter()
            if batched:
                sends = planner.record(sends, list(a), list(c), list(s))
            else:
                more = [planner.record(int(i), *x) for i, x in zip(sends, got, strict=True)]
                sends = np.concatenate(more)
            t_plan += time.perf_counter() - t
        planner.finish()
        how = "one per batch" if batched else "one per sample"
        lines.append(
            f"| {how} | {t_plan:.3f} s | {t_sample:.2f} s | **{100 * t_plan / t_sample:.1f}%** |"
        )
    out.append("\n".join(lines) + "\n")
    print(out[-1], flush=True)


def latency(out: list[str], m: int = 10_000, per: int = 4) -> None:
    """Seconds per decision (one record and what it releases) at ``m`` questions."""
    rng = np.random.default_rng(0)
    lines = [
        "\n## Time per decision at 10,000 questions\n",
        "| objective | mean | p99 |",
        "|---|---|---|",
    ]
    for objective in ("majority", "coverage"):
        dist = rng.dirichlet(np.full(4, 0.5), size=m)
        planner = TestTimePlanner(objective)
        queue = deque(planner.start(list(range(m)), per * m).tolist())
        times = []
        while queue:
            i = queue.popleft()
            a = int(rng.choice(4, p=dist[i]))
            t = time.perf_counter()
            more = planner.record(i, a, correct=a == 0)
            times.append(time.perf_counter() - t)
            queue.extend(more.tolist())
        ms = 1e3 * np.asarray(times)
        lines.append(f"| {objective} | {ms.mean():.3f} ms | {np.percentile(ms, 99):.3f} ms |")
    out.append("\n".join(lines) + "\n")
    print(out[-1], flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replays", type=int, default=20)
    ap.add_argument("--only", choices=["replays", "overhead", "latency"], action="append")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    parts = args.only or ["replays", "overhead", "latency"]
    out = [
        "# Test-time allocation (benchmarks/bench_testtime.py)\n",
        f"Command: `python benchmarks/bench_testtime.py --replays {args.replays}`; "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}.\n",
    ]
    if "replays" in parts:
        for name, path in CACHES.items():
            if path.exists():
                replays(name, path, args.replays, out)
            else:
                print(
                    f"missing {path}; build it with benchmarks/testtime_cache.py", file=sys.stderr
                )
    if "overhead" in parts:
        overhead(out)
    if "latency" in parts:
        latency(out)
    if args.write:
        from knapsack_rl.atomic import atomic_write_text

        atomic_write_text(HERE / "RESULTS_testtime.md", "\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
