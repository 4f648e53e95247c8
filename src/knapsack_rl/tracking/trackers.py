"""Per-prompt success-rate trackers.

A tracker is fed each step's rewards (``update(prompt_ids, rewards)``, one entry
per rollout; all rollouts of one prompt in one call form that prompt's *visit*)
and answers, for any list of prompt ids, what the allocation methods need
(``stats(ids)`` -> :class:`TrackerStats`; ``allocation_inputs(ids, method)`` ->
keyword arguments for :func:`knapsack_rl.allocate`).

- :class:`PaperTracker`: the reference estimator (spec section 4).
- :class:`WindowTracker`: mean of each prompt's last K rewards.
- :class:`BetaTracker`: discounted Beta posterior per prompt with an
  empirical-Bayes prior fitted to every prompt seen, so unseen prompts have a
  prior from step 1.

Prompt ids (str or int) map to dense indices; state lives in numpy arrays that
grow by doubling, so updates cost O(visit size) and millions of prompts are
fine. ``save(path)`` writes atomically; ``load_tracker(path)`` restores the
exact state (resuming gives identical allocations).
"""

from __future__ import annotations

import io
import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from knapsack_rl.allocation.values import fit_beta_prior
from knapsack_rl.atomic import atomic_write_bytes

__all__ = [
    "TrackerStats",
    "Tracker",
    "PaperTracker",
    "WindowTracker",
    "BetaTracker",
    "TRACKERS",
    "make_tracker",
    "load_tracker",
    "binarize_rewards",
]


def binarize_rewards(rewards, threshold: float | None = None) -> np.ndarray:
    """Rewards -> successes (int8 0/1).

    Without a threshold, rewards must be in {0, 1} or {-1, 0, 1} (-1 maps to 0,
    as the reference does); anything else raises ValueError. With a threshold,
    success means ``reward >= threshold``. NaN is always an error.
    """
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if r.size and not np.all(np.isfinite(r)):
        i = int(np.flatnonzero(~np.isfinite(r))[0])
        raise ValueError(f"rewards[{i}] = {r[i]} is not finite")
    if threshold is not None:
        return (r >= threshold).astype(np.int8)
    ok = (r == 0) | (r == 1) | (r == -1)
    if not np.all(ok):
        i = int(np.flatnonzero(~ok)[0])
        raise ValueError(f"rewards[{i}] = {r[i]} is not binary (0/1 or -1/0/1); pass a threshold")
    return (r == 1).astype(np.int8)


@dataclass(frozen=True)
class TrackerStats:
    """Per-prompt state for a list of ids (arrays of shape (M,)).

    Attributes:
        p: success-rate estimate in [0, 1].
        valid: whether the estimate is trusted (enough observations).
        successes, attempts: (effective) counts behind the estimate.
        prior: ``(a0, b0)`` Beta prior (``BetaTracker`` only), else None.
    """

    p: np.ndarray
    valid: np.ndarray
    successes: np.ndarray
    attempts: np.ndarray
    prior: tuple[float, float] | None = None


class Tracker:
    """Base class: id -> dense index bookkeeping, reward grouping, persistence."""

    kind = "base"

    def __init__(self, threshold: float | None = None) -> None:
        self.threshold = threshold
        self._index: dict[Hashable, int] = {}
        self._ids: list = []
        self._size = 0

    # -- bookkeeping -------------------------------------------------------
    def __len__(self) -> int:
        """Number of prompts seen."""
        return len(self._ids)

    def __contains__(self, pid) -> bool:
        return _norm(pid) in self._index

    def _grow(self, n: int) -> None:  # subclasses resize their arrays
        raise NotImplementedError

    def _lookup(self, ids: Sequence, create: bool) -> np.ndarray:
        out = np.empty(len(ids), dtype=np.int64)
        index = self._index
        for k, pid in enumerate(ids):
            pid = _norm(pid)
            j = index.get(pid)
            if j is None:
                if not create:
                    out[k] = -1
                    continue
                j = len(self._ids)
                index[pid] = j
                self._ids.append(pid)
            out[k] = j
        if len(self._ids) > self._size or self._size == 0:  # (stats before any update too)
            new = max(len(self._ids), 2 * self._size, 64)
            self._grow(new)
            self._size = new
        return out

    def _visits(self, prompt_ids, rewards):
        """Group a step's rollouts into visits.

        Returns ``(dense, group, succ)``: the dense index of each visited prompt
        (in order of first appearance), the visit number of each rollout, and
        the successes. Integer ids (and numpy string arrays) are grouped with
        numpy; other ids with a dict. Both give the same visits and indices.
        """
        succ = binarize_rewards(rewards, self.threshold)
        arr = None
        if isinstance(prompt_ids, np.ndarray):
            if prompt_ids.ndim == 1 and prompt_ids.dtype.kind in "iuU":
                arr = prompt_ids
        elif isinstance(prompt_ids, (list, tuple)) and prompt_ids:
            if isinstance(prompt_ids[0], (int, np.integer)) and not isinstance(prompt_ids[0], bool):
                cand = np.asarray(prompt_ids)
                if cand.ndim == 1 and cand.dtype.kind in "iu":
                    arr = cand
        if arr is not None:
            if arr.size != succ.size:
                raise ValueError(f"{arr.size} prompt ids but {succ.size} rewards")
            uniq, first, inv = np.unique(arr, return_index=True, return_inverse=True)
            by_first = np.argsort(first, kind="stable")
            rank = np.empty(uniq.size, dtype=np.int64)
            rank[by_first] = np.arange(uniq.size)
            dense = self._lookup(uniq[by_first].tolist(), create=True)
            return dense, rank[inv.reshape(-1)], succ
        ids = list(prompt_ids)
        if len(ids) != succ.size:
            raise ValueError(f"{len(ids)} prompt ids but {succ.size} rewards")
        groups: dict = {}
        group = np.empty(len(ids), dtype=np.int64)
        for k, pid in enumerate(ids):
            group[k] = groups.setdefault(_norm(pid), len(groups))
        dense = self._lookup(list(groups), create=True)
        return dense, group, succ

    # -- API ----------------------------------------------------------------
    def update(self, prompt_ids: Sequence, rewards) -> None:
        """Record one step: ``rewards[k]`` belongs to ``prompt_ids[k]``.

        All rollouts of one prompt in one call form that prompt's visit, in
        their given order. Cost O(K log K) for K rollouts, vectorised over visits.
        """
        dense, group, succ = self._visits(prompt_ids, rewards)
        if dense.size:
            self._record_visits(dense, group, succ)

    def _record_visits(self, dense: np.ndarray, group: np.ndarray, succ: np.ndarray) -> None:
        """Record every visit of one step (default: one :meth:`_record` per visit)."""
        order = np.argsort(group, kind="stable")
        ends = np.cumsum(np.bincount(group, minlength=dense.size))
        starts = ends - np.bincount(group, minlength=dense.size)
        for j, a, b in zip(dense.tolist(), starts.tolist(), ends.tolist()):
            self._record(j, succ[order[a:b]])

    def _record(self, j: int, s: np.ndarray) -> None:
        raise NotImplementedError

    def stats(self, ids: Sequence) -> TrackerStats:
        """Estimates for ``ids`` (unseen ids get the tracker's default)."""
        raise NotImplementedError

    def allocation_inputs(self, ids: Sequence, method: str) -> dict:
        """Keyword arguments for :func:`knapsack_rl.allocate` / ``Allocator.allocate``."""
        st = self.stats(ids)
        if method == "paper":
            return {"p": st.p, "valid": st.valid}
        if method == "bayes":
            out = {"successes": st.successes, "attempts": st.attempts}
            if st.prior is not None:
                out["prior"] = st.prior
            return out
        return {"p": st.p}

    # -- persistence --------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _config(self) -> dict:
        return {"threshold": self.threshold}

    def state_dict(self) -> dict:
        """Plain-data state: ``{'kind', 'config', 'ids', 'arrays'}``."""
        n = len(self._ids)
        return {
            "kind": self.kind,
            "config": self._config(),
            "ids": list(self._ids),
            "arrays": {k: v[:n].copy() for k, v in self._arrays().items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict` output (same kind)."""
        if state["kind"] != self.kind:
            raise ValueError(f"state is for a {state['kind']!r} tracker, not {self.kind!r}")
        ids = [_norm(i) for i in state["ids"]]
        self._ids = ids
        self._index = {pid: k for k, pid in enumerate(ids)}
        self._size = 0
        self._grow(max(len(ids), 64))
        self._size = max(len(ids), 64)
        arrays = self._arrays()
        for k, v in state["arrays"].items():
            arrays[k][: len(ids)] = v
        self._restore_extra(state)

    def _restore_extra(self, state: dict) -> None:
        pass

    def save(self, path) -> None:
        """Write the state to ``path`` (.npz) atomically."""
        st = self.state_dict()
        buf = io.BytesIO()
        meta = json.dumps({"kind": st["kind"], "config": st["config"], "ids": st["ids"]})
        np.savez(buf, __meta__=np.array(meta), **st["arrays"])
        atomic_write_bytes(path, buf.getvalue())


def _ring_write(ring, head, fill, dense, group, succ):
    """Append each visit's last ``ring.shape[1]`` successes to its prompt's ring buffer.

    Returns the visit sizes. Same result as appending visit by visit.
    """
    width = ring.shape[1]
    size = np.bincount(group, minlength=dense.size)
    order = np.argsort(group, kind="stable")
    g = group[order]
    start = np.cumsum(size) - size
    pos = np.arange(g.size) - start[g]  # position within the visit
    skip = np.maximum(size - width, 0)  # older rollouts that the ring cannot hold
    keep = pos >= skip[g]
    g, pos = g[keep], pos[keep] - skip[g[keep]]
    j = dense[g]
    ring[j, (head[j] + pos) % width] = succ[order[keep]]
    tail = size - skip
    head[dense] = (head[dense] + tail) % width
    fill[dense] = np.minimum(width, fill[dense] + tail)
    return size


def _norm(pid):
    if isinstance(pid, np.integer):
        return int(pid)
    if isinstance(pid, np.str_):
        return str(pid)
    return pid


class PaperTracker(Tracker):
    """The reference estimator (spec section 4).

    After a visit, p = mean of that visit's rewards; if the visit had fewer than
    ``pool`` (16) rollouts, p = mean of the most recent ``pool`` rewards pooled
    across visits. Valid once ``min_observations`` (8) rewards were seen.
    Unseen or invalid prompts report p = 0 (the reference stores them so).
    """

    kind = "paper"

    def __init__(self, pool: int = 16, min_observations: int = 8, threshold=None) -> None:
        super().__init__(threshold)
        if pool < 1 or min_observations < 1:
            raise ValueError("pool and min_observations must be >= 1")
        self.pool = int(pool)
        self.min_observations = int(min_observations)
        self._grow(0)

    def _grow(self, n: int) -> None:
        old = getattr(self, "_ring", None)
        ring = np.zeros((n, self.pool), dtype=np.int8)
        fill = np.zeros(n, dtype=np.int64)
        head = np.zeros(n, dtype=np.int64)
        count = np.zeros(n, dtype=np.int64)
        p = np.zeros(n, dtype=np.float64)
        if old is not None:
            k = old.shape[0]
            ring[:k], fill[:k], head[:k] = old, self._fill, self._head
            count[:k], p[:k] = self._count, self._p
        self._ring, self._fill, self._head, self._count, self._p = ring, fill, head, count, p

    def _record(self, j: int, s: np.ndarray) -> None:
        k = s.size
        if k == 0:
            return
        tail = s[-self.pool :]
        pos = (self._head[j] + np.arange(tail.size)) % self.pool
        self._ring[j, pos] = tail
        self._head[j] = (self._head[j] + tail.size) % self.pool
        self._fill[j] = min(self.pool, self._fill[j] + tail.size)
        self._count[j] += k
        if k >= self.pool:
            self._p[j] = float(s.mean())
        else:
            self._p[j] = float(self._ring[j, : self._fill[j]].mean())  # last `pool` pooled

    def _record_visits(self, dense, group, succ) -> None:
        size = _ring_write(self._ring, self._head, self._fill, dense, group, succ)
        self._count[dense] += size
        visit_mean = np.bincount(group, weights=succ, minlength=dense.size) / size
        pooled = self._ring[dense].sum(axis=1) / self._fill[dense]
        self._p[dense] = np.where(size >= self.pool, visit_mean, pooled)

    def stats(self, ids: Sequence) -> TrackerStats:
        j = self._lookup(list(ids), create=False)
        seen = j >= 0
        jj = np.where(seen, j, 0)
        count = np.where(seen, self._count[jj], 0)
        valid = count >= self.min_observations
        p = np.where(valid, self._p[jj], 0.0)
        fill = np.where(seen, self._fill[jj], 0)
        succ = np.where(seen, self._ring[jj].sum(axis=1), 0).astype(np.float64)
        # counts behind the pooled window (what bayes would see from this tracker)
        return TrackerStats(p=p, valid=valid, successes=succ, attempts=fill.astype(np.float64))

    def _arrays(self):
        return {
            "ring": self._ring,
            "fill": self._fill,
            "head": self._head,
            "count": self._count,
            "p": self._p,
        }

    def _config(self):
        return {**super()._config(), "pool": self.pool, "min_observations": self.min_observations}


class WindowTracker(Tracker):
    """Mean of each prompt's last ``window`` rewards.

    Valid once ``min_observations`` rewards were seen. Unseen prompts report
    p = the mean success rate over all prompts seen (0.5 before any data).
    """

    kind = "window"

    def __init__(self, window: int = 32, min_observations: int = 8, threshold=None) -> None:
        super().__init__(threshold)
        if window < 1 or min_observations < 1:
            raise ValueError("window and min_observations must be >= 1")
        self.window = int(window)
        self.min_observations = int(min_observations)
        self._grow(0)

    def _grow(self, n: int) -> None:
        old = getattr(self, "_ring", None)
        ring = np.zeros((n, self.window), dtype=np.int8)
        fill = np.zeros(n, dtype=np.int64)
        head = np.zeros(n, dtype=np.int64)
        if old is not None:
            k = old.shape[0]
            ring[:k], fill[:k], head[:k] = old, self._fill, self._head
        self._ring, self._fill, self._head = ring, fill, head

    def _record(self, j: int, s: np.ndarray) -> None:
        tail = s[-self.window :]
        pos = (self._head[j] + np.arange(tail.size)) % self.window
        self._ring[j, pos] = tail
        self._head[j] = (self._head[j] + tail.size) % self.window
        self._fill[j] = min(self.window, self._fill[j] + tail.size)

    def _record_visits(self, dense, group, succ) -> None:
        _ring_write(self._ring, self._head, self._fill, dense, group, succ)

    def stats(self, ids: Sequence) -> TrackerStats:
        j = self._lookup(list(ids), create=False)
        seen = j >= 0
        jj = np.where(seen, j, 0)
        n = len(self._ids)
        fill = np.where(seen, self._fill[jj], 0).astype(np.float64)
        succ = np.where(seen, self._ring[jj].sum(axis=1), 0).astype(np.float64)
        tot = float(self._fill[:n].sum())
        default = float(self._ring[:n].sum()) / tot if tot > 0 else 0.5
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(fill > 0, succ / np.maximum(fill, 1), default)
        return TrackerStats(p=p, valid=fill >= self.min_observations, successes=succ, attempts=fill)

    def _arrays(self):
        return {"ring": self._ring, "fill": self._fill, "head": self._head}

    def _config(self):
        return {
            **super()._config(),
            "window": self.window,
            "min_observations": self.min_observations,
        }


class BetaTracker(Tracker):
    """Discounted Beta posterior per prompt with an empirical-Bayes prior.

    Per prompt, evidence ``(s_i, f_i)`` decays by ``discount`` at each visit
    before the visit's successes and failures are added, so old evidence fades
    as the policy moves. The prior ``Beta(a0, b0)`` is fitted by moments to the
    evidence of all prompts seen (see :func:`knapsack_rl.allocation.values.fit_beta_prior`),
    or fixed with ``prior=(a0, b0)``. ``p`` is the posterior mean, so unseen
    prompts get the prior mean from step 1; every prompt is ``valid``.
    """

    kind = "beta"

    def __init__(
        self,
        discount: float = 0.9,
        prior: tuple[float, float] | None = None,
        threshold=None,
    ) -> None:
        super().__init__(threshold)
        if not 0.0 < discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {discount}")
        if prior is not None and not (prior[0] > 0 and prior[1] > 0):
            raise ValueError(f"prior must have a0 > 0 and b0 > 0, got {prior}")
        self.discount = float(discount)
        self.fixed_prior = None if prior is None else (float(prior[0]), float(prior[1]))
        self._grow(0)

    def _grow(self, n: int) -> None:
        old = getattr(self, "_s", None)
        s, f = np.zeros(n), np.zeros(n)
        if old is not None:
            k = old.shape[0]
            s[:k], f[:k] = old, self._f
        self._s, self._f = s, f

    def _record(self, j: int, s: np.ndarray) -> None:
        k = int(s.sum())
        self._s[j] = self.discount * self._s[j] + k
        self._f[j] = self.discount * self._f[j] + (s.size - k)

    def _record_visits(self, dense, group, succ) -> None:
        k = np.bincount(group, weights=succ, minlength=dense.size)
        size = np.bincount(group, minlength=dense.size)
        self._s[dense] = self.discount * self._s[dense] + k
        self._f[dense] = self.discount * self._f[dense] + (size - k)

    def prior(self) -> tuple[float, float]:
        """The prior in force: fixed, or fitted to every prompt seen so far."""
        if self.fixed_prior is not None:
            return self.fixed_prior
        n = len(self._ids)
        return fit_beta_prior(self._s[:n], self._s[:n] + self._f[:n])

    def stats(self, ids: Sequence) -> TrackerStats:
        j = self._lookup(list(ids), create=False)
        seen = j >= 0
        jj = np.where(seen, j, 0)
        s = np.where(seen, self._s[jj], 0.0)
        f = np.where(seen, self._f[jj], 0.0)
        a0, b0 = self.prior()
        p = (a0 + s) / (a0 + b0 + s + f)
        return TrackerStats(
            p=p, valid=np.ones(len(j), dtype=bool), successes=s, attempts=s + f, prior=(a0, b0)
        )

    def _arrays(self):
        return {"s": self._s, "f": self._f}

    def _config(self):
        return {**super()._config(), "discount": self.discount, "prior": self.fixed_prior}


TRACKERS = {"paper": PaperTracker, "window": WindowTracker, "beta": BetaTracker}


def make_tracker(kind: str, **kwargs) -> Tracker:
    """Build a tracker by name (``paper``, ``window``, ``beta``)."""
    if kind not in TRACKERS:
        raise ValueError(f"unknown tracker {kind!r}; expected one of {', '.join(TRACKERS)}")
    return TRACKERS[kind](**kwargs)


def load_tracker(path) -> Tracker:
    """Load a tracker written by :meth:`Tracker.save`."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        arrays = {k: z[k] for k in z.files if k != "__meta__"}
    cfg = dict(meta["config"])
    if meta["kind"] == "beta" and cfg.get("prior") is not None:
        cfg["prior"] = tuple(cfg["prior"])
    tracker = make_tracker(meta["kind"], **cfg)
    tracker.load_state_dict({"kind": meta["kind"], "ids": meta["ids"], "arrays": arrays})
    return tracker
