"""Per-prompt Beta priors for a step: informative from step 1, and never stuck.

A prompt's prior for this step is built in three layers (docs/method.md, "Priors"):

1. **Pool.** Prompts are pooled by a group key (level, source, topic; one pool if
   none is given). Each pool's ``Beta(a, b)`` is fitted by empirical Bayes (method of
   moments) to the tracker's counts of the pool's prompts, falling back to the
   global fit when a pool has fewer than ``min_pool`` seen prompts, and is worth at
   most ``pool_strength`` rollouts, so a prompt's own draws soon outweigh it.
2. **Offline rate.** A prompt with a known pass rate ``r`` (a dataset column, a
   difficulty, a previous run's tracker) starts from ``Beta(k r, k (1 - r))`` with
   ``k = strength`` pseudo-rollouts, instead of its pool.
3. **Own evidence, decayed.** The tracker's counts for the prompt are added with
   weight ``0.5 ** (age / half_life)``, ``age`` the steps since it was last drawn, so a
   prompt last seen at 0/8 or 8/8 drifts back to its pool and is explored again.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from knapsack_rl.allocation.values import fit_beta_prior

__all__ = ["PriorModel"]

_EPS = 0.05  # smallest prior parameter (keeps Beta moments finite for rates of 0 or 1)


@dataclass
class PriorModel:
    """Builds per-prompt priors from pools, offline rates and decayed evidence.

    Attributes:
        half_life: steps after which a prompt's own evidence counts half (None: never decays).
        strength: pseudo-rollouts behind an offline pass rate.
        pool_strength: most pseudo-rollouts behind a pool's prior (a pool fitted to
            prompts that all failed so far must not rule out its next prompt).
        min_pool: seen prompts a pool needs before it gets its own fit.
    """

    half_life: float | None = 20.0
    strength: float = 4.0
    pool_strength: float = 8.0
    min_pool: int = 8
    offline: dict = field(default_factory=dict)  # id -> pass rate in [0, 1]
    groups: dict = field(default_factory=dict)  # id -> group key
    last_seen: dict = field(default_factory=dict)  # id -> step last drawn

    def __post_init__(self) -> None:
        if self.half_life is not None and not (
            self.half_life > 0 and math.isfinite(self.half_life)
        ):
            raise ValueError(f"half_life must be > 0 (or None), got {self.half_life}")
        if not (self.strength > 0 and math.isfinite(self.strength)):
            raise ValueError(f"strength must be > 0, got {self.strength}")

    def set_offline(self, ids: Sequence[Hashable], rates) -> None:
        """Offline pass rates (shape (M,), each in [0, 1]; NaN means unknown)."""
        r = np.asarray(rates, dtype=np.float64).reshape(-1)
        if r.shape[0] != len(ids):
            raise ValueError(f"rates: length {r.shape[0]} does not match {len(ids)} ids")
        for pid, v in zip(ids, r, strict=True):
            if np.isnan(v):
                continue
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"offline pass rate of prompt {pid!r} is {v}, outside [0, 1]")
            self.offline[pid] = float(v)

    def set_offline_from_tracker(self, tracker) -> int:
        """Offline pass rates from a previous run's tracker (e.g. ``load_tracker(path)``):
        every prompt it has seen gets its estimate. Returns how many prompts were set."""
        ids = tracker.ids
        if ids:
            self.set_offline(ids, np.clip(tracker.stats(ids).p, 0.0, 1.0))
        return len(ids)

    def set_groups(self, ids: Sequence[Hashable], keys: Sequence[Hashable]) -> None:
        """Group key per prompt (e.g. its level or source)."""
        if len(keys) != len(ids):
            raise ValueError(f"keys: length {len(keys)} does not match {len(ids)} ids")
        self.groups.update(zip(ids, keys, strict=True))

    def mark_seen(self, ids: Sequence[Hashable], step: int) -> None:
        for pid in ids:
            self.last_seen[pid] = int(step)

    def priors(self, ids: Sequence[Hashable], successes, attempts, step: int, known=None):
        """``(a0, b0)``, float arrays (M,): the prompts' priors for ``step``.

        ``successes`` and ``attempts`` are the tracker's (effective) counts for ``ids``;
        ``known`` = ``(ids, successes, attempts)`` of every prompt the tracker has seen,
        to which the pools are fitted (the batch itself when None).
        """
        ids = list(ids)
        s = np.asarray(successes, dtype=np.float64)
        n = np.asarray(attempts, dtype=np.float64)
        k_ids, k_s, k_n = (ids, s, n) if known is None else known
        k_s = np.asarray(k_s, dtype=np.float64)
        k_n = np.asarray(k_n, dtype=np.float64)
        m = len(ids)
        a0 = np.empty(m)
        b0 = np.empty(m)
        glob = fit_beta_prior(k_s, k_n)
        # pools by exact key (codes, not hashes: hash(-1) == hash(-2) in CPython)
        codes: dict = {}
        k_code = np.array([codes.setdefault(self.groups.get(pid), len(codes)) for pid in k_ids])
        code = np.array([codes.setdefault(self.groups.get(pid), len(codes)) for pid in ids])
        for c in np.unique(code):
            idx = np.flatnonzero(code == c)
            key = self.groups.get(ids[idx[0]])
            pool = glob
            if key is not None:
                member = (k_code == c) & (k_n > 0)
                if int(member.sum()) >= self.min_pool:
                    pool = fit_beta_prior(k_s[member], k_n[member], default=glob)
            a, b = pool
            shrink = min(1.0, self.pool_strength / (a + b))
            a0[idx], b0[idx] = max(a * shrink, _EPS), max(b * shrink, _EPS)
        for i, pid in enumerate(ids):
            r = self.offline.get(pid)
            if r is not None:
                a0[i] = max(self.strength * r, _EPS)
                b0[i] = max(self.strength * (1.0 - r), _EPS)
        weight = np.ones(m)
        if self.half_life is not None:
            age = np.array([step - self.last_seen.get(pid, step) for pid in ids], dtype=np.float64)
            weight = 0.5 ** (np.maximum(age, 0.0) / self.half_life)
        return a0 + weight * s, b0 + weight * (n - s)

    def state_dict(self) -> dict:
        """JSON-able state (ids are kept as they are; use str or int ids to save as JSON)."""
        return {
            "half_life": self.half_life,
            "strength": self.strength,
            "pool_strength": self.pool_strength,
            "min_pool": self.min_pool,
            "offline": [[k, v] for k, v in self.offline.items()],
            "groups": [[k, v] for k, v in self.groups.items()],
            "last_seen": [[k, v] for k, v in self.last_seen.items()],
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> PriorModel:
        def back(rows):
            return {(tuple(k) if isinstance(k, list) else k): v for k, v in rows}

        return cls(
            half_life=state["half_life"],
            strength=state["strength"],
            pool_strength=state.get("pool_strength", 8.0),
            min_pool=state["min_pool"],
            offline=back(state["offline"]),
            groups=back(state["groups"]),
            last_seen=back(state["last_seen"]),
        )
