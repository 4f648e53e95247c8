"""Speed of ``allocate_round`` (allocation in rounds), against one-shot ``allocate`` in the same run.

    python benchmarks/bench_rounds.py [--write]

Each prompt has drawn a pilot of 4 rollouts (successes ~ Binomial(4, p), p ~ Beta(0.5, 0.5));
``allocate_round`` spends the budget on top of it. Two prior settings: one prior fitted
to the batch (the default, prompts fall into few types) and a different prior per
prompt (as a tracker gives). The baseline is the one-shot exact knapsack (``allocate``)
over the same prompts with the same budget. Times are medians of repeated calls on
one core. ``--write`` saves ``benchmarks/RESULTS_rounds.md``.
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
from knapsack_rl import allocate, allocate_round  # noqa: E402
from knapsack_rl.atomic import atomic_write_text  # noqa: E402


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def case(m: int, budget: int, repeats: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 0.5, m)
    n = np.full(m, 4)
    s = rng.binomial(4, p)
    pa = rng.uniform(0.3, 3.0, m)
    pb = rng.uniform(0.3, 3.0, m)
    row = {"M": m, "budget": budget}
    row["round_fitted_prior_ms"] = 1e3 * median_time(
        lambda: allocate_round(s, n, budget=budget), repeats
    )
    row["round_per_prompt_prior_ms"] = 1e3 * median_time(
        lambda: allocate_round(s, n, budget=budget, prior_a=pa, prior_b=pb), repeats
    )
    row["one_shot_knapsack_ms"] = 1e3 * median_time(
        lambda: allocate(np.clip(s / 4, 0, 1), budget=budget + 4 * m), repeats
    )
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="allocate_round speed")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--quick", action="store_true", help="small sizes only")
    args = ap.parse_args(argv)
    sizes = [(256, 2048, 200), (4096, 32768, 20)]
    if not args.quick:
        sizes.append((1_000_000, 4_000_000, 3))
    rows = [case(m, b, r) for m, b, r in sizes]
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append(
            "| "
            + " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols)
            + " |"
        )
    table = "\n".join(lines)
    print(table)
    if args.write:
        text = (
            "# allocate_round speed\n\n"
            f"Command: `python benchmarks/bench_rounds.py --write`. Machine: {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores (one thread used), Python {platform.python_version()}, numpy {np.__version__}.\n\n"
            "Pilot of 4 rollouts per prompt; the budget is spent on top of it. Medians of repeated calls.\n\n"
            + table
            + "\n"
        )
        atomic_write_text(Path(__file__).with_name("RESULTS_rounds.md"), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
