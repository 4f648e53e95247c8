"""The generation-time model: how long a step's generation would take on a GPU
inference engine (vLLM, SGLang), where a step waits for its longest completion.

Each rollout gets a completion length in tokens from :class:`LengthModel`
(heavy-tailed, longer for failed answers, a persistent length per prompt, capped
like ``max_new_tokens``) and runs for ``length * seconds_per_token`` on an engine
with ``capacity`` slots, first come first served
(:func:`knapsack_rl.planning.base.makespan` for a barrier call,
:func:`knapsack_rl.planning.base.run_streaming` for a planner that streams). The
reference trainer reports each step's modelled makespan as ``time/gpu_generate``
and the simulator as ``gen_seconds``. With ``method="stream"`` completions also
come back in the order of this clock.

Parameters (assumptions, stated as such; the shape follows published RL length
statistics): lengths are lognormal within a prompt (``sigma=0.6``) around a
per-prompt median that is itself lognormal across prompts (``prompt_sigma=0.5``);
failed answers run ``fail_ratio=1.5`` times longer, as incorrect reasoning traces
are longer than correct ones in math RL (Fatemi et al. 2025, "Concise Reasoning via
Reinforcement Learning", arXiv 2504.05185); long tails within a prompt's group are
the norm (DARTS, arXiv 2605.30859). The median of a correct answer is 1,000 tokens,
the cap 8,192, and one token of one sequence takes 20 ms at full batch (about 50
tokens/s per sequence, a 7B model on one H100 under vLLM: an assumption). Only
ratios between methods are reported, so the time scale cancels.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["GpuClock", "LengthModel", "prompt_units"]


@dataclass(frozen=True)
class LengthModel:
    """Completion lengths in tokens (see the module docstring for the parameters)."""

    median_tokens: float = 1000.0
    sigma: float = 0.6
    prompt_sigma: float = 0.5
    fail_ratio: float = 1.5
    max_tokens: int = 8192

    def sample(self, prompt_unit, failed, rng: np.random.Generator) -> np.ndarray:
        """Tokens (N,) for rollouts of prompts at quantiles ``prompt_unit`` (N,) in (0, 1)
        of the prompts' length distribution, ``failed`` (N,) bool."""
        from scipy.special import ndtri

        u = np.asarray(prompt_unit, dtype=np.float64)
        mu = (
            math.log(self.median_tokens)
            + self.prompt_sigma * ndtri(u)
            + np.where(np.asarray(failed, dtype=bool), math.log(self.fail_ratio), 0.0)
        )
        tokens = np.exp(mu + self.sigma * rng.standard_normal(u.shape))
        return np.minimum(np.ceil(tokens), self.max_tokens)


@dataclass
class GpuClock:
    """Modelled seconds per rollout.

    Attributes:
        seed: seed of the length draws (one stream per step and generation call).
        lengths: the :class:`LengthModel`.
        seconds_per_token: decode time of one token of one sequence at full batch.
    """

    seed: int = 0
    lengths: LengthModel = LengthModel()
    seconds_per_token: float = 0.02

    def durations(self, prompt_ids: Sequence[Hashable], failed, step: int, call: int) -> np.ndarray:
        """Seconds (N,) each rollout of prompts ``prompt_ids`` (N,) would run; ``failed``
        (N,) bool; ``call`` numbers the generation calls within step ``step``."""
        unit = np.array([_unit(self.seed, pid) for pid in prompt_ids], dtype=np.float64)
        return self.durations_at(unit, failed, step, call)

    def durations_at(self, units, failed, step: int, call: int) -> np.ndarray:
        """:meth:`durations` for prompts given by their places ``units`` (N,) in (0, 1)
        (:func:`prompt_units`), for callers that keep them."""
        rng = np.random.default_rng([self.seed, 7_777, step, call])
        return self.lengths.sample(units, failed, rng) * self.seconds_per_token


def _unit(seed: int, pid: Hashable) -> float:
    """A prompt's fixed place in (0, 1) of the prompts' length distribution."""
    return (zlib.crc32(f"{seed}:{pid!r}".encode()) + 0.5) / 2**32


def prompt_units(seed: int, n: int) -> np.ndarray:
    """Places in (0, 1) of prompts ``0 .. n-1`` (float (n,)), as :class:`GpuClock` gives them."""
    return np.array([_unit(seed, i) for i in range(n)], dtype=np.float64)
