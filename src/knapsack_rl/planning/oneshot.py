"""``OneShotPlanner``: the whole step allocated at once from the tracker's estimates
(methods ``uniform``, ``knapsack``, ``bayes``, ``paper``), in the planner shape."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from knapsack_rl.allocation import Allocation, Allocator
from knapsack_rl.planning.base import positions
from knapsack_rl.tracking.trackers import Tracker, binarize_rewards

__all__ = ["OneShotPlanner"]


class OneShotPlanner:
    """One allocation per step from ``tracker.stats`` by ``allocator``; ``record`` never
    asks for more. ``allocation`` holds the step's :class:`~knapsack_rl.Allocation`."""

    def __init__(self, tracker: Tracker, allocator: Allocator) -> None:
        self.tracker = tracker
        self.allocator = allocator
        self.allocation: Allocation | None = None
        self._ids: list = []
        self._rows: list[tuple[np.ndarray, np.ndarray]] = []
        self.pending = np.zeros(0, dtype=np.int64)

    def start(self, prompt_ids: Sequence[Hashable], budget: int) -> np.ndarray:
        """Allocate ``budget`` rollouts over ``prompt_ids``; returns every position."""
        self._ids = list(prompt_ids)
        self.allocation = self.allocator.allocate(self.tracker.stats(self._ids), budget=budget)
        self.counts = np.asarray(self.allocation.rollouts, dtype=np.int64)
        self.pending = self.counts.copy()
        self._rows = []
        return positions(self.counts)

    def record(self, index, rewards) -> np.ndarray:
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        r = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if idx.shape != r.shape:
            raise ValueError(f"record: {idx.size} prompt positions but {r.size} rewards")
        got = np.bincount(idx, minlength=len(self._ids)) if idx.size else 0
        if idx.size and (idx.min() < 0 or np.any(got > self.pending)):
            raise ValueError("record: a result for a rollout that was not requested")
        self.pending = self.pending - got
        self._rows.append((idx, r))
        return np.zeros(0, dtype=np.int64)

    def drop(self, index) -> np.ndarray:
        """Rollouts that came back without a usable reward: not evidence."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        self.pending = self.pending - np.bincount(idx, minlength=len(self._ids))
        return np.zeros(0, dtype=np.int64)

    def finish(self) -> dict[str, np.ndarray]:
        """One tracker update with the step's rewards; per-prompt successes and attempts."""
        m = len(self._ids)
        idx = np.concatenate([i for i, _ in self._rows]) if self._rows else np.zeros(0, np.int64)
        r = np.concatenate([x for _, x in self._rows]) if self._rows else np.zeros(0)
        if idx.size:
            self.tracker.update([self._ids[g] for g in idx], r)
        succ = binarize_rewards(r, self.tracker.threshold)
        self._rows = []
        return {
            "successes": np.bincount(idx, weights=succ, minlength=m).astype(np.int64),
            "attempts": np.bincount(idx, minlength=m).astype(np.int64),
        }

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
