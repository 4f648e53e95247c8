"""Sequential strategies: a step's rollouts are generated in rounds, and each round
is planned from what the step has drawn so far.

All of them spend exactly ``B = prompts_per_step * rollouts_per_prompt`` rollouts per
step, so they compare with ``uniform`` at equal rollouts; ``rounds`` draws
``oversample`` times as many prompts of the stream (the others the same ones). A
prompt's trained group is every rollout it got in the step, all rounds together
(the advantage baseline is over all of them).

- ``rounds`` (``rounds-paper``, ``rounds-informative``, ``rounds-size``,
  ``rounds-coba``, ``rounds-grpo``): a :class:`~knapsack_rl.RoundPlanner` over a
  ``beta`` tracker, on ``oversample * prompts_per_step`` prompts: a pilot of ``pilot``
  rollouts per prompt, then the rest of the budget split by
  :func:`knapsack_rl.allocate_round` (exact, on the Beta posterior of each prompt
  given the tracker's prior and the pilot's draws) under the chosen value model.
- ``pilot-commit`` (Pilot-Commit, arXiv 2605.26606): a pilot of ``pilot``
  rollouts per prompt; prompts whose pilot success rate lies in
  ``[lower, 1 - upper]`` are kept and the rest of the budget is split evenly over
  them; the others train on their pilot only.
- ``reinforce-ada`` / ``reinforce-ada-balance`` (Reinforce-Ada, arXiv 2510.04996):
  successive elimination: rounds of ``round_size`` rollouts on every active prompt;
  a prompt retires once it holds ``target`` successes and ``target`` failures;
  rounds go on over the active prompts until the budget is spent.
"""

from __future__ import annotations

import numpy as np

from knapsack_rl import defaults
from knapsack_rl.allocation.rounds import VALUES
from knapsack_rl.simulation.strategies import Env, StepOutcome, Strategy
from knapsack_rl.tracking import make_tracker
from knapsack_rl.tracking.planner import RoundPlanner
from knapsack_rl.tracking.priors import PriorModel

__all__ = [
    "RoundsStrategy",
    "PilotCommitStrategy",
    "ReinforceAdaStrategy",
    "SEQUENTIAL_STRATEGIES",
    "ROUNDS_DEFAULT_VALUE",
]

#: Value model of the ``rounds`` strategy: the project default (``defaults.VALUE``). In
#: this simulator ``rounds-paper`` scores highest, because its learning model gives a
#: group no credit for its size; the reference trainer's selection runs pick ``grpo``.
ROUNDS_DEFAULT_VALUE = defaults.VALUE


def _spread(give: np.ndarray, room: np.ndarray, left: int) -> int:
    """Add ``left`` rollouts to ``give`` one per prompt in turn, never above ``room``.

    Returns what could not be placed (0 unless every prompt is at its room)."""
    while left > 0:
        open_ = np.flatnonzero(give < room)
        if open_.size == 0:
            break
        per = max(1, left // open_.size)
        add = np.minimum(room[open_] - give[open_], per)
        cum = np.cumsum(add)
        add = np.where(cum <= left, add, np.maximum(left - (cum - add), 0))
        give[open_] += add
        left -= int(add.sum())
    return left


def _draw(env: Env, idx: np.ndarray, n: np.ndarray, k: np.ndarray, give: np.ndarray) -> None:
    """Roll out ``give[g]`` more times prompt ``idx[g]``; add to ``n`` and ``k`` in place."""
    sel = np.flatnonzero(give > 0)
    got, _, _ = env.rollout(idx[sel], give[sel])
    n[sel] += give[sel]
    k[sel] += got


def _spread_rest(name: str, give: np.ndarray, room: np.ndarray, left: int) -> None:
    """:func:`_spread` that must place everything (the step spends exactly B)."""
    if _spread(give, room, left):
        raise RuntimeError(f"{name}: the step's budget does not fit under max_rollouts")


class RoundsStrategy(Strategy):
    """Rounds planned by :class:`~knapsack_rl.RoundPlanner` (pilot, then exact
    allocation of the rest on this step's evidence).

    Args:
        value: value model (``paper``, ``informative``, ``size``, ``coba``, ``grpo``).
        rounds: rounds per step (pilot + planned rounds; default `defaults.ROUNDS`).
        pilot: pilot rollouts per prompt, or ``"prior"`` (the planner splits
            ``pilot_size`` per prompt by the value of drawing under the prior).
        pilot_size: mean pilot size for ``pilot="prior"``.
        oversample: prompts drawn per step, as a multiple of ``prompts_per_step`` (the
            budget is unchanged; at most the dataset and ``B / min_rollouts`` prompts;
            default `defaults.OVERSAMPLE`).
        tracker_kwargs: keyword arguments of the ``beta`` tracker.
        half_life: steps after which a prompt's own evidence counts half in its prior.
        name: display name (default ``rounds-<value>``).
    """

    def __init__(
        self,
        value: str = ROUNDS_DEFAULT_VALUE,
        rounds: int = defaults.ROUNDS,
        pilot: int | str = defaults.PILOT,
        pilot_size: int = defaults.PILOT,
        oversample: int = defaults.OVERSAMPLE,
        tracker_kwargs: dict | None = None,
        half_life: float | None = 20.0,
        name: str | None = None,
    ) -> None:
        if value not in VALUES:
            raise ValueError(f"value: unknown {value!r}; expected one of {', '.join(VALUES)}")
        if int(rounds) < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        if int(oversample) < 1:
            raise ValueError(f"oversample must be >= 1, got {oversample}")
        self.value = value
        self.oversample = int(oversample)
        self.rounds = int(rounds)
        self.pilot = pilot
        self.pilot_size = int(pilot_size)
        self.tracker_kwargs = dict(tracker_kwargs or {})
        self.half_life = half_life
        self.name = name or f"rounds-{value}"
        self.planner: RoundPlanner | None = None
        make_tracker("beta", **self.tracker_kwargs)  # fail early on bad settings

    def reset(self, env: Env) -> None:
        c = env.config
        self.planner = RoundPlanner(
            make_tracker("beta", **self.tracker_kwargs),
            rounds=self.rounds,
            pilot=self.pilot,
            pilot_size=self.pilot_size,
            min_rollouts=c.min_rollouts,
            max_rollouts=c.max_rollouts,
            value=self.value,
            priors=PriorModel(half_life=self.half_life),
        )

    def step(self, env: Env) -> StepOutcome:
        c = env.config
        # at most the dataset, and at most what the budget can give min_rollouts each
        m = min(
            c.prompts_per_step * self.oversample, len(env.population), c.budget // c.min_rollouts
        )
        idx = env.next_prompts(m)
        n = np.zeros(idx.size, dtype=np.int64)
        k = np.zeros(idx.size)
        counts = self.planner.start(idx.tolist(), budget=c.budget)
        while counts is not None:
            counts = np.asarray(counts, dtype=np.int64)
            got, _, rewards = env.rollout(idx, counts)
            self.planner.record(np.repeat(np.arange(idx.size), counts), rewards)
            n += counts
            k += got
            counts = self.planner.next_round()
        self.planner.finish()
        left = c.budget - int(n.sum())
        if left > 0:  # the planner stopped short (every prompt at its cap): not expected
            raise RuntimeError(f"{self.name}: the round planner left {left} rollouts unspent")
        used = n > 0
        return StepOutcome(idx[used], n[used], k[used])

    def config(self) -> dict:
        return {
            "value": self.value,
            "rounds": self.rounds,
            "pilot": self.pilot,
            "pilot_size": self.pilot_size,
            "oversample": self.oversample,
            "tracker": "beta",
            "tracker_kwargs": self.tracker_kwargs,
            "half_life": self.half_life,
        }


class PilotCommitStrategy(Strategy):
    """Pilot-Commit style: a small pilot, then commit the rest to the kept prompts.

    Each prompt gets ``pilot`` rollouts (default ``max(1, rollouts_per_prompt // 4)``, the
    paper's pilot:commit ratio of 1:3). A prompt is kept when its pilot success
    rate is in ``[lower, 1 - upper]`` (the reference code's thresholds 0.125 and
    0.25); the rest of the budget is split evenly over the kept prompts, at most
    ``max_rollouts`` each, and any remainder evenly over all prompts. Prompts not
    kept train on their pilot group (informative only if it already is).
    """

    name = "pilot-commit"

    def __init__(
        self,
        pilot: int | None = None,
        lower: float = 0.125,
        upper: float = 0.25,
        name: str = "pilot-commit",
    ) -> None:
        if pilot is not None and int(pilot) < 1:
            raise ValueError(f"pilot must be >= 1, got {pilot}")
        if not (0.0 <= lower <= 1.0 and 0.0 <= upper <= 1.0 and lower <= 1.0 - upper):
            raise ValueError(f"need 0 <= lower <= 1 - upper <= 1, got {lower}, {upper}")
        self.pilot = None if pilot is None else int(pilot)
        self.lower = float(lower)
        self.upper = float(upper)
        self.name = name

    def step(self, env: Env) -> StepOutcome:
        c = env.config
        idx = env.next_prompts(c.prompts_per_step)
        pilot = self.pilot or max(1, c.rollouts_per_prompt // 4)
        pilot = min(pilot, c.budget // idx.size, c.max_rollouts)
        n = np.full(idx.size, pilot, dtype=np.int64)
        k, _, _ = env.rollout(idx, n)
        rate = k / n
        keep = np.flatnonzero((rate >= self.lower) & (rate <= 1.0 - self.upper))
        left = c.budget - int(n.sum())
        give = np.zeros(idx.size, dtype=np.int64)
        room = np.full(idx.size, c.max_rollouts, dtype=np.int64) - n
        if keep.size:
            sub = np.zeros(keep.size, dtype=np.int64)
            left = _spread(sub, room[keep], left)
            give[keep] = sub
        _spread_rest(self.name, give, room, left)
        _draw(env, idx, n, k, give)
        return StepOutcome(idx, n, k)

    def config(self) -> dict:
        return {"pilot": self.pilot, "lower": self.lower, "upper": self.upper}


class ReinforceAdaStrategy(Strategy):
    """Reinforce-Ada style successive elimination within the step.

    Every prompt starts active. Each round gives each active prompt
    ``round_size`` more rollouts (the last round is trimmed to the budget, one
    rollout per prompt in turn). A prompt retires once it holds at least
    ``target`` successes and ``target`` failures (``target=1``: one of each;
    the paper's balanced variant asks for ``rollouts_per_prompt // 2`` of each), or reaches
    ``max_rollouts``. When every prompt has retired and budget is left, the rest
    is spread evenly over all prompts. The trained group is every rollout of the
    prompt (baseline over all samples).
    """

    name = "reinforce-ada"

    def __init__(
        self, round_size: int = 4, target: int | None = 1, name: str = "reinforce-ada"
    ) -> None:
        if int(round_size) < 1:
            raise ValueError(f"round_size must be >= 1, got {round_size}")
        if target is not None and int(target) < 1:
            raise ValueError(f"target must be >= 1, got {target}")
        self.round_size = int(round_size)
        self.target = None if target is None else int(target)
        self.name = name

    def step(self, env: Env) -> StepOutcome:
        c = env.config
        target = self.target or max(1, c.rollouts_per_prompt // 2)
        idx = env.next_prompts(c.prompts_per_step)
        n = np.zeros(idx.size, dtype=np.int64)
        k = np.zeros(idx.size)
        left = c.budget
        while left > 0:
            active = (k < target) | (n - k < target)
            active &= n < c.max_rollouts
            act = np.flatnonzero(active)
            if act.size == 0:
                break
            give = np.minimum(self.round_size, c.max_rollouts - n[act])
            if int(give.sum()) > left:
                trimmed = np.zeros_like(give)
                _spread(trimmed, give, left)
                give = trimmed
            full = np.zeros(idx.size, dtype=np.int64)
            full[act] = give
            _draw(env, idx, n, k, full)
            left -= int(give.sum())
        if left > 0:  # every prompt retired: spread the rest evenly
            extra = np.zeros(idx.size, dtype=np.int64)
            _spread_rest(self.name, extra, c.max_rollouts - n, left)
            _draw(env, idx, n, k, extra)
        return StepOutcome(idx, n, k)

    def config(self) -> dict:
        return {"round_size": self.round_size, "target": self.target}


def _variant(base: type, cls_name: str, **defaults) -> type:
    """A subclass of ``base`` whose constructor defaults to ``defaults`` (a registered name)."""

    def __init__(self, **kwargs) -> None:
        base.__init__(self, **{**defaults, **kwargs})

    doc = ", ".join(f"{k}={v!r}" for k, v in defaults.items())
    return type(cls_name, (base,), {"__init__": __init__, "__doc__": f"{base.__name__}({doc})."})


#: name -> factory, merged into :data:`knapsack_rl.simulation.strategies.STRATEGIES`.
SEQUENTIAL_STRATEGIES = {
    "rounds": _variant(RoundsStrategy, "Rounds", name="rounds"),
    **{f"rounds-{v}": _variant(RoundsStrategy, f"Rounds{v.capitalize()}", value=v) for v in VALUES},
    "pilot-commit": PilotCommitStrategy,
    "reinforce-ada": ReinforceAdaStrategy,
    "reinforce-ada-balance": _variant(
        ReinforceAdaStrategy, "ReinforceAdaBalance", target=None, name="reinforce-ada-balance"
    ),
}
