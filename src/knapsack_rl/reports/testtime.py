"""The ``knapsack-rl testtime`` outputs: a table, ``results.csv``, ``summary.json`` and
an HTML page with the accuracy-against-samples plot, every file written atomically."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from knapsack_rl.atomic import atomic_write_text
from knapsack_rl.reports.html import _mpl, format_table, save_figure, write_html

__all__ = ["results_csv", "summary_table", "write_report"]

_COLUMNS = ("method", "setting", "samples", "accuracy", "se", "vs", "diff", "diff_se")
_LABEL = {"majority": "majority-vote accuracy", "coverage": "coverage", "best_of_n": "accuracy"}


def summary_table(rows: list[dict]) -> str:
    """The rows as a fixed-width text table."""
    return format_table(rows, [c for c in _COLUMNS if any(c in r for r in rows)])


def results_csv(rows: list[dict]) -> str:
    """The rows as CSV (every key, in a fixed order)."""
    keys = list(_COLUMNS) + sorted({k for r in rows for k in r} - set(_COLUMNS))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in keys})
    return buf.getvalue()


def _plot(rows: list[dict], objective: str, path: Path) -> Path:
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    for method, style in (("uniform", "o--"), ("knapsack", "o-")):
        pts = sorted(
            (r["samples"], r["accuracy"], r["se"])
            for r in rows
            if r["method"] == method and r["setting"].endswith("/question")
        )
        if pts:
            x, y, e = zip(*pts, strict=True)
            ax.errorbar(x, y, yerr=e, fmt=style, ms=4, capsize=2, label=method)
    for method, marker in (("adaptive-consistency", "s"), ("esc", "^")):
        pts = [(r["samples"], r["accuracy"]) for r in rows if r["method"] == method]
        if pts:
            x, y = zip(*pts, strict=True)
            ax.scatter(x, y, marker=marker, s=36, label=method, zorder=3)
    matched = [(r["samples"], r["accuracy"]) for r in rows if r["setting"].startswith("= ")]
    if matched:
        x, y = zip(*matched, strict=True)
        ax.scatter(
            x, y, marker="x", s=36, color="black", label="knapsack at their samples", zorder=4
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("samples per question (mean)")
    ax.set_ylabel(_LABEL.get(objective, "accuracy"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_report(
    rows: list[dict],
    summary: dict,
    out: str | os.PathLike,
    *,
    title: str,
    command: str,
    notes: list[str] = (),
    plots: bool = True,
) -> Path:
    """Write ``results.csv``, ``summary.json`` and ``index.html`` (with ``accuracy.png``)
    to the folder ``out``; returns the page's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.csv", results_csv(rows))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    blocks: list = [("p", f"Command: {command}")]
    blocks += [("p", n) for n in notes]
    if plots:
        blocks.append(
            ("img", _plot(rows, summary.get("objective", "majority"), out / "accuracy.png"))
        )
    blocks.append(("h2", "Results"))
    blocks.append(
        (
            "p",
            "samples: mean per question; se: standard error over questions; diff: the paired "
            "difference from the rule in 'vs' on the same replay orders.",
        )
    )
    blocks.append(("table", [{c: r.get(c, "") for c in _COLUMNS} for r in rows]))
    return write_html(out / "index.html", title, blocks)
