"""Reference GRPO trainer with per-prompt rollout budgets (extra ``train``: torch, transformers).

Entry points: :class:`TrainConfig`, :class:`Trainer` / :func:`train`, and the CLI
functions ``train_main`` / ``demo_main`` in :mod:`knapsack_rl.training.cli`.
Tasks and reward functions live in :mod:`knapsack_rl.training.tasks` (pure Python).
Importing this package is cheap; torch is imported when ``Trainer`` or ``train``
is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from knapsack_rl.training.config import TrainConfig

if TYPE_CHECKING:
    from knapsack_rl.training.trainer import Trainer, TrainError, train

__all__ = ["TrainConfig", "Trainer", "TrainError", "train"]


def __getattr__(name: str):
    if name in ("Trainer", "TrainError", "train"):
        from knapsack_rl.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'knapsack_rl.training' has no attribute {name!r}")
