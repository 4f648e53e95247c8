"""Per-prompt success-rate trackers.

A tracker is fed each step's rewards (``update(prompt_ids, rewards)``, one entry
per rollout; all rollouts of one prompt in one call form that prompt's *visit*)
and answers, for any list of prompt ids, ``stats(ids)`` -> a
:class:`~knapsack_rl.allocation.stats.PromptStats` (estimates, validity, counts,
prior), which :meth:`knapsack_rl.Allocator.allocate` takes as it is. Trackers
know nothing about the allocation methods.

- :class:`PaperTracker`: the reference estimator (``docs/method.md``).
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
import zipfile
from collections.abc import Hashable, Sequence

import numpy as np

from knapsack_rl import defaults
from knapsack_rl.allocation.stats import PromptStats
from knapsack_rl.allocation.values import fit_beta_prior
from knapsack_rl.atomic import atomic_write_bytes
from knapsack_rl.io import InputError

__all__ = [
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


def __getattr__(name: str):
    if name == "TrackerStats":  # the old name of PromptStats
        from knapsack_rl.deprecation import deprecated

        deprecated("knapsack_rl.tracking.TrackerStats", "knapsack_rl.allocation.PromptStats")
        return PromptStats
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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

    @property
    def ids(self) -> list:
        """Every prompt id seen so far, in first-seen order."""
        return list(self._ids)

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
        """Record every visit of one step: ``succ[group == k]`` is prompt ``dense[k]``'s."""
        raise NotImplementedError

    def stats(self, ids: Sequence) -> PromptStats:
        """Estimates for ``ids`` (unseen ids get the tracker's default)."""
        raise NotImplementedError

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
        ids = [_norm(_hashable(i)) for i in state["ids"]]
        if len(set(ids)) != len(ids):
            raise ValueError("state has duplicate prompt ids")
        self._ids = ids
        self._index = {pid: k for k, pid in enumerate(ids)}
        self._size = 0
        self._grow(max(len(ids), 64))
        self._size = max(len(ids), 64)
        arrays = self._arrays()
        given = state["arrays"]
        for k, dest in arrays.items():
            if k not in given:
                raise ValueError(f"state has no array {k!r}")
            v = np.asarray(given[k])
            if v.shape != (len(ids),) + dest.shape[1:]:
                raise ValueError(
                    f"array {k!r} has shape {v.shape}, expected {(len(ids),) + dest.shape[1:]}"
                )
            if not np.all(np.isfinite(v)) or np.any(v < 0):
                raise ValueError(f"array {k!r} has negative or non-finite entries")
            dest[: len(ids)] = v
        self._check_state()

    def _check_state(self) -> None:
        """Raise ValueError when the loaded arrays are inconsistent."""

    def save(self, path) -> None:
        """Write the state to ``path`` (.npz) atomically."""
        st = self.state_dict()
        buf = io.BytesIO()
        meta = json.dumps({"kind": st["kind"], "config": st["config"], "ids": st["ids"]})
        np.savez(buf, __meta__=np.array(meta), **st["arrays"])
        atomic_write_bytes(path, buf.getvalue())


class _Ring:
    """Each prompt's last ``width`` successes (int8 rows), with ``fill`` and ``head``.

    Shared by :class:`PaperTracker` and :class:`WindowTracker`.
    """

    def __init__(self, width: int) -> None:
        self.width = int(width)
        self.grow(0)

    def grow(self, n: int) -> None:
        old = getattr(self, "ring", None)
        ring = np.zeros((n, self.width), dtype=np.int8)
        fill = np.zeros(n, dtype=np.int64)
        head = np.zeros(n, dtype=np.int64)
        if old is not None:
            k = old.shape[0]
            ring[:k], fill[:k], head[:k] = old, self.fill, self.head
        self.ring, self.fill, self.head = ring, fill, head

    def write(self, dense, group, succ) -> np.ndarray:
        """Append each visit's last ``width`` successes to its prompt's row.

        Returns the visit sizes. Same result as appending visit by visit.
        """
        width = self.width
        size = np.bincount(group, minlength=dense.size)
        order = np.argsort(group, kind="stable")
        g = group[order]
        start = np.cumsum(size) - size
        pos = np.arange(g.size) - start[g]  # position within the visit
        skip = np.maximum(size - width, 0)  # older rollouts that the ring cannot hold
        keep = pos >= skip[g]
        g, pos = g[keep], pos[keep] - skip[g[keep]]
        j = dense[g]
        self.ring[j, (self.head[j] + pos) % width] = succ[order[keep]]
        tail = size - skip
        self.head[dense] = (self.head[dense] + tail) % width
        self.fill[dense] = np.minimum(width, self.fill[dense] + tail)
        return size

    def counts(self, j: np.ndarray, seen: np.ndarray):
        """``(successes, attempts)`` in the rows ``j`` (0 where not ``seen``), as floats."""
        fill = np.where(seen, self.fill[j], 0).astype(np.float64)
        succ = np.where(seen, self.ring[j].sum(axis=1), 0).astype(np.float64)
        return succ, fill

    def arrays(self) -> dict[str, np.ndarray]:
        return {"ring": self.ring, "fill": self.fill, "head": self.head}

    def check(self, n: int) -> None:
        if np.any(self.ring[:n] > 1):
            raise ValueError("array 'ring' holds values other than 0 and 1")
        if np.any(self.fill[:n] > self.width) or np.any(self.head[:n] >= self.width):
            raise ValueError(f"arrays 'fill'/'head' do not fit a ring of width {self.width}")


def _hashable(pid):
    """Ids come back from JSON with tuples as lists: make them tuples again."""
    if isinstance(pid, list):
        return tuple(_hashable(x) for x in pid)
    return pid


def _norm(pid):
    if isinstance(pid, np.integer):
        return int(pid)
    if isinstance(pid, np.str_):
        return str(pid)
    return pid


class PaperTracker(Tracker):
    """The reference estimator (``docs/method.md``, estimators).

    After a visit, p = mean of that visit's rewards; if the visit had fewer than
    ``pool`` (16) rollouts, p = mean of the most recent ``pool`` rewards pooled
    across visits. Valid once ``min_observations`` (8) rewards were seen.
    Unseen or invalid prompts report p = 0 (the reference stores them so).
    """

    kind = "paper"

    def __init__(
        self,
        pool: int = defaults.POOL,
        min_observations: int = defaults.MIN_OBSERVATIONS,
        threshold=None,
    ) -> None:
        super().__init__(threshold)
        if pool < 1 or min_observations < 1:
            raise ValueError("pool and min_observations must be >= 1")
        self.pool = int(pool)
        self.min_observations = int(min_observations)
        self._buf = _Ring(self.pool)
        self._grow(0)

    def _grow(self, n: int) -> None:
        self._buf.grow(n)
        count = np.zeros(n, dtype=np.int64)
        p = np.zeros(n, dtype=np.float64)
        old = getattr(self, "_count", None)
        if old is not None:
            k = old.shape[0]
            count[:k], p[:k] = old, self._p
        self._count, self._p = count, p

    def _record_visits(self, dense, group, succ) -> None:
        size = self._buf.write(dense, group, succ)
        self._count[dense] += size
        visit_mean = np.bincount(group, weights=succ, minlength=dense.size) / size
        pooled = self._buf.ring[dense].sum(axis=1) / self._buf.fill[dense]
        self._p[dense] = np.where(size >= self.pool, visit_mean, pooled)

    def stats(self, ids: Sequence) -> PromptStats:
        ids = list(ids)
        j = self._lookup(ids, create=False)
        seen = j >= 0
        jj = np.where(seen, j, 0)
        count = np.where(seen, self._count[jj], 0)
        valid = count >= self.min_observations
        p = np.where(valid, self._p[jj], 0.0)
        # counts behind the pooled window (what bayes would see from this tracker)
        succ, fill = self._buf.counts(jj, seen)
        return PromptStats(ids=ids, p=p, valid=valid, successes=succ, attempts=fill)

    def _arrays(self):
        return {**self._buf.arrays(), "count": self._count, "p": self._p}

    def _check_state(self) -> None:
        n = len(self._ids)
        self._buf.check(n)
        if np.any(self._p[:n] > 1):
            raise ValueError("array 'p' has entries above 1")
        if np.any(self._buf.fill[:n] > self._count[:n]):
            raise ValueError("array 'fill' exceeds array 'count'")

    def _config(self):
        return {**super()._config(), "pool": self.pool, "min_observations": self.min_observations}


class WindowTracker(Tracker):
    """Mean of each prompt's last ``window`` rewards.

    Valid once ``min_observations`` rewards were seen. Unseen prompts report
    p = the mean success rate over all prompts seen (0.5 before any data).
    """

    kind = "window"

    def __init__(
        self,
        window: int = defaults.WINDOW,
        min_observations: int = defaults.MIN_OBSERVATIONS,
        threshold=None,
    ) -> None:
        super().__init__(threshold)
        if window < 1 or min_observations < 1:
            raise ValueError("window and min_observations must be >= 1")
        self.window = int(window)
        self.min_observations = int(min_observations)
        self._buf = _Ring(self.window)

    def _grow(self, n: int) -> None:
        self._buf.grow(n)

    def _record_visits(self, dense, group, succ) -> None:
        self._buf.write(dense, group, succ)

    def stats(self, ids: Sequence) -> PromptStats:
        ids = list(ids)
        j = self._lookup(ids, create=False)
        seen = j >= 0
        jj = np.where(seen, j, 0)
        n = len(self._ids)
        succ, fill = self._buf.counts(jj, seen)
        tot = float(self._buf.fill[:n].sum())
        default = float(self._buf.ring[:n].sum()) / tot if tot > 0 else 0.5
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(fill > 0, succ / np.maximum(fill, 1), default)
        valid = fill >= self.min_observations
        return PromptStats(ids=ids, p=p, valid=valid, successes=succ, attempts=fill)

    def _arrays(self):
        return self._buf.arrays()

    def _check_state(self) -> None:
        self._buf.check(len(self._ids))

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
        discount: float = defaults.BETA_DISCOUNT,
        prior: tuple[float, float] | None = None,
        threshold=None,
    ) -> None:
        super().__init__(threshold)
        if discount == "auto":
            raise ValueError(
                "discount='auto' was removed in 0.2.0 (measured, not adopted); "
                "give a number in (0, 1]"
            )
        if isinstance(discount, (bool, str)) or not 0.0 < float(discount) <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {discount!r}")
        if prior is not None and not (prior[0] > 0 and prior[1] > 0):
            raise ValueError(f"prior must have a0 > 0 and b0 > 0, got {prior}")
        self.discount = float(discount)
        self.fixed_prior = None if prior is None else (float(prior[0]), float(prior[1]))
        self._grow(0)

    def _grow(self, n: int) -> None:
        new = [np.zeros(n), np.zeros(n)]  # discounted successes, failures
        old = getattr(self, "_s", None)
        if old is not None:
            k = old.shape[0]
            new[0][:k], new[1][:k] = self._s, self._f
        self._s, self._f = new

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

    def stats(self, ids: Sequence) -> PromptStats:
        ids = list(ids)
        j = self._lookup(ids, create=False)
        seen = j >= 0
        jj = np.where(seen, j, 0)
        s = np.where(seen, self._s[jj], 0.0)
        f = np.where(seen, self._f[jj], 0.0)
        a0, b0 = self.prior()
        p = (a0 + s) / (a0 + b0 + s + f)
        valid = np.ones(len(j), dtype=bool)
        return PromptStats(ids=ids, p=p, valid=valid, successes=s, attempts=s + f, prior=(a0, b0))

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
    """Load a tracker written by :meth:`Tracker.save`.

    A file that is not such a tracker (missing, corrupt, truncated, inconsistent)
    raises :class:`~knapsack_rl.io.InputError` naming the file.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files") or "__meta__" not in z.files:
                raise ValueError("no tracker metadata")
            meta = json.loads(str(z["__meta__"]))
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
        if not isinstance(meta, dict) or not {"kind", "config", "ids"} <= set(meta):
            raise ValueError("metadata lacks kind, config or ids")
        cfg = dict(meta["config"])
        if meta["kind"] == "beta" and cfg.get("prior") is not None:
            cfg["prior"] = tuple(cfg["prior"])
        tracker = make_tracker(meta["kind"], **cfg)
        tracker.load_state_dict({"kind": meta["kind"], "ids": meta["ids"], "arrays": arrays})
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile) as e:
        reason = "not a .npz file" if "pickled" in str(e) else str(e) or type(e).__name__
        raise InputError(f"{path}: not a valid tracker file ({reason})") from None
    return tracker
