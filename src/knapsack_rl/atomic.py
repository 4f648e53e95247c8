"""Atomic file writes: write to a temporary file in the same folder, fsync, rename,
fsync the folder.

A crash mid-write leaves the previous file intact and no half-written output.
The temporary file is removed on any exception, on Ctrl-C and on SIGTERM (the
handler is installed for the duration of the write, in the main thread). A
process killed outright (SIGKILL) cannot clean up: its temporary file carries
its process id, and the next write to the same path (or
:func:`remove_stale_temps`) removes it once that process is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "remove_stale_temps"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _prefix(path: Path) -> str:
    return f".{path.name}.tmp."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but not ours
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove temporary files of earlier writes to ``path`` whose process is gone.

    Returns the removed paths. Temporary files of live processes are kept.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    prefix = _prefix(path)
    for cand in path.parent.glob(prefix + "*"):
        pid_text = cand.name[len(prefix) :].split(".", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            cand.unlink()
            removed.append(cand)
    return removed


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform or file system allows it
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _Terminated(BaseException):
    """Raised in the main thread by SIGTERM during an atomic write."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises (so ``finally`` blocks run); then the old handler
    is restored and, if SIGTERM came, the process exits as it would have."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        old = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):  # pragma: no cover
        yield
        return
    if old not in (signal.SIG_DFL, None):  # the program handles SIGTERM itself
        yield
        return

    def handler(signum, frame):
        raise _Terminated()

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, old)
        os.kill(os.getpid(), signal.SIGTERM)  # die of SIGTERM, as without us
        raise
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On an exception (or Ctrl-C, or SIGTERM) the temporary file is removed and
    ``path`` is untouched. ``suffix`` (default: ``path``'s own) keeps libraries
    that look at the extension (``np.savez``, ``torch.save``, matplotlib) happy.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    with _sigterm_raises():
        fd, tmp = tempfile.mkstemp(
            prefix=f"{_prefix(path)}{os.getpid()}.",
            suffix=path.suffix if suffix is None else suffix,
            dir=path.parent,
        )
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; use the usual mode
            os.replace(tmp_path, path)
            _fsync_dir(path.parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()
            raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode(encoding))
