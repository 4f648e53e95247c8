"""Moved: the planners live in :mod:`knapsack_rl.planning` (this path is deprecated)."""

from knapsack_rl.deprecation import deprecated
from knapsack_rl.planning.rounds import RoundPlanner

deprecated("knapsack_rl.tracking.planner", "knapsack_rl.planning (or knapsack_rl.RoundPlanner)")

__all__ = ["RoundPlanner"]
