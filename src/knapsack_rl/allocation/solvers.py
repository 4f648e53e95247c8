"""Exact solvers for separable concave allocation problems.

The problem (``docs/method.md``, "The value"): prompt ``i`` may receive ``k_i`` extra units,
``0 <= k_i <= caps[i]``; the ``j``-th extra unit (``j = 0, 1, ...``) is worth
``gain(j, i) >= 0``, non-increasing in ``j`` (concave value). With unit costs,

    maximise sum_i sum_{j < k_i} gain(j, i)   subject to   sum_i k_i = budget

is solved exactly by taking the ``budget`` largest gains overall (concavity
makes every prompt's chosen set a prefix). We find them by a threshold search:
``S(t)``, the number of units with gain >= t, is non-increasing in t; we keep a
bracket ``t_lo < t_hi`` with ``S(t_lo) >= budget > S(t_hi)`` together with the
exact per-prompt counts at both ends (``b`` and ``a``). Every unit with gain
>= t_hi is taken; the rest of the budget goes to the best units whose gain is
in ``[t_lo, t_hi)``, which are enumerated and selected outright once few
remain. The bracket shrinks by secant steps on ``log t`` (``S`` is nearly
linear in ``log t`` for these values), safeguarded by bisection; on large
batches the first guess comes from a strided subsample. Each evaluation of
``S`` is exact: per prompt, a probe at the likely end of ``[a_i, b_i]`` then a
binary search; prompts whose count is pinned (``a_i = b_i``) drop out. Cost:
a handful of O(M) passes, memory O(M). Ties are broken by prompt index, then
unit index, so results are deterministic (and independent of the search path).

With per-unit costs ``cost[i] > 0`` and ``sum_i cost[i] * k_i <= budget``
(:func:`solve_concave_costs`) the problem is a true knapsack: we return the
greedy-by-ratio solution completed with every candidate unit that still fits,
and the LP-relaxation upper bound, so the optimality gap is known.

:func:`solve_greedy` is the same optimum written plainly (a heap of marginal
gains, one unit at a time): read it first; the tests use it as an oracle.

Gain functions are plain callables. A :class:`GainModel` may also narrow the
search (``count_bounds``) and suggest where to start (``threshold_guess``);
:class:`GeometricGains` does both for gains that are a sum of two geometric
series in the unit index (the paper's value is one), and :class:`Guided` lends
one gain function the starting guess of another.

Nothing here knows about prompts, rewards or files.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "GainFn",
    "GainModel",
    "GeometricGains",
    "Guided",
    "solve_concave",
    "solve_concave_costs",
    "solve_greedy",
    "CostSolution",
]

#: ``gain(j, idx) -> gains``: gain of unit ``j[k]`` (0-based) of prompt ``idx[k]``.
GainFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def solve_greedy(gain: GainFn, caps, budget: int) -> np.ndarray:
    """Reference solver: hand out ``budget`` units one at a time, each to the best
    marginal gain (ties: lowest prompt index). Exact for concave values; O(budget log M).

    Same contract and same tie rule as :func:`solve_concave`, which is the fast version.
    """
    caps = np.asarray(caps, dtype=np.int64)
    budget = int(budget)
    if np.any(caps < 0):
        raise ValueError("caps must be >= 0")
    if budget < 0 or budget > int(caps.sum()):
        raise ValueError(f"budget {budget} outside [0, {int(caps.sum())}] (sum of caps)")
    units = np.zeros_like(caps)

    def push(heap, i):  # offer prompt i's next unit
        if units[i] < caps[i]:
            g = float(gain(np.array([units[i]]), np.array([i]))[0])
            heapq.heappush(heap, (-g, i))

    heap: list = []
    for i in range(caps.shape[0]):
        push(heap, i)
    for _ in range(budget):
        _, i = heapq.heappop(heap)  # largest gain; ties go to the lower index
        units[i] += 1
        push(heap, i)
    return units


class GainModel:
    """A gain function (``gain(j, idx)``) that can also help the threshold search.

    Both hooks are optional speed-ups; the search is exact without them.
    """

    def __call__(self, j: np.ndarray, idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def count_bounds(self, t: float, idx: np.ndarray, lo: np.ndarray, hi: np.ndarray):
        """Narrow ``[lo, hi]``, known to hold the number of units with gain >= ``t > 0``."""
        return lo, hi

    def threshold_guess(self, caps: np.ndarray, budget: float) -> float | None:
        """A level t with about ``budget`` units of gain >= t, or None."""
        return None


class GeometricGains(GainModel):
    """Gains ``gain(j, i) = c1_i exp(n l1_i) + c2_i exp(n l2_i)``, ``n = offset + j``.

    Both terms are geometric in ``n`` (``l1, l2 <= 0``, ``c1, c2 >= 0``), so the gain
    is non-increasing, and the count of units above a level has a closed-form
    model, which :meth:`count_bounds` and :meth:`threshold_guess` use. With the
    bigger base ``Q = exp(max(l1, l2))`` and its coefficient ``c``,
    ``c Q^n <= gain(n) <= c Q^n (1 + (c_small / c) (r / Q)^offset)``.

    Args:
        c1, l1, c2, l2: arrays (M,), the two terms (``-inf`` logs are fine: a term of 0).
        offset: the ``n`` of unit ``j = 0``.
        first: if given, (M,) gains of unit 0 instead (must keep gains non-increasing).
    """

    def __init__(self, c1, l1, c2, l2, offset: int, first: np.ndarray | None = None) -> None:
        c1, l1, c2, l2 = (np.asarray(x, dtype=np.float64) for x in (c1, l1, c2, l2))
        self.offset = int(offset)
        self._first = first
        # columns: l1, l2, c1, c2 (one gather per call)
        self._table = np.stack([l1, l2, c1, c2], axis=1)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            one = l1 >= l2
            log_big = np.where(one, l1, l2)
            log_small = np.where(one, l2, l1)
            log_c = np.log(np.where(one, c1, c2))
            log_cs = np.log(np.where(one, c2, c1))
            # gain(n) = c Q^n (1 + (c_s / c) (r/Q)^n) <= c Q^n (1 + (c_s / c) (r/Q)^offset)
            log_up = np.log1p(np.exp(log_cs - log_c + max(self.offset, 1) * (log_small - log_big)))
        degenerate = ~((log_big < 0) & np.isfinite(log_c) & np.isfinite(log_up))
        self._log_big = np.where(degenerate, -1.0, log_big)
        self._log_c = np.where(degenerate, -np.inf, log_c)
        self._log_up = np.where(degenerate, 0.0, log_up)
        self._dead = ~((c1 > 0) | (c2 > 0)) | degenerate
        self._model = None  # (caps, ...) cached by threshold_guess

    def __call__(self, j: np.ndarray, idx: np.ndarray) -> np.ndarray:
        n = np.asarray(j, dtype=np.float64) + self.offset
        row = self._table[idx]
        out = np.exp(n * row[:, 0])
        out *= row[:, 2]
        out += row[:, 3] * np.exp(n * row[:, 1])
        if self._first is not None:
            out = np.where(n == self.offset, self._first[idx], out)
        return out

    def count_bounds(self, t: float, idx: np.ndarray, lo: np.ndarray, hi: np.ndarray):
        """Narrow ``[lo, hi]`` from the two curves around the gain (see the class).

        The bounds are widened by far more than the rounding of either side (so
        ill-conditioned prompts, with ``ln Q`` near 0, keep ``[lo, hi]``), then
        clipped to ``[lo, hi]``.
        """
        beta = -self._log_big[idx]
        log_c = self._log_c[idx]
        lt = math.log(t)
        with np.errstate(invalid="ignore", over="ignore"):
            # c Q^n >= t  <=>  n <= (ln c - ln t) / beta; units j = n - offset >= 0
            x = (log_c - lt) / beta + (1 - self.offset)
            err = ((abs(lt) + 1.0) + np.abs(log_c)) * 1e-13 / beta + 1e-9 * np.abs(x)
            a = np.floor(x - err)
            b = np.floor(x + (self._log_up[idx] + 1e-12) / beta + err)
        good = err < 1e6  # else (NaN, inf, ln Q ~ 0) keep [lo, hi]
        a = np.where(good, a, -np.inf)
        b = np.where(good, b, np.inf)
        b = np.where(self._dead[idx], -np.inf, b)  # every gain is 0 < t: the count is lo
        if self._first is not None:  # unit 0 may be worth more (its own value) only
            b = np.maximum(b, 1.0)
        new_lo = np.clip(a, lo, hi).astype(np.int64)
        new_hi = np.clip(b, new_lo, hi).astype(np.int64)
        return new_lo, new_hi

    def threshold_guess(self, caps: np.ndarray, budget: float) -> float | None:
        """A level t with about ``budget`` units of gain >= t (continuous model, Newton).

        Large batches use a strided subsample of at most 16384 prompts (a guess only).
        """
        m = caps.shape[0]
        model = self._model
        if model is None or model[0] is not caps:
            step = max(1, m // 16384)
            log_c, log_big, cap = self._log_c[::step], self._log_big[::step], caps[::step]
            ok = np.isfinite(log_c) & (cap > 0) & (log_big < -1e-12)
            inv = -1.0 / log_big[ok]
            # count_i(tau) ~ clip(x_i, 0, cap_i), x_i = (alpha_i - tau) / beta_i - 1/2 =
            # A_i - tau inv_i: the units on the lower curve c Q^n (the closer one in
            # practice) with gain >= e^tau, less half a unit for the floor
            alpha = log_c[ok] + (self.offset - 1) * log_big[ok]
            big_a = alpha * inv - 0.5
            model = (caps, cap.shape[0] / m, big_a, inv, cap[ok] * 1.0, alpha, -log_big[ok])
            self._model = model
        _, frac, big_a, inv, cap, alpha, beta = model
        if not cap.size:
            return None
        target = budget * frac
        tau = float(np.mean(alpha - beta * (target / cap.size + 0.5)))  # right for the mean prompt
        for _ in range(8):
            x = big_a - tau * inv
            s = float(np.minimum(np.maximum(x, 0.0), cap).sum())
            if abs(s - target) < 0.5 + 1e-3 * target:
                break
            slope = float(inv[(x > 0) & (x < cap)].sum())
            if slope <= 0:
                break
            tau += (s - target) / slope
        if not -700.0 < tau < 700.0:  # also catches NaN
            return None
        return math.exp(tau)


class Guided(GainModel):
    """``gain``, searched from the starting guess of ``guide`` (a close model of it)."""

    def __init__(self, gain: GainFn, guide: GainModel) -> None:
        self.gain = gain
        self.guide = guide

    def __call__(self, j: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return self.gain(j, idx)

    def threshold_guess(self, caps: np.ndarray, budget: float) -> float | None:
        return self.guide.threshold_guess(caps, budget)


_CANDIDATE_FLOOR = 2048  # enumerate the bracket's units once at most this many remain
_SAMPLE_MIN = 32768  # batches at least this large start from a subsample's threshold
_SAMPLE_SIZE = 8192


def _count(fn: GainFn, t: float, idx: np.ndarray, lo: np.ndarray, hi: np.ndarray, probe_hi: bool):
    """Per prompt ``idx[k]``: number of leading units with ``fn >= t``, known in ``[lo, hi]``.

    Narrows ``[lo, hi]`` with ``fn.count_bounds`` when ``fn`` is a :class:`GainModel`,
    probes the likely end first (``hi`` when ``probe_hi``, else ``lo``), then
    bisects what is left. Needs ``fn`` non-increasing in the unit index.
    """
    if isinstance(fn, GainModel) and t > 0:
        lo, hi = fn.count_bounds(t, idx, lo, hi)
    out = lo.copy()
    todo = np.flatnonzero(lo < hi)
    if not todo.size:
        return out
    lt, ht, it = lo[todo], hi[todo], idx[todo]
    if probe_hi:
        ok = fn(ht - 1, it) >= t
        lt = np.where(ok, ht, lt)
        ht = np.where(ok, ht, ht - 1)
    else:
        ok = fn(lt, it) >= t
        ht = np.where(ok, ht, lt)
        lt = np.where(ok, lt + 1, lt)
    while True:
        done = lt >= ht
        if done.any():
            out[todo[done]] = lt[done]
            keep = ~done
            todo, lt, ht, it = todo[keep], lt[keep], ht[keep], it[keep]
        if not todo.size:
            return out
        mid = (lt + ht + 1) >> 1
        ok = fn(mid - 1, it) >= t
        lt = np.where(ok, mid, lt)
        ht = np.where(ok, ht, mid - 1)


def _sample_guess(fn: GainFn, caps: np.ndarray, w: np.ndarray | None, budget: float):
    """A threshold close to the answer, from a strided subsample of prompts (or None)."""
    m = caps.shape[0]
    step = m // _SAMPLE_SIZE
    sub = np.arange(0, m, step)
    sub_caps = caps[sub]
    ws = None if w is None else w[sub]
    total = float(sub_caps.sum()) if ws is None else float((ws * sub_caps).sum())
    sub_budget = budget * sub.size / m
    if not 0 < sub_budget < total:
        return None

    def sub_fn(j, i):
        return fn(j, sub[i])

    t_lo, t_hi, *_ = _bracket(sub_fn, sub_caps, ws, sub_budget, guess=None)
    if t_lo > 0 and math.isfinite(t_hi):
        return math.sqrt(t_lo * t_hi)
    return None


def _bracket(fn: GainFn, caps: np.ndarray, w: np.ndarray | None, budget: float, guess="sample"):
    """Shrink ``[t_lo, t_hi)`` around the budget-th best unit (by ``fn``).

    Returns ``(t_lo, t_hi, a, b, s_a)``: per-prompt counts ``a`` (units with
    fn >= t_hi, all taken) and ``b`` (units with fn >= t_lo), with
    ``S(a) = s_a < budget <= S(b)``, ``S(k) = sum_i w_i k_i``, and either
    ``S(b) - S(a)`` small or ``t_lo, t_hi`` adjacent floats (all candidates tie).
    """
    m = caps.shape[0]
    unit = w is None
    a = np.zeros(m, dtype=np.int64)
    b = caps.copy()
    active = np.flatnonzero(caps > 0)
    # S(0) = everything (gains are >= 0), S(inf) = 0; finite ends are computed
    # from the gains only if a bisection step needs them (see below)
    t_lo, t_hi = 0.0, math.inf
    extremes = False
    s_a = 0.0
    s_b = total = float(caps.sum()) if unit else float((w * caps).sum())
    limit, margin = _bracket_limits(m, w, active)
    model = fn.threshold_guess if guess == "sample" and isinstance(fn, GainModel) else None
    guesses, model_target = _first_guess(fn, model, caps, w, budget, limit, guess)
    lo_set = hi_set = False  # bracket ends found by evaluation (not the initial extremes)
    # log-t step off the subsample's guess until both ends are set
    step = 0.02 if guesses and model_target is None else 0.0
    model_uses = 0
    pending = None  # S at the last model-guided level, until the next guess is made
    side = 0
    last_width = None
    slow = 0
    while active.size:
        aa, bb = a[active], b[active]
        width = float(((bb - aa) if unit else w[active] * (bb - aa)).sum())
        if width <= limit * (1.0 if unit else float(w[active].mean())):
            break
        if not t_hi > float(np.nextafter(t_lo, np.inf)):
            break  # every candidate has gain exactly t_lo
        slow = slow + 1 if last_width is not None and width > 0.5 * last_width else 0
        last_width = width
        if pending is not None:  # follow the model, its bias at the last level removed
            aim = budget - margin if pending >= budget else budget + margin
            target = aim + (model_target - pending)
            pending = None
            g = model(caps, target) if 0 < target < total else None
            if g is not None and t_lo < g < t_hi:
                guesses.append(g)
                model_target = target
        t = guesses.pop() if guesses else None
        if t is None and t_lo > 0 and math.isfinite(t_hi) and slow < 2:
            side ^= 1  # aim alternately just above and just below the budget
            target = budget + margin if side else budget - margin
            target = min(max(target, s_a + 0.05 * (s_b - s_a)), s_a + 0.95 * (s_b - s_a))
            lt_lo, lt_hi = math.log(t_lo), math.log(t_hi)
            t = math.exp(lt_lo + (s_b - target) / (s_b - s_a) * (lt_hi - lt_lo))
        if (t is None or not t_lo < t < t_hi) and not extremes:
            extremes = True
            if not math.isfinite(t_hi):  # never lowered: a = 0, all gains <= max first gain
                g_first = fn(aa, active)
                t_hi = float(np.nextafter(g_first.max(), np.inf))
            if t_lo <= 0:  # never raised: b = caps, all gains >= min last gain
                t_lo = float(fn(bb - 1, active).min())
        if t is None or not t_lo < t < t_hi:
            t, slow = _bisect(t_lo, t_hi), 0
        probe_hi = t_lo > 0 and math.log(t / t_lo) < math.log(t_hi / t)
        c = _count(fn, t, active, aa, bb, probe_hi)
        s = s_a + float((c - aa).sum() if unit else (w[active] * (c - aa)).sum())
        if s >= budget:
            t_lo, s_b, lo_set = t, s, True
            b[active] = c
            if step and not hi_set:
                guesses.append(t * math.exp(step))
        else:
            t_hi, s_a, hi_set = t, s, True
            a[active] = c
            if step and not lo_set:
                guesses.append(t * math.exp(-step))
        step = 2.0 * step if step and step < 1.0 else 0.0
        if model_target is not None and not (lo_set and hi_set) and model_uses < 4:
            model_uses += 1
            pending = s
        active = active[b[active] > a[active]]
    return t_lo, t_hi, a, b, s_a


def _bracket_limits(m: int, w: np.ndarray | None, active: np.ndarray) -> tuple[int, float]:
    """``(limit, margin)`` of :func:`_bracket`: the units left to enumerate at the end
    (wider with costs, where the candidates also feed the fill step of
    ``solve_concave_costs``: more of them, better fill), and how far from the budget
    the interpolated probes aim."""
    unit = w is None
    limit = max(_CANDIDATE_FLOOR, m // 8) if unit else max(2 * _CANDIDATE_FLOOR, m // 2)
    margin = limit / 4.0
    if unit:
        margin = max(margin, 1.0)
    else:
        margin *= float(w[active].mean()) if active.size else 1.0
    return limit, margin


def _first_guess(fn, model, caps, w, budget: float, limit: int, guess) -> tuple[list, float | None]:
    """The first threshold to try, ``([t] or [], model_target)``.

    A GainModel may carry a closed-form model of S (``threshold_guess(caps, target)``):
    :func:`_bracket` follows it, correcting its bias by the exact counts, until both
    bracket ends are set. Otherwise large batches start from a subsample.
    """
    if model is not None:
        # When the whole budget fits in one enumeration, aim a little above it: one
        # evaluation landing in [budget, limit] finishes the search.
        first = min(1.05 * budget + 8.0, 0.5 * (budget + limit)) if budget < limit else budget
        g = model(caps, first)
        if g is not None and 0.0 < g < math.inf:
            return [g], first
    elif guess == "sample" and caps.shape[0] >= _SAMPLE_MIN:
        g = _sample_guess(fn, caps, w, budget)
        if g is not None:
            return [g], None
    return [], None


def _bisect(t_lo: float, t_hi: float) -> float:
    """A threshold strictly inside ``(t_lo, t_hi)``: geometric, else arithmetic mean,
    else the next float above ``t_lo``."""
    t = math.sqrt(t_lo * t_hi) if t_lo > 0 and math.isfinite(t_hi) else 0.5 * t_hi
    if not t_lo < t < t_hi:
        t = 0.5 * (t_lo + t_hi)
    if not t_lo < t < t_hi:
        t = float(np.nextafter(t_lo, np.inf))
    return t


def _enumerate(fn: GainFn, a: np.ndarray, b: np.ndarray):
    """Units strictly after ``a`` up to ``b`` per prompt, in (prompt, unit) order, with keys."""
    act = np.flatnonzero(b > a)
    width = b[act] - a[act]
    owners = np.repeat(act, width)
    starts = np.repeat(np.cumsum(width) - width, width)
    units = np.arange(owners.size, dtype=np.int64) - starts + a[owners]
    key = fn(units, owners) if owners.size else np.zeros(0)
    return owners, units, np.asarray(key, dtype=np.float64)


def _take_best(key: np.ndarray, need: int) -> np.ndarray:
    """Positions of the ``need`` largest keys; ties go to the earliest positions."""
    if need <= 0:
        return np.zeros(0, dtype=np.int64)
    if need >= key.size:
        return np.arange(key.size)
    v = np.partition(key, key.size - need)[key.size - need]  # the need-th largest
    above = np.flatnonzero(key > v)
    at = np.flatnonzero(key == v)[: need - above.size]
    return np.concatenate([above, at])


def _ties_in_order(a: np.ndarray, b: np.ndarray, need: int) -> np.ndarray:
    """When every candidate ties: the first ``need`` units in (prompt, unit) order."""
    width = b - a
    before = np.cumsum(width) - width
    return a + np.clip(need - before, 0, width)


def solve_concave(gain: GainFn, caps: np.ndarray, budget: int) -> np.ndarray:
    """Exact maximiser of a separable concave objective under one unit budget.

    Args:
        gain: ``gain(j, idx)`` -> gains of unit ``j`` (0-based) of prompts ``idx``;
            non-negative and non-increasing in ``j``.
        caps: int array (M,), most extra units each prompt may take.
        budget: units to hand out exactly; ``0 <= budget <= caps.sum()``.

    Returns:
        int64 array (M,) of units per prompt summing to ``budget``. Among optimal
        allocations with equal gains, units go to lower prompt indices first.
    """
    caps = np.asarray(caps, dtype=np.int64)
    if np.any(caps < 0):
        raise ValueError("caps must be >= 0")
    total = int(caps.sum())
    budget = int(budget)
    if budget < 0 or budget > total:
        raise ValueError(f"budget {budget} outside [0, {total}] (sum of caps)")
    if budget == 0:
        return np.zeros_like(caps)
    if budget == total:
        return caps.copy()
    t_lo, t_hi, a, b, s_a = _bracket(gain, caps, None, budget)
    need = budget - int(s_a)
    if int((b - a).sum()) > max(_CANDIDATE_FLOOR, caps.shape[0] // 8):
        return _ties_in_order(a, b, need)  # all candidates have gain exactly t_lo
    owners, _, key = _enumerate(gain, a, b)
    return a + np.bincount(owners[_take_best(key, need)], minlength=caps.shape[0])


@dataclass(frozen=True)
class CostSolution:
    """Result of :func:`solve_concave_costs`.

    Attributes:
        units: int64 (M,), extra units per prompt (feasible).
        gain: total gain of ``units``.
        upper_bound: LP-relaxation bound on the best total gain (>= ``gain``).
        spent: ``sum(cost * units)``.
    """

    units: np.ndarray
    gain: float
    upper_bound: float
    spent: float


def solve_concave_costs(
    gain: GainFn, caps: np.ndarray, cost: np.ndarray, budget: float
) -> CostSolution:
    """Concave knapsack with per-unit costs: ``sum_i cost[i] * k_i <= budget``.

    Takes units greedily by gain/cost ratio (found by the same threshold search),
    then every remaining candidate unit that still fits, in ratio order. The
    LP-relaxation bound (the ratio-greedy value plus the fractional part of the
    first unit that does not fit) is returned beside it.

    Args:
        gain: as in :func:`solve_concave`.
        caps: int array (M,), most extra units per prompt.
        cost: float array (M,), cost of one unit of each prompt, > 0.
        budget: total cost available, >= 0.
    """
    caps = np.asarray(caps, dtype=np.int64)
    cost = np.asarray(cost, dtype=np.float64)
    m = caps.shape[0]
    if np.any(cost <= 0) or not np.all(np.isfinite(cost)):
        raise ValueError("costs must be finite and > 0")
    if budget < 0:
        raise ValueError(f"budget {budget} must be >= 0")
    full = float((cost * caps).sum())
    if budget >= full:
        units = caps.copy()
        total = _total_gain(gain, units)
        return CostSolution(units, total, total, full)

    def ratio(j, i):
        return gain(j, i) / cost[i]

    _, _, a, b, _ = _bracket(ratio, caps, cost, float(budget))
    owners, units_idx, key = _enumerate(ratio, a, b)
    order = np.argsort(-key, kind="stable")  # ratio order; ties: prompt, then unit
    owners = owners[order]
    g = gain(units_idx[order], owners) if owners.size else np.zeros(0)
    base_cost = float((cost * a).sum())
    c = cost[owners]
    cum = base_cost + np.cumsum(c)
    fit = int(np.searchsorted(cum, budget, side="right"))  # units of the greedy prefix
    units = a + np.bincount(owners[:fit], minlength=m)
    value = _total_gain(gain, a) + float(g[:fit].sum())
    spent = float(cum[fit - 1]) if fit else base_cost
    bound = value
    if fit < owners.size:
        bound += float(g[fit]) * (budget - spent) / float(c[fit])
    # Fill: later candidates that still fit (same prompt has same cost, so a
    # skipped unit's successors are skipped too: chosen sets stay prefixes).
    blocked = np.zeros(m, dtype=bool)
    cmin = float(cost.min())
    for k in range(fit, owners.size):
        i = owners[k]
        if blocked[i]:
            continue
        if spent + c[k] <= budget:
            units[i] += 1
            spent += float(c[k])
            value += float(g[k])
        else:
            blocked[i] = True
        if budget - spent < cmin:
            break
    return CostSolution(units, value, max(bound, value), spent)


def _total_gain(gain: GainFn, units: np.ndarray) -> float:
    owners = np.repeat(np.arange(units.shape[0]), units)
    if owners.size == 0:
        return 0.0
    starts = np.repeat(np.cumsum(units) - units, units)
    j = np.arange(owners.size) - starts
    return float(gain(j, owners).sum())
