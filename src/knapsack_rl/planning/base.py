"""The one shape every planner has: ``start``, ``record``, ``finish``, and a state dict.

A planner decides, while a step (or an evaluation) runs, which prompts get the
next rollouts. The engine asks it what to generate and tells it what came back:

    sends = planner.start(prompt_ids, budget)   # int64 (k,): prompt positions to request now
    while the engine has work:
        i, outcome = next completion            # in any order
        sends = planner.record(i, outcome)      # positions to request now (may be empty)
    groups = planner.finish()                   # per-prompt results; trackers update once

Positions index ``prompt_ids``; one entry of ``sends`` is one rollout, so a prompt
asked for 3 rollouts appears 3 times. ``record`` also takes arrays (a batch of
completions at once). A planner never asks for more than ``budget`` rollouts.

Planners: :class:`knapsack_rl.RoundPlanner` (rounds with barriers),
:class:`knapsack_rl.StreamPlanner` (plans as completions return),
:class:`knapsack_rl.OneShotPlanner` (one allocation from the tracker's estimates) and,
for evaluation, :class:`knapsack_rl.testtime.TestTimePlanner` (samples per question;
its outcomes are answers, and ``finish`` returns the chosen ones).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "EngineRun",
    "Planner",
    "positions",
    "run_batched",
    "run_pipelined",
    "run_streaming",
    "makespan",
]


@runtime_checkable
class Planner(Protocol):
    """What every planner implements (see the module docstring)."""

    def start(self, prompt_ids: Sequence[Hashable], budget: int) -> np.ndarray:
        """Begin over ``prompt_ids`` with ``budget`` rollouts; positions to request now."""
        ...

    def record(self, index: Any, outcome: Any) -> np.ndarray:
        """Results of requested rollouts (a position and its outcome, or arrays of both);
        returns the positions to request now (int64, possibly empty)."""
        ...

    def finish(self) -> dict[str, np.ndarray]:
        """End the step: per-prompt results (``successes``, ``attempts``, ...)."""
        ...

    def state_dict(self) -> dict:
        """The planner's state between steps, as plain data (for checkpoints)."""
        ...

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        ...


def positions(counts) -> np.ndarray:
    """Prompt positions of ``counts`` rollouts per prompt, grouped by prompt:
    ``positions([2, 0, 1]) -> [0, 0, 2]``."""
    c = np.asarray(counts, dtype=np.int64).reshape(-1)
    return np.repeat(np.arange(c.size, dtype=np.int64), c)


def run_batched(
    planner: Planner,
    prompt_ids: Sequence[Hashable],
    budget: int,
    generate: Callable[[np.ndarray], np.ndarray],
) -> dict[str, np.ndarray]:
    """Drive ``planner`` with an engine that generates a batch at a time (a barrier per
    call): ``generate(positions) -> rewards`` (one per position, in order)."""
    sends = planner.start(prompt_ids, budget)
    while sends.size:
        rewards = np.asarray(generate(sends), dtype=np.float64).reshape(-1)
        sends = planner.record(sends, rewards)
    return planner.finish()


def run_pipelined(
    planner: Planner,
    prompt_ids: Sequence[Hashable],
    budget: int,
    generate: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    pilot_rewards=None,
    ahead=None,
) -> tuple[Any, np.ndarray | None]:
    """Drive a two-round planner (:class:`knapsack_rl.RoundPlanner`) for one step of the
    pipelined layout: the step's pilot was generated in the previous step's last call,
    and this step's last call also generates the next step's pilot. A step then has one
    barrier, and the slots the rest leaves idle while its longest completions finish
    run the next pilot instead.

    ``generate(positions, ahead) -> (rewards, ahead_rewards)`` is one generation call:
    ``positions`` over this step's prompts, ``ahead`` over the next step's (empty except
    in the step's last call). ``pilot_rewards``: the rewards of the positions
    ``planner.start`` returns, in that order (None: generate them here in a call of
    their own, as the first step must). ``ahead``: the next step's pilot positions
    (``RoundPlanner.pilot_counts``; None: no next step). Returns what
    ``planner.finish()`` returns and the rewards of ``ahead`` (None without it).
    """
    sends = planner.start(prompt_ids, budget)
    ahead = np.zeros(0, np.int64) if ahead is None else np.asarray(ahead, np.int64).reshape(-1)
    spent, ahead_rewards = sends.size, None
    if pilot_rewards is not None:
        r = np.asarray(pilot_rewards, dtype=np.float64).reshape(-1)
        if r.size != sends.size:
            raise ValueError(
                f"pilot_rewards: {r.size} rewards carried for a pilot of {sends.size} rollouts"
            )
        sends = planner.record(sends, r)
        spent += sends.size
    while sends.size:
        last = spent >= budget and ahead_rewards is None  # nothing is requested after it
        rewards, got = generate(sends, ahead if last else ahead[:0])
        if last:
            ahead_rewards = np.asarray(got, dtype=np.float64).reshape(-1)
        sends = planner.record(sends, np.asarray(rewards, dtype=np.float64).reshape(-1))
        spent += sends.size
    if ahead_rewards is None and ahead.size:  # the step stopped short of its budget
        _, got = generate(ahead[:0], ahead)
        ahead_rewards = np.asarray(got, dtype=np.float64).reshape(-1)
    return planner.finish(), (ahead_rewards if ahead.size else None)


@dataclass
class EngineRun:
    """What an engine run of one step took (modelled seconds).

    Attributes:
        makespan: seconds from the first request to the last completion.
        busy: slot-seconds spent generating (sum of the rollouts' durations).
        order: prompt position of each completion, in completion order.
    """

    makespan: float
    busy: float
    order: np.ndarray


def makespan(durations, capacity: int | None = None) -> float:
    """Seconds an engine with ``capacity`` slots (None: one per rollout) takes to run
    rollouts of ``durations`` (seconds, (N,)) submitted together, first come first served."""
    d = np.asarray(durations, dtype=np.float64).reshape(-1)
    if capacity is None or capacity >= d.size:
        return float(d.max()) if d.size else 0.0
    slots = [0.0] * int(capacity)
    for x in d:
        heapq.heapreplace(slots, slots[0] + x)
    return max(slots)


def run_streaming(
    planner: Planner,
    prompt_ids: Sequence[Hashable],
    budget: int,
    generate: Callable[[np.ndarray], np.ndarray],
    duration: Callable[[np.ndarray, np.ndarray], np.ndarray],
    capacity: int | None = None,
    sends: np.ndarray | None = None,
) -> tuple[Any, EngineRun]:
    """Drive ``planner`` as a continuous-batching engine would: requests queue first come
    first served for ``capacity`` slots (None: no limit), and every completion is recorded
    the moment it finishes, so the planner's answer is submitted at once.

    ``generate(positions) -> rewards`` is called once per batch of requests the planner
    released together (a CPU stand-in generates them there); ``duration(positions,
    rewards) -> seconds`` models how long each would run on the engine. ``sends``: the
    positions ``planner.start`` already returned (None: call it here). Returns what
    ``planner.finish()`` returns and the :class:`EngineRun`.
    """
    queue: deque = deque()
    running: list = []
    now, busy, seq, order = 0.0, 0.0, 0, []

    def submit(pos: np.ndarray) -> None:
        if pos.size:
            r = np.asarray(generate(pos), dtype=np.float64).reshape(-1)
            d = np.asarray(duration(pos, r), dtype=np.float64).reshape(-1)
            queue.extend(zip(pos.tolist(), r.tolist(), d.tolist(), strict=True))

    def fill() -> None:
        nonlocal seq, busy
        while queue and (capacity is None or len(running) < capacity):
            i, r, d = queue.popleft()
            heapq.heappush(running, (now + d, seq, i, r))
            busy += d
            seq += 1

    submit(planner.start(prompt_ids, budget) if sends is None else np.asarray(sends, np.int64))
    fill()
    while running:
        now, _, i, r = heapq.heappop(running)
        order.append(i)
        submit(planner.record(i, r))
        fill()
    groups = planner.finish()
    return groups, EngineRun(now, busy, np.asarray(order, dtype=np.int64))
