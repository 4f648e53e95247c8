"""What every training-step planner shares: priors from the tracker, the step's own
counts, input checks, the one tracker update per step, and the state between steps."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Hashable, Sequence

import numpy as np

from knapsack_rl import defaults
from knapsack_rl.allocation.rounds import check_value
from knapsack_rl.tracking.priors import PriorModel
from knapsack_rl.tracking.trackers import Tracker, binarize_rewards


def check_bounds(min_rollouts: int, max_rollouts: int) -> tuple[int, int]:
    for name, v in (("min_rollouts", min_rollouts), ("max_rollouts", max_rollouts)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    if not 1 <= min_rollouts <= max_rollouts:
        raise ValueError(
            f"need 1 <= min_rollouts <= max_rollouts, got {min_rollouts}, {max_rollouts}"
        )
    return int(min_rollouts), int(max_rollouts)


class StepPlanner:
    """Base of the training planners: one step at a time over a tracker's prompts.

    Subclasses plan (``pilot``: rollouts per prompt in the first request); this class keeps the step's counts (``successes``, ``attempts``,
    ``pending``), the priors (``prior_a``, ``prior_b``), the recorded rewards, and the
    state that outlives a step (the step index and the :class:`PriorModel`).
    """

    def __init__(
        self,
        tracker: Tracker,
        *,
        min_rollouts: int = defaults.MIN_ROLLOUTS,
        max_rollouts: int = defaults.MAX_ROLLOUTS,
        value: str = defaults.VALUE,
        pilot: int = defaults.PILOT,
        priors: PriorModel | None = None,
    ) -> None:
        if pilot == "prior":
            raise ValueError("pilot='prior' was removed in 0.2.0; give an integer >= 1")
        if isinstance(pilot, bool) or not isinstance(pilot, int) or pilot < 1:
            raise ValueError(f"pilot must be an integer >= 1, got {pilot!r}")
        self.pilot = pilot
        self.tracker = tracker
        self.min_rollouts, self.max_rollouts = check_bounds(min_rollouts, max_rollouts)
        self.value = check_value(value)
        self.priors = priors if priors is not None else PriorModel()
        self.step = 0
        self._ids: list = []
        self._open = False

    # ------------------------------------------------------------------ a step
    def _begin(self, prompt_ids: Sequence[Hashable], budget) -> int:
        """Check the step, compute the priors and reset the counts; returns the budget."""
        ids = list(prompt_ids)
        m = len(ids)
        if m == 0:
            raise ValueError("no prompts")
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
            raise ValueError(f"budget must be an integer, got {budget!r}")
        budget = int(budget)
        if budget < m * self.min_rollouts or budget > m * self.max_rollouts:
            raise ValueError(
                f"budget {budget} cannot be met by {m} prompts with "
                f"{self.min_rollouts} <= rollouts <= {self.max_rollouts}"
            )
        self._ids = ids
        st = self.tracker.stats(ids)
        seen = self.tracker.ids
        known = self.tracker.stats(seen) if seen else st
        self.prior_a, self.prior_b = self.priors.priors(
            ids,
            st.successes,
            st.attempts,
            self.step,
            known=(seen, known.successes, known.attempts) if seen else None,
        )
        self.budget = budget
        self.successes = np.zeros(m, dtype=np.int64)
        self.attempts = np.zeros(m, dtype=np.int64)
        self.pending = np.zeros(m, dtype=np.int64)
        self.requested = 0
        self._rows: list[tuple[np.ndarray, np.ndarray]] = []
        self._open = True
        return budget

    def _request(self, pos: np.ndarray) -> np.ndarray:
        pos = np.asarray(pos, dtype=np.int64).reshape(-1)
        if pos.size:
            self.pending += np.bincount(pos, minlength=len(self._ids))
            self.requested += int(pos.size)
        return pos

    def _positions(self, index, what: str) -> tuple[np.ndarray, np.ndarray]:
        """``index`` as int64 positions of the open step, and the count per prompt; each
        must have that many rollouts pending."""
        idx = np.asarray(index).reshape(-1)
        if not self._open:
            shown = idx[:3].tolist() if idx.size else "none"
            raise ValueError(
                f"{what}: {idx.size} result(s) for prompt position(s) {shown} after the step "
                "was finished (call start first); nothing was recorded"
            )
        m = len(self._ids)
        if idx.size and (
            not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= m
        ):
            bad = next(
                (x for x in idx.tolist() if not isinstance(x, int) or not 0 <= x < m), idx[0]
            )
            raise ValueError(f"{what}: prompt position {bad!r} is not one of the step's {m}")
        idx = idx.astype(np.int64)
        got = np.bincount(idx, minlength=m)
        over = np.flatnonzero(got > self.pending)
        if over.size:
            k = int(over[0])
            raise ValueError(
                f"{what}: prompt {k} ({self._ids[k]!r}) got {int(got[k])} results but has "
                f"{int(self.pending[k])} pending (requested {int(self.pending[k] + self.attempts[k])},"
                f" recorded {int(self.attempts[k])})"
            )
        return idx, got

    def _take(self, index, rewards) -> tuple[np.ndarray, np.ndarray]:
        """Check and add results; on any error nothing is recorded."""
        r = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if np.asarray(index).size != r.size:
            raise ValueError(
                f"record: {np.asarray(index).size} prompt positions but {r.size} rewards"
            )
        idx, got = self._positions(index, "record")
        bad = np.flatnonzero(~np.isfinite(r))
        if bad.size:
            k = int(idx[bad[0]])
            raise ValueError(
                f"record: reward {r[bad[0]]} for prompt {k} ({self._ids[k]!r}) is not finite"
            )
        succ = binarize_rewards(r, self.tracker.threshold)
        self.successes += np.bincount(idx, weights=succ, minlength=len(self._ids)).astype(np.int64)
        self.attempts += got
        self.pending -= got
        self._rows.append((idx, r))
        return idx, r

    def _lose(self, index) -> np.ndarray:
        """Rollouts that came back without a usable reward: no longer pending, no evidence."""
        idx, got = self._positions(index, "drop")
        self.pending -= got
        return idx

    def finish(self) -> dict[str, np.ndarray]:
        """Update the tracker with every draw of the step (one visit per prompt); returns
        ``{"successes", "attempts"}`` per prompt (int64 (M,)). Rollouts still pending
        are dropped (an engine may abandon them); their results can no longer be recorded."""
        if not self._open:
            raise ValueError("finish: no step in progress (call start first)")
        if self._rows:
            idx = np.concatenate([i for i, _ in self._rows])
            r = np.concatenate([x for _, x in self._rows])
            self.tracker.update([self._ids[i] for i in idx], r)
        self.priors.mark_seen(self._ids, self.step)
        self.step += 1
        self._rows = []
        self._open = False
        return {"successes": self.successes.copy(), "attempts": self.attempts.copy()}

    @property
    def prior_mean(self) -> np.ndarray:
        """The step's prior success rate per prompt, ``a / (a + b)``."""
        return self.prior_a / (self.prior_a + self.prior_b)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """The planner's own state (the tracker saves itself)."""
        return {"step": self.step, "priors": self.priors.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.priors = PriorModel.from_state_dict(state["priors"])

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to ``path`` as JSON, atomically."""
        from knapsack_rl.atomic import atomic_write_text

        atomic_write_text(path, json.dumps(self.state_dict()))

    def load(self, path: str | os.PathLike) -> bool:
        """Restore the state saved by :meth:`save`; False (state unchanged) if ``path`` is absent."""
        if not os.path.exists(path):
            return False
        with open(path, encoding="utf-8") as f:
            self.load_state_dict(json.load(f))
        return True


def finite_fraction(x, name: str, low: float = 0.0, high: float = 1.0) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError(f"{name} must be a number in ({low}, {high}], got {x!r}")
    if not low < x <= high:
        raise ValueError(f"{name} must be in ({low}, {high}], got {x}")
    return float(x)
