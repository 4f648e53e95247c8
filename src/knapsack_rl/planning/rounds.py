"""``RoundPlanner``: one training step's rollouts, generated in rounds with a barrier
between them.

    planner = RoundPlanner(make_tracker("beta"), rounds=2, pilot=2)
    # uniform would give 32 prompts 8 rollouts; draw 64 prompts for the same 256
    sends = planner.start(prompt_ids_64, budget=256)        # the pilot: 2 per prompt
    while sends.size:
        rewards = generate_and_score(sends)   # sends: a prompt position per rollout
        sends = planner.record(sends, rewards)  # the next round once this one is in
    planner.finish()                            # one tracker update with every draw

Round 1 (the pilot) gives every prompt ``pilot`` rollouts. Every later round calls
:func:`knapsack_rl.allocate_round` on what the step has drawn so far; the last one
spends the rest of the step's budget and brings every prompt to ``min_rollouts``.
The final group of a prompt is all of its rounds' rollouts: compute advantages over
it. The caller chooses the prompts: the reference trainer and the simulator draw
``defaults.OVERSAMPLE`` (2) times as many as a uniform step for the same budget.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from knapsack_rl import defaults
from knapsack_rl.allocation.rounds import allocate_round
from knapsack_rl.planning._step import StepPlanner
from knapsack_rl.planning.base import positions
from knapsack_rl.tracking.priors import PriorModel
from knapsack_rl.tracking.trackers import Tracker

__all__ = ["RoundPlanner"]


class RoundPlanner(StepPlanner):
    """Plans a step's rounds from a tracker's priors and the step's own draws.

    Args:
        tracker: success-rate tracker, updated once per step by :meth:`finish`.
        rounds: generation rounds per step (>= 1; 1 means one-shot from the priors).
        pilot: rollouts per prompt in round 1 (int >= 1).
        min_rollouts, max_rollouts: bounds on each prompt's final group.
        value: value model of :func:`knapsack_rl.allocate_round`.
        priors: :class:`PriorModel` (pools, offline rates, decay); a default one if None.
    """

    def __init__(
        self,
        tracker: Tracker,
        *,
        rounds: int = defaults.ROUNDS,
        pilot: int = defaults.PILOT,
        min_rollouts: int = defaults.MIN_ROLLOUTS,
        max_rollouts: int = defaults.MAX_ROLLOUTS,
        value: str = defaults.VALUE,
        priors: PriorModel | None = None,
    ) -> None:
        if int(rounds) < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        super().__init__(
            tracker,
            pilot=pilot,
            min_rollouts=min_rollouts,
            max_rollouts=max_rollouts,
            value=value,
            priors=priors,
        )
        self.rounds = int(rounds)
        self.round = 0

    def start(self, prompt_ids: Sequence[Hashable], budget: int) -> np.ndarray:
        """Begin a step over ``prompt_ids`` with ``budget`` rollouts; returns round 1's
        prompt positions (grouped by prompt)."""
        budget = self._begin(prompt_ids, budget)
        self.round = 1
        if self.rounds == 1:
            counts = self._plan(budget, self.min_rollouts)
        else:
            counts = self.pilot_counts(len(self._ids), budget)
        self.counts = counts
        return self._request(positions(counts))

    def pilot_counts(self, prompts: int, budget: int) -> np.ndarray:
        """Round 1's rollouts per prompt (int64 (prompts,)) of a step of ``prompts``
        prompts and ``budget`` rollouts: ``pilot`` each (at most ``max_rollouts``), fewer
        if the budget is smaller. It needs no tracker, so an engine can generate the next
        step's pilot early (:func:`knapsack_rl.planning.base.run_pipelined`)."""
        counts = np.full(int(prompts), min(self.pilot, self.max_rollouts), dtype=np.int64)
        if counts.sum() > budget:
            counts[:] = budget // prompts
            counts[: budget % prompts] += 1
        return counts

    def record(self, index, rewards) -> np.ndarray:
        """Rewards of requested rollouts: ``index[k]`` is the prompt position of rollout
        ``k``, ``rewards[k]`` its reward (or a single position and reward). Returns the
        next round's positions once the round's last result is in, else an empty array."""
        self._take(index, rewards)
        return self._after()

    def drop(self, index) -> np.ndarray:
        """Requested rollouts that came back without a usable reward (failed or unscorable):
        no longer pending, not evidence. Returns what :meth:`record` would."""
        self._lose(index)
        return self._after()

    def _after(self) -> np.ndarray:
        if self.pending.any():
            return np.zeros(0, dtype=np.int64)
        counts = self._next_counts()
        self.counts = counts
        return self._request(positions(counts)) if counts is not None else np.zeros(0, np.int64)

    def _next_counts(self) -> np.ndarray | None:
        left = self.budget - self.requested
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
