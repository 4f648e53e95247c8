"""Sequential strategies: a step's rollouts are generated in rounds, and each round
is planned from what the step has drawn so far.

All of them spend exactly ``B = prompts_per_step * rollouts_per_prompt`` rollouts per
step, so they compare with ``uniform`` at equal rollouts; ``rounds`` draws
``oversample`` times as many prompts of the stream (the others the same ones). A
prompt's trained group is every rollout it got in the step, all rounds together
(the advantage baseline is over all of them).

- ``rounds`` (``rounds-paper``, ``rounds-grpo``): a :class:`~knapsack_rl.RoundPlanner` over a
  ``beta`` tracker, on ``oversample * prompts_per_step`` prompts: a pilot of ``pilot``
  rollouts per prompt, then the rest of the budget split by
  :func:`knapsack_rl.allocate_round` (exact, on the Beta posterior of each prompt
  given the tracker's prior and the pilot's draws) under the chosen value model.
- ``stream`` (``stream-paper``, ``stream-grpo``): a :class:`~knapsack_rl.StreamPlanner`
  on the same prompts and value:
  the pilots, then the rest planned as completions return on the modelled engine
  (simulation/gentime.py), without a barrier.
- ``pipelined`` (``pipelined-paper``, ``pipelined-grpo``): ``rounds``, but each step's
  pilot is drawn in the previous step's rest call (before that step's update, so from
  the policy one update old), so a step has one generation call. Its rollouts are
  charged to the step that trains on them.
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
from knapsack_rl.allocation.rounds import VALUES, check_value, spread_evenly
from knapsack_rl.planning._step import StepPlanner
from knapsack_rl.planning.base import makespan, positions, run_batched, run_pipelined, run_streaming
from knapsack_rl.planning.rounds import RoundPlanner
from knapsack_rl.planning.stream import StreamPlanner
from knapsack_rl.simulation.strategies import Env, StepOutcome, Strategy
from knapsack_rl.tracking import make_tracker
from knapsack_rl.tracking.priors import PriorModel

__all__ = [
    "RoundsStrategy",
    "StreamStrategy",
    "PipelinedStrategy",
    "PilotCommitStrategy",
    "ReinforceAdaStrategy",
    "SEQUENTIAL_STRATEGIES",
    "ROUNDS_DEFAULT_VALUE",
]

#: Value model of the ``rounds`` strategy: the project default (``defaults.VALUE``). In
#: this simulator ``rounds-paper`` scores highest, because its learning model gives a
#: group no credit for its size; the reference trainer's selection runs pick ``grpo``.
ROUNDS_DEFAULT_VALUE = defaults.VALUE


def _draw(env: Env, idx: np.ndarray, n: np.ndarray, k: np.ndarray, give: np.ndarray) -> None:
    """Roll out ``give[g]`` more times prompt ``idx[g]``; add to ``n`` and ``k`` in place."""
    sel = np.flatnonzero(give > 0)
    got, _, _ = env.rollout(idx[sel], give[sel])
    n[sel] += give[sel]
    k[sel] += got


def _spread_rest(name: str, give: np.ndarray, room: np.ndarray, left: int) -> None:
    """:func:`spread_evenly` that must place everything (the step spends exactly B)."""
    if spread_evenly(give, room, left):
        raise RuntimeError(f"{name}: the step's budget does not fit under max_rollouts")


class RoundsStrategy(Strategy):
    """Rounds planned by :class:`~knapsack_rl.RoundPlanner` (pilot, then exact
    allocation of the rest on this step's evidence), one generation barrier per round.

    Args:
        value: value model (``paper`` or ``grpo``).
        rounds: rounds per step (pilot + planned rounds; default `defaults.ROUNDS`).
        pilot: pilot rollouts per prompt (default `defaults.PILOT`).
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
        pilot: int = defaults.PILOT,
        oversample: int = defaults.OVERSAMPLE,
        tracker_kwargs: dict | None = None,
        half_life: float | None = defaults.PRIOR_HALF_LIFE,
        name: str | None = None,
    ) -> None:
        check_value(value)
        if int(rounds) < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        if int(oversample) < 1:
            raise ValueError(f"oversample must be >= 1, got {oversample}")
        self.value = value
        self.oversample = int(oversample)
        self.rounds = int(rounds)
        self.pilot = pilot
        self.tracker_kwargs = dict(tracker_kwargs or {})
        self.half_life = half_life
        self.name = name or f"rounds-{value}"
        self.planner: StepPlanner | None = None
        make_tracker("beta", **self.tracker_kwargs)  # fail early on bad settings
        self._make(make_tracker("beta"), 1, 1)  # and on bad planner settings

    def _make(self, tracker, min_rollouts: int, max_rollouts: int) -> StepPlanner:
        return RoundPlanner(
            tracker,
            rounds=self.rounds,
            pilot=self.pilot,
            min_rollouts=min_rollouts,
            max_rollouts=max_rollouts,
            value=self.value,
            priors=PriorModel(half_life=self.half_life),
        )

    def reset(self, env: Env) -> None:
        c = env.config
        tracker = make_tracker("beta", **self.tracker_kwargs)
        self.planner = self._make(tracker, c.min_rollouts, c.max_rollouts)

    def _prompts(self, env: Env) -> np.ndarray:
        c = env.config
        # at most the dataset, and at most what the budget can give min_rollouts each
        m = min(
            c.prompts_per_step * self.oversample, len(env.population), c.budget // c.min_rollouts
        )
        return env.next_prompts(m)

    def step(self, env: Env) -> StepOutcome:
        idx = self._prompts(env)
        groups = run_batched(self.planner, idx.tolist(), env.config.budget, _generate(env, idx))
        return self._outcome(env, idx, groups)

    def _outcome(self, env: Env, idx: np.ndarray, groups: dict) -> StepOutcome:
        n, k = groups["attempts"], groups["successes"].astype(np.float64)
        left = env.config.budget - int(n.sum())
        if left > 0:  # the planner stopped short (every prompt at its cap): not expected
            raise RuntimeError(f"{self.name}: the planner left {left} rollouts unspent")
        used = n > 0
        return StepOutcome(idx[used], n[used], k[used])

    def config(self) -> dict:
        return {
            "value": self.value,
            "rounds": self.rounds,
            "pilot": self.pilot,
            "oversample": self.oversample,
            "tracker": "beta",
            "tracker_kwargs": self.tracker_kwargs,
            "half_life": self.half_life,
        }


def _generate(env: Env, idx: np.ndarray, timed: bool = True):
    """``generate(positions) -> rewards`` over the step's prompts ``idx`` (one reward per
    position, in order); each call is one :meth:`Env.rollout`."""

    def generate(pos: np.ndarray) -> np.ndarray:
        counts = np.bincount(pos, minlength=idx.size)
        _, _, r = env.rollout(idx, counts, timed=timed)  # grouped by prompt
        out = np.empty(pos.size)
        out[np.argsort(pos, kind="stable")] = r
        return out

    return generate


class StreamStrategy(RoundsStrategy):
    """:class:`~knapsack_rl.StreamPlanner`: pilots first, then the rest planned as
    completions return, on an engine of ``capacity`` slots with no barrier; the step's
    ``gen_seconds`` is that engine's makespan.

    Args:
        commit: share of the pilot results after which the whole rest is released
            (default `defaults.COMMIT`).
        concurrency: engine slots the planner keeps busy (None: release by ``commit`` only).
        Others as :class:`RoundsStrategy`.
    """

    def __init__(
        self,
        value: str = ROUNDS_DEFAULT_VALUE,
        pilot: int = defaults.PILOT,
        commit: float = defaults.COMMIT,
        concurrency: int | None = None,
        oversample: int = defaults.OVERSAMPLE,
        tracker_kwargs: dict | None = None,
        half_life: float | None = defaults.PRIOR_HALF_LIFE,
        name: str | None = None,
    ) -> None:
        self.commit, self.concurrency = commit, concurrency
        super().__init__(
            value=value,
            pilot=pilot,
            oversample=oversample,
            tracker_kwargs=tracker_kwargs,
            half_life=half_life,
            name=name or "stream",
        )

    def _make(self, tracker, min_rollouts: int, max_rollouts: int) -> StepPlanner:
        return StreamPlanner(
            tracker,
            pilot=self.pilot,
            commit=self.commit,
            concurrency=self.concurrency,
            min_rollouts=min_rollouts,
            max_rollouts=max_rollouts,
            value=self.value,
            priors=PriorModel(half_life=self.half_life),
        )

    def step(self, env: Env) -> StepOutcome:
        idx = self._prompts(env)
        groups, run = run_streaming(
            self.planner,
            idx.tolist(),
            env.config.budget,
            _generate(env, idx, timed=False),
            lambda pos, r: env.durations(idx[pos], r),
            capacity=env.capacity,
        )
        env.gen_seconds += run.makespan
        return self._outcome(env, idx, groups)

    def config(self) -> dict:
        out = super().config()
        del out["rounds"]
        return {**out, "commit": self.commit, "concurrency": self.concurrency}


class PipelinedStrategy(RoundsStrategy):
    """:class:`RoundsStrategy` with each step's pilot drawn in the previous step's rest
    call (:func:`~knapsack_rl.planning.base.run_pipelined`): one generation call per step
    after the first, whose ``gen_seconds`` is the makespan of the rest and the next pilot
    together. The pilot comes from the rates before the last update (stale by one step);
    this learning model has no importance ratio, so a stale group counts as a fresh one.

    Args: as :class:`RoundsStrategy` (default name ``pipelined``).
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**{"name": "pipelined", **kwargs})
        self._carry: tuple[np.ndarray, np.ndarray] | None = None

    def reset(self, env: Env) -> None:
        super().reset(env)
        self._carry = None  # (the next step's prompts, their pilot's rewards)

    def step(self, env: Env) -> StepOutcome:
        budget = env.config.budget
        idx, pilot = self._carry if self._carry is not None else (self._prompts(env), None)
        nxt = self._prompts(env)
        ahead = positions(self.planner.pilot_counts(nxt.size, budget))

        def call(pos: np.ndarray, apos: np.ndarray):
            r = _generate(env, idx, timed=False)(pos) if pos.size else np.zeros(0)
            got = _generate(env, nxt, timed=False)(apos) if apos.size else np.zeros(0)
            d = np.concatenate([env.durations(idx[pos], r), env.durations(nxt[apos], got)])
            env.gen_seconds += makespan(d, env.capacity)
            return r, got

        groups, got = run_pipelined(self.planner, idx.tolist(), budget, call, pilot, ahead)
        self._carry = (nxt, got)
        # charge the pilots to the step that trains on them
        env.spent += (0 if pilot is None else pilot.size) - ahead.size
        return self._outcome(env, idx, groups)


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
            left = spread_evenly(sub, room[keep], left)
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
                spread_evenly(trimmed, give, left)
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
    "stream": StreamStrategy,
    **{
        f"stream-{v}": _variant(
            StreamStrategy, f"Stream{v.capitalize()}", value=v, name=f"stream-{v}"
        )
        for v in VALUES
    },
    "pipelined": PipelinedStrategy,
    **{
        f"pipelined-{v}": _variant(
            PipelinedStrategy, f"Pipelined{v.capitalize()}", value=v, name=f"pipelined-{v}"
        )
        for v in VALUES
    },
    "pilot-commit": PilotCommitStrategy,
    "reinforce-ada": ReinforceAdaStrategy,
    "reinforce-ada-balance": _variant(
        ReinforceAdaStrategy, "ReinforceAdaBalance", target=None, name="reinforce-ada-balance"
    ),
}
