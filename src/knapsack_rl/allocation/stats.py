""":class:`PromptStats`, the one per-prompt statistics type; reading statistics
files and writing allocations (CSV or JSONL).

A statistics file has a column ``id`` and either ``p`` or ``successes`` and
``attempts`` (optionally ``valid`` and a cost column). With counts and no
``valid`` column, a row is valid when ``attempts >= MIN_OBSERVATIONS`` (8, the
paper tracker's rule). Ids follow one rule in both formats (see :func:`read_stats`).
Problems raise :class:`StatsError` with a message naming the file, the line and
the field. Outputs are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from knapsack_rl import defaults
from knapsack_rl.atomic import atomic_write_text
from knapsack_rl.io import InputError, read_records, where

__all__ = ["StatsError", "PromptStats", "read_stats", "write_table", "FORMATS"]

FORMATS = (".csv", ".jsonl")
_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}

StatsError = InputError  # a problem with a statistics file (names file, line and field)


@dataclass(frozen=True, kw_only=True)
class PromptStats:
    """Per-prompt statistics of one batch: what trackers and statistics files produce,
    and what :meth:`knapsack_rl.Allocator.allocate` consumes (each method takes what it needs).

    Attributes (arrays of shape (M,); any may be None when unknown):
        p: success-rate estimates in [0, 1] (``knapsack``, ``paper``, ``uniform``).
        successes, attempts: (effective, possibly fractional) counts behind the
            estimate (``bayes``; ``p = successes / attempts`` when ``p`` is None).
        valid: whether each estimate is trusted (``paper``).
        cost: per-rollout cost (token budgets).
        prior: ``(a0, b0)`` Beta prior for ``bayes``, floats or (M,) arrays.
        ids: prompt ids, in order.
    """

    p: np.ndarray | None = None
    successes: np.ndarray | None = None
    attempts: np.ndarray | None = None
    valid: np.ndarray | None = None
    cost: np.ndarray | None = None
    prior: tuple | None = None
    ids: list | None = None

    def __len__(self) -> int:
        for x in (self.ids, self.p, self.successes, self.attempts):
            if x is not None:
                return len(x)
        return 0

    def replace(self, **changes) -> PromptStats:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)


def _text(raw) -> str | None:
    return raw.strip() if isinstance(raw, str) else raw


#: what a number in a file may look like: decimal or scientific, ASCII digits only
_DECIMAL = re.compile(
    r"\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)\s*\Z",
    re.ASCII | re.IGNORECASE,
)


def _number(path, line, field, raw) -> float:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        raise StatsError(f"{where(path, line, field)}: missing value")
    if isinstance(raw, bool):
        raise StatsError(f"{where(path, line, field)}: {raw!r} is not a number")
    if isinstance(raw, str) and not _DECIMAL.match(raw):  # float() also takes 0.5_0, ٣
        raise StatsError(
            f"{where(path, line, field)}: {_short(raw)} is not a number "
            "(plain decimal or scientific notation, e.g. 0.25 or 2.5e-1)"
        )
    try:
        v = float(raw)
    except (TypeError, ValueError, OverflowError):
        raise StatsError(f"{where(path, line, field)}: {_short(raw)} is not a number") from None
    if not math.isfinite(v):
        raise StatsError(f"{where(path, line, field)}: {_short(raw)} is not a finite number")
    return v


def _short(raw) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def _id_key(path, line, raw):
    """The id rule (both formats): an id is kept verbatim, as given. In CSV it is
    the cell's text; in JSONL a string or an integer. It must contain a
    non-whitespace character, and two ids are the same when their text is the
    same (so JSONL ``7`` and ``"7"`` are duplicates, while ``" a"`` and ``"a"`` are not).
    Returns the comparison key."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise StatsError(f"{where(path, line, 'id')}: {_short(raw)} is not a valid id")
    key = str(raw)
    if not key.strip():
        raise StatsError(f"{where(path, line, 'id')}: {raw!r} is not a valid id")
    return key


def _bool(path, line, field, raw) -> bool:
    if isinstance(raw, bool):
        return raw
    s = str(raw).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise StatsError(f"{path}, line {line}, field '{field}': {raw!r} is not a boolean")


def read_stats(path: str | os.PathLike, cost_column: str | None = None) -> PromptStats:
    """Read and validate a statistics file (.csv or .jsonl).

    Checks: the file exists and is readable and not empty; column ``id`` and
    either ``p`` or ``successes`` + ``attempts`` exist on every row; numbers
    are finite; ``0 <= p <= 1``; counts are >= 0 and ``successes <= attempts``;
    ids are unique; ``valid`` is a boolean; costs are > 0; no column or key twice.

    Ids: kept verbatim (no stripping); a CSV id is the cell's text, a JSONL id a
    string or an integer; an id needs a non-whitespace character; two ids are the
    same when their text is (JSONL ``7`` and ``"7"`` are duplicates).
    """
    path = Path(path)
    ids: list = []
    seen: dict = {}
    ps, ss, ns, vs, cs = [], [], [], [], []
    mode = None
    has_valid = None
    for line, row in read_records(path, FORMATS):
        if mode is None:
            if "p" in row:
                mode = "p"
            elif "successes" in row and "attempts" in row:
                mode = "counts"
            else:
                missing = (
                    "successes" if "attempts" in row else "attempts" if "successes" in row else "p"
                )
                hint = "" if missing != "p" else " (or 'successes' and 'attempts')"
                raise StatsError(f"{path}, line {line}: missing column '{missing}'{hint}")
            has_valid = "valid" in row
        if "id" not in row:
            raise StatsError(f"{path}, line {line}: missing column 'id'")
        pid = row["id"]
        key = _id_key(path, line, pid)
        if key in seen:
            raise StatsError(
                f"{where(path, line, 'id')}: duplicate id {pid!r} (first on line {seen[key]})"
            )
        seen[key] = line
        ids.append(pid)
        if mode == "p":
            if "p" not in row:
                raise StatsError(f"{path}, line {line}: missing column 'p'")
            v = _number(path, line, "p", row["p"])
            if not 0.0 <= v <= 1.0:
                raise StatsError(f"{path}, line {line}, field 'p': {v} is outside [0, 1]")
            ps.append(v)
        else:
            vals = {}
            for field in ("successes", "attempts"):
                if field not in row:
                    raise StatsError(f"{path}, line {line}: missing column '{field}'")
                vals[field] = _number(path, line, field, row[field])
                if vals[field] < 0:
                    raise StatsError(
                        f"{path}, line {line}, field '{field}': {vals[field]:g} is negative"
                    )
            if vals["successes"] > vals["attempts"]:
                raise StatsError(
                    f"{path}, line {line}, field 'successes': {vals['successes']:g} > "
                    f"attempts {vals['attempts']:g}"
                )
            ss.append(vals["successes"])
            ns.append(vals["attempts"])
        if has_valid:
            if "valid" not in row:
                raise StatsError(f"{path}, line {line}: missing column 'valid'")
            vs.append(_bool(path, line, "valid", row["valid"]))
        if cost_column is not None:
            if cost_column not in row:
                raise StatsError(f"{path}, line {line}: missing column '{cost_column}'")
            c = _number(path, line, cost_column, row[cost_column])
            if c <= 0:
                raise StatsError(f"{path}, line {line}, field '{cost_column}': {c:g} must be > 0")
            cs.append(c)
    if not ids:
        raise StatsError(f"{path}: empty file (no rows)")
    attempts = np.array(ns) if mode == "counts" else None
    valid = np.array(vs, dtype=bool) if has_valid else None
    if valid is None and attempts is not None:  # the paper tracker's rule
        valid = attempts >= defaults.MIN_OBSERVATIONS
    return PromptStats(
        ids=ids,
        p=np.array(ps) if mode == "p" else None,
        successes=np.array(ss) if mode == "counts" else None,
        attempts=attempts,
        valid=valid,
        cost=np.array(cs) if cost_column is not None else None,
    )


def _jsonable(v):
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def write_table(
    columns: dict[str, list], path: str | os.PathLike | None = None, fmt: str = "csv"
) -> str:
    """Write equal-length columns as CSV or JSONL to ``path`` (atomically), or return the text.

    ``fmt`` is used when ``path`` is None; otherwise the extension decides.
    """
    if path is not None:
        suffix = Path(path).suffix.lower()
        if suffix not in FORMATS:
            raise StatsError(f"{path}: unsupported output type {suffix!r}; use .csv or .jsonl")
        fmt = suffix.lstrip(".")
    names = list(columns)
    n = len(next(iter(columns.values()))) if columns else 0
    buf = io.StringIO()
    if fmt == "csv":
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(names)
        for k in range(n):
            w.writerow([_fmt_cell(columns[c][k]) for c in names])
    else:
        for k in range(n):
            buf.write(json.dumps({c: _jsonable(columns[c][k]) for c in names}) + "\n")
    text = buf.getvalue()
    if path is not None:
        atomic_write_text(path, text)
    return text


def _fmt_cell(v):
    v = _jsonable(v)
    return repr(v) if isinstance(v, float) else v
