"""How the default of ``method="rounds"`` was selected: uniform against rounds variants in
the reference trainer, on selection seeds that no reported figure uses.

    python benchmarks/select_value.py                  # runs/select, seeds 100-105, 2 jobs
    python benchmarks/select_value.py --summarise      # only re-read runs/select

Each seed warm-starts the demo's model once (the demo's settings), then trains every
variant for the demo's 300 steps at equal rollouts. The rule, fixed before the runs:
the variant with the highest mean paired difference against uniform in held-out
avg@8, averaged over the last three evaluations (steps 250-300, less noisy than the
last one alone). Writes ``benchmarks/RESULTS_select.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

#: name -> (settings of the run, size weight of ``grpo``)
VARIANTS: dict[str, tuple[dict, float | None]] = {
    "uniform": ({"method": "uniform"}, None),
    "rounds-size": ({"method": "rounds", "value": "size"}, None),
    "rounds-size-3r": ({"method": "rounds", "value": "size", "rounds": 3}, None),
    "rounds-paper": ({"method": "rounds", "value": "paper"}, None),
    "rounds-paper-3r": ({"method": "rounds", "value": "paper", "rounds": 3}, None),
    "rounds-grpo-0": ({"method": "rounds", "value": "grpo"}, 0.0),
    "rounds-grpo-1": ({"method": "rounds", "value": "grpo"}, 1.0),
    "rounds-grpo-3": ({"method": "rounds", "value": "grpo"}, 3.0),
    "rounds-grpo-10": ({"method": "rounds", "value": "grpo"}, 10.0),
}
LAST = 3


def run_one(out: Path, seed: int, name: str) -> None:
    """Train one variant of one seed (in this process)."""
    import torch

    from knapsack_rl.allocation import rounds
    from knapsack_rl.training.demo import DemoConfig, _warmstart
    from knapsack_rl.training.trainer import Trainer

    settings, size_weight = VARIANTS[name]
    if size_weight is not None:
        rounds._GRPO_SIZE_WEIGHT = size_weight
    torch.set_num_threads(1)
    cfg = DemoConfig(out=str(out), seeds=(seed,), progress=False)
    ws = _warmstart(cfg, seed, out / f"seed{seed}", print)
    tc = cfg.train_config(settings["method"], seed).replace(
        model=str(ws), run_dir=str(out / f"seed{seed}" / "runs" / name), **settings
    )
    Trainer(tc).run()


def summarise(out: Path) -> str:
    late, final, per_level = {}, {}, {}
    for sd in sorted(out.glob("seed*")):
        for rd in sorted((sd / "runs").glob("*")):
            f = rd / "eval.jsonl"
            ev = (
                [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
                if f.is_file()
                else []
            )
            if not ev or ev[-1]["step"] < 300:
                continue
            late.setdefault(rd.name, {})[sd.name] = np.mean([e["avg@8"] for e in ev[-LAST:]])
            final.setdefault(rd.name, {})[sd.name] = ev[-1]["avg@8"]
            levels = sorted(k for k in ev[-1] if k.startswith("avg@8/level"))
            per_level.setdefault(rd.name, {})[sd.name] = [
                np.mean([e[k] for e in ev[-LAST:]]) for k in levels
            ]
    base = late.get("uniform", {})
    rows = [
        "| variant | seeds | late avg@8 | late - uniform | final - uniform | late - uniform per level | per seed (late) |",
        "|---|---|---|---|---|---|---|",
    ]
    order = [v for v in VARIANTS if v in late] + [v for v in late if v not in VARIANTS]
    for name in order:
        seeds = [s for s in late[name] if s in base]
        d = np.array([late[name][s] - base[s] for s in seeds])
        f = np.array([final[name][s] - final["uniform"][s] for s in seeds])
        lv = np.array([np.subtract(per_level[name][s], per_level["uniform"][s]) for s in seeds])

        def ms(x):
            return (
                f"{x.mean():+.4f} +- {x.std(ddof=1) / np.sqrt(x.size):.4f}" if x.size > 1 else "-"
            )

        rows.append(
            f"| {name} | {len(seeds)} | {np.mean(list(late[name].values())):.4f} | {ms(d)} | {ms(f)} | "
            f"{', '.join(f'{x:+.3f}' for x in lv.mean(0))} | {', '.join(f'{x:+.3f}' for x in d)} |"
        )
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/select")
    ap.add_argument("--seeds", default="100,101,102,103,104,105")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--summarise", action="store_true", help="only summarise OUT")
    ap.add_argument("--one", nargs=2, metavar=("SEED", "VARIANT"), help=argparse.SUPPRESS)
    ap.add_argument(
        "--write", default=str(Path(__file__).with_name("RESULTS_select.md")), help="results file"
    )
    a = ap.parse_args()
    out = Path(a.out)
    if a.one:
        run_one(out, int(a.one[0]), a.one[1])
        return 0
    seeds = [int(s) for s in a.seeds.split(",")]
    variants = a.variants.split(",")
    if not a.summarise:
        t = time.perf_counter()
        env = {**os.environ, "OMP_NUM_THREADS": "1"}

        def seed_jobs(seed):  # one seed's variants in turn (they share its warm-start)
            for v in variants:
                cmd = [sys.executable, __file__, "--out", str(out), "--one", str(seed), v]
                subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
                print(f"seed {seed} {v} done ({time.perf_counter() - t:.0f}s)", flush=True)

        with ThreadPoolExecutor(a.jobs) as pool:
            list(pool.map(seed_jobs, seeds))
    table = summarise(out)
    print(table)
    if a.write:
        from knapsack_rl.atomic import atomic_write_text

        atomic_write_text(
            Path(a.write),
            "# Selection of the `rounds` default (reference trainer)\n\n"
            f"Command: `python benchmarks/select_value.py` (out {out}, seeds {a.seeds}).\n"
            f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Held-out avg@8 on 400\n"
            "prompts; 'late' is the mean of the last three evaluations (steps 250-300), 'final'\n"
            "the last one; differences are paired by seed, +- their standard error.\n\n"
            + table
            + "\n",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
