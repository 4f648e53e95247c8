"""Test-time allocation: an evaluation's or inference run's samples spent per question.

:class:`TestTimePlanner` has the training planners' shape (``start``, ``record``,
``finish``, a state dict) and three objectives: ``majority`` (self-consistency),
``coverage`` (pass@k with a verifier) and ``best_of_n`` (a reward model's score).
:mod:`~knapsack_rl.testtime.estimators` gives pass@k estimates that stay honest when
counts differ by question; :mod:`~knapsack_rl.testtime.replay` replays cached samples and
:func:`compare` sets the planner beside uniform, Adaptive-Consistency and ESC.
numpy and scipy only (sampling from a model lives in ``testtime.sampling``, with torch).
"""

from knapsack_rl.testtime.baselines import (
    AdaptiveConsistency,
    EarlyStoppingConsistency,
    UniformPlanner,
)
from knapsack_rl.testtime.compare import METHODS, compare
from knapsack_rl.testtime.estimators import (
    fit_prior,
    pass_at_k,
    pooled_pass_at_1,
    posterior_pass_at_k,
)
from knapsack_rl.testtime.planner import OBJECTIVES, SELECTORS, TestTimePlanner
from knapsack_rl.testtime.replay import Pool, ReplayResult, read_cache, replay

__all__ = [
    "METHODS",
    "OBJECTIVES",
    "SELECTORS",
    "AdaptiveConsistency",
    "EarlyStoppingConsistency",
    "Pool",
    "ReplayResult",
    "TestTimePlanner",
    "UniformPlanner",
    "compare",
    "fit_prior",
    "pass_at_k",
    "pooled_pass_at_1",
    "posterior_pass_at_k",
    "read_cache",
    "replay",
]
