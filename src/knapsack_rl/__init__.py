"""knapsack-rl: per-prompt rollout budgets for GRPO-style RL.

The core (allocation, trackers, metrics) depends on numpy (and scipy for the
Beta functions of ``bayes``) and never imports torch.
"""

from knapsack_rl.allocation import METHODS, Allocation, Allocator, allocate
from knapsack_rl.allocation.rounds import VALUES, allocate_round
from knapsack_rl.planning import OneShotPlanner, Planner, RoundPlanner, StreamPlanner

__version__ = "0.2.0"

__all__ = [
    "METHODS",
    "VALUES",
    "Allocation",
    "Allocator",
    "OneShotPlanner",
    "Planner",
    "RoundPlanner",
    "StreamPlanner",
    "allocate",
    "allocate_round",
    "__version__",
]
