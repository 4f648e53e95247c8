"""Adapters that run knapsack-rl allocation inside other RL engines.

- :mod:`knapsack_rl.integrations.trl`: ``KnapsackGRPOConfig`` and
  ``KnapsackGRPOTrainer`` for TRL's ``GRPOTrainer`` (extra ``trl``; docs/trl.md).
- :mod:`knapsack_rl.integrations.verl`: a ``knapsack`` trainer for verl's v1
  PPO trainer, launched with Hydra overrides (extra ``verl``; docs/verl.md).

Importing this package imports nothing heavy; each adapter module imports its
engine (torch, trl, verl, ...) itself.
"""

__all__: list[str] = []
