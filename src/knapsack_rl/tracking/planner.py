"""``RoundPlanner``: one training step's rollouts, generated in rounds.

    planner = RoundPlanner(make_tracker("beta"), rounds=2, pilot=2)
    # uniform would give 32 prompts 8 rollouts; draw 64 prompts for the same 256
    counts = planner.start(prompt_ids_64, budget=256)                # the pilot
    while counts is not None:
        index, rewards = generate_and_score(counts)   # index: prompt position per rollout
        planner.record(index, rewards)
        counts = planner.next_round()                 # None once the budget is spent
    planner.finish()                                  # one tracker update with every draw

Round 1 (the pilot) gives every prompt ``pilot`` rollouts, or, with ``pilot="prior"``,
splits ``M * pilot_size`` rollouts by the value of drawing from the prior (confident
prompts get fewer). Every later round calls :func:`knapsack_rl.allocate_round` on what
the step has drawn so far; the last one spends the rest of the step's budget and
brings every prompt to ``min_rollouts``. The final group of a prompt is all of its
rounds' rollouts: compute advantages over it. The caller chooses the prompts: the
reference trainer and the simulator draw ``defaults.OVERSAMPLE`` (2) times as many
as a uniform step for the same budget, which is what learned more than uniform in
the reference trainer (BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Sequence

import numpy as np

from knapsack_rl import defaults
from knapsack_rl.allocation.rounds import VALUES, allocate_round
from knapsack_rl.tracking.priors import PriorModel
from knapsack_rl.tracking.trackers import Tracker, binarize_rewards

__all__ = ["RoundPlanner"]


class RoundPlanner:
    """Plans a step's rounds from a tracker's priors and the step's own draws.

    Args:
        tracker: success-rate tracker, updated once per step by :meth:`finish`.
        rounds: generation rounds per step (>= 1; 1 means one-shot from the priors).
        pilot: rollouts per prompt in round 1 (int), or ``"prior"`` to split
            ``M * pilot_size`` pilot rollouts by their value under the prior.
        pilot_size: mean pilot rollouts per prompt for ``pilot="prior"``.
        min_rollouts, max_rollouts: bounds on each prompt's final group.
        value: value model of :func:`knapsack_rl.allocate_round`.
        priors: :class:`PriorModel` (pools, offline rates, decay); a default one if None.
    """

    def __init__(
        self,
        tracker: Tracker,
        *,
        rounds: int = defaults.ROUNDS,
        pilot: int | str = defaults.PILOT,
        pilot_size: int = defaults.PILOT,
        min_rollouts: int = 2,
        max_rollouts: int = 128,
        value: str = defaults.VALUE,
        priors: PriorModel | None = None,
    ) -> None:
        if int(rounds) < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        if pilot != "prior" and (
            isinstance(pilot, bool) or not isinstance(pilot, int) or pilot < 1
        ):
            raise ValueError(f"pilot must be an integer >= 1 or 'prior', got {pilot!r}")
        if value not in VALUES:
            raise ValueError(f"value: unknown {value!r}; expected one of {', '.join(VALUES)}")
        if not 1 <= min_rollouts <= max_rollouts:
            raise ValueError(
                f"need 1 <= min_rollouts <= max_rollouts, got {min_rollouts}, {max_rollouts}"
            )
        self.tracker = tracker
        self.rounds = int(rounds)
        self.pilot = pilot
        self.pilot_size = int(pilot_size)
        self.min_rollouts = int(min_rollouts)
        self.max_rollouts = int(max_rollouts)
        self.value = value
        self.priors = priors if priors is not None else PriorModel()
        self.step = 0
        self._ids: list = []

    # ------------------------------------------------------------------ a step
    def start(self, prompt_ids: Sequence[Hashable], budget: int) -> np.ndarray:
        """Begin a step over ``prompt_ids`` with ``budget`` rollouts; returns round 1's counts."""
        self._ids = list(prompt_ids)
        m = len(self._ids)
        if m == 0:
            raise ValueError("no prompts")
        budget = int(budget)
        if budget < m * self.min_rollouts or budget > m * self.max_rollouts:
            raise ValueError(
                f"budget {budget} cannot be met by {m} prompts with "
                f"{self.min_rollouts} <= rollouts <= {self.max_rollouts}"
            )
        st = self.tracker.stats(self._ids)
        seen = self.tracker.ids
        known = self.tracker.stats(seen) if seen else st
        self.prior_a, self.prior_b = self.priors.priors(
            self._ids,
            st.successes,
            st.attempts,
            self.step,
            known=(seen, known.successes, known.attempts) if seen else None,
        )
        self.budget = budget
        self.successes = np.zeros(m, dtype=np.int64)
        self.attempts = np.zeros(m, dtype=np.int64)
        self.round = 0
        self._rows: list[tuple[np.ndarray, np.ndarray]] = []
        if self.rounds == 1:
            return self._plan(budget, self.min_rollouts)
        zeros = np.zeros(m, dtype=np.int64)
        if self.pilot == "prior":
            size = min(max(self.pilot_size, 1) * m, budget - m)
            counts = allocate_round(
                zeros,
                zeros,
                budget=max(size, m),
                prior_a=self.prior_a,
                prior_b=self.prior_b,
                min_rollouts=1,
                max_rollouts=self.max_rollouts,
                value=self.value,
            )
        else:
            counts = np.full(m, min(self.pilot, self.max_rollouts), dtype=np.int64)
            if counts.sum() > budget:
                counts[:] = budget // m
                counts[: budget % m] += 1
        self.round = 1
        return counts

    def record(self, prompt_index, rewards) -> None:
        """Rewards of this round: ``prompt_index[k]`` is the position (in ``prompt_ids``)
        of the prompt that rollout ``k`` answered; ``rewards[k]`` its reward."""
        idx = np.asarray(prompt_index, dtype=np.int64).reshape(-1)
        r = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if idx.shape != r.shape:
            raise ValueError(f"{idx.size} prompt indices but {r.size} rewards")
        if idx.size and (idx.min() < 0 or idx.max() >= len(self._ids)):
            raise ValueError("prompt_index outside the step's prompts")
        succ = binarize_rewards(r, self.tracker.threshold)
        m = len(self._ids)
        self.successes += np.bincount(idx, weights=succ, minlength=m).astype(np.int64)
        self.attempts += np.bincount(idx, minlength=m)
        self._rows.append((idx, r))

    def next_round(self) -> np.ndarray | None:
        """Counts for the next round, or None when the step's budget is spent."""
        left = self.budget - int(self.attempts.sum())
        if left <= 0 or self.round >= self.rounds:
            return None
        self.round += 1
        last = self.round == self.rounds
        share = left if last else left // (self.rounds - self.round + 1)
        counts = self._plan(share, self.min_rollouts if last else 1)
        return counts if counts.sum() > 0 else None

    def _plan(self, budget: int, min_rollouts: int) -> np.ndarray:
        return allocate_round(
            self.successes,
            self.attempts,
            budget=int(budget),
            prior_a=self.prior_a,
            prior_b=self.prior_b,
            min_rollouts=min_rollouts,
            max_rollouts=self.max_rollouts,
            value=self.value,
        )

    def finish(self) -> dict[str, np.ndarray]:
        """Update the tracker with every draw of the step (one visit per prompt)."""
        if self._rows:
            idx = np.concatenate([i for i, _ in self._rows])
            r = np.concatenate([x for _, x in self._rows])
            self.tracker.update([self._ids[i] for i in idx], r)
        self.priors.mark_seen(self._ids, self.step)
        self.step += 1
        out = {"successes": self.successes.copy(), "attempts": self.attempts.copy()}
        self._rows = []
        return out

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
