"""How the default of ``method="rounds"`` was selected: uniform against rounds variants in
the reference trainer, on selection seeds that no reported figure uses.

    python benchmarks/select_value.py                  # runs/select, seeds 100-105, 2 jobs
    python benchmarks/select_value.py --summarise      # only re-read runs/select

Each seed warm-starts the demo's model once (the demo's settings), then trains every
variant for the demo's 300 steps at equal rollouts (256 per step). The rule, fixed
before the first runs: the variant with the highest mean paired difference against
uniform in held-out avg@8, averaged over the last three evaluations (steps 250-300,
less noisy than the last one alone). The selection was adaptive: the second group of
variants (more prompts per step, a pilot of 2) was added after the first group's
results on the same seeds, so the demo's seeds are the independent check. Writes
``benchmarks/RESULTS_select.md``.
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

#: the first selection's rounds settings (before ``oversample``): a pilot of 4 on the step's 32 prompts
_R1 = {"method": "rounds", "pilot": 4, "oversample": 1}
#: name -> (settings of the run, size weight of ``grpo``)
#: (rounds-size, rounds-size-3r, rounds-coba-ov2 and rounds-grpo-ov2-auto were run too; their
#: value models and discount="auto" were removed in 0.2.0, their results stay in
#: RESULTS_select.md)
VARIANTS: dict[str, tuple[dict, float | None]] = {
    "uniform": ({"method": "uniform"}, None),
    # first selection: the value model, on the step's own prompts
    "rounds-paper": ({**_R1, "value": "paper"}, None),
    "rounds-paper-3r": ({**_R1, "value": "paper", "rounds": 3}, None),
    "rounds-grpo-0": ({**_R1, "value": "grpo"}, 0.0),
    "rounds-grpo-1": ({**_R1, "value": "grpo"}, 1.0),
    "rounds-grpo-3": ({**_R1, "value": "grpo"}, 3.0),
    "rounds-grpo-10": ({**_R1, "value": "grpo"}, 10.0),
    # second selection: screen more prompts at the same budget (pilot 2 each)
    "uniform-64x4": ({"method": "uniform", "prompts_per_step": 64, "rollouts_per_prompt": 4}, None),
    "knapsack-64x4": (
        {"method": "knapsack", "prompts_per_step": 64, "rollouts_per_prompt": 4},
        None,
    ),
    "rounds-grpo-48p2": (
        {"method": "rounds", "prompts_per_step": 48, "budget": 256, "pilot": 2, "oversample": 1},
        10.0,
    ),
    "rounds-grpo-ov2": ({"method": "rounds", "value": "grpo", "pilot": 2, "oversample": 2}, 10.0),
    "rounds-paper-ov2": ({"method": "rounds", "value": "paper", "pilot": 2, "oversample": 2}, None),
    "rounds-grpo-ov2-3r": (
        {"method": "rounds", "value": "grpo", "pilot": 2, "oversample": 2, "rounds": 3},
        10.0,
    ),
    "rounds-grpo-ov3": ({"method": "rounds", "value": "grpo", "pilot": 2, "oversample": 3}, 10.0),
    # after the SmolLM2 runs, for information: a smaller size credit (BENCHMARKS.md)
    "rounds-grpo-1-ov2": ({"method": "rounds", "value": "grpo", "pilot": 2, "oversample": 2}, 1.0),
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


def allocation_table(out: Path, since: int = 150) -> str:
    """Where each variant's rollouts went, steps ``since``-300 over every seed: prompts per
    step, informative groups (a success and a failure) per step and the rollouts in
    them, and each level's share of the rollouts."""
    rows = [
        "| variant | prompts / step | informative groups / step | rollouts in them | rollout share by level |",
        "|---|---|---|---|---|",
    ]
    names = sorted({rd.name for sd in out.glob("seed*") for rd in (sd / "runs").glob("*")})
    order = [v for v in VARIANTS if v in names] + [v for v in names if v not in VARIANTS]
    for name in order:
        prompts, groups, inside, levels = [], [], [], {}
        for sd in sorted(out.glob("seed*")):
            f = sd / "runs" / name / "allocations.jsonl"
            if not f.is_file():
                continue
            for line in f.read_text().splitlines():
                a = json.loads(line)
                if a["step"] < since:
                    continue
                r, k = np.array(a["rollouts"]), np.array(a["successes"])
                mixed = (k > 0) & (k < r)
                prompts.append(r.size)
                groups.append(mixed.sum())
                inside.append(r[mixed].sum())
                for lv, n in zip(a["levels"], r):
                    levels[lv] = levels.get(lv, 0) + int(n)
        if not prompts:
            continue
        tot = sum(levels.values())
        share = " / ".join(f"{levels[lv] / tot:.2f}" for lv in sorted(levels))
        rows.append(
            f"| {name} | {np.mean(prompts):.0f} | {np.mean(groups):.1f} | {np.mean(inside):.0f} | {share} |"
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
        "--write",
        default=None,
        help="results file (default: RESULTS_select.md when every variant runs, else none, so a "
        "partial run never overwrites the full table)",
    )
    a = ap.parse_args()
    out = Path(a.out)
    if a.one:
        run_one(out, int(a.one[0]), a.one[1])
        return 0
    seeds = [int(s) for s in a.seeds.split(",")]
    variants = a.variants.split(",")
    if a.write is None and set(variants) == set(VARIANTS):
        a.write = str(Path(__file__).with_name("RESULTS_select.md"))
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
    table = summarise(out) + "\n\nSteps 150-300, every seed:\n\n" + allocation_table(out)
    print(table)
    if a.write:
        from knapsack_rl.atomic import atomic_write_text

        atomic_write_text(
            Path(a.write),
            "# Selection of the `rounds` default (reference trainer)\n\n"
            f"Command: `python benchmarks/select_value.py` (out {out}, seeds {a.seeds}).\n"
            f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Held-out avg@8 on 400\n"
            "prompts; 'late' is the mean of the last three evaluations (steps 250-300), 'final'\n"
            "the last one; differences are paired by seed, +- their standard error.\n"
            "Rows up to rounds-grpo-10 are the first selection (the value model, a pilot of 4\n"
            "on the step's 32 prompts); the rows after it were added once those results were\n"
            "in (more prompts per step at the same 256 rollouts, a pilot of 2), on the same\n"
            "seeds, so the pick is adaptive and the demo's seeds are the independent check.\n"
            "Rule: the highest mean late - uniform.\n\n" + table + "\n",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
