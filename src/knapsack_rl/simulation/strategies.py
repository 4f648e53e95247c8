"""Rollout strategies for the simulator, behind one small interface.

A strategy decides, each training step, which prompts to roll out and how
many times, through an :class:`Env` (the simulated environment): it draws
prompts from the data stream (``env.next_prompts``), spends rollouts
(``env.rollout``; every rollout is counted) and returns the groups the
gradient step trains on as a :class:`StepOutcome`. To add one, subclass
:class:`Strategy`, implement ``step``, and register it in :data:`STRATEGIES`
(or pass an instance to :func:`knapsack_rl.simulation.run`).

Built in (all at the budget ``B = prompts_per_step * rollouts_per_prompt`` per step unless noted):

- ``uniform``: ``rollouts_per_prompt`` rollouts for each of ``prompts_per_step`` prompts.
- ``knapsack``: exact optimum of the paper's value (``method="knapsack"``),
  with success rates from a :class:`~knapsack_rl.tracking.WindowTracker`.
- ``oracle``: the same with the true success rates (a ceiling, not a method).
- ``paper``: the reference procedure (``method="paper"``: base allocation,
  fallback, knapsack) with the reference estimator (``PaperTracker``).
- ``bayes``: posterior expected value (``method="bayes"``) with the
  discounted ``BetaTracker`` and its empirical-Bayes prior.
- ``dapo``: DAPO dynamic sampling: roll out batches of prompts with
  ``rollouts_per_prompt`` rollouts each, drop all-equal groups, refill until
  ``prompts_per_step`` groups are kept (at most ``max_gen_batches`` batches);
  spends a multiple of B per step and reports it.
- ``greso``: GRESO-style pre-rollout skipping: a prompt whose last visit was
  all-equal is skipped (no rollouts) unless an exploration draw with
  probability ``explore`` keeps it; the batch is filled from the stream.
- ``ar3po``: AR3PO-style sequential sampling: rounds of ``round_size``
  rollouts per active prompt; a prompt stops once it has a success and a
  failure, or reaches ``cap``; leftover budget pulls new prompts from the
  stream, so the step spends exactly B.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from knapsack_rl.allocation import Allocator
from knapsack_rl.allocation.stats import PromptStats
from knapsack_rl.planning.base import makespan
from knapsack_rl.simulation.gentime import GpuClock, prompt_units
from knapsack_rl.simulation.model import ModelConfig, Population
from knapsack_rl.tracking import Tracker, make_tracker

__all__ = [
    "Env",
    "StepOutcome",
    "Strategy",
    "UniformStrategy",
    "AllocatorStrategy",
    "KnapsackStrategy",
    "OracleStrategy",
    "PaperStrategy",
    "BayesStrategy",
    "DynamicSamplingStrategy",
    "GresoStrategy",
    "AR3POStrategy",
    "STRATEGIES",
    "DEFAULT_STRATEGIES",
    "make_strategy",
    "strategy_seed",
]


def strategy_seed(seed: int, name: str) -> list[int]:
    """Seed sequence of a strategy's reward noise: stable across runs and processes."""
    return [int(seed), zlib.crc32(name.encode("utf-8"))]


class Env:
    """What a strategy sees of the simulation during one run.

    Attributes:
        config: the model configuration (``prompts_per_step``, ``rollouts_per_prompt``,
            ``budget``, ``min_rollouts``, ``max_rollouts``).
        population: the simulated prompts (use :meth:`true_p` for their true rates).
        rng: the strategy's own random generator (rewards and any choices).
        spent: rollouts spent in the current step.
    """

    def __init__(self, population: Population, seed: int, name: str) -> None:
        self.population = population
        self.config: ModelConfig = population.config
        self.rng = np.random.default_rng(strategy_seed(seed, name))
        self._data_rng = np.random.default_rng([int(seed), 104729])  # same stream for all
        self._order = np.empty(0, dtype=np.int64)
        self._pos = 0
        self.epoch = 0
        self.spent = 0
        # modelled GPU generation time (simulation/gentime.py); its own random stream
        self.clock = GpuClock(seed=int(seed))
        self._unit = prompt_units(int(seed), len(population))
        self.capacity = population.config.capacity
        self.gen_seconds = 0.0  # this step's modelled generation makespan
        self.step_index = 0
        self._calls = 0

    @property
    def budget(self) -> int:
        """Rollouts per step, ``prompts_per_step * rollouts_per_prompt``."""
        return self.config.budget

    def next_prompts(self, k: int) -> np.ndarray:
        """The next ``k`` prompt indices of the data stream (epochs of shuffled
        prompts, like a shuffling dataloader). The stream is the same for every
        strategy of a run; a strategy that draws more simply gets further."""
        out = []
        need = int(k)
        while need > 0:
            if self._pos >= self._order.size:
                self._order = self._data_rng.permutation(len(self.population))
                self._pos = 0
                self.epoch += 1
            take = min(need, self._order.size - self._pos)
            out.append(self._order[self._pos : self._pos + take])
            self._pos += take
            need -= take
        return np.concatenate(out) if out else np.empty(0, dtype=np.int64)

    def rollout(self, idx: np.ndarray, counts: np.ndarray, timed: bool = True):
        """Spend ``counts[g]`` rollouts on prompt ``idx[g]``.

        Returns ``(successes, flat_idx, flat_rewards)``: float (G,) successes
        per group, and the flat per-rollout prompt indices and 0/1 rewards (what
        a tracker's ``update`` takes). The call is one generation barrier: its
        modelled makespan is added to ``gen_seconds`` (``timed=False``: not).
        """
        counts = np.asarray(counts, dtype=np.int64)
        if counts.size and counts.min() < 0:
            raise ValueError("rollout counts must be >= 0")
        self.spent += int(counts.sum())
        out = self.population.sample(idx, counts, self.rng)
        if not timed:  # the caller runs its own engine clock (a streaming strategy)
            return out
        # one generation call with a barrier: it ends with its longest completion
        self.gen_seconds += makespan(self.durations(out[1], out[2]), self.capacity)
        return out

    def durations(self, prompts: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        """Modelled seconds (N,) of rollouts of ``prompts`` (N,) with 0/1 ``rewards`` (N,)."""
        self._calls += 1
        return self.clock.durations_at(
            self._unit[prompts], rewards <= 0, self.step_index, self._calls
        )

    def true_p(self, idx: np.ndarray) -> np.ndarray:
        """True success probabilities of ``idx`` (for oracle strategies and reports)."""
        return self.population.p(idx)


@dataclass
class StepOutcome:
    """The groups of one step.

    Attributes:
        idx: int (G,), prompt of each trained group.
        n: int (G,), rollouts in each trained group.
        k: float (G,), successes in each trained group.
        dropped_n: int (D,), rollouts of groups generated but not trained on
            (e.g. dynamic sampling's all-equal groups); counted as spent.
        dropped_k: float (D,), their successes.
    """

    idx: np.ndarray
    n: np.ndarray
    k: np.ndarray
    dropped_n: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    dropped_k: np.ndarray = field(default_factory=lambda: np.empty(0))


class Strategy:
    """One way of spending a step's rollouts. Subclasses implement :meth:`step`.

    Attributes:
        name: the name shown in tables and reports.
        fixed_budget: True if every step spends exactly ``env.budget`` rollouts.
    """

    name = "base"
    fixed_budget = True

    def reset(self, env: Env) -> None:
        """Called once before the first step of a run (clear any state)."""

    def step(self, env: Env) -> StepOutcome:
        """Run one training step: draw prompts, spend rollouts through ``env``,
        return the groups to train on."""
        raise NotImplementedError

    def config(self) -> dict:
        """Settings, for the run's resolved configuration."""
        return {}


class UniformStrategy(Strategy):
    """``rollouts_per_prompt`` rollouts for each of ``prompts_per_step`` prompts."""

    name = "uniform"

    def step(self, env: Env) -> StepOutcome:
        c = env.config
        idx = env.next_prompts(c.prompts_per_step)
        n = np.full(idx.size, c.rollouts_per_prompt, dtype=np.int64)
        k, _, _ = env.rollout(idx, n)
        return StepOutcome(idx, n, k)


class AllocatorStrategy(Strategy):
    """Allocate a batch with the core :class:`~knapsack_rl.Allocator`, success
    rates from a core tracker (``update`` after every step).

    Args:
        method: allocation method (``knapsack``, ``paper``, ``bayes``, ``uniform``).
        tracker: tracker kind (``paper``, ``window``, ``beta``), or ``oracle``
            for the true success rates.
        tracker_kwargs: keyword arguments for :func:`~knapsack_rl.tracking.make_tracker`.
        allocator_kwargs: extra :class:`~knapsack_rl.Allocator` settings
            (``alpha``, ``cost_rule``, ``negative_n``, ``positive_n``, ``prior``).
        name: display name.
    """

    def __init__(
        self,
        method: str = "knapsack",
        tracker: str = "window",
        tracker_kwargs: dict | None = None,
        allocator_kwargs: dict | None = None,
        name: str | None = None,
    ) -> None:
        self.method = method
        self.tracker_kind = tracker
        self.tracker_kwargs = dict(tracker_kwargs or {})
        self.allocator_kwargs = dict(allocator_kwargs or {})
        self.name = name or method
        self.tracker: Tracker | None = None
        self.allocator: Allocator | None = None
        if tracker != "oracle":
            make_tracker(tracker, **self.tracker_kwargs)  # fail early on bad settings

    def reset(self, env: Env) -> None:
        c = env.config
        self.allocator = Allocator(
            method=self.method,
            min_rollouts=c.min_rollouts,
            max_rollouts=c.max_rollouts,
            rollouts_per_prompt=c.rollouts_per_prompt,
            **self.allocator_kwargs,
        )
        self.tracker = None
        if self.tracker_kind != "oracle":
            self.tracker = make_tracker(self.tracker_kind, **self.tracker_kwargs)

    def inputs(self, env: Env, idx: np.ndarray) -> PromptStats:
        """The statistics ``Allocator.allocate`` takes for the prompts ``idx``."""
        if self.tracker is None:
            return PromptStats(p=env.true_p(idx))
        return self.tracker.stats(idx)

    def step(self, env: Env) -> StepOutcome:
        c = env.config
        idx = env.next_prompts(c.prompts_per_step)
        stats = self.inputs(env, idx)
        n = self.allocator.allocate(stats, rollouts_per_prompt=c.rollouts_per_prompt).rollouts
        k, flat, rewards = env.rollout(idx, n)
        if self.tracker is not None:
            self.tracker.update(flat, rewards)
        return StepOutcome(idx, n, k)

    def config(self) -> dict:
        return {
            "method": self.method,
            "tracker": self.tracker_kind,
            "tracker_kwargs": self.tracker_kwargs,
            "allocator_kwargs": self.allocator_kwargs,
        }


class KnapsackStrategy(AllocatorStrategy):
    """Exact knapsack on the paper's value; success rates from a window tracker
    (mean of each prompt's last ``window`` rewards; unseen prompts get the
    dataset mean)."""

    def __init__(self, window: int = 32, name: str = "knapsack") -> None:
        super().__init__("knapsack", "window", {"window": window}, name=name)


class OracleStrategy(AllocatorStrategy):
    """Exact knapsack on the paper's value with the TRUE success rates: a
    ceiling for what estimation could give, not a usable method."""

    def __init__(self, name: str = "oracle") -> None:
        super().__init__("knapsack", "oracle", name=name)


class PaperStrategy(AllocatorStrategy):
    """The reference procedure: ``method="paper"`` (base allocation, fallback
    with ``alpha``, knapsack) fed by the reference estimator (``PaperTracker``;
    prompts with fewer than 8 observations get the uniform n)."""

    def __init__(self, alpha: float = 0.9, name: str = "paper") -> None:
        super().__init__("paper", "paper", allocator_kwargs={"alpha": alpha}, name=name)


class BayesStrategy(AllocatorStrategy):
    """Posterior expected value (``method="bayes"``) with the discounted
    ``BetaTracker`` (forgetting factor ``discount``, empirical-Bayes prior)."""

    def __init__(self, discount: float = 0.9, name: str = "bayes") -> None:
        super().__init__("bayes", "beta", {"discount": discount}, name=name)


class DynamicSamplingStrategy(Strategy):
    """DAPO dynamic sampling: over-sample, drop all-equal groups, refill.

    Each generation batch rolls out ``gen_batch_prompts`` (default
    ``prompts_per_step``) new prompts ``rollouts_per_prompt`` times; groups with a success
    and a failure are kept, the rest dropped, until ``prompts_per_step`` groups
    are kept or ``max_gen_batches`` batches were generated (then the step
    trains on what it has). Kept groups beyond ``prompts_per_step`` are dropped
    too. Every rollout generated counts as spent.
    """

    name = "dapo"
    fixed_budget = False

    def __init__(
        self, gen_batch_prompts: int | None = None, max_gen_batches: int = 10, name: str = "dapo"
    ) -> None:
        if gen_batch_prompts is not None and int(gen_batch_prompts) < 1:
            raise ValueError(f"gen_batch_prompts must be >= 1, got {gen_batch_prompts}")
        if int(max_gen_batches) < 1:
            raise ValueError(f"max_gen_batches must be >= 1, got {max_gen_batches}")
        self.gen_batch_prompts = gen_batch_prompts
        self.max_gen_batches = int(max_gen_batches)
        self.name = name

    def step(self, env: Env) -> StepOutcome:
        c = env.config
        gen = self.gen_batch_prompts or c.prompts_per_step
        keep_i, keep_n, keep_k, drop_n, drop_k = [], [], [], [], []
        kept = 0
        for _ in range(self.max_gen_batches):
            idx = env.next_prompts(gen)
            n = np.full(idx.size, c.rollouts_per_prompt, dtype=np.int64)
            k, _, _ = env.rollout(idx, n)
            ok = (k > 0) & (k < n)
            keep_i.append(idx[ok])
            keep_n.append(n[ok])
            keep_k.append(k[ok])
            drop_n.append(n[~ok])
            drop_k.append(k[~ok])
            kept += int(ok.sum())
            if kept >= c.prompts_per_step:
                break
        idx, n, k = (np.concatenate(a) for a in (keep_i, keep_n, keep_k))
        m = c.prompts_per_step
        drop_n.append(n[m:])
        drop_k.append(k[m:])
        return StepOutcome(idx[:m], n[:m], k[:m], np.concatenate(drop_n), np.concatenate(drop_k))

    def config(self) -> dict:
        return {
            "gen_batch_prompts": self.gen_batch_prompts,
            "max_gen_batches": self.max_gen_batches,
        }


class GresoStrategy(Strategy):
    """GRESO-style pre-rollout skipping.

    A prompt whose last visit had all-equal rewards is skipped before any
    rollout, unless a draw with probability ``explore`` keeps it; skipped
    prompts cost nothing and the batch is refilled from the stream until it
    holds ``prompts_per_step`` prompts (at most ``max_draws`` times
    ``prompts_per_step`` prompts are examined; then skipped ones fill the rest).
    Every kept prompt gets ``rollouts_per_prompt`` rollouts, so a step spends exactly B.
    """

    name = "greso"

    def __init__(self, explore: float = 0.25, max_draws: int = 20, name: str = "greso") -> None:
        if not 0.0 <= float(explore) <= 1.0:
            raise ValueError(f"explore must be in [0, 1], got {explore}")
        if int(max_draws) < 1:
            raise ValueError(f"max_draws must be >= 1, got {max_draws}")
        self.explore = float(explore)
        self.max_draws = int(max_draws)
        self.name = name
        self._flat = np.zeros(0, dtype=bool)

    def reset(self, env: Env) -> None:
        self._flat = np.zeros(len(env.population), dtype=bool)  # last visit all-equal

    def step(self, env: Env) -> StepOutcome:
        c = env.config
        m = c.prompts_per_step
        chosen, skipped = [], []
        have = 0
        for _ in range(self.max_draws):
            cand = env.next_prompts(m)
            keep = ~self._flat[cand] | (env.rng.random(cand.size) < self.explore)
            take = cand[keep][: m - have]
            chosen.append(take)
            skipped.append(cand[~keep])
            have += take.size
            if have >= m:
                break
        if have < m:  # the stream is nearly all skippable: fill with skipped prompts
            chosen.append(np.concatenate(skipped)[: m - have])
        idx = np.concatenate(chosen)
        n = np.full(idx.size, c.rollouts_per_prompt, dtype=np.int64)
        k, _, _ = env.rollout(idx, n)
        self._flat[idx] = (k == 0) | (k == n)
        return StepOutcome(idx, n, k)

    def config(self) -> dict:
        return {"explore": self.explore, "max_draws": self.max_draws}


class AR3POStrategy(Strategy):
    """AR3PO-style sequential sampling in small rounds.

    ``prompts_per_step`` prompts start active; each round gives every active
    prompt ``round_size`` more rollouts (the last round may give fewer, to fit
    the budget). A prompt stops once it has a success and a failure, or has
    ``cap`` rollouts (default ``4 * rollouts_per_prompt``). When no prompt is active and
    budget is left, new prompts are drawn from the stream. A step spends
    exactly B; every prompt that got rollouts is a trained group.
    """

    name = "ar3po"

    def __init__(self, round_size: int = 2, cap: int | None = None, name: str = "ar3po") -> None:
        if int(round_size) < 1:
            raise ValueError(f"round_size must be >= 1, got {round_size}")
        if cap is not None and int(cap) < 1:
            raise ValueError(f"cap must be >= 1, got {cap}")
        self.round_size = int(round_size)
        self.cap = None if cap is None else int(cap)
        self.name = name

    def step(self, env: Env) -> StepOutcome:
        c = env.config
        cap = self.cap or 4 * c.rollouts_per_prompt
        left = c.budget
        idx = env.next_prompts(c.prompts_per_step)
        n = np.zeros(idx.size, dtype=np.int64)
        k = np.zeros(idx.size)
        while left > 0:
            act = np.flatnonzero(((k == 0) | (k == n)) & (n < cap))
            if act.size == 0:
                new = env.next_prompts(min(c.prompts_per_step, -(-left // self.round_size)))
                idx = np.concatenate([idx, new])
                n = np.concatenate([n, np.zeros(new.size, dtype=np.int64)])
                k = np.concatenate([k, np.zeros(new.size)])
                continue
            give = np.minimum(self.round_size, cap - n[act])
            before = np.cumsum(give) - give
            give = np.clip(left - before, 0, give)
            got, _, _ = env.rollout(idx[act], give)
            n[act] += give
            k[act] += got
            left -= int(give.sum())
        used = n > 0
        return StepOutcome(idx[used], n[used], k[used])

    def config(self) -> dict:
        return {"round_size": self.round_size, "cap": self.cap}


#: name -> factory (keyword arguments become the strategy's settings).
STRATEGIES = {
    "uniform": UniformStrategy,
    "knapsack": KnapsackStrategy,
    "paper": PaperStrategy,
    "bayes": BayesStrategy,
    "dapo": DynamicSamplingStrategy,
    "greso": GresoStrategy,
    "ar3po": AR3POStrategy,
    "oracle": OracleStrategy,
}

#: What ``--strategies all`` runs (``oracle`` is a ceiling, run it by name).
DEFAULT_STRATEGIES = ("uniform", "knapsack", "paper", "bayes", "dapo", "greso", "ar3po")


def make_strategy(name: str, **kwargs) -> Strategy:
    """Build a registered strategy by name."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name](**kwargs)
