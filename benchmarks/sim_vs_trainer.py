"""Does the simulator predict what the reference trainer measured?

    python benchmarks/sim_vs_trainer.py runs/demo [--seeds 0,1,2]

For each seed of a ``knapsack-rl demo`` folder:

1. initial per-prompt success rates: the uniform run's first epoch
   (``allocations.jsonl``, 2048 / 32 = 64 steps);
2. the model's one free parameter, ``lr``, is set from the uniform run alone: the
   grid value whose simulated uniform training reward over the last 25 steps is
   closest to the one the trainer measured;
3. uniform, knapsack and rounds are simulated at the demo's M, N, U and steps.

Prints, per method and minus uniform's (paired by seed): the simulated mean success
rate of the pool at the end (the simulator's measure of learning), the measured
held-out avg@8 (the trainer's), and the measured training reward of the last 25
steps (not comparable across methods: it depends on which prompts got rollouts).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from knapsack_rl.simulation import preset, run  # noqa: E402
from knapsack_rl.simulation.runner import rates_from_allocations  # noqa: E402

METHODS = ("uniform", "knapsack", "rounds")
LR_GRID = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8)
LAST = 25


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def measured(folder: Path, seed: int, method: str) -> dict:
    rd = folder / f"seed{seed}" / "runs" / method
    mt, ev = _jsonl(rd / "metrics.jsonl"), _jsonl(rd / "eval.jsonl")
    return {"reward": float(np.mean([m["reward"] for m in mt[-LAST:]])), "heldout": ev[-1]["avg@8"]}


def simulate(rates, cfg_kw: dict, steps: int, seed: int, lr: float, methods, key: str) -> dict:
    cfg = preset("small", **cfg_kw, lr=lr)
    res = run(cfg, ",".join(methods), steps=steps, seed=seed, init_p=rates)
    return {m: float(np.mean(res.traces[m].metrics[key][-LAST:])) for m in methods}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo_dir")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args(argv)
    folder = Path(args.demo_dir)
    seeds = [int(s) for s in args.seeds.split(",")]
    conf = json.loads((folder / f"seed{seeds[0]}" / "runs" / "uniform" / "config.json").read_text())
    epoch = conf["train_prompts"] // conf["prompts_per_step"]
    cfg_kw = dict(
        prompts_per_step=conf["prompts_per_step"],
        rollouts_per_prompt=conf["rollouts_per_prompt"],
        min_rollouts=conf["min_rollouts"],
        max_rollouts=conf["max_rollouts"],
    )
    sim_d, meas_d, held_d, lrs = (
        {m: [] for m in METHODS},
        {m: [] for m in METHODS},
        {m: [] for m in METHODS},
        [],
    )
    for seed in seeds:
        rates = rates_from_allocations(
            folder / f"seed{seed}" / "runs" / "uniform" / "allocations.jsonl", steps=epoch
        ).p
        meas = {m: measured(folder, seed, m) for m in METHODS}
        fit = {
            lr: simulate(rates, cfg_kw, conf["steps"], seed, lr, ["uniform"], "reward")["uniform"]
            for lr in LR_GRID
        }
        lr = min(fit, key=lambda x: abs(fit[x] - meas["uniform"]["reward"]))
        lrs.append(lr)
        sim = simulate(rates, cfg_kw, conf["steps"], seed, lr, METHODS, "mean_p")
        for m in METHODS:
            sim_d[m].append(sim[m] - sim["uniform"])
            meas_d[m].append(meas[m]["reward"] - meas["uniform"]["reward"])
            held_d[m].append(meas[m]["heldout"] - meas["uniform"]["heldout"])
        print(
            f"seed {seed}: lr {lr} (uniform reward: simulated {fit[lr]:.3f}, measured "
            f"{meas['uniform']['reward']:.3f})"
        )

    def ms(x):
        x = np.asarray(x)
        return (
            f"{x.mean():+.4f} +- {x.std(ddof=1) / np.sqrt(x.size):.4f}"
            if x.size > 1
            else f"{x.mean():+.4f}"
        )

    print(f"\nminus uniform, paired over seeds {seeds}")
    head = ("simulated mean p", "measured held-out", "measured train reward")
    print(f"{'method':<10}" + "".join(f"{h:>24}" for h in head))
    for m in METHODS[1:]:
        print(f"{m:<10}" + "".join(f"{ms(d[m]):>24}" for d in (sim_d, held_d, meas_d)))
    order = lambda d: " < ".join(sorted(METHODS, key=lambda m: np.mean(d[m])))  # noqa: E731
    print(f"\nordering, simulated mean p:  {order(sim_d)}")
    print(f"ordering, measured held-out: {order(held_d)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
