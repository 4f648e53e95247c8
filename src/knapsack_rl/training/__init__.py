"""Reference GRPO trainer with per-prompt rollout budgets (extra ``train``: torch, transformers).

Entry points: :class:`TrainConfig`, :class:`Trainer` / :func:`train`, :func:`run_demo`,
and the CLI functions ``train_main`` / ``demo_main`` in :mod:`knapsack_rl.training.cli`.
Importing this package imports torch; the core ``knapsack_rl`` never does.
"""

from knapsack_rl.training.config import TrainConfig
from knapsack_rl.training.trainer import Trainer, TrainError, train

__all__ = ["TrainConfig", "Trainer", "TrainError", "train"]
