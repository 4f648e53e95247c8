"""Atomic training checkpoints: model, optimizer, tracker, RNG states and step in one file.

``RUN_DIR/checkpoint.pt`` is written to a temporary name, renamed, and the
folder is fsynced, so a crash never leaves a half-written checkpoint and an
error never replaces the last good one. The temporary files a killed run
leaves (``.checkpoint.pt.tmp.*``) are removed by :func:`remove_stale_temps`.
The tracker is also saved beside it as ``tracker.npz`` for inspection
(``knapsack_rl.tracking.load_tracker``). The checkpoint holds the run's
settings too, so a resume is checked even when ``config.json`` is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from knapsack_rl.atomic import atomic_path, atomic_write_text

__all__ = [
    "CHECKPOINT",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "rng_state",
    "set_rng_state",
    "fsync_dir",
    "remove_stale_temps",
    "replace_folder",
    "RunFolder",
]

CHECKPOINT = "checkpoint.pt"
_KEYS = ("step", "model", "optimizer", "tracker", "rng", "config")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read (truncated, corrupt or not a checkpoint)."""


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder, so a rename inside it survives a power loss (no-op where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_stale_temps(run_dir: str | os.PathLike) -> list[Path]:
    """Remove the hidden temporary files/folders (``.NAME.tmp.*``, ``.NAME.old.*``) that a
    killed run left in ``run_dir``; returns what was removed."""
    gone = []
    for p in sorted(Path(run_dir).glob(".*.tmp.*")) + sorted(Path(run_dir).glob(".*.old.*")):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        gone.append(p)
    return gone


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return rc == 0


def replace_folder(tmp: str | os.PathLike, folder: str | os.PathLike) -> None:
    """Move the finished folder ``tmp`` onto ``folder`` so that ``folder`` is never absent.

    An existing ``folder`` is swapped atomically with ``tmp`` (renameat2 on Linux) and the
    old contents removed; elsewhere it is renamed aside first (a short gap). The parent
    folder is fsynced.
    """
    tmp, folder = Path(tmp), Path(folder)
    if not folder.exists():
        os.replace(tmp, folder)
    elif _exchange(tmp, folder):
        shutil.rmtree(tmp, ignore_errors=True)  # now holds the old contents
    else:  # pragma: no cover - non-Linux fallback
        old = folder.with_name(f".{folder.name}.old.{os.getpid()}")
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(folder.parent)


def rng_state(sample_generator: torch.Generator | None = None) -> dict:
    """Python, numpy and torch global RNG states (+ CUDA when present, + the sampler's generator)."""
    st = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - the legacy global RNG
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    if sample_generator is not None:
        st["sampler"] = sample_generator.get_state()
    return st


def set_rng_state(st: dict, sample_generator: torch.Generator | None = None) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])  # noqa: NPY002
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])
    if sample_generator is not None and "sampler" in st:
        sample_generator.set_state(st["sampler"])


def save_checkpoint(run_dir: str | os.PathLike, state: dict, tracker=None) -> Path:
    """Write ``state`` (a dict of tensors / plain data) to ``RUN_DIR/checkpoint.pt`` atomically."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    if tracker is not None:
        tracker.save(run_dir / "tracker.npz")
    fsync_dir(run_dir)
    return path


def load_checkpoint(run_dir: str | os.PathLike, map_location="cpu") -> dict:
    """Read ``RUN_DIR/checkpoint.pt`` (FileNotFoundError if absent, :class:`CheckpointError`
    if it cannot be read or lacks a part)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    try:
        st = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated zip, garbage bytes, a pickle of something else
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or corrupt?): {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
        ) from None
    missing = [k for k in _KEYS if not isinstance(st, dict) or k not in st]
    if missing:
        raise CheckpointError(
            f"{path}: not a knapsack-rl checkpoint (missing {', '.join(missing)})"
        )
    return st


# ---------------------------------------------------------------------- the run folder
# settings that may change between an interrupted run and its resumption
RESUMABLE = frozenset(
    {
        "run_dir",  # the folder may be moved or copied; the checkpoint in it is what counts
        "steps",
        "resume",
        "progress",
        "save_every",
        "tensorboard",
        "wandb",
        "wandb_project",
        "threads",
        "device",
        "eval_every",
    }
)
LOGS = ("metrics.jsonl", "allocations.jsonl", "eval.jsonl")


def _read_jsonl(path: Path) -> list[str]:
    """The lines of a JSONL log; a torn last line (a crash mid-append) is dropped, any other
    unreadable line is a :class:`CheckpointError`."""
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").split("\n")]
    numbered = [(i, ln) for i, ln in enumerate(lines, 1) if ln.strip()]
    kept = []
    for j, (no, ln) in enumerate(numbered):
        try:
            rec = json.loads(ln)
            ok = isinstance(rec, dict) and isinstance(rec.get("step"), int)
        except ValueError:
            ok = False
        if ok:
            kept.append((rec, ln))
        elif j < len(numbered) - 1:
            raise CheckpointError(f"{path}:{no}: not a log record (corrupt file?)")
    return kept


class RunFolder:
    """``RUN_DIR``: its checks before a run starts, its logs, checkpoint and schedule.

    Nothing is written until :meth:`start` (fresh) or :meth:`resume`; :meth:`check` reads
    only, so a run that fails its set-up leaves the folder as it was.
    """

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.path = Path(cfg.run_dir)
        self.files: list = []
        self.loggers: list = []

    def check(self, map_location="cpu") -> dict | None:
        """Fail (``TrainError``) on a folder this run must not use; with ``resume``, the
        checkpoint (read and compared with the settings), else None."""
        from knapsack_rl.training.config import DEPRECATED, TrainError

        ckpt = self.path / CHECKPOINT
        if not self.cfg.resume:
            if ckpt.is_file():
                raise TrainError(
                    f"run_dir: {self.path} already holds a checkpoint; pass --resume or "
                    "choose another --run-dir"
                )
            return None
        if not ckpt.is_file():
            raise TrainError(f"resume: {ckpt} does not exist")
        try:
            st = load_checkpoint(self.path, map_location=map_location)
            for name in LOGS:
                if (self.path / name).is_file():
                    _read_jsonl(self.path / name)
            cj = self.path / "config.json"
            if cj.is_file():
                try:
                    json.loads(cj.read_text(encoding="utf-8"))
                except ValueError as e:
                    raise CheckpointError(f"{cj}: not valid JSON ({e})") from None
        except CheckpointError as e:
            raise TrainError(f"resume: {e}") from None
        saved = {}
        for k, v in st["config"].items():  # settings saved under an old name
            new, conv = DEPRECATED.get(k, (k, lambda x: x))
            saved[new] = conv(v)
        now = self.cfg.to_dict()
        diff = [k for k in now if k not in RESUMABLE and k in saved and saved[k] != now[k]]
        if diff:
            raise TrainError(
                "resume: settings differ from the run's checkpoint: "
                + ", ".join(f"{k} ({saved[k]!r} -> {now[k]!r})" for k in diff)
            )
        return st

    def start(self, resolved: dict) -> None:
        """A fresh run: empty logs and ``config.json`` (``resolved``: settings + derived)."""
        self.path.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.path)
        for name in LOGS:
            atomic_write_text(self.path / name, "")
        atomic_write_text(self.path / "config.json", json.dumps(resolved, indent=2) + "\n")

    def resume(self, step: int) -> None:
        """Continue at ``step``: logs cut back to what the checkpoint had seen."""
        remove_stale_temps(self.path)
        for name in LOGS:
            p = self.path / name
            if p.is_file():
                last = step if name == "eval.jsonl" else step - 1
                kept = [ln for rec, ln in _read_jsonl(p) if rec["step"] <= last]
                atomic_write_text(p, "".join(ln + "\n" for ln in kept))

    # -------------------------------------------------------------- logging
    def open(self) -> None:
        """Open the logs for appending, and TensorBoard / W&B when asked for."""
        self.files = [open(self.path / n, "a", encoding="utf-8") for n in LOGS]
        if self.cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.loggers.append(("tb", SummaryWriter(str(self.path / "tb"))))
        if self.cfg.wandb:
            import wandb

            run = wandb.init(
                project=self.cfg.wandb_project,
                dir=str(self.path),
                config=self.cfg.to_dict(),
                resume="allow",
            )
            self.loggers.append(("wandb", run))

    def log_step(self, rec: dict, arec: dict) -> None:
        """Append one step's metrics and allocation records."""
        for f, r in zip(self.files[:2], (rec, arec)):
            f.write(json.dumps(r) + "\n")
            f.flush()
        self._external(rec, rec["step"])

    def log_eval(self, ev: dict) -> None:
        """Append one evaluation record."""
        self.files[2].write(json.dumps(ev) + "\n")
        self.files[2].flush()
        self._external({f"eval/{k}": v for k, v in ev.items()}, ev["step"])

    def _external(self, rec: dict, step: int) -> None:
        scalars = {k: v for k, v in rec.items() if isinstance(v, (int, float)) and k != "step"}
        for kind, h in self.loggers:
            if kind == "tb":
                for k, v in scalars.items():
                    h.add_scalar(k, v, step)
            else:
                h.log(scalars, step=step)

    def close(self) -> None:
        for f in self.files:
            f.close()
        for kind, h in self.loggers:
            h.close() if kind == "tb" else h.finish()
        self.files, self.loggers = [], []

    # -------------------------------------------------------------- schedule
    def eval_due(self, step: int) -> bool:
        """Evaluate after ``step`` steps (every ``eval_every`` and at the end)?"""
        c = self.cfg
        return bool(c.eval_every and step % c.eval_every == 0) or step == c.steps

    def save_due(self, step: int) -> bool:
        """Checkpoint after ``step`` steps (every ``save_every`` and at the end)?"""
        c = self.cfg
        return bool(c.save_every and step % c.save_every == 0) or step == c.steps
