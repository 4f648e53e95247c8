"""Self-contained HTML reports and atomic figure saving, shared by the demo,
the simulator, the allocate example and training runs.

matplotlib is imported only inside the functions that draw (extra ``plot``).
A report is a folder: ``index.html`` plus the PNG files it shows, written
atomically (each file to a temporary name, then renamed).
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from knapsack_rl.atomic import atomic_path, atomic_write_text

__all__ = ["save_figure", "html_table", "write_html", "plot_allocation", "format_table"]


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a matplotlib figure to ``path`` (PNG) atomically and close it."""
    plt = _mpl()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v)


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """Rows of dicts -> a fixed-width text table (for terminals)."""
    if not rows:
        return "(no rows)"
    cols = list(columns or rows[0].keys())
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[k]) for row in cells)) for k, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join([line, sep, *body])


def html_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """Rows of dicts -> an HTML table string."""
    if not rows:
        return "<p>(no rows)</p>"
    cols = list(columns or rows[0].keys())
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}th,td{border:1px solid #ccc;padding:4px 10px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}.grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}
code,pre{background:#f6f6f6;padding:2px 4px}pre{padding:8px;overflow-x:auto}
"""


def write_html(path: str | os.PathLike, title: str, blocks: Sequence[tuple[str, object]]) -> Path:
    """Write a self-contained HTML page atomically.

    ``blocks`` is a list of ``(kind, content)``: ``("h2", text)``, ``("p", text)``,
    ``("pre", text)``, ``("table", rows)`` (list of dicts), ``("img", png_path)``
    (shown relative to the page), ``("imgs", [png_paths])`` (a two-column grid),
    ``("html", raw_html)``.
    """
    path = Path(path)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
    ]

    def img(p) -> str:
        rel = os.path.relpath(Path(p), path.parent)
        return f"<img src='{html.escape(rel)}' alt='{html.escape(Path(p).stem)}'>"

    for kind, content in blocks:
        if kind == "h2":
            parts.append(f"<h2>{html.escape(str(content))}</h2>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(str(content))}</p>")
        elif kind == "pre":
            parts.append(f"<pre>{html.escape(str(content))}</pre>")
        elif kind == "table":
            parts.append(html_table(content))  # type: ignore[arg-type]
        elif kind == "img":
            parts.append(img(content))
        elif kind == "imgs":
            parts.append("<div class='grid'>" + "".join(img(p) for p in content) + "</div>")  # type: ignore[union-attr]
        elif kind == "html":
            parts.append(str(content))
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts))
    return path


def plot_allocation(
    p,
    rollouts,
    path: str | os.PathLike,
    title: str = "Rollouts against success rate",
    label: str | None = None,
    uniform: float | None = None,
) -> Path:
    """Scatter of rollouts per prompt against success rate, saved as PNG."""
    plt = _mpl()
    p = np.asarray(p, dtype=float)
    r = np.asarray(rollouts)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.scatter(p, r, s=14, alpha=0.7, label=label)
    if uniform is not None:
        ax.axhline(uniform, color="gray", ls="--", lw=1, label=f"uniform ({uniform:g})")
    ax.set_xlabel("success rate p")
    ax.set_ylabel("rollouts")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if label is not None or uniform is not None:
        ax.legend()
    return save_figure(fig, path)
