"""Simulation report: comparison table, per-step CSV, PNG plots and an HTML page.

Every file is written atomically (temporary name, then rename), and
``index.html`` last, so a report folder never shows a half-written page.
matplotlib is imported only when plotting.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from knapsack_rl.atomic import atomic_write_text
from knapsack_rl.reports.html import _mpl, format_table, save_figure, write_html
from knapsack_rl.simulation.runner import METRICS, SimResult

__all__ = ["TABLE_COLUMNS", "summary_table", "metrics_csv", "write_report"]

#: Columns of the comparison table (see ``Trace.summary``).
TABLE_COLUMNS = (
    "strategy",
    "steps",
    "rollouts",
    "effective_gradient_ratio",
    "eff_vs_uniform",
    "effective_gradient_ratio_late",
    "eff_groups",
    "mean_p",
    "solved",
    "all_correct",
    "all_wrong",
    "max_rollouts",
    "gen_seconds",
    "seconds",
)


def summary_table(result: SimResult) -> str:
    """The comparison table as fixed-width text."""
    rows = result.summary_rows()
    for r in rows:
        if not np.isfinite(r["eff_vs_uniform"]):
            r["eff_vs_uniform"] = "-"
        else:
            r["eff_vs_uniform"] = f"{100 * r['eff_vs_uniform']:+.1f}%"
    return format_table(rows, TABLE_COLUMNS)


def metrics_csv(result: SimResult) -> str:
    """Per-step metrics of every strategy as CSV text (long format: one row per strategy-step)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["strategy", *METRICS])
    for name, t in result.traces.items():
        cols = [t.metrics[k] for k in METRICS]
        for i in range(cols[0].size):
            w.writerow([name, *(_cell(c[i]) for c in cols)])
    return buf.getvalue()


def _cell(v) -> str:
    if isinstance(v, (np.integer, int)):
        return str(int(v))
    return f"{float(v):.6g}"


def _smooth(y: np.ndarray, width: int) -> np.ndarray:
    if width <= 1 or y.size < 2:
        return y
    width = min(width, y.size)
    c = np.cumsum(np.insert(y.astype(np.float64), 0, 0.0))
    out = np.empty(y.size)
    for i in range(y.size):  # trailing mean, shorter at the start
        lo = max(0, i + 1 - width)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def _curves(result: SimResult, out: Path) -> Path:
    plt = _mpl()
    keys = [
        ("effective_gradient_ratio", "effective-gradient ratio (smoothed)", True),
        ("mean_p", "mean true success rate (dataset)", False),
        ("solved", "fraction of prompts with p > 0.5", False),
        ("all_wrong", f"fraction all-wrong at N = {result.config.rollouts_per_prompt}", False),
    ]
    total = max(int(t.metrics["cum_rollouts"][-1]) for t in result.traces.values())
    scale, unit = (1e6, "millions") if total >= 1e6 else (1e3, "thousands")
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for ax, (key, title, smooth) in zip(axes.ravel(), keys):
        for name, t in result.traces.items():
            x = t.metrics["cum_rollouts"] / scale
            y = t.metrics[key]
            if smooth:
                y = _smooth(y, max(1, y.size // 50))
            ax.plot(x, y, label=name, lw=1.4)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"rollouts spent ({unit})")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out)


def _allocation(result: SimResult, out: Path) -> Path:
    plt = _mpl()
    names = list(result.traces)
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    ymax = max([int(t.alloc_n.max()) for t in result.traces.values() if t.alloc_n.size] + [1])
    for ax, name in zip(axes.ravel(), names):
        t = result.traces[name]
        ax.scatter(t.alloc_p, t.alloc_n, s=5, alpha=0.4)
        ax.axhline(result.config.rollouts_per_prompt, color="gray", ls="--", lw=0.8)
        ax.set_title(name, fontsize=10)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(0, ymax * 1.05)
        ax.set_xlabel("true p before the step", fontsize=8)
        ax.set_ylabel("rollouts", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, out)


def write_report(
    result: SimResult,
    out_dir: str | os.PathLike,
    command: str | None = None,
    extra_config: dict | None = None,
    plots: bool = True,
) -> Path:
    """Write the report folder: ``metrics.csv``, ``summary.json``, ``config.json``,
    ``curves.png``, ``allocation.png`` and ``index.html`` (last). Returns the
    path of ``index.html``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = result.summary_rows()
    config = {
        "model": result.config.to_dict(),
        "steps": result.steps,
        "seed": result.seed,
        "strategies": {n: t.config for n, t in result.traces.items()},
        **(extra_config or {}),
    }
    if command:
        config["command"] = command
    atomic_write_text(out / "metrics.csv", metrics_csv(result))
    atomic_write_text(
        out / "summary.json",
        json.dumps({"initial": result.initial, "strategies": rows}, indent=2, default=float) + "\n",
    )
    atomic_write_text(out / "config.json", json.dumps(config, indent=2, default=str) + "\n")
    blocks: list[tuple[str, object]] = []
    c = result.config
    blocks.append(
        (
            "p",
            f"{len(result.traces)} strategies, {result.steps} steps of {c.budget} rollouts "
            f"({c.prompts_per_step} prompts x {c.rollouts_per_prompt}), seed {result.seed}. Every strategy "
            "spends the same total; dynamic sampling takes fewer, larger steps.",
        )
    )
    if command:
        blocks.append(("pre", command))
    blocks.append(("h2", "Comparison at equal rollouts spent"))
    blocks.append(("pre", summary_table(result)))
    blocks.append(
        (
            "p",
            "effective_gradient_ratio: share of all rollouts spent that landed in trained groups with a "
            "success and a failure; effective_gradient_ratio_late: the same over the last 10% of rollouts; "
            "eff_groups: share of generated groups that were informative and trained; "
            "mean_p, solved (p > 0.5), all_correct and all_wrong (expected, at N = "
            f"{c.rollouts_per_prompt}) are over the whole dataset at the end. Initially: "
            + ", ".join(f"{k} {v:.3f}" for k, v in result.initial.items())
            + ". gen_seconds: modelled GPU generation seconds per step on an engine of "
            + (f"{c.capacity} slots" if c.capacity else "one slot per rollout of the step")
            + " (heavy-tailed completion lengths; each generation barrier waits for its "
            "longest completion; a model, compare ratios).",
        )
    )
    if plots:
        blocks.append(("h2", "Curves over rollouts spent"))
        blocks.append(("img", _curves(result, out / "curves.png")))
        blocks.append(("h2", "Allocation against true success rate (last steps)"))
        blocks.append(("img", _allocation(result, out / "allocation.png")))
    blocks.append(("h2", "Configuration"))
    blocks.append(("pre", json.dumps(config, indent=2, default=str)))
    return write_html(out / "index.html", "knapsack-rl simulate", blocks)
