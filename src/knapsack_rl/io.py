"""Reading CSV and JSONL input files with one error format.

Every problem raises :class:`InputError` (a ValueError) with one line that
names the file, and the line and field where there is one:
``FILE, line N, field 'F': problem``. Shared by the statistics reader, the
simulator's ``--init`` and anything else that reads user records.

Rules common to both formats: the file must be a regular file (not a device or
a FIFO) in UTF-8 (a leading BOM is skipped); a column or key may appear once
per header or object; blank lines are skipped.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["InputError", "where", "read_text", "csv_records", "jsonl_records", "read_records"]

#: largest CSV field, in characters (the csv module's default limit)
MAX_FIELD = 131072


class InputError(ValueError):
    """A problem with an input file; the message names file, line and field."""


def where(path, line: int | None = None, field: str | None = None) -> str:
    """``FILE``, ``FILE, line N`` or ``FILE, line N, field 'F'`` (the prefix of every error)."""
    out = str(path)
    if line is not None:
        out += f", line {line}"
    if field is not None:
        out += f", field '{field}'"
    return out


def read_text(path: str | os.PathLike) -> str:
    """The text of a regular UTF-8 file (BOM skipped); InputError otherwise."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise InputError(f"{path}: is a directory, not a file")
            if not stat.S_ISREG(mode):
                raise InputError(f"{path}: not a regular file")
            data = fh.read()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: cannot read ({e})") from None


def csv_records(path, text: str) -> Iterator[tuple[int, dict]]:
    """Yield ``(line, {column: raw text})`` per CSV row; header names are stripped.

    Cells are returned verbatim (no stripping); a short row has None for its last keys.
    """
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path}: empty file (no header, no rows)")
        names = [n.strip() for n in header]
        seen: set = set()
        for name in names:
            if name in seen:
                raise InputError(f"{where(path, 1)}: column '{name}' appears twice in the header")
            seen.add(name)
        for cells in reader:
            if not cells:
                continue
            if len(cells) > len(names):
                raise InputError(f"{where(path, reader.line_num)}: more fields than the header has")
            row = dict(zip(names, cells))
            row.update(dict.fromkeys(names[len(cells) :]))  # short row: None, as DictReader
            yield reader.line_num, row
    except csv.Error as e:
        if "field larger than field limit" in str(e):
            msg = f"a field is longer than {MAX_FIELD} characters"
        else:
            msg = f"not valid CSV ({e})"
        raise InputError(f"{where(path, reader.line_num)}: {msg}") from None


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


class _DuplicateKey(Exception):
    pass


def jsonl_records(path, text: str) -> Iterator[tuple[int, dict]]:
    """Yield ``(line, object)`` per non-blank JSONL line; each line must be one object."""
    # records end at "\n" only: U+2028 and U+2029 are valid inside JSON strings
    for k, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as e:
            raise InputError(f"{where(path, k)}: not valid JSON ({e.msg})") from None
        except _DuplicateKey as e:
            raise InputError(f"{where(path, k)}: key '{e.args[0]}' appears twice") from None
        except RecursionError:
            raise InputError(f"{where(path, k)}: JSON nested too deeply") from None
        except ValueError as e:  # an integer of more than 4300 digits
            why = "an integer with too many digits" if "digits" in str(e) else str(e)[:80]
            raise InputError(f"{where(path, k)}: not valid JSON ({why})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{where(path, k)}: expected a JSON object, got {type(obj).__name__}")
        for key, value in obj.items():
            if _surrogate(key) or _surrogate(value):
                raise InputError(
                    f"{where(path, k, _surrogate_free(key))}: holds a lone UTF-16 surrogate "
                    "(an escape such as \\ud800 without its pair), which is not valid Unicode"
                )
        yield k, obj


def _surrogate(x, depth: int = 0) -> bool:
    """Whether ``x`` (a parsed JSON value) holds a lone surrogate in any string."""
    if isinstance(x, str):
        try:
            x.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if depth > 50:
        return False
    if isinstance(x, dict):
        return any(_surrogate(k) or _surrogate(v, depth + 1) for k, v in x.items())
    if isinstance(x, list):
        return any(_surrogate(v, depth + 1) for v in x)
    return False


def _surrogate_free(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def read_records(path: str | os.PathLike, formats=(".csv", ".jsonl")) -> Iterator[tuple[int, dict]]:
    """``csv_records`` or ``jsonl_records`` by the file's extension (one of ``formats``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in formats:
        kinds = " or ".join(formats)
        raise InputError(f"{path}: unsupported file type {suffix!r}; use {kinds}")
    text = read_text(path)
    if suffix == ".csv":
        return csv_records(path, text)
    return jsonl_records(path, text)
