"""Statistics of a task mix under UNIFORM allocation only (how the demo's mix is chosen).

    python benchmarks/task_stats.py RUN_DIR [--samples 64]

RUN_DIR is a uniform run (e.g. ``runs/demo/seed0/runs/uniform`` or any
``knapsack-rl train --method uniform`` folder). Prints, per level and overall:

- the share of all-correct and all-wrong groups over the run (N = the run's group
  size), early (first quarter of steps) and late (last quarter);
- with ``--samples K``: the warm-start model's per-prompt success rate on the
  training pool, from K samples per prompt (the tail with p in [0.01, 0.1] is the
  "hard but learnable" part), using the warm-start saved next to the run.

Nothing here looks at any other method: settings are chosen from these numbers alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def group_shares(allocs: list[dict]) -> dict:
    out = {}
    quarter = max(1, len(allocs) // 4)
    for name, part in (("all", allocs), ("early", allocs[:quarter]), ("late", allocs[-quarter:])):
        s = np.concatenate([a["successes"] for a in part])
        n = np.concatenate([a["rollouts"] for a in part])
        lv = np.concatenate([a["levels"] for a in part])
        row = {"all_correct": float(np.mean(s == n)), "all_wrong": float(np.mean(s == 0))}
        for level in np.unique(lv):
            k = lv == level
            row[f"L{level}"] = f"{np.mean(s[k] == n[k]):.2f}/{np.mean(s[k] == 0):.2f}"
        out[name] = row
    return out


def warmstart_rates(run_dir: Path, samples: int) -> dict:
    import dataclasses

    import torch

    from knapsack_rl.training import Trainer
    from knapsack_rl.training.config import TrainConfig
    from knapsack_rl.training.sampler import generate

    saved = json.loads((run_dir / "config.json").read_text())
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in saved.items() if k in names})
    cfg = cfg.replace(run_dir=str(run_dir.parent / ".stats-run"), progress=False, steps=1)
    tr = Trainer(cfg)
    torch.manual_seed(0)
    pool = tr.pool
    gen = generate(
        tr.model,
        tr.prompt_ids,
        [samples] * len(pool),
        max_new_tokens=cfg.max_new_tokens,
        eos_id=tr.tok.eos_token_id,
        pad_id=tr.tok.pad_token_id,
        temperature=cfg.temperature,
        generator=torch.Generator().manual_seed(0),
        max_batch_tokens=cfg.max_batch_tokens,
    )
    group = np.asarray(gen.prompt_index)
    ex = [pool[g] for g in group]
    texts = [tr.tok.decode(c) for c in gen.completions]
    r = np.asarray(tr.reward_fn([e.prompt for e in ex], texts, answer=[e.answer for e in ex]))
    p = np.bincount(group, weights=(r >= 0.5), minlength=len(pool)) / samples
    lv = np.array([e.level for e in pool])
    out = {
        "p_mean": float(p.mean()),
        "share_p0": float(np.mean(p == 0)),
        "share_p1": float(np.mean(p == 1)),
        "share_tail_0.01_0.1": float(np.mean((p >= 0.01) & (p <= 0.1))),
        "expected_all_correct_N8": float(np.mean(p**8)),
        "expected_all_wrong_N8": float(np.mean((1 - p) ** 8)),
    }
    for level in np.unique(lv):
        k = lv == level
        out[f"L{level}: p_mean / p0 / tail"] = (
            f"{p[k].mean():.2f} / {np.mean(p[k] == 0):.2f} / "
            f"{np.mean((p[k] >= 0.01) & (p[k] <= 0.1)):.2f}"
        )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--samples", type=int, default=0)
    args = ap.parse_args(argv)
    rd = Path(args.run_dir)
    allocs = [json.loads(x) for x in (rd / "allocations.jsonl").read_text().splitlines() if x]
    print(json.dumps({"groups": group_shares(allocs)}, indent=1))
    if args.samples:
        print(json.dumps({"warmstart": warmstart_rates(rd, args.samples)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
