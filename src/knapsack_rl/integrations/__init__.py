"""Adapters that run knapsack-rl allocation inside other RL engines.

- :mod:`knapsack_rl.integrations.trl`: ``KnapsackGRPOConfig`` and
  ``KnapsackGRPOTrainer`` for TRL's ``GRPOTrainer`` (extra ``trl``).

Importing this package imports nothing heavy; each adapter module imports its
engine (torch, trl, ...) itself.
"""

__all__: list[str] = []
