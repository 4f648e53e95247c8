"""Allocation in rounds: spend what is left of a step's budget where more rollouts
are worth most, given what this step has drawn so far.

Within one step prompt ``i`` has drawn ``n_i`` rollouts with ``s_i`` successes. Its
success rate is ``p ~ Beta(a_i, b_i)`` with ``a_i = a0_i + s_i`` and
``b_i = b0_i + n_i - s_i`` (the prior ``(a0, b0)`` comes from a tracker, or is
fitted to the batch). A group is worth ``w(p)`` when its rewards are not all equal
and nothing otherwise; ``m`` more rollouts are worth, in expectation,

    V_i(m) = E[w(p) * 1{final group of n_i + m is informative}]

    mixed so far (0 < s_i < n_i):   E[w]                       (already informative)
    all failed   (s_i = 0 < n_i):   E[w] - E[w (1-p)^m]
    all succeeded (s_i = n_i > 0):  E[w] - E[w p^m]
    not drawn    (n_i = 0):         E[w] - E[w p^m] - E[w (1-p)^m]   (m >= 1)

Every term is a Beta moment ``E[p^j (1-p)^k] = B(a+j, b+k) / B(a, b)``, so each
``V_i`` and its marginal gains are closed forms. ``E[g(p) x^m]`` is log-convex in
``m``, hence every ``V_i`` is concave from ``max(L - n_i, 1)`` rollouts on, and the
exact threshold solver gives the optimal split (docs/method.md, "Rounds").

Value models (``value=``):

- ``paper``: ``w(p) = p (1-p)^2``, the Knapsack RL value (expected rise of p after
  one step, Li et al. 2025, arXiv 2509.25849).
- ``grpo``: ``w(p) = (p (1-p))^(3/2)``, the first-order rise of p after one GRPO step
  with std-scaled advantages (``E[A (r - p)] = sqrt(p (1-p))`` moves the answer's
  logit, ``dp/dz = p (1-p)``), symmetric in p; plus ``10 E[w] (1 - 1/N)``: every
  rollout of a group counts, with diminishing returns, so rollouts go where the
  posterior puts p in the middle rather than to rescuing near-certain ties.

The value models ``informative``, ``size`` and ``coba`` were measured and not
adopted; they were removed in 0.2.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from knapsack_rl.allocation.solvers import solve_concave
from knapsack_rl.allocation.values import fit_beta_prior

__all__ = [
    "VALUES",
    "ValueModel",
    "value_model",
    "round_value",
    "allocate_round",
    "point_value",
    "PointGains",
    "RoundGains",
    "best_extra",
    "check_value",
    "spread_evenly",
]

VALUES = ("paper", "grpo")
#: value models measured and not adopted, removed in 0.2.0
RETIRED_VALUES = ("informative", "size", "coba")
#: size credit of ``grpo``, picked among 0, 1, 3, 10 on the trainer's selection seeds (BENCHMARKS.md)
_GRPO_SIZE_WEIGHT = 10.0


def _betaln(a, b):
    """``ln B(a, b)``; scipy is imported on first use, so ``import knapsack_rl`` stays fast."""
    from scipy.special import betaln

    return betaln(a, b)


def _gammaln(x):
    from scipy.special import gammaln

    return gammaln(x)


@dataclass(frozen=True)
class ValueModel:
    """``w(p) = sum_t coef_t p^j_t (1-p)^k_t`` plus ``size_weight * E[w] * (1 - 1/N)``."""

    name: str
    terms: tuple[tuple[float, float, float], ...]
    size_weight: float = 0.0


def check_value(name) -> str:
    """``name`` if it is a value model, else a ValueError that says what to use."""
    if name in VALUES:
        return name
    if name in RETIRED_VALUES:
        raise ValueError(
            f"value: {name!r} was removed in 0.2.0 (measured, not adopted); "
            f"use one of {', '.join(VALUES)}"
        )
    raise ValueError(f"value: unknown {name!r}; expected one of {', '.join(VALUES)}")


def value_model(name: str) -> ValueModel:
    """The value model called ``name`` (one of :data:`VALUES`)."""
    if check_value(name) == "paper":
        return ValueModel("paper", ((1.0, 1.0, 2.0),))
    return ValueModel("grpo", ((1.0, 1.5, 1.5),), _GRPO_SIZE_WEIGHT)


def _moment(a, b, lb, j, k):
    """``E[p^j (1-p)^k]`` under ``Beta(a, b)`` with ``lb = ln B(a, b)``."""
    x, y = a + j, b + k
    return np.exp(_gammaln(x) + _gammaln(y) - _gammaln(x + y) - lb)


def _state(s, n):
    """0: not drawn, 1: all failed, 2: all succeeded, 3: mixed."""
    return np.where(n <= 0, 0, np.where(s <= 0, 1, np.where(s >= n, 2, 3)))


def round_value(extra, successes, attempts, a, b, value: ValueModel | str = "paper") -> np.ndarray:
    """``V_i(m)``: expected value of prompt i's final group after ``extra`` more rollouts.

    All arguments broadcast; ``a``, ``b`` are the posterior (prior plus this step's draws).
    """
    vm = value if isinstance(value, ValueModel) else value_model(value)
    m = np.asarray(extra, dtype=np.float64)
    s = np.asarray(successes, dtype=np.float64)
    n = np.asarray(attempts, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    lb = _betaln(a, b)
    st = _state(s, n)
    out = np.zeros(np.broadcast(m, s, n, a, b).shape)
    ew = np.zeros_like(out)
    for c, j, k in vm.terms:
        w = c * _moment(a, b, lb, j, k)
        up = c * _moment(a, b, lb, j + m, k)  # E[w p^m]
        down = c * _moment(a, b, lb, j, k + m)  # E[w (1-p)^m]
        lost = np.select([st == 0, st == 1, st == 2], [up + down, down, up], 0.0)
        out = out + w - lost
        ew = ew + w
    out = np.where((st == 0) & (m < 1), 0.0, out)
    out = np.maximum(out, 0.0)
    if vm.size_weight:
        size = n + m
        out = out + vm.size_weight * ew * np.where(size >= 1, 1.0 - 1.0 / np.maximum(size, 1), 0.0)
    return out


class RoundGains:
    """Marginal gains ``V_i(base_i + j + 1) - V_i(base_i + j)`` in closed form.

    Unit ``m -> m + 1`` is worth ``E[w p (1-p)^m]`` for an all-fail group,
    ``E[w p^m (1-p)]`` for an all-success one, both for an undrawn one (twice
    ``E[w p (1-p)]`` for its second rollout), and 0 for a mixed one; plus the
    size term ``size_weight E[w] / (N (N + 1))``.
    """

    def __init__(self, vm: ValueModel, s, n, a, b, base) -> None:
        self.vm, self.s, self.n, self.a, self.b = vm, s, n, a, b
        self.base = base
        self.lb = _betaln(a, b)
        self.st = _state(s, n)
        self.ew = sum(c * _moment(a, b, self.lb, j, k) for c, j, k in vm.terms)

    def __call__(self, j: np.ndarray, idx: np.ndarray) -> np.ndarray:
        m = self.base[idx] + np.asarray(j, dtype=np.float64)
        st = self.st[idx]
        g = np.zeros(m.shape)
        # one Beta moment per unit where the state allows (two for undrawn prompts)
        for state, use_up, use_down in ((1, False, True), (2, True, False), (0, True, True)):
            sel = np.flatnonzero(st == state)
            if not sel.size:
                continue
            k_idx, ms = idx[sel], m[sel]
            a, b, lb = self.a[k_idx], self.b[k_idx], self.lb[k_idx]
            out = np.zeros(ms.shape)
            for c, jj, kk in self.vm.terms:
                if use_up:
                    out += c * _moment(a, b, lb, jj + ms, kk + 1.0)  # E[w p^m (1-p)]
                if use_down:
                    out += c * _moment(a, b, lb, jj + 1.0, kk + ms)  # E[w p (1-p)^m]
                if state == 0:  # the second rollout of an undrawn prompt: 2 E[w p (1-p)]
                    second = 2.0 * c * _moment(a, b, lb, jj + 1.0, kk + 1.0)
                    out = np.where(ms < 2, np.where(ms < 1, 0.0, second), out)
            g[sel] = out
        if self.vm.size_weight:
            size = self.n[idx] + m
            g += np.where(
                size >= 1,
                self.vm.size_weight * self.ew[idx] / (np.maximum(size, 1) * (size + 1)),
                0.0,
            )
        return g


def _solve_by_type(gains: RoundGains, s, n, caps, valued, take: int) -> np.ndarray:
    """The exact greedy when prompts share one prior: prompts with equal ``(s, n)``
    have equal gains, so rank each type's units once and hand them out by count.
    Within a type the units go to lower prompt indices first."""
    key = n[valued].astype(np.int64) * (int(n.max()) + 2) + s[valued].astype(np.int64)
    _, first, inv, count = np.unique(
        key, return_index=True, return_inverse=True, return_counts=True
    )
    rep = valued[first]  # one prompt per type
    width = int(caps[rep].max())
    unit = np.tile(np.arange(width), rep.size)
    owner = np.repeat(np.arange(rep.size), width)
    ok = unit < caps[rep][owner]
    unit, owner = unit[ok], owner[ok]
    g = gains(unit.astype(np.float64), rep[owner])
    order = np.lexsort((unit, owner, -g))  # best first; ties by type, then unit
    cum = np.cumsum(count[owner[order]])
    cut = int(
        np.searchsorted(cum, take)
    )  # entries [0, cut) are taken for every prompt of their type
    per_type = np.bincount(owner[order[:cut]], minlength=rep.size)
    out = per_type[inv].astype(np.int64)
    partial = take - (int(cum[cut - 1]) if cut else 0)
    if partial:
        t = owner[order[cut]]
        members = np.flatnonzero(inv == t)[:partial]
        out[members] += 1
    return out


def _weight(vm: ValueModel, p: np.ndarray) -> np.ndarray:
    """``w(p)`` at point estimates."""
    return sum(c * p**j * (1.0 - p) ** k for c, j, k in vm.terms)


def point_value(n, p, value: ValueModel | str = "paper") -> np.ndarray:
    """One-shot value of ``n`` rollouts at a point estimate ``p``:
    ``w(p) (1 - p^n - (1-p)^n)`` (0 for ``n <= 1``), plus the ``size`` term."""
    p = np.asarray(p, dtype=np.float64)
    vm = value if isinstance(value, ValueModel) else value_model(value)
    n = np.asarray(n, dtype=np.float64)
    w = _weight(vm, p)
    out = np.where(n <= 1, 0.0, w * np.maximum(1.0 - p**n - (1.0 - p) ** n, 0.0))
    if vm.size_weight:
        out = out + vm.size_weight * w * np.where(n >= 1, 1.0 - 1.0 / np.maximum(n, 1), 0.0)
    return out


class PointGains:
    """Marginal gains of :func:`point_value` from ``offset`` rollouts on, in the solvers'
    ``gain(j, idx)`` form: ``w(p) (p^n (1-p) + (1-p)^n p)`` for unit ``n -> n + 1``
    (``n = offset + j >= 1``), plus ``size_weight w(p) / (n (n + 1))``."""

    def __init__(self, p, vm: ValueModel, offset: int) -> None:
        self.p = np.asarray(p, dtype=np.float64)
        self.w = _weight(vm, self.p)
        self.size_weight = vm.size_weight
        self.offset = int(offset)

    def __call__(self, j: np.ndarray, idx: np.ndarray) -> np.ndarray:
        n = np.asarray(j, dtype=np.float64) + self.offset
        p, w = self.p[idx], self.w[idx]
        g = w * (p**n * (1.0 - p) + (1.0 - p) ** n * p)
        if self.size_weight:
            g = g + self.size_weight * w / (np.maximum(n, 1.0) * (n + 1.0))
        return g


def _counts(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: not numeric") from None
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0) | (arr != np.round(arr)))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] = {arr[bad[0]]} is not a count (integer >= 0)")
    return arr


def _prior(x, name: str, m: int) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(x, dtype=np.float64), (m,)).copy()
    bad = np.flatnonzero(~np.isfinite(arr) | (arr <= 0) | (arr > 1e9))
    if bad.size:
        raise ValueError(
            f"{name}[{bad[0]}] = {arr[bad[0]]} must be finite, > 0 and <= 1e9 (Beta functions lose precision beyond)"
        )
    return arr


def allocate_round(
    successes,
    attempts,
    *,
    budget: int,
    prior_a=None,
    prior_b=None,
    min_rollouts: int = 2,
    max_rollouts: int = 128,
    value: str = "paper",
) -> np.ndarray:
    """Extra rollouts per prompt for the next round, given this step's draws.

    Maximises ``sum_i V_i(extra_i)`` exactly (see the module docstring) subject to
    ``sum extra = budget``, ``attempts + extra <= max_rollouts`` and
    ``attempts + extra >= min_rollouts``.

    Args:
        successes, attempts: int counts (M,) drawn so far in this step (attempts may be 0).
        budget: rollouts to hand out; capped at the room left under ``max_rollouts``.
        prior_a, prior_b: Beta prior per prompt (scalar or (M,)); both None fits one
            prior to this step's counts (uniform with fewer than 2 drawn prompts).
        value: ``paper`` or ``grpo``.

    Returns:
        int64 (M,), extra rollouts per prompt (>= 0).

    Example:
        >>> allocate_round([0, 1, 4], [4, 4, 4], budget=8, prior_a=1, prior_b=1).tolist()
        [4, 0, 4]
    """
    s, n, L, U, B = _check_round(successes, attempts, budget, min_rollouts, max_rollouts)
    m = s.shape[0]
    if (prior_a is None) != (prior_b is None):
        raise ValueError("give both prior_a and prior_b, or neither")
    if prior_a is None:
        prior_a, prior_b = fit_beta_prior(s, n)
    pa, pb = _prior(prior_a, "prior_a", m), _prior(prior_b, "prior_b", m)
    need = np.maximum(L - n, 0).astype(np.int64)
    room = np.maximum(U - n, 0).astype(np.int64)
    if B < int(need.sum()):
        raise ValueError(
            f"budget {B} cannot bring every prompt to min_rollouts={L} (needs {int(need.sum())})"
        )
    if B >= int(room.sum()):
        return room
    # min_rollouts >= 1, so an undrawn prompt starts at >= 1 rollout
    one_prior = bool(np.ptp(pa) == 0 and np.ptp(pb) == 0)
    return best_extra(value_model(value), s, n, pa + s, pb + (n - s), need, room, B, one_prior)


def _check_round(successes, attempts, budget, min_rollouts, max_rollouts):
    """The checked counts (float (M,)) and integer bounds of :func:`allocate_round`."""
    s = _counts(successes, "successes")
    n = _counts(attempts, "attempts")
    m = s.shape[0]
    if n.shape[0] != m:
        raise ValueError(f"attempts: length {n.shape[0]} does not match {m} prompts")
    if m == 0:
        raise ValueError("no prompts to allocate")
    bad = np.flatnonzero(s > n)
    if bad.size:
        i = bad[0]
        raise ValueError(f"successes[{i}] = {s[i]:g} > attempts[{i}] = {n[i]:g}")
    for name, v in (
        ("budget", budget),
        ("min_rollouts", min_rollouts),
        ("max_rollouts", max_rollouts),
    ):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    L, U, B = int(min_rollouts), int(max_rollouts), int(budget)
    if L < 1 or L > U:
        raise ValueError(f"need 1 <= min_rollouts <= max_rollouts, got {L} and {U}")
    if B < 0:
        raise ValueError(f"budget must be >= 0, got {B}")
    return s, n, L, U, B


def best_extra(vm: ValueModel, s, n, a, b, base, room, total: int, one_prior=False) -> np.ndarray:
    """``base`` (int64 (M,)) plus the ``total - sum(base)`` units of highest exact value
    under ``room`` (int64 (M,), >= base), given the posterior ``Beta(a, b)`` of each
    prompt after ``n`` draws with ``s`` successes. Units that no prompt values are
    spread evenly over the room. ``one_prior``: every prompt has the same prior (a
    faster exact path over prompt types)."""
    m = base.size
    extra = base.copy()
    caps = room - base
    gains = RoundGains(vm, s, n, a, b, base.astype(np.float64))
    first = gains(np.zeros(m), np.arange(m))
    if not np.all(np.isfinite(first)):
        i = int(np.flatnonzero(~np.isfinite(first))[0])
        raise ValueError(f"value of prompt {i} is not finite (prior or counts out of range)")
    valued = np.flatnonzero((first > 0) & (caps > 0))
    left = int(total) - int(base.sum())
    take = min(left, int(caps[valued].sum()))
    if take > 0:
        if one_prior:  # few prompt types
            extra[valued] += _solve_by_type(gains, s, n, caps, valued, take)
        else:
            v = valued
            sub = RoundGains(vm, s[v], n[v], a[v], b[v], base[v] * 1.0)
            extra[valued] += solve_concave(sub, caps[valued], take)
    spread_evenly(extra, room, left - take)  # no value left anywhere
    return extra


def spread_evenly(give: np.ndarray, room: np.ndarray, left: int) -> int:
    """Add ``left`` units to ``give`` (int (M,), in place) as evenly as possible, never
    above ``room``: an equal share per open prompt, the remainder to the lowest
    positions. Returns what could not be placed (0 unless every prompt is full)."""
    while left > 0:
        open_ = np.flatnonzero(give < room)
        if open_.size == 0:
            break
        per = max(1, left // open_.size)
        add = np.minimum(room[open_] - give[open_], per)
        cum = np.cumsum(add)
        add = np.where(cum <= left, add, np.maximum(left - (cum - add), 0))
        give[open_] += add
        left -= int(add.sum())
    return left
