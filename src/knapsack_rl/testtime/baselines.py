"""The rules :class:`~knapsack_rl.testtime.TestTimePlanner` is compared with, in its shape.

- :class:`UniformPlanner`: every question the same number of samples (what
  lm-evaluation-harness's ``repeats`` and lighteval's ``n`` do).
- :class:`AdaptiveConsistency` (Aggarwal et al., arXiv 2305.11860): sample a question one at a
  time and stop once the Beta posterior probability that its leading answer beats the
  runner-up, ``1 - I_0.5(v1 + 1, v2 + 1)``, exceeds ``threshold`` (their default 0.95), or at
  ``max_samples`` (their default 40).
- :class:`EarlyStoppingConsistency` (ESC, Li et al., arXiv 2401.10480): sample a question in
  windows of ``window`` and stop after a window whose answers all agree, or at ``max_samples``.

The two stopping rules spend what their questions ask for; ``budget`` only caps them, and
:attr:`~knapsack_rl.testtime.TestTimePlanner.unused` is what they left.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import betainc

from knapsack_rl.testtime.planner import TestTimePlanner, _int

__all__ = ["AdaptiveConsistency", "EarlyStoppingConsistency", "UniformPlanner"]


class UniformPlanner(TestTimePlanner):
    """``budget // questions`` samples for every question (the first ``budget % questions``
    questions one more), all requested at :meth:`start`. Takes the planner's arguments."""

    def _first(self, m: int, budget: int) -> np.ndarray:
        per, extra = divmod(budget, m)
        counts = np.full(m, per, dtype=np.int64)
        counts[:extra] += 1
        rounds = [np.flatnonzero(counts > r) for r in range(int(counts.max()))]
        return np.concatenate(rounds).astype(np.int64)

    def _gain(self, i: int) -> float:
        return -math.inf


class AdaptiveConsistency(TestTimePlanner):
    """Adaptive-Consistency's Beta stopping rule, one sample of a question at a time.

    Args:
        threshold: stop once P(leader beats runner-up) exceeds this.
        max_samples: the most samples per question.
    """

    def __init__(self, threshold: float = 0.95, *, max_samples: int = 40, **kwargs) -> None:
        super().__init__("majority", max_samples=max_samples, **kwargs)
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        self.threshold = float(threshold)

    def stopped(self, i: int) -> bool:
        top = sorted(self._votes[i].values(), reverse=True)[:2] + [0, 0]
        return bool(1.0 - betainc(top[0] + 1, top[1] + 1, 0.5) > self.threshold)

    def _gain(self, i: int) -> float:
        n = self._n[i]
        if self._q[i] or n >= self.max_samples or (n and self.stopped(i)):
            return -math.inf
        return 1.0


class EarlyStoppingConsistency(TestTimePlanner):
    """ESC: windows of ``window`` samples per question until one window agrees.

    Args:
        window: samples per window (the first window is requested at :meth:`start`).
        max_samples: the most samples per question (a multiple of ``window`` is natural).
    """

    def __init__(self, window: int = 5, *, max_samples: int = 40, **kwargs) -> None:
        self.window = _int(window, "window")
        super().__init__("majority", min_samples=self.window, max_samples=max_samples, **kwargs)

    def _gain(self, i: int) -> float:
        n, q = self._n[i], self._q[i]
        if n + q >= self.max_samples:
            return -math.inf
        if (n + q) % self.window:
            return 1.0  # finish the window that is under way
        if q:
            return -math.inf  # wait for the window to come back
        last = self.answers[i][-self.window :]
        if None not in last and len(set(last)) == 1:
            return -math.inf
        return 1.0
