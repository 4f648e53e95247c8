"""Benchmark: uniform vs knapsack (and bayes) GRPO on the built-in task, several seeds, same budget.

Measures, per seed (each seed = one ``knapsack-rl demo`` run: shared warm-start,
then every method with the same total rollout budget):

- effective-gradient ratio (mean over steps), knapsack / uniform;
- held-out accuracy (avg@8) after the same rollouts, and rollouts needed to
  reach uniform's final accuracy (ratio to uniform's total);
- generation throughput of heterogeneous vs uniform allocation, in a
  controlled micro-benchmark (same model and prompts, the allocations taken
  from the knapsack run, alternating repetitions), and in the runs themselves;
- allocation time as a share of step time.

Usage:
    .venv/bin/python benchmarks/bench_train.py --seeds 0 1 2 --out runs/bench_train
Writes OUT/bench_train.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np


def gen_throughput(ws: Path, run_dir: Path, reps: int = 5, threads: int = 1) -> dict:
    """Rollouts/s and tokens/s of generate() with the knapsack run's allocations vs uniform 8."""
    import torch

    from knapsack_rl.training.config import TrainConfig
    from knapsack_rl.training.model import load_policy
    from knapsack_rl.training.sampler import generate
    from knapsack_rl.training.trainer import build_task

    torch.set_num_threads(threads)
    cfg = TrainConfig(model=str(ws))
    model, tok, _ = load_policy(cfg)
    task = build_task(TrainConfig(seed=json.loads((run_dir / "config.json").read_text())["seed"]))
    pool = {e.id: e for e in task.examples(cfg.train_prompts, "train")}
    allocs = [json.loads(x) for x in (run_dir / "allocations.jsonl").read_text().splitlines()]
    allocs = allocs[len(allocs) // 2 :][:10]  # steps from the second half (trackers warmed up)
    res = {"uniform": [0.0, 0, 0], "heterogeneous": [0.0, 0, 0]}
    g = torch.Generator().manual_seed(0)
    for _ in range(reps):
        for a in allocs:
            prompts = [tok.prompt_ids(pool[i].prompt) for i in a["ids"]]
            m = len(prompts)
            for name, counts in (
                ("uniform", [sum(a["rollouts"]) // m] * m),
                ("heterogeneous", a["rollouts"]),
            ):
                out = generate(
                    model,
                    prompts,
                    counts,
                    max_new_tokens=cfg.max_new_tokens,
                    eos_id=tok.eos_token_id,
                    pad_id=tok.pad_token_id,
                    generator=g,
                )
                res[name][0] += out.seconds
                res[name][1] += len(out.completions)
                res[name][2] += out.tokens
    return {k: {"rollouts_per_s": v[1] / v[0], "tokens_per_s": v[2] / v[0]} for k, v in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--steps", type=int, default=None, help="RL steps per method (default: the demo's)"
    )
    ap.add_argument("--methods", default="uniform,knapsack,bayes")
    ap.add_argument("--out", default="runs/bench_train")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    from knapsack_rl.atomic import atomic_write_text
    from knapsack_rl.training.demo import DemoConfig, rollouts_to_reach, run_demo

    hf_logging.set_verbosity_error()
    out = Path(args.out)
    per_seed = []
    t_all = time.perf_counter()
    for seed in args.seeds:
        cfg = DemoConfig(
            out=str(out / f"seed{seed}"),
            seed=seed,
            **({"steps": args.steps} if args.steps else {}),
            threads=args.threads,
            methods=tuple(args.methods.split(",")),
            progress=False,
        )
        res = run_demo(cfg, log=lambda s, seed=seed: print(f"[seed {seed}] {s}", flush=True))
        runs = res["runs"]
        key = res["summary"]["accuracy_key"]
        u = runs["uniform"]
        row = {"seed": seed, "accuracy_key": key}
        u_final = u["eval"][-1][key]
        u_total = u["eval"][-1]["rollouts_total"]
        for m, r in runs.items():
            mt = r["metrics"]
            reach = rollouts_to_reach(r["eval"], key, u_final)
            row[m] = {
                "egr": float(np.mean([x["effective_gradient_ratio"] for x in mt])),
                "start_acc": r["eval"][0][key],
                "final_acc": r["eval"][-1][key],
                "final_greedy": r["eval"][-1]["greedy"],
                "best_acc": max(e[key] for e in r["eval"]),
                "rollouts_to_uniform_final": reach,
                "rollouts_ratio": None if reach is None else reach / u_total,
                "alloc_share": sum(x["time/allocate"] for x in mt)
                / sum(x["time/step"] for x in mt),
                "gen_rollouts_per_s": sum(x["rollouts"] for x in mt)
                / sum(x["time/generate"] for x in mt),
                "gen_tokens_per_s": sum(x["tokens"] for x in mt)
                / sum(x["time/generate"] for x in mt),
                "seconds": r["seconds"],
            }
        if "knapsack" in runs:
            row["throughput"] = gen_throughput(
                out / f"seed{seed}" / "warmstart",
                out / f"seed{seed}" / "runs" / "knapsack",
                threads=args.threads,
            )
        per_seed.append(row)
        print(json.dumps(row, indent=1), flush=True)
    summary = {
        "seeds": per_seed,
        "steps": args.steps or DemoConfig().steps,
        "seconds": time.perf_counter() - t_all,
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}, "
        f"python {platform.python_version()}, threads {args.threads}",
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "bench_train.json", json.dumps(summary, indent=2))
    methods = [m for m in args.methods.split(",") if m != "uniform"]
    print(
        "\n| seed | method | EGR | EGR / uniform | acc start -> final | uniform final | rollouts to uniform final (ratio) | alloc share |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in per_seed:
        u = row["uniform"]
        for m in ["uniform", *methods]:
            r = row[m]
            ratio = "-" if r["rollouts_ratio"] is None else f"{r['rollouts_ratio']:.2f}"
            print(
                f"| {row['seed']} | {m} | {r['egr']:.3f} | {r['egr'] / u['egr']:.2f} | "
                f"{r['start_acc']:.3f} -> {r['final_acc']:.3f} | {u['final_acc']:.3f} | {ratio} | "
                f"{100 * r['alloc_share']:.2f}% |"
            )
    print(
        "\n| seed | uniform rollouts/s | heterogeneous rollouts/s | ratio | uniform tokens/s | heterogeneous tokens/s | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in per_seed:
        if "throughput" not in row:
            continue
        t = row["throughput"]
        u, h = t["uniform"], t["heterogeneous"]
        print(
            f"| {row['seed']} | {u['rollouts_per_s']:.0f} | {h['rollouts_per_s']:.0f} | "
            f"{h['rollouts_per_s'] / u['rollouts_per_s']:.2f} | {u['tokens_per_s']:.0f} | "
            f"{h['tokens_per_s'] / 1:.0f} | {h['tokens_per_s'] / u['tokens_per_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
