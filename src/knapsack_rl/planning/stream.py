"""``StreamPlanner``: a step's rollouts planned as completions return, with no barrier.

    planner = StreamPlanner(make_tracker("beta"), concurrency=None)
    sends = planner.start(prompt_ids, budget)   # the pilots: `pilot` per prompt
    for i, reward in engine.completions():      # in the order they finish
        engine.submit(planner.record(i, reward))  # more positions, possibly none
    groups = planner.finish()                   # one tracker update

**When it plans.** ``start`` requests the pilots (``pilot`` rollouts per prompt, round
robin over the prompts) and nothing else. Each ``record`` adds the result to the
step's posterior and releases more rollouts as the evidence arrives: once a share
``f`` of the pilot results is back, ``min(1, f / commit)`` of the rest of the budget
has been requested, so the whole budget is out by the time ``commit`` of the pilots
are in. What is released comes from a plan of the whole unrequested budget, split by
the exact posterior value of :func:`knapsack_rl.allocate_round` over what has come
back, with every in-flight rollout counted as already given to its prompt (pending,
not evidence). The plan is made again after every 1/64 of the pilot results (so
at most about 64 solves per step, whatever its size). The prompts with the most planned-but-unrequested rollouts go first,
and among equals the hardest (lowest posterior mean), whose completions run longest.

**Why.** On a GPU engine a step lasts as long as its longest chain of completions.
A two-round step waits for the slowest pilot and then for the slowest of the rest:
two tails. Here no rollout waits for the slowest pilot: the late, long pilots (the
hard prompts) are still running while the rest is planned from the quick ones, and
everything has started by the time ``commit`` of the pilots are back, so the
step's tail is one completion long plus that time. With ``concurrency`` set (the
engine's number of slots), the planner keeps at most that many in flight and fills
every slot that frees (work-conserving), so later rollouts are planned with more
evidence while the engine never idles.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from knapsack_rl import defaults
from knapsack_rl.allocation.rounds import best_extra, value_model
from knapsack_rl.planning._step import StepPlanner, finite_fraction
from knapsack_rl.tracking.priors import PriorModel
from knapsack_rl.tracking.trackers import Tracker

__all__ = ["StreamPlanner"]

#: plans per step, at most, while the pilots come back (one per 1/_PLANS of them)
_PLANS = 64


class StreamPlanner(StepPlanner):
    """Plans a step's rollouts one completion at a time (see the module docstring).

    Args:
        tracker: success-rate tracker, updated once per step by :meth:`finish`.
        min_rollouts, max_rollouts: bounds on every prompt's final group.
        value: value model of :func:`knapsack_rl.allocate_round` (``grpo`` or ``paper``).
        concurrency: most rollouts in flight at once (the engine's slots); None: no limit.
        pilot: rollouts per prompt requested at :meth:`start` (capped by the budget).
        commit: share of the pilot results after which the whole budget is requested.
        priors: :class:`PriorModel` (pools, offline rates, decay); a default one if None.
    """

    def __init__(
        self,
        tracker: Tracker,
        *,
        min_rollouts: int = defaults.MIN_ROLLOUTS,
        max_rollouts: int = defaults.MAX_ROLLOUTS,
        value: str = defaults.VALUE,
        concurrency: int | None = None,
        pilot: int = defaults.PILOT,
        commit: float = defaults.COMMIT,
        priors: PriorModel | None = None,
    ) -> None:
        super().__init__(
            tracker,
            pilot=pilot,
            min_rollouts=min_rollouts,
            max_rollouts=max_rollouts,
            value=value,
            priors=priors,
        )
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ValueError(f"concurrency must be an integer >= 1 or None, got {concurrency!r}")
        self.concurrency = concurrency
        self.commit = finite_fraction(commit, "commit")

    # ------------------------------------------------------------------ a step
    def start(self, prompt_ids: Sequence[Hashable], budget: int) -> np.ndarray:
        """Begin a step over ``prompt_ids`` with ``budget`` rollouts; returns the prompt
        positions to request now (the pilots, round robin over prompts)."""
        budget = self._begin(prompt_ids, budget)
        m = len(self._ids)
        per = min(self.pilot, self.max_rollouts, budget // m)
        counts = np.full(m, per, dtype=np.int64)
        counts[: min(m, budget - per * m) if per < self.pilot else 0] += 1
        self._pilot_total = int(counts.sum())
        self._pilot_queue = _round_robin(counts)  # one rollout of every prompt, then the next
        self._pilots_back = 0
        self._released = 0  # rollouts beyond the pilots requested so far
        self._pilot_of = np.zeros(m, dtype=np.int64)  # pilot rollouts not yet returned
        self._queue = np.zeros(0, dtype=np.int64)  # the last plan's unrequested rollouts
        self._since = 0  # results since that plan
        self._replan = max(1, self._pilot_total // _PLANS)
        return self._release()

    def record(self, index, reward) -> np.ndarray:
        """One completion (or arrays of them) of prompt position ``index`` with its
        reward; returns the positions to request now (int64, possibly empty)."""
        idx, _ = self._take(index, reward)
        back = np.minimum(np.bincount(idx, minlength=len(self._ids)), self._pilot_of)
        self._pilot_of -= back
        self._pilots_back += int(back.sum())
        self._since += idx.size
        return self._release()

    def drop(self, index) -> np.ndarray:
        """Requested rollouts that came back without a usable reward (failed or unscorable):
        no longer pending, not evidence; their slots are refilled. Returns what
        :meth:`record` would."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        self._lose(idx)
        back = np.minimum(np.bincount(idx, minlength=len(self._ids)), self._pilot_of)
        self._pilot_of -= back
        self._pilots_back += int(back.sum())
        return self._release()

    # ------------------------------------------------------------------ planning
    def _free(self) -> int:
        left = self.budget - self.requested
        if self.concurrency is None:
            return left
        return max(0, min(left, self.concurrency - int(self.pending.sum())))

    def _release(self) -> np.ndarray:
        free = self._free()
        out = []
        if self._pilot_queue.size and free:  # pilots first
            take, self._pilot_queue = self._pilot_queue[:free], self._pilot_queue[free:]
            self._pilot_of += np.bincount(take, minlength=len(self._ids))
            out.append(take)
            free -= take.size
        rest = self.budget - self._pilot_total
        if free and rest > self._released and not self._pilot_queue.size:
            share = min(1.0, self._pilots_back / max(self.commit * self._pilot_total, 1e-12))
            due = rest if share >= 1.0 else int(np.ceil(share * rest - 1e-9))
            want = due - self._released
            if self.concurrency is not None:  # fill every free slot: the engine never idles
                want = max(want, free)
            want = min(want, free, rest - self._released)
            if want > 0:
                if self._queue.size < want or self._since >= self._replan:
                    self._queue, self._since = self._plan(), 0
                out.append(self._queue[:want])
                self._queue = self._queue[want:]
                self._released += want
        if not out:
            return np.zeros(0, dtype=np.int64)
        return self._request(np.concatenate(out))

    def _plan(self) -> np.ndarray:
        """The unrequested budget as positions, split by the exact posterior value on
        what came back, in-flight rollouts counted as given; the largest remainders first."""
        s, n, q = self.successes, self.attempts, self.pending
        left = self.budget - self.requested  # unrequested budget
        base = np.maximum(self.min_rollouts - n, q).astype(np.int64)
        base = np.maximum(base, np.where(n == 0, 1, 0))
        room = np.maximum(self.max_rollouts - n, 0).astype(np.int64)
        total = int(q.sum()) + left  # extra rollouts per prompt beyond the evidence
        x = base
        if total > int(base.sum()):
            a, b = self.prior_a + s, self.prior_b + (n - s)
            x = best_extra(value_model(self.value), s, n, a, b, base, room, total)
        todo = np.maximum(x - q, 0)  # planned, not requested
        mean = (self.prior_a + s) / (self.prior_a + self.prior_b + n)
        out = []
        while todo.any():  # largest remainder first; among equals the hardest
            order = np.lexsort((mean, -todo))
            give = order[todo[order] > 0]
            out.append(give)
            todo[give] -= 1
        return np.concatenate(out)[:left] if out else np.zeros(0, dtype=np.int64)


def _round_robin(counts: np.ndarray) -> np.ndarray:
    """Positions with ``counts`` each, ordered round by round: 0, 1, 2, 0, 1, 2, ..."""
    pos = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    rank = np.concatenate([np.arange(c) for c in counts]) if pos.size else pos
    return pos[np.argsort(rank, kind="stable")]
