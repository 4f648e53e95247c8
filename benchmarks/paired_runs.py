"""Paired held-out differences of trainer runs against uniform, from their run folders.

    python benchmarks/paired_runs.py runs/stream_a runs/stream_b --method stream
    python benchmarks/paired_runs.py runs/stream_a runs/rounds_a --method stream --baseline rounds

Each ``DIR/seedS/runs/METHOD/eval.jsonl`` is read; runs of one seed are paired across
the folders (a seed's warm-start is the same in each). Reported per seed: the final
``avg@8`` and the late one (mean of the last three evaluations) of ``METHOD`` minus
uniform's, and the mean ``time/gpu_generate`` ratio (modelled GPU generation seconds
per step, from ``metrics.jsonl``); then means with their standard error over seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--method", default="stream")
    ap.add_argument("--baseline", default="uniform")
    ap.add_argument("--metric", default="avg@8")
    args = ap.parse_args()
    found: dict[int, dict[str, Path]] = {}
    for d in args.dirs:
        for run in Path(d).glob("seed*/runs/*"):
            if (run / "eval.jsonl").exists():
                found.setdefault(int(run.parent.parent.name[4:]), {})[run.name] = run
    out = []
    base = args.baseline
    for seed in sorted(found):
        runs = {"base": found[seed].get(base), "new": found[seed].get(args.method)}
        if None in runs.values():
            continue
        ev = {m: _rows(r / "eval.jsonl") for m, r in runs.items()}
        if ev["base"][-1]["step"] != ev["new"][-1]["step"]:
            continue  # still running
        final = ev["new"][-1][args.metric] - ev["base"][-1][args.metric]
        late = np.mean([e[args.metric] for e in ev["new"][-3:]]) - np.mean(
            [e[args.metric] for e in ev["base"][-3:]]
        )
        gpu = {
            m: np.mean([x["time/gpu_generate"] for x in _rows(r / "metrics.jsonl")])
            for m, r in runs.items()
        }
        out.append(
            (f"seed{seed}", ev["base"][-1][args.metric], final, late, gpu["new"] / gpu["base"])
        )
    print(f"| seed | {base} final | {args.method} - {base} (final) | (late) | GPU generate ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, u, f, lt, g in out:
        print(f"| {name} | {u:.4f} | {f:+.4f} | {lt:+.4f} | {g:.3f} |")
    if len(out) > 1:
        a = np.array([r[1:] for r in out])
        se = a.std(axis=0, ddof=1) / np.sqrt(len(out))
        print(
            f"| mean of {len(out)} | {a[:, 0].mean():.4f} | {a[:, 1].mean():+.4f} +- {se[1]:.4f} | "
            f"{a[:, 2].mean():+.4f} +- {se[2]:.4f} | {a[:, 3].mean():.3f} +- {se[3]:.3f} |"
        )


if __name__ == "__main__":
    main()
