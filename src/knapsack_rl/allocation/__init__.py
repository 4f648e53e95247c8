"""Per-prompt rollout allocation: the value of a group, the exact solvers, the
methods, and the ``knapsack-rl allocate`` command.

- :mod:`.values`: formulas only (the value of giving a prompt N rollouts).
- :mod:`.solvers`: the exact threshold solver and a short reference greedy.
- :mod:`.allocator`: :class:`Allocator`, :func:`allocate`, one function per method.
- :mod:`.stats`: :class:`PromptStats` (the one per-prompt statistics type) and file I/O.
- :mod:`.cli`: ``knapsack-rl allocate``.

The method is described in ``docs/method.md``.
"""

from knapsack_rl.allocation.allocator import METHODS, Allocation, Allocator, allocate
from knapsack_rl.allocation.stats import PromptStats

__all__ = ["METHODS", "Allocation", "Allocator", "PromptStats", "allocate"]
