"""knapsack-rl: per-prompt rollout budgets for GRPO-style RL.

The core (allocation, trackers, metrics) depends on numpy (and scipy for the
Beta functions of ``bayes``) and never imports torch.
"""

from knapsack_rl.allocation import METHODS, Allocation, Allocator, allocate

__version__ = "0.1.0"

__all__ = ["METHODS", "Allocation", "Allocator", "allocate", "__version__"]
