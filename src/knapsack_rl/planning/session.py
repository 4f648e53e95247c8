"""What happens to a step's budget, for every engine: one config, one session.

:class:`AllocationConfig` holds the allocation settings (method, tracker, priors,
rounds or streaming, bounds, value) with one validation. The reference trainer,
TRL's and verl's adapters embed it or map their settings onto it.
:class:`AllocationSession` is the state of one run: the tracker and the planner.
An engine adapter drives it step by step, keeping only what is its engine's own
(batch layout, uids, generation calls, checkpoint hooks):

    session = AllocationSession(AllocationConfig(method="rounds"))
    sends = session.start(prompt_ids, budget)      # prompt positions to generate now
    while sends.size:                              # a batch per call (a barrier) ...
        sends = session.record(sends, generate_and_score(sends))
    step = session.finish()                        # StepRecord: groups, pilot, metrics
    session.save(folder); session.load(folder)     # tracker + planner files

With a streaming engine, ``record`` takes one completion at a time and returns what
to submit next (``method="stream"``). The planner behind the session:

- ``uniform``, ``knapsack``, ``bayes``, ``paper``: :class:`OneShotPlanner`, one
  allocation from the tracker's estimates; everything is requested at ``start``.
- ``rounds``: :class:`RoundPlanner`, a pilot then the rest, with a barrier between.
- ``stream``: :class:`StreamPlanner`, the rest planned as completions return.
- ``pipelined``: :class:`RoundPlanner` as ``rounds``, but the engine generates each
  step's pilot inside the previous step's last call, so a step has one barrier
  (:func:`knapsack_rl.planning.base.run_pipelined`; the pilot is one policy update
  old, so the engine keeps its behaviour log-probs for the importance ratio).

``rounds``, ``stream`` and ``pipelined`` draw ``oversample`` times the prompts of a uniform step
for the same budget (:meth:`AllocationConfig.step_prompts`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from knapsack_rl import defaults
from knapsack_rl.allocation import METHODS, Allocation
from knapsack_rl.metrics import allocation_stats, pilot_stats, tie_break_stats

__all__ = [
    "AllocationConfig",
    "AllocationSession",
    "SessionBacked",
    "StepRecord",
    "ALLOCATION_METHODS",
    "TRACKER_FILE",
    "PLANNER_FILE",
]

#: one-shot methods of :class:`knapsack_rl.Allocator`, then the planned ones
ALLOCATION_METHODS = (*METHODS, "rounds", "stream", "pipelined")
PLANNED = ("rounds", "stream", "pipelined")
TRACKER_FILE = "knapsack_tracker.npz"
"""Name of the tracker state file in a checkpoint folder."""
PLANNER_FILE = "knapsack_planner.json"
"""Name of the planner state file (priors, last visits) in a checkpoint folder."""


@dataclass
class AllocationConfig:
    """The allocation settings shared by the trainer, TRL and verl.

    Attributes:
        method: ``uniform``, ``knapsack``, ``bayes``, ``paper`` (one shot from the
            tracker), ``rounds`` (a pilot, then the rest), ``stream`` (the rest
            planned as completions return) or ``pipelined`` (``rounds`` with each
            step's pilot generated in the previous step's last call).
        tracker: success-rate tracker: ``auto`` (paper -> paper, bayes and the planned
            methods -> beta, else window), ``paper``, ``window`` or ``beta``.
        tracker_kwargs: extra tracker arguments (e.g. ``{"discount": 0.8}``).
        allocator_kwargs: extra :class:`knapsack_rl.Allocator` settings.
        value: value model of the planned methods (``grpo`` or ``paper``).
        rounds: generation rounds per step of ``rounds`` and ``pipelined`` (>= 2 there).
        pilot: rollouts per prompt in the pilot (the planned methods).
        oversample: the planned methods draw this many times a uniform step's prompts.
        commit: ``stream``: share of pilot results after which the whole budget is out.
        concurrency: ``stream``: most rollouts in flight (the engine's slots); None: any.
        prior_half_life: steps until a prompt's own evidence counts half in its prior.
        prior_tracker: a previous run's tracker file whose estimates seed the priors.
        rollouts_per_prompt: the uniform group size n (a uniform step's budget is M * n).
        min_rollouts, max_rollouts: bounds on every prompt's group in a step.
        success_threshold: a rollout counts as a success when its reward is >= this.
    """

    method: str = defaults.METHOD
    tracker: str = "auto"
    tracker_kwargs: dict = field(default_factory=dict)
    allocator_kwargs: dict = field(default_factory=dict)
    value: str = defaults.VALUE
    rounds: int = defaults.ROUNDS
    pilot: int = defaults.PILOT
    oversample: int = defaults.OVERSAMPLE
    commit: float = defaults.COMMIT
    concurrency: int | None = None
    prior_half_life: float = defaults.PRIOR_HALF_LIFE
    prior_tracker: str | None = None
    rollouts_per_prompt: int = defaults.ROLLOUTS_PER_PROMPT
    min_rollouts: int = defaults.MIN_ROLLOUTS
    max_rollouts: int = defaults.MAX_ROLLOUTS
    success_threshold: float = defaults.SUCCESS_THRESHOLD

    # ------------------------------------------------------------------ checks
    def problems(self) -> list[str]:
        """Every problem with these settings, one line each naming the field."""
        from knapsack_rl.allocation.rounds import check_value
        from knapsack_rl.tracking import TRACKERS

        out: list[str] = []
        if self.method not in ALLOCATION_METHODS:
            out.append(
                f"method: unknown {self.method!r}; expected one of {', '.join(ALLOCATION_METHODS)}"
            )
        try:
            check_value(self.value)
        except ValueError as e:
            out.append(str(e))
        if self.tracker not in ("auto", *TRACKERS):
            out.append(
                f"tracker: unknown {self.tracker!r}; expected one of auto, {', '.join(TRACKERS)}"
            )
        for name in ("rounds", "pilot", "oversample", "rollouts_per_prompt", "min_rollouts"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                out.append(f"{name} must be an integer >= 1, got {v!r}")
        if self.method == "pipelined" and isinstance(self.rounds, int) and self.rounds < 2:
            out.append(
                f"rounds must be >= 2 for method pipelined (a pilot to carry), got {self.rounds}"
            )
        hi = self.max_rollouts
        if (
            isinstance(hi, bool)
            or not isinstance(hi, int)
            or (isinstance(self.min_rollouts, int) and hi < self.min_rollouts)
        ):
            out.append(f"max_rollouts must be an integer >= min_rollouts, got {hi!r}")
        c = self.concurrency
        if c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
            out.append(f"concurrency must be an integer >= 1 or None, got {c!r}")
        for name, ok in (
            ("commit", lambda v: 0 < v <= 1),
            ("prior_half_life", lambda v: v > 0),
            ("success_threshold", lambda v: True),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                out.append(f"{name} must be a finite number, got {v!r}")
            elif not ok(v):
                rng = "in (0, 1]" if name == "commit" else "> 0"
                out.append(f"{name} must be {rng}, got {v}")
        for name in ("tracker_kwargs", "allocator_kwargs"):
            if not isinstance(getattr(self, name), dict):
                out.append(f"{name} must be a mapping, got {getattr(self, name)!r}")
        if not out:
            for what, build in (("tracker_kwargs", self.make_tracker), ("", self.make_allocator)):
                try:
                    build()
                except (TypeError, ValueError) as e:
                    out.append(f"{what or 'allocator_kwargs'}: {e}")
        return out

    def validate(self) -> AllocationConfig:
        """Raise ValueError with the first problem (see :meth:`problems`); returns self."""
        found = self.problems()
        if found:
            raise ValueError(found[0])
        return self

    def check_step(self, prompts: int, budget: int) -> str | None:
        """Why ``budget`` rollouts over ``prompts`` prompts cannot work (None if they can)."""
        lo, hi = prompts * self.min_rollouts, prompts * self.max_rollouts
        if not lo <= budget <= hi:
            return (
                f"budget: {budget} rollouts per step cannot be met by {prompts} prompts with "
                f"{self.min_rollouts} <= rollouts <= {self.max_rollouts} (needs {lo}..{hi})"
            )
        if self.method in ("rounds", "pipelined") and self.rounds > 1:
            if prompts * self.pilot >= budget:
                return (
                    f"pilot: {prompts} prompts x {self.pilot} pilot rollouts use the whole budget "
                    f"of {budget}, leaving nothing for later rounds (lower pilot or oversample)"
                )
        return None

    # ------------------------------------------------------------------ derived
    @property
    def planned(self) -> bool:
        """True for the methods that plan within the step (``rounds``, ``stream``, ``pipelined``)."""
        return self.method in PLANNED

    def step_prompts(self, uniform_prompts: int) -> int:
        """Prompts a step draws: a uniform step's, times ``oversample`` when planned."""
        return uniform_prompts * (self.oversample if self.planned else 1)

    @property
    def tracker_kind(self) -> str:
        """The tracker actually used (resolves ``auto``)."""
        if self.tracker != "auto":
            return self.tracker
        if self.method == "paper":
            return "paper"
        return "beta" if self.method == "bayes" or self.planned else "window"

    def make_tracker(self):
        from knapsack_rl.tracking import make_tracker

        kw = {"threshold": self.success_threshold, **self.tracker_kwargs}
        if kw.get("prior") is not None:
            kw["prior"] = tuple(kw["prior"])
        return make_tracker(self.tracker_kind, **kw)

    def make_allocator(self):
        from knapsack_rl.allocation import Allocator

        kw = dict(self.allocator_kwargs)
        if kw.get("prior") is not None:
            kw["prior"] = tuple(kw["prior"])
        return Allocator(
            method="knapsack" if self.planned else self.method,
            min_rollouts=self.min_rollouts,
            max_rollouts=self.max_rollouts,
            rollouts_per_prompt=self.rollouts_per_prompt,
            **kw,
        )

    def make_planner(self, tracker):
        """The planner of :attr:`method` over ``tracker`` (see the module docstring)."""
        from knapsack_rl.planning import OneShotPlanner, RoundPlanner, StreamPlanner
        from knapsack_rl.tracking.priors import PriorModel

        if not self.planned:
            return OneShotPlanner(tracker, self.make_allocator())
        common = dict(
            min_rollouts=self.min_rollouts,
            max_rollouts=self.max_rollouts,
            value=self.value,
            pilot=self.pilot,
            priors=PriorModel(half_life=self.prior_half_life),
        )
        if self.method in ("rounds", "pipelined"):
            planner = RoundPlanner(tracker, rounds=self.rounds, **common)
        else:
            planner = StreamPlanner(
                tracker, concurrency=self.concurrency, commit=self.commit, **common
            )
        if self.prior_tracker is not None:
            from knapsack_rl.tracking import load_tracker

            planner.priors.set_offline_from_tracker(load_tracker(self.prior_tracker))
        return planner

    @classmethod
    def from_mapping(cls, values: dict, where: str = "") -> AllocationConfig:
        """From a mapping with exactly these keys (unknown keys are a ValueError)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{where}unknown setting(s) {unknown}; known: {sorted(names)}")
        return cls(**values)


@dataclass
class StepRecord:
    """One finished step: per-prompt arrays of shape (M,).

    ``rollouts``/``successes`` are the final groups; ``pilot``/``pilot_successes`` the
    first request of a planned step (None for one-shot methods); ``p`` the success rate
    the plan started from (prior mean, or the allocator's estimate); ``metrics`` the
    step's allocation metrics (``rollouts_per_prompt/*``, pilot and tie-break stats).
    """

    prompt_ids: list
    rollouts: np.ndarray
    successes: np.ndarray
    p: np.ndarray
    pilot: np.ndarray | None = None
    pilot_successes: np.ndarray | None = None
    prior_a: np.ndarray | None = None
    prior_b: np.ndarray | None = None
    allocation: Allocation | None = None
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


class SessionBacked:
    """For engine adapters: ``tracker`` and ``planner`` come from ``self.session`` (an
    :class:`AllocationSession`, for the planned methods) or, for one-shot methods
    (``session`` None), from ``self._tracker`` with no planner."""

    session: AllocationSession | None
    _tracker: Any

    @property
    def tracker(self):
        """The run's success-rate tracker (the session's for planned methods)."""
        return self._tracker if self.session is None else self.session.tracker

    @property
    def planner(self):
        """The session's planner, or None for one-shot methods."""
        return None if self.session is None else self.session.planner


class AllocationSession:
    """The tracker and planner of one run, driven one step at a time.

    Args:
        config: the allocation settings (validated here).
        tracker: an existing tracker (default: a fresh one from the config).
    """

    def __init__(self, config: AllocationConfig, tracker=None) -> None:
        self.config = config.validate()
        self.tracker = tracker if tracker is not None else config.make_tracker()
        self.planner = config.make_planner(self.tracker)
        self._open = False

    @property
    def priors(self):
        """The planner's :class:`~knapsack_rl.tracking.priors.PriorModel` (None if one-shot)."""
        return getattr(self.planner, "priors", None)

    def set_prior_columns(self, prompt_ids: Sequence[Hashable], groups=None, rates=None) -> None:
        """Pool keys and offline pass rates (None or NaN: unknown) of prompts, for the priors."""
        if self.priors is None:
            return
        if groups is not None:
            self.priors.set_groups(list(prompt_ids), list(groups))
        if rates is not None:
            self.priors.set_offline(
                list(prompt_ids), [np.nan if v is None else float(v) for v in rates]
            )

    # ------------------------------------------------------------------ a step
    def start(self, prompt_ids: Sequence[Hashable], budget: int) -> np.ndarray:
        """Begin a step; returns the prompt positions to generate now (int64)."""
        t0 = time.perf_counter()
        self._ids = list(prompt_ids)
        sends = self.planner.start(self._ids, int(budget))
        m = len(self._ids)
        self._first = np.bincount(sends, minlength=m)  # the pilot: the first request
        self._seen = np.zeros(m, dtype=np.int64)
        self._first_won = np.zeros(m, dtype=np.int64)
        self._seconds = time.perf_counter() - t0
        self._open = True
        return sends

    def record(self, index, rewards) -> np.ndarray:
        """Rewards of generated rollouts (positions and rewards, or one of each); returns the
        positions to generate now (possibly empty)."""
        t0 = time.perf_counter()
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        r = np.asarray(rewards, dtype=np.float64).reshape(-1)
        more = self.planner.record(idx, r)
        if idx.size:  # the first results of each prompt, up to its pilot, are its pilot's
            from knapsack_rl.tracking.trackers import binarize_rewards

            order = np.argsort(idx, kind="stable")
            si = idx[order]
            starts = np.flatnonzero(np.r_[True, si[1:] != si[:-1]])
            within = np.arange(si.size) - np.repeat(starts, np.diff(np.r_[starts, si.size]))
            rank = self._seen[si] + within
            keep = rank < self._first[si]
            won = binarize_rewards(r[order], self.tracker.threshold)
            self._first_won += np.bincount(
                si[keep], weights=won[keep], minlength=len(self._ids)
            ).astype(np.int64)
            self._seen += np.bincount(idx, minlength=len(self._ids))
        self._seconds += time.perf_counter() - t0
        return more

    def drop(self, index) -> np.ndarray:
        """Rollouts that came back without a usable reward (failed, unscorable): no longer
        pending, not evidence (a dropped pilot rollout still ends the prompt's pilot: later
        results are not counted as the pilot's); returns the positions to generate now."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        more = self.planner.drop(idx)
        if idx.size:
            self._seen += np.bincount(idx, minlength=len(self._ids))
        return more

    def finish(self) -> StepRecord:
        """End the step: one tracker update; the step's groups and metrics."""
        t0 = time.perf_counter()
        groups = self.planner.finish()
        cfg = self.config
        n, s = groups["attempts"], groups["successes"]
        rec = StepRecord(prompt_ids=self._ids, rollouts=n, successes=s, p=np.zeros(len(n)))
        rec.metrics = {
            k: v for k, v in allocation_stats(n).items() if k.startswith("rollouts_per_prompt/")
        }
        if cfg.planned:
            a, b = self.planner.prior_a, self.planner.prior_b
            rec.prior_a, rec.prior_b, rec.p = a, b, a / (a + b)
            if cfg.method == "stream" or cfg.rounds > 1:
                rec.pilot, rec.pilot_successes = self._first.copy(), self._first_won.copy()
                rec.metrics.update(pilot_stats(rec.pilot, rec.pilot_successes, n))
                rec.metrics.update(tie_break_stats(a, b, rec.pilot, rec.pilot_successes, n, s))
        else:
            rec.allocation = self.planner.allocation
            rec.p = np.asarray(rec.allocation.p, dtype=np.float64)
        rec.seconds = self._seconds + time.perf_counter() - t0
        self._open = False
        return rec

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Tracker and planner state, as plain data."""
        return {"tracker": self.tracker.state_dict(), "planner": self.planner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tracker.load_state_dict(state["tracker"])
        self.planner.load_state_dict(state["planner"])

    def save(self, folder: str | os.PathLike) -> str:
        """Write the tracker (:data:`TRACKER_FILE`) and planner (:data:`PLANNER_FILE`) into
        ``folder``, atomically; returns the tracker file's path."""
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, TRACKER_FILE)
        self.tracker.save(path)
        if self.config.planned:
            self.planner.save(os.path.join(folder, PLANNER_FILE))
        return path

    def load(self, folder: str | os.PathLike) -> bool:
        """Restore what :meth:`save` wrote; False (nothing changed) without a tracker file.
        A tracker of another kind than the config's is a ValueError."""
        from knapsack_rl.tracking import load_tracker

        path = os.path.join(folder, TRACKER_FILE)
        if not os.path.exists(path):
            return False
        tracker = load_tracker(path)
        if tracker.kind != self.tracker.kind:
            raise ValueError(
                f"{path} holds a {tracker.kind!r} tracker but the config asks for "
                f"tracker={self.tracker.kind!r}"
            )
        self.tracker = tracker
        self.planner.tracker = tracker
        if self.config.planned:
            self.planner.load(os.path.join(folder, PLANNER_FILE))
        return True
