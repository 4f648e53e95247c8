"""Atomic training checkpoints: model, optimizer, tracker, RNG states and step in one file.

``RUN_DIR/checkpoint.pt`` is written to a temporary name and renamed, so a
crash never leaves a half-written checkpoint and an error never replaces the
last good one. The tracker is also saved beside it as ``tracker.npz`` for
inspection (``knapsack_rl.tracking.load_tracker``).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from knapsack_rl.atomic import atomic_path

__all__ = ["CHECKPOINT", "save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state"]

CHECKPOINT = "checkpoint.pt"


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
    return path


def load_checkpoint(run_dir: str | os.PathLike, map_location="cpu") -> dict:
    """Read ``RUN_DIR/checkpoint.pt`` (FileNotFoundError if absent)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    return torch.load(path, map_location=map_location, weights_only=False)
