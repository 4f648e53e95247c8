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
:class:`knapsack_rl.StreamPlanner` (plans as completions return) and
:class:`knapsack_rl.OneShotPlanner` (one allocation from the tracker's estimates).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Planner", "positions", "run_batched"]


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
