"""Reading prompt-statistics files and writing allocations (CSV or JSONL).

A statistics file has a column ``id`` and either ``p`` or ``successes`` and
``attempts`` (optionally ``valid`` and a cost column). Problems raise
:class:`StatsError` with a message naming the file, the line and the field.
Outputs are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from knapsack_rl.atomic import atomic_write_text

__all__ = ["StatsError", "PromptStats", "read_stats", "write_table", "FORMATS"]

FORMATS = (".csv", ".jsonl")
_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}


class StatsError(ValueError):
    """A problem with a statistics file; the message names file, line and field."""


@dataclass(frozen=True)
class PromptStats:
    """Columns of a statistics file, one entry per prompt in file order.

    Attributes:
        ids: prompt ids (str from CSV; str or int from JSONL).
        p: success rates, or None when counts were given.
        successes, attempts: float counts, or None when ``p`` was given.
        valid: bool array when the file has a ``valid`` column, else None.
        cost: per-rollout cost when a cost column was asked for, else None.
    """

    ids: list
    p: np.ndarray | None
    successes: np.ndarray | None
    attempts: np.ndarray | None
    valid: np.ndarray | None
    cost: np.ndarray | None

    def __len__(self) -> int:
        return len(self.ids)


def _rows(path: Path):
    """Yield (line number, dict) from a CSV or JSONL file."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise StatsError(f"{path}: unsupported file type {suffix!r}; use .csv or .jsonl")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StatsError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise StatsError(f"{path}: is a directory, not a file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise StatsError(f"{path}: cannot read ({e})") from None
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None:
            raise StatsError(f"{path}: empty file (no header, no rows)")
        names = [n.strip() for n in reader.fieldnames]
        reader.fieldnames = names
        for row in reader:
            if None in row:
                raise StatsError(f"{path}, line {reader.line_num}: more fields than the header has")
            yield (
                reader.line_num,
                {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()},
            )
    else:
        for k, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise StatsError(f"{path}, line {k}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise StatsError(
                    f"{path}, line {k}: expected a JSON object, got {type(obj).__name__}"
                )
            yield k, obj


def _number(path, line, field, raw) -> float:
    if raw is None or (isinstance(raw, str) and raw == ""):
        raise StatsError(f"{path}, line {line}, field '{field}': missing value")
    if isinstance(raw, bool):
        raise StatsError(f"{path}, line {line}, field '{field}': {raw!r} is not a number")
    try:
        v = float(raw)
    except (TypeError, ValueError):
        raise StatsError(f"{path}, line {line}, field '{field}': {raw!r} is not a number") from None
    if not math.isfinite(v):
        raise StatsError(f"{path}, line {line}, field '{field}': {raw!r} is not a finite number")
    return v


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
    ids are unique; ``valid`` is a boolean; costs are > 0.
    """
    path = Path(path)
    ids: list = []
    seen: dict = {}
    ps, ss, ns, vs, cs = [], [], [], [], []
    mode = None
    has_valid = None
    for line, row in _rows(path):
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
        if pid is None or pid == "" or isinstance(pid, (dict, list, bool, float)):
            raise StatsError(f"{path}, line {line}, field 'id': {pid!r} is not a valid id")
        if pid in seen:
            raise StatsError(
                f"{path}, line {line}, field 'id': duplicate id {pid!r} (first on line {seen[pid]})"
            )
        seen[pid] = line
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
    return PromptStats(
        ids=ids,
        p=np.array(ps) if mode == "p" else None,
        successes=np.array(ss) if mode == "counts" else None,
        attempts=np.array(ns) if mode == "counts" else None,
        valid=np.array(vs, dtype=bool) if has_valid else None,
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
