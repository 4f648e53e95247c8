"""Exact solvers for separable concave allocation problems.

The problem (spec section 2): prompt ``i`` may receive ``k_i`` extra units,
``0 <= k_i <= caps[i]``; the ``j``-th extra unit (``j = 0, 1, ...``) is worth
``gain(j, i) >= 0``, non-increasing in ``j`` (concave value). With unit costs,

    maximise sum_i sum_{j < k_i} gain(j, i)   subject to   sum_i k_i = budget

is solved exactly by taking the ``budget`` largest gains overall (concavity
makes every prompt's chosen set a prefix). We find them by a threshold search:
bisect a level ``t`` over the float64 bit patterns (at most 64 steps) while
keeping, per prompt, how many gains are ``>= t`` at the bracket ends; prompts
whose count is pinned drop out, and once few candidate units remain between
the bracket ends they are sorted outright. Cost: O(M log U) gain evaluations
per step on a shrinking active set, memory O(M). Ties are broken by prompt
index, then unit index, so results are deterministic.

With per-unit costs ``cost[i] > 0`` and ``sum_i cost[i] * k_i <= budget``
(:func:`solve_concave_costs`) the problem is a true knapsack: we return the
greedy-by-ratio solution completed with every unit that still fits, and the
LP-relaxation upper bound, so the optimality gap is known.

Nothing here knows about prompts, rewards or files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["GainFn", "solve_concave", "solve_concave_costs", "CostSolution"]

#: ``gain(j, idx) -> gains``: gain of unit ``j[k]`` (0-based) of prompt ``idx[k]``.
GainFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

_CANDIDATE_FLOOR = 4096


def _key_to_float(key: int) -> float:
    return float(np.array([key], dtype=np.int64).view(np.float64)[0])


def _float_to_key(x: float) -> int:
    return int(np.array([x], dtype=np.float64).view(np.int64)[0])


def _count_at_least(gain: GainFn, t: float, idx: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Per prompt in ``idx``: number of leading units with gain >= t, known to be in [lo, hi]."""
    lo = lo.copy()
    hi = hi.copy()
    todo = np.flatnonzero(lo < hi)
    while todo.size:
        mid = (lo[todo] + hi[todo] + 1) // 2
        ok = gain(mid - 1, idx[todo]) >= t
        lo[todo] = np.where(ok, mid, lo[todo])
        hi[todo] = np.where(ok, hi[todo], mid - 1)
        todo = todo[lo[todo] < hi[todo]]
    return lo


def _bracket(gain: GainFn, caps: np.ndarray, weights: np.ndarray | None, budget: float):
    """Bisect the gain level until few units lie between the bracket ends.

    Returns per-prompt counts ``a`` (units with gain >= t_hi, all taken) and
    ``b`` (units with gain >= t_lo) with ``S(a) < budget <= S(b)``, where
    ``S(k) = sum_i w_i k_i``.
    """
    m = caps.shape[0]
    w = np.ones(m) if weights is None else weights
    idx_all = np.arange(m)
    a = np.zeros(m, dtype=np.int64)
    b = caps.astype(np.int64).copy()
    pos = np.flatnonzero(caps > 0)
    g0 = gain(np.zeros(pos.size, dtype=np.int64), pos) if weights is None else (
        gain(np.zeros(pos.size, dtype=np.int64), pos) / w[pos]
    )
    top = float(g0.max()) if g0.size else 0.0
    lo_key = 0  # t = +0.0: every unit has gain >= 0, so S(b) = S(caps) >= budget
    hi_key = _float_to_key(top) + 1  # above every gain: S(a) = 0 < budget
    limit = max(_CANDIDATE_FLOOR, m // 2)
    sum_a = 0.0
    while hi_key - lo_key > 1:
        active = np.flatnonzero(b > a)
        if int((b[active] - a[active]).sum()) <= limit:
            break
        mid_key = (lo_key + hi_key) // 2
        t = _key_to_float(mid_key)
        if weights is None:
            fn = gain
        else:

            def fn(j, i, _g=gain, _w=w):
                return _g(j, i) / _w[i]

        c = _count_at_least(fn, t, active, a[active], b[active])
        s = sum_a + float((w[active] * (c - a[active])).sum())
        if s >= budget:
            lo_key = mid_key
            b[active] = c
        else:
            hi_key = mid_key
            a[active] = c
            sum_a = s
    del idx_all
    return a, b


def _candidates(gain: GainFn, a: np.ndarray, b: np.ndarray, weights: np.ndarray | None):
    """Units between the bracket ends, sorted best first (ties: prompt, then unit index)."""
    width = b - a
    owners = np.repeat(np.arange(a.shape[0]), width)
    starts = np.repeat(np.cumsum(width) - width, width)
    units = np.arange(owners.size) - starts + a[owners]
    g = gain(units, owners) if owners.size else np.zeros(0)
    key = g if weights is None else g / weights[owners]
    order = np.lexsort((units, owners, -key))
    return owners[order], g[order]


def solve_concave(gain: GainFn, caps: np.ndarray, budget: int) -> np.ndarray:
    """Exact maximiser of a separable concave objective under one unit budget.

    Args:
        gain: ``gain(j, idx)`` -> gains of unit ``j`` (0-based) of prompts ``idx``;
            non-negative and non-increasing in ``j``.
        caps: int array (M,), most extra units each prompt may take.
        budget: units to hand out exactly; ``0 <= budget <= caps.sum()``.

    Returns:
        int64 array (M,) of units per prompt summing to ``budget``.
    """
    caps = np.asarray(caps, dtype=np.int64)
    total = int(caps.sum())
    budget = int(budget)
    if budget < 0 or budget > total:
        raise ValueError(f"budget {budget} outside [0, {total}] (sum of caps)")
    if budget == 0:
        return np.zeros_like(caps)
    if budget == total:
        return caps.copy()
    a, b = _bracket(gain, caps, None, budget)
    need = budget - int(a.sum())
    owners, _ = _candidates(gain, a, b, None)
    return a + np.bincount(owners[:need], minlength=caps.shape[0])


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
    full = float((cost * caps).sum())
    if budget >= full:
        units = caps.copy()
        total = _total_gain(gain, units)
        return CostSolution(units, total, total, full)
    a, b = _bracket(gain, caps, cost, float(budget))
    owners, g = _candidates(gain, a, b, cost)
    base_cost = float((cost * a).sum())
    c = cost[owners]
    cum = base_cost + np.cumsum(c)
    fit = int(np.searchsorted(cum, budget, side="right"))  # units of the greedy prefix
    units = a + np.bincount(owners[:fit], minlength=m)
    value = _total_gain(gain, a) + float(g[:fit].sum())
    spent = base_cost + (float(c[:fit].sum()) if fit else 0.0)
    bound = value
    if fit < owners.size:
        bound += float(g[fit]) * (budget - spent) / float(c[fit])
    # Fill: later candidates that still fit (same prompt has same cost, so a
    # skipped unit's successors are skipped too: chosen sets stay prefixes).
    blocked = np.zeros(m, dtype=bool)
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
        if spent >= budget or budget - spent < cost.min():
            break
    return CostSolution(units, value, max(bound, value), spent)


def _total_gain(gain: GainFn, units: np.ndarray) -> float:
    owners = np.repeat(np.arange(units.shape[0]), units)
    if owners.size == 0:
        return 0.0
    starts = np.repeat(np.cumsum(units) - units, units)
    j = np.arange(owners.size) - starts
    return float(gain(j, owners).sum())
