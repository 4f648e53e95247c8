"""Moved: the planners live in :mod:`knapsack_rl.planning` (kept for old imports)."""

from knapsack_rl.planning.rounds import RoundPlanner

__all__ = ["RoundPlanner"]
