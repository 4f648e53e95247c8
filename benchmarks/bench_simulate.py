"""Benchmark of ``knapsack-rl simulate``: speed and fidelity on the ``paper`` preset.

    OMP_NUM_THREADS=1 python benchmarks/bench_simulate.py [--steps 1000] [--seeds 0,1,2]
        [--out benchmarks/RESULTS_simulate.md]

Speed: every default strategy, 1000 steps of 2048 rollouts on 17,000 prompts,
one process on one core (BLAS threads pinned to 1); plus where the time of the
tracker-based strategies goes (tracker update, allocation, the rest).
Fidelity: knapsack's effective-gradient ratio against uniform's (the paper
reports +20-40% relative), and where every strategy lands at equal rollouts
spent, over several seeds; plus the calibration targets of the preset (about
40% all-correct and 20% all-wrong at N = 8 late in a uniform run) and two
variants of the model. Nothing is tuned here: the documented preset runs as is.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from knapsack_rl.allocation import Allocator  # noqa: E402
from knapsack_rl.atomic import atomic_write_text  # noqa: E402
from knapsack_rl.reports.simulation import TABLE_COLUMNS  # noqa: E402
from knapsack_rl.simulation import DEFAULT_STRATEGIES, paired_differences, preset, run  # noqa: E402
from knapsack_rl.simulation.cli import PRESET_STEPS  # noqa: E402
from knapsack_rl.tracking import Tracker  # noqa: E402

#: Sequential strategies (simulation/sequential.py), run next to the default ones.
SEQUENTIAL = (
    "rounds-paper",
    "rounds-grpo",
    "stream-paper",
    "stream-grpo",
    "pilot-commit",
    "reinforce-ada",
    "reinforce-ada-balance",
)
#: Compared with paired differences against uniform, on every preset.
COMPARED = ("uniform", "knapsack", "paper", "bayes", "ar3po") + SEQUENTIAL
PAIRED_KEYS = ("mean_p", "all_wrong", "effective_gradient_ratio")
#: Sequential strategies also run on the model variants.
VARIANT_SEQUENTIAL = ("rounds", "ar3po", "reinforce-ada", "pilot-commit")


def _paired_table(rows: list[dict]) -> str:
    """Markdown: mean over seeds, paired difference vs uniform +- standard error."""
    cols = ["strategy"]
    for k in PAIRED_KEYS:
        cols += [k, f"{k} - uniform"]
    cols.append("mean_p - uniform, per seed")
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [r["strategy"]]
        for k in PAIRED_KEYS:
            cells += [f"{r[k]:.4f}", f"{r[k + '_diff']:+.4f} +- {r[k + '_se']:.4f}"]
        cells.append(", ".join(f"{d:+.4f}" for d in r["mean_p_diffs"]))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _md_table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def breakdown(steps: int) -> list[dict]:
    """Time in tracker.update / Allocator.allocate / the rest, per tracker-based strategy."""
    acc = {"update": 0.0, "allocate": 0.0}
    orig_update, orig_alloc = Tracker.update, Allocator.allocate

    def upd(self, *a, **k):
        t = time.perf_counter()
        try:
            return orig_update(self, *a, **k)
        finally:
            acc["update"] += time.perf_counter() - t

    def alloc(self, *a, **k):
        t = time.perf_counter()
        try:
            return orig_alloc(self, *a, **k)
        finally:
            acc["allocate"] += time.perf_counter() - t

    rows = []
    Tracker.update, Allocator.allocate = upd, alloc
    try:
        for name in ("knapsack", "paper", "bayes"):
            acc.update(update=0.0, allocate=0.0)
            res = run(preset("paper"), [name], steps=steps, seed=0)
            total = res.traces[name].seconds
            rows.append(
                {
                    "strategy": name,
                    "ms/step total": 1e3 * total / steps,
                    "ms/step tracker.update": 1e3 * acc["update"] / steps,
                    "ms/step allocate": 1e3 * acc["allocate"] / steps,
                    "ms/step rest": 1e3 * (total - acc["update"] - acc["allocate"]) / steps,
                }
            )
    finally:
        Tracker.update, Allocator.allocate = orig_update, orig_alloc
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default=str(Path(__file__).with_name("RESULTS_simulate.md")))
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    cfg = preset("paper")
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731

    # ---- speed (seed 0, all default strategies) ----
    t0 = time.perf_counter()
    everything = list(DEFAULT_STRATEGIES) + list(SEQUENTIAL)
    res0 = run(cfg, everything, steps=args.steps, seed=seeds[0])
    total_all = time.perf_counter() - t0
    total = sum(res0.traces[n].seconds for n in DEFAULT_STRATEGIES)
    log(f"speed: default strategies {total:.2f} s, with the sequential ones {total_all:.2f} s")
    speed_rows = [
        {
            "strategy": n,
            "steps": int(t.metrics["step"].size),
            "seconds": t.seconds,
            "ms/step": 1e3 * t.seconds / t.metrics["step"].size,
        }
        for n, t in res0.traces.items()
    ]
    bd = breakdown(min(args.steps, 300))
    log("breakdown done")

    # ---- fidelity (all seeds, plus the oracle ceiling) ----
    results = [res0] + [run(cfg, everything, steps=args.steps, seed=s) for s in seeds[1:]]
    oracle = [run(cfg, ["oracle"], steps=args.steps, seed=s) for s in seeds]
    log("fidelity runs done")
    names = everything + ["oracle"]
    per = {n: [] for n in names}
    for res, orc in zip(results, oracle):
        rows = {r["strategy"]: r for r in res.summary_rows()}
        base = rows["uniform"]["effective_gradient_ratio"]
        orow = orc.summary_rows()[0]
        orow["eff_vs_uniform"] = orow["effective_gradient_ratio"] / base - 1.0
        rows["oracle"] = orow
        for n in names:
            per[n].append(rows[n])
    keys = [c for c in TABLE_COLUMNS if c not in ("strategy", "steps", "rollouts", "seconds")]
    fid_rows = []
    for n in names:
        row = {
            "strategy": n,
            "steps": int(np.mean([r["steps"] for r in per[n]])),
            "rollouts (M)": np.mean([r["rollouts"] for r in per[n]]) / 1e6,
        }
        for k in keys:
            vals = np.array([r[k] for r in per[n]], dtype=float)
            if k == "eff_vs_uniform":
                row[k] = (
                    f"{100 * vals.mean():+.1f}% (sd {100 * vals.std(ddof=1) if vals.size > 1 else 0:.1f})"
                )
            elif k == "max_rollouts":
                row[k] = int(vals.max())
            else:
                row[k] = float(vals.mean())
        fid_rows.append(row)

    # calibration targets: uniform, last 10% of steps
    calib = []
    for res in results:
        m = res.traces["uniform"].metrics
        late = slice(int(0.9 * m["step"].size), None)
        calib.append(
            (
                m["all_correct"][late].mean(),
                m["all_wrong"][late].mean(),
                m["effective_gradient_ratio"][late].mean(),
            )
        )
    calib = np.array(calib)

    # ---- model variants (seed 0, uniform vs knapsack vs oracle) ----
    var_rows = []
    for label, over in [
        ("paper preset", {}),
        ("size_exponent=0.5", {"size_exponent": 0.5}),
        ("transfer=0.3", {"transfer": 0.3}),
    ]:
        res = run(
            preset("paper", **over),
            ["uniform", "knapsack", "oracle"] + list(VARIANT_SEQUENTIAL),
            steps=args.steps,
            seed=seeds[0],
        )
        rows = {r["strategy"]: r for r in res.summary_rows()}
        var_rows.append(
            {
                "model": label,
                "uniform eff": rows["uniform"]["effective_gradient_ratio"],
                "knapsack eff": rows["knapsack"]["effective_gradient_ratio"],
                "knapsack vs uniform": f"{100 * rows['knapsack']['eff_vs_uniform']:+.1f}%",
                "uniform mean_p": rows["uniform"]["mean_p"],
                "knapsack mean_p": rows["knapsack"]["mean_p"],
                "oracle mean_p": rows["oracle"]["mean_p"],
                **{f"{n} mean_p": rows[n]["mean_p"] for n in VARIANT_SEQUENTIAL},
            }
        )
    log("variants done")

    # ---- paired differences vs uniform (every preset, same seeds) ----
    paired = {"paper": paired_differences(results, strategies=COMPARED)}
    small_steps = PRESET_STEPS["small"]
    paired["small"] = paired_differences(
        [run(preset("small"), list(COMPARED), steps=small_steps, seed=s) for s in seeds]
    )
    log("paired comparisons done")

    cmd = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_simulate.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    import scipy

    text = f"""# Benchmark: `knapsack-rl simulate`

Command: `{cmd.strip()}`
Date: {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
Machine: {_cpu()}, {os.cpu_count()} logical CPUs (shared with other jobs), one process,
BLAS threads = 1; Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}.

Preset `paper`: {cfg.prompts} prompts, {cfg.prompts_per_step} prompts x {cfg.rollouts_per_prompt} rollouts
= {cfg.budget} rollouts per step, L = {cfg.min_rollouts}, U = {cfg.max_rollouts},
init skill ~ Normal({cfg.init_mean}, {cfg.init_std}) (logits), lr = {cfg.lr},
size_exponent = {cfg.size_exponent}, transfer = {cfg.transfer}.

## Speed ({args.steps} steps, all default strategies, seed {seeds[0]})

Total wall time of the default strategies: **{total:.1f} s** (target: < 60 s);
with the sequential strategies too: {total_all:.1f} s.

{_md_table(speed_rows, ["strategy", "steps", "seconds", "ms/step"])}

Where the tracker-based strategies spend their time ({min(args.steps, 300)} steps,
timers around the core `Tracker.update` and `Allocator.allocate`):

{_md_table(bd, list(bd[0]))}

## Fidelity (mean over seeds {args.seeds}; every strategy spends {args.steps} x {cfg.budget} rollouts)

effective_gradient_ratio: share of all rollouts spent that landed in trained groups with a
success and a failure; eff_vs_uniform: relative to uniform's, mean (sd) over
seeds; eff_groups: share of generated groups that were informative (per group,
not per rollout); mean_p / solved / all_correct / all_wrong: whole dataset at the end.
`oracle` is knapsack with the true success rates (a ceiling, not a method).

{_md_table(fid_rows, ["strategy", "steps", "rollouts (M)"] + keys)}

Calibration check (uniform, last 10% of steps, mean over seeds): all-correct at
N = 8: {calib[:, 0].mean():.3f}, all-wrong: {calib[:, 1].mean():.3f} (targets about
0.40 and 0.20), effective-gradient ratio {calib[:, 2].mean():.3f}.

## Paired differences against uniform (seeds {args.seeds})

Every strategy spends the same rollouts as uniform on the same seed (same
initial population and prompt stream). Columns: the mean over seeds, and the
mean paired difference against uniform +- its standard error over seeds.
`mean_p`: final mean success rate over the dataset; `all_wrong`: final share
of prompts whose N = {cfg.rollouts_per_prompt} rollouts would all fail (never solved);
`effective_gradient_ratio`: effective-gradient ratio over the run.

Preset `paper` ({args.steps} steps):

{_paired_table(paired["paper"])}

Preset `small` ({small_steps} steps):

{_paired_table(paired["small"])}

## Model variants (seed {seeds[0]})

{_md_table(var_rows, list(var_rows[0]))}
"""
    atomic_write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
