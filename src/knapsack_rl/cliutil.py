"""Small pieces shared by the ``knapsack-rl`` subcommands: a parser whose errors
are one line with exit code 2, typed number arguments, output-path checks."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

__all__ = ["Parser", "number_arg", "fail", "check_output", "same_file", "write_stdout"]

#: integers on the command line are kept below this (int64 arithmetic stays exact)
INT_LIMIT = 2**62


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors print the usage and one line, exit code 2."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def number_arg(kind, flag: str, positive: bool = False):
    """An argparse ``type``: ``kind`` is int or float; integers are parsed exactly
    (``9007199254740993`` stays itself, ``1e3`` is 1000), bounded by ``INT_LIMIT``."""

    def parse(s: str):
        text = s.strip()
        if kind is int:
            try:
                v = int(text)
            except ValueError:
                v = _integral_float(text)
            if v is None:
                raise argparse.ArgumentTypeError(f"{flag} must be an integer, got {s!r}")
            if abs(v) >= INT_LIMIT:
                raise argparse.ArgumentTypeError(f"{flag} must be below 2**62, got {s!r}")
        else:
            try:
                v = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
        if positive and not (math.isfinite(v) and v > 0):
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {s!r}")
        return v

    parse.__name__ = flag.lstrip("-")
    return parse


def _integral_float(text: str) -> int | None:
    """``1e3`` -> 1000; None for anything that is not a whole number."""
    try:
        f = float(text)
    except ValueError:
        return None
    return int(f) if f.is_integer() else None


def fail(prog: str, message: str) -> int:
    """Print ``PROG: error: MESSAGE`` on stderr; returns exit code 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def same_file(a, b) -> bool:
    """Whether two paths name the same file (after resolving links and ``..``)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


#: room the atomic write's temporary name needs beyond the file's own name
_TEMP_EXTRA = 40


def check_output(path) -> str | None:
    """Why ``path`` cannot be written as an output file, or None if it can.

    Checks (before anything is written): not a directory, FIFO, socket or device
    (an atomic rename would replace it); a name the file system allows, with room
    for the temporary file beside it; the nearest existing parent is a directory we
    may write into.
    """
    path = Path(path)
    try:
        return _check_output(path)
    except OSError as e:
        return f"{path}: {e.strerror or e}"


def _check_output(path: Path) -> str | None:
    if path.is_dir():
        return f"{path}: is a directory"
    if path.exists() and not path.is_file():
        return f"{path}: not a regular file (a FIFO, socket or device); choose a file path"
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        return f"{path}: {parent} is not a directory"
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(path.name)) + _TEMP_EXTRA > name_max:
        return f"{path}: file name too long (at most {name_max - _TEMP_EXTRA} bytes here)"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{path}: cannot write into {parent} (permission denied)"
    return None


def write_stdout(text: str) -> str | None:
    """Write ``text`` to stdout and flush; why it failed, or None. A full device
    (``/dev/full``) or a closed stdout gives one line for the caller to print (and
    stdout is pointed at /dev/null so the exit flush stays quiet); a closed pipe
    raises BrokenPipeError, as the ``knapsack-rl`` entry point expects."""
    if sys.stdout is None:
        return "stdout is closed; write to a file with -o FILE"
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as e:  # ValueError: a closed file object
        _quiet_stdout()
        return f"cannot write to stdout ({getattr(e, 'strerror', None) or e}); use -o FILE"
    return None


def _quiet_stdout() -> None:
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
