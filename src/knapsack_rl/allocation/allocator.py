"""Per-prompt rollout allocation: ``allocate``, ``Allocator`` and ``Allocation``.

Methods (``docs/method.md``), one function each, registered in :data:`METHODS`:

- ``knapsack``: exact optimum of ``sum_i Value(N_i, p_i)`` with ``sum N_i = budget``
  and ``min <= N_i <= max``. Prompts with p in {0, 1} have no value and get
  ``min``; budget that no valued prompt can take goes to p = 0 prompts first,
  then evenly to the rest.
- ``paper``: the reference procedure, step by step (base allocation,
  fallback with alpha = 0.9, knapsack step whose k = 0 is worth 0, round-robin
  leftovers), minus the reference's division by zero.
- ``bayes``: exact optimum of the posterior expected value under
  ``Beta(a0 + s_i, b0 + f_i)``; the prior is fitted to the batch unless given.
- ``uniform``: the budget split as evenly as possible (the first prompts get
  the remainder).

With ``cost`` and ``token_budget`` (knapsack, bayes, uniform) the constraint is
``sum_i cost_i N_i <= token_budget`` instead; the result carries the achieved
value and an LP upper bound.

Inputs come as arrays (``p``, or ``successes`` and ``attempts``, ...) or as one
:class:`~knapsack_rl.allocation.stats.PromptStats` (what trackers and statistics
files produce); each method takes from it what it needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field, replace

import numpy as np

from knapsack_rl import defaults
from knapsack_rl.allocation.rounds import (
    PointGains,
    RoundGains,
    check_value,
    point_value,
    round_value,
    value_model,
)
from knapsack_rl.allocation.solvers import Guided, solve_concave, solve_concave_costs
from knapsack_rl.allocation.stats import PromptStats
from knapsack_rl.allocation.values import (
    BayesGains,
    bayes_value,
    fit_beta_prior,
    paper_gains,
    paper_value,
    rollouts_needed,
)
from knapsack_rl.deprecation import deprecated

__all__ = ["METHODS", "Allocation", "Allocator", "allocate"]

#: costs within this relative slack of a token budget count as fitting (float rounding)
TOKEN_SLACK = 1e-9
#: largest max_rollouts (so that sums of groups stay exact in int64)
MAX_GROUP = 2**31
#: a ``bayes`` prior or posterior with a0 + b0 above this is rejected (no stable value)
MAX_CONCENTRATION = 1e9


@dataclass(frozen=True)
class Allocation:
    """The outcome of one allocation.

    Attributes:
        rollouts: int64 (M,), rollouts per prompt, input order.
        value: float (M,), each prompt's value at its allocation (paper value;
            posterior expected value for ``bayes``).
        objective: ``value.sum()``.
        upper_bound: a bound on the best achievable objective (equal to
            ``objective`` when the solution is provably optimal; the LP bound for
            token budgets; None for ``paper`` and ``uniform``, which are not optima).
        method: the method used.
        p: float (M,), the success rates used (posterior means for ``bayes``).
        budget: total rollouts (None under a token budget).
        token_cost: ``sum(cost * rollouts)`` when costs were given, else None.
        seconds: wall time of the allocation.
        prior: the ``(a0, b0)`` Beta prior used by ``bayes``, else None.
        extra: method details (``paper``: the path taken, surplus, round-robin).
    """

    rollouts: np.ndarray
    value: np.ndarray
    objective: float
    upper_bound: float | None
    method: str
    p: np.ndarray
    budget: int | None
    token_cost: float | None = None
    seconds: float = 0.0
    prior: tuple[float, float] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def gap(self) -> float | None:
        """Relative optimality gap ``(upper_bound - objective) / upper_bound`` (0 if exact)."""
        if self.upper_bound is None:
            return None
        if self.upper_bound <= 0:
            return 0.0
        return max(0.0, (self.upper_bound - self.objective) / self.upper_bound)

    def __len__(self) -> int:
        return int(self.rollouts.shape[0])

    def replace(self, **changes) -> Allocation:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)


def _as_array(x, name: str, m: int | None, dtype=np.float64) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: not numeric ({e})") from None
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if m is not None and arr.shape[0] != m:
        raise ValueError(f"{name}: length {arr.shape[0]} does not match {m} prompts")
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] = {arr[bad[0]]} is not finite")


def _as_int(x, name: str) -> int:
    if isinstance(x, bool) or x is None:
        raise ValueError(f"{name} must be an integer, got {x!r}")
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)) and float(x).is_integer():
        return int(x)
    raise ValueError(f"{name} must be an integer, got {x!r}")


def _spread(r: np.ndarray, groups: list[np.ndarray], extra: int, cap: int) -> int:
    """Give ``extra`` rollouts evenly to each group in turn (first ones get the
    remainder), never past ``cap``. Returns what could not be placed."""
    for idx in groups:
        if extra <= 0:
            break
        if idx.size == 0:
            continue
        while extra > 0:
            room = cap - r[idx]
            open_ = idx[room > 0]
            if open_.size == 0:
                break
            per = min(extra // open_.size, int((cap - r[open_]).min()))
            if per > 0:
                r[open_] += per
                extra -= per * open_.size
            else:
                r[open_[:extra]] += 1
                extra = 0
    return extra


@dataclass(frozen=True)
class _Batch:
    """Validated inputs of one allocation, as a method sees them."""

    rate: np.ndarray  # success rates used (posterior means for bayes)
    valid: np.ndarray | None
    a: np.ndarray | None  # bayes posterior
    b: np.ndarray | None
    prior: tuple | None
    cost: np.ndarray | None
    token_budget: float | None
    budget: int | None  # None under a token budget
    n: int | None  # rollouts_per_prompt in force (paper's uniform n)


def _check_rates(p) -> np.ndarray:
    rate = _as_array(p, "p", None)
    _check_finite(rate, "p")
    bad = np.flatnonzero((rate < 0) | (rate > 1))
    if bad.size:
        raise ValueError(f"p[{bad[0]}] = {rate[bad[0]]} is outside [0, 1]")
    return rate


def _check_counts(successes, attempts):
    s = _as_array(successes, "successes", None)
    n = _as_array(attempts, "attempts", s.shape[0])
    _check_finite(s, "successes")
    _check_finite(n, "attempts")
    for arr, name in ((s, "successes"), (n, "attempts")):
        bad = np.flatnonzero(arr < 0)
        if bad.size:
            raise ValueError(f"{name}[{bad[0]}] = {arr[bad[0]]} is negative")
    bad = np.flatnonzero(s > n)
    if bad.size:
        i = bad[0]
        raise ValueError(f"successes[{i}] = {s[i]} > attempts[{i}] = {n[i]}")
    return s, n


def _posterior(prior, s: np.ndarray, n: np.ndarray):
    """``Beta(a0 + s, b0 + n - s)``; rejects priors and counts with no stable value."""
    try:
        a0 = np.broadcast_to(np.asarray(prior[0], dtype=np.float64), s.shape)
        b0 = np.broadcast_to(np.asarray(prior[1], dtype=np.float64), s.shape)
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"prior must be (a0, b0), got {prior!r}") from None
    if not (np.all(a0 > 0) and np.all(b0 > 0)):
        raise ValueError(f"prior must have a0 > 0 and b0 > 0, got {prior}")
    with np.errstate(over="ignore", invalid="ignore"):
        a, b = a0 + s, b0 + (n - s)
        total = a + b
    bad = np.flatnonzero(~(total <= MAX_CONCENTRATION))  # also inf and NaN
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"bayes: prior + counts of prompt {i} give a0 + b0 + attempts = {total[i]:g}, "
            f"above {MAX_CONCENTRATION:g}, where the posterior value cannot be computed "
            "stably; scale the counts down or use method 'knapsack'"
        )
    return a, b


def _batch(allocator: Allocator, st: PromptStats, budget, rollouts_per_prompt, token_budget):
    """Check ``st`` for ``allocator.method`` and resolve the budget."""
    method = allocator.method
    m = len(st)
    a = b = prior = None
    s = n = None
    if st.successes is not None or st.attempts is not None:
        if st.successes is None or st.attempts is None:
            raise ValueError("give p, or both successes and attempts")
        s, n = _check_counts(st.successes, st.attempts)
    if method == "bayes":
        if s is None:
            raise ValueError("method 'bayes' needs successes and attempts, not p")
        prior = st.prior or allocator.prior or fit_beta_prior(s, n)
        a, b = _posterior(prior, s, n)
        rate = a / (a + b)
    elif st.p is not None:
        rate = _check_rates(st.p)
    elif s is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(n > 0, s / np.where(n > 0, n, 1), 0.0)
    else:
        raise ValueError("give p, or both successes and attempts")
    m = rate.shape[0]
    if m == 0:
        raise ValueError("no prompts to allocate")
    valid = None
    if method == "paper" and st.valid is not None:
        valid = _as_array(st.valid, "valid", m, bool)
    if rollouts_per_prompt is None and budget is None and token_budget is None:
        rollouts_per_prompt = allocator.rollouts_per_prompt
    n_in_force = rollouts_per_prompt
    if n_in_force is None:
        n_in_force = allocator.rollouts_per_prompt
    cost = st.cost
    if token_budget is not None or cost is not None:
        if cost is None or token_budget is None:
            raise ValueError("cost and token_budget go together")
        if budget is not None or rollouts_per_prompt is not None:
            raise ValueError("give token_budget or budget/rollouts_per_prompt, not both")
        if method == "paper":
            raise ValueError("method 'paper' does not support token budgets")
        cost = _as_array(cost, "cost", m)
        _check_finite(cost, "cost")
        bad = np.flatnonzero(cost <= 0)
        if bad.size:
            raise ValueError(f"cost[{bad[0]}] = {cost[bad[0]]} must be > 0")
        token_budget = float(token_budget)
        if not np.isfinite(token_budget):
            raise ValueError(f"token_budget = {token_budget} is not finite")
        total = None
    else:
        total = allocator._budget(m, budget, rollouts_per_prompt)
    return _Batch(
        rate=rate,
        valid=valid,
        a=a,
        b=b,
        prior=None if prior is None else tuple(prior),
        cost=cost,
        token_budget=token_budget,
        budget=total,
        n=n_in_force,
    )


@dataclass
class Allocator:
    """Allocation settings; ``allocate(...)`` returns an :class:`Allocation`.

    Attributes:
        method: one of ``knapsack``, ``paper``, ``bayes``, ``uniform``.
        min_rollouts: smallest group per prompt, L (>= 1).
        max_rollouts: largest group per prompt, U (the paper's round-robin
            leftovers may exceed it in ``paper`` mode only).
        rollouts_per_prompt: default per-prompt budget (also the uniform n of
            ``paper``); the former keyword ``per_prompt`` still works (deprecated).
        alpha: fallback confidence in ``paper`` mode (0.9).
        cost_rule: ``probability`` or ``expectation`` (``paper`` fallback).
        negative_n / positive_n: ``paper`` base rollouts for p = 0 / p = 1 (default L).
        prior: ``(a0, b0)`` Beta prior for ``bayes``; None fits it to the batch.
        value: value model of ``knapsack`` and ``bayes`` (``paper``, ``informative``,
            ``size``, ``coba``, ``grpo``; see :mod:`knapsack_rl.allocation.rounds`).
    """

    method: str = defaults.METHOD
    min_rollouts: int = defaults.MIN_ROLLOUTS
    max_rollouts: int = defaults.MAX_ROLLOUTS
    rollouts_per_prompt: int | None = None
    alpha: float = defaults.ALPHA
    cost_rule: str = defaults.COST_RULE
    negative_n: int | None = None
    positive_n: int | None = None
    prior: tuple[float, float] | None = None
    value: str = "paper"
    per_prompt: InitVar[int | None] = None  # deprecated name of rollouts_per_prompt

    def __post_init__(self, per_prompt) -> None:
        if per_prompt is not None:
            _deprecated_per_prompt()
            if self.rollouts_per_prompt is not None:
                raise ValueError("give rollouts_per_prompt or per_prompt (deprecated), not both")
            self.rollouts_per_prompt = per_prompt
        if self.method not in METHODS:
            raise ValueError(
                f"method: unknown {self.method!r}; expected one of {', '.join(METHODS)}"
            )
        self.min_rollouts = _as_int(self.min_rollouts, "min_rollouts")
        self.max_rollouts = _as_int(self.max_rollouts, "max_rollouts")
        if self.min_rollouts < 1:
            raise ValueError(f"min_rollouts must be >= 1, got {self.min_rollouts}")
        if self.min_rollouts > self.max_rollouts:
            raise ValueError(
                f"min_rollouts ({self.min_rollouts}) > max_rollouts ({self.max_rollouts})"
            )
        if self.max_rollouts > MAX_GROUP:
            raise ValueError(f"max_rollouts must be <= 2**31, got {self.max_rollouts}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.cost_rule not in ("probability", "expectation"):
            raise ValueError(f"cost_rule: unknown {self.cost_rule!r}")
        check_value(self.value)
        if self.value != "paper" and self.method == "paper":
            raise ValueError("value: the paper's procedure uses the paper's value only")

    def _budget(self, m: int, budget, rollouts_per_prompt) -> int:
        if (budget is None) == (rollouts_per_prompt is None):
            raise ValueError("give exactly one of budget or rollouts_per_prompt")
        if budget is not None:
            b = _as_int(budget, "budget")
        else:
            b = _as_int(rollouts_per_prompt, "rollouts_per_prompt") * m
        if b >= 2**62:
            raise ValueError(f"budget {b} is too large (at most 2**62)")
        lo, hi = m * self.min_rollouts, m * self.max_rollouts
        if self.method == "paper":  # the reference takes any budget above its base allocation
            hi = None
        if b < lo or (hi is not None and b > hi):
            needs = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise ValueError(
                f"budget {b} cannot be met by {m} prompts with "
                f"{self.min_rollouts} <= rollouts <= {self.max_rollouts} (needs {needs})"
            )
        return b

    def allocate(
        self,
        p=None,
        *,
        budget: int | None = None,
        rollouts_per_prompt: int | None = None,
        successes=None,
        attempts=None,
        valid=None,
        cost=None,
        token_budget: float | None = None,
        prior: tuple[float, float] | None = None,
        per_prompt: int | None = None,
    ) -> Allocation:
        """Allocate rollouts over a batch of prompts.

        Args:
            p: success rates in [0, 1], shape (M,); or give ``successes`` and
                ``attempts`` (counts, shape (M,); fractional counts are fine); or a
                :class:`~knapsack_rl.allocation.stats.PromptStats` (from a tracker
                or a statistics file), of which each method takes what it needs.
            budget: total rollouts; or ``rollouts_per_prompt`` (budget = that * M).
            valid: bool (M,), ``paper`` only: prompts with enough observations.
            cost: per-rollout cost of each prompt (e.g. expected tokens), with
                ``token_budget`` (total cost) replacing ``budget``.
            prior: ``(a0, b0)`` for ``bayes`` (overrides the stats' and the Allocator's).
            per_prompt: deprecated name of ``rollouts_per_prompt``.
        """
        t0 = time.perf_counter()
        if per_prompt is not None:
            _deprecated_per_prompt()
            if rollouts_per_prompt is not None:
                raise ValueError("give rollouts_per_prompt or per_prompt (deprecated), not both")
            rollouts_per_prompt = per_prompt
        if isinstance(p, PromptStats):
            if successes is not None or attempts is not None or valid is not None:
                raise ValueError("give a PromptStats or arrays, not both")
            st = p
            if cost is not None or prior is not None:
                st = st.replace(cost=st.cost if cost is None else cost, prior=prior or st.prior)
        else:
            if p is not None and (successes is not None or attempts is not None):
                raise ValueError("give either p or successes/attempts, not both")
            if p is None and (successes is None or attempts is None):
                raise ValueError("give p, or both successes and attempts")
            st = PromptStats(
                p=p, successes=successes, attempts=attempts, valid=valid, cost=cost, prior=prior
            )
        batch = _batch(self, st, budget, rollouts_per_prompt, token_budget)
        if batch.token_budget is not None:
            result = _allocate_tokens(self, batch)
        else:
            result = _METHODS[self.method](self, batch)
        return result.replace(seconds=time.perf_counter() - t0)


def _deprecated_per_prompt() -> None:
    deprecated("per_prompt", "rollouts_per_prompt", stacklevel=4)


# --------------------------------------------------------------- the methods
def _values(allocator: Allocator, batch: _Batch, r: np.ndarray) -> np.ndarray:
    """Each prompt's value at ``r`` rollouts (posterior expected value for bayes)."""
    if allocator.value != "paper":
        if allocator.method == "bayes":  # a group not drawn yet, under the posterior
            zero = np.zeros_like(batch.a)
            return round_value(r, zero, zero, batch.a, batch.b, _model(allocator, batch))
        return point_value(r, batch.rate, _model(allocator, batch))
    if allocator.method == "bayes":
        return bayes_value(r, batch.a, batch.b)
    return paper_value(r, batch.rate)


def _model(allocator: Allocator, batch: _Batch):
    """The value model (``coba`` reads the batch's failure rate from the rates used)."""
    return value_model(allocator.value)


def _gains(allocator: Allocator, batch: _Batch, idx: np.ndarray | None = None):
    """Marginal gains from L on, for the prompts ``idx`` (all if None)."""
    L = allocator.min_rollouts
    if allocator.value != "paper":
        vm = _model(allocator, batch)
        if allocator.method == "bayes":
            a, b = (batch.a, batch.b) if idx is None else (batch.a[idx], batch.b[idx])
            zero = np.zeros_like(a)
            return RoundGains(vm, zero, zero, a, b, np.full(a.shape, float(L)))
        return PointGains(batch.rate if idx is None else batch.rate[idx], vm, L)
    if allocator.method == "bayes":
        a, b = (batch.a, batch.b) if idx is None else (batch.a[idx], batch.b[idx])
        return Guided(BayesGains(a, b, L), paper_gains(a / (a + b), L))
    return paper_gains(batch.rate if idx is None else batch.rate[idx], L)


def _valued(allocator: Allocator, batch: _Batch) -> np.ndarray:
    """Prompts whose value grows with rollouts (bayes: all; else 0 < p < 1)."""
    if allocator.method == "bayes":
        return np.ones(batch.rate.shape[0], dtype=bool)
    return (batch.rate > 0) & (batch.rate < 1)


def _result(allocator, batch, r, upper_exact: bool, extra=None) -> Allocation:
    value = _values(allocator, batch, r)
    objective = float(value.sum())
    return Allocation(
        rollouts=r,
        value=value,
        objective=objective,
        upper_bound=objective if upper_exact else None,
        method=allocator.method,
        p=batch.rate,
        budget=batch.budget,
        prior=batch.prior,
        extra=extra or {},
    )


def _uniform(allocator: Allocator, batch: _Batch) -> Allocation:
    """The budget split as evenly as possible (the first prompts get the remainder)."""
    m = batch.rate.shape[0]
    per, rem = divmod(batch.budget, m)
    r = np.full(m, per, dtype=np.int64)
    r[:rem] += 1
    return _result(allocator, batch, r, upper_exact=False)


def _knapsack(allocator: Allocator, batch: _Batch) -> Allocation:
    """Exact optimum; budget no valued prompt can take goes to p = 0, then the rest.

    Also ``bayes`` (every prompt is valued there, with the posterior gains)."""
    L, U = allocator.min_rollouts, allocator.max_rollouts
    rate = batch.rate
    m = rate.shape[0]
    valued = _valued(allocator, batch)
    r = np.full(m, L, dtype=np.int64)
    R = batch.budget - m * L
    vidx = np.flatnonzero(valued)
    take = min(R, vidx.size * (U - L))
    if take > 0:
        fn = _gains(allocator, batch, vidx if vidx.size < m else None)
        r[vidx] += solve_concave(fn, np.full(vidx.size, U - L, np.int64), take)
    left = R - take
    if left > 0:
        zeros = np.flatnonzero(~valued & (rate <= 0))
        rest = np.flatnonzero(~valued & (rate > 0))
        left = _spread(r, [zeros, rest], left, U)
        assert left == 0
    return _result(allocator, batch, r, upper_exact=True)


def _paper(allocator: Allocator, batch: _Batch) -> Allocation:
    """The reference procedure, step by step (``docs/method.md``, paper mode)."""
    p, B = batch.rate, batch.budget
    m = p.shape[0]
    n = _as_int(batch.n, "rollouts_per_prompt") if batch.n is not None else 8
    valid = np.ones(m, dtype=bool) if batch.valid is None else batch.valid
    L, U = allocator.min_rollouts, allocator.max_rollouts
    neg_n = L if allocator.negative_n is None else allocator.negative_n
    pos_n = L if allocator.positive_n is None else allocator.positive_n
    p_hat = np.where(valid, p, 0.0)  # quirk: invalid prompts are stored with p_hat = 0
    eff = valid & (p_hat > 0) & (p_hat < 1)
    zero = p_hat <= 0  # includes invalid prompts
    # 1. base allocation
    r = np.where(eff, L, np.where(~valid, n, np.where(zero, neg_n, pos_n))).astype(np.int64)
    R = B - int(r.sum())
    info = {"path": "base", "surplus": 0, "round_robin": 0}
    if R < 0:
        raise ValueError(
            f"budget {B} is below the paper base allocation {int(r.sum())} "
            f"({int((~valid).sum())} prompts not valid get n = {n})"
        )
    zidx = np.flatnonzero(zero)
    eidx = np.flatnonzero(eff)
    if R > 0 and eidx.size == 0:  # 2. no effective prompts
        if zidx.size:
            per, rem = divmod(R, zidx.size)
            r[zidx] += per
            r[zidx[:rem]] += 1
            info["path"] = "no_effective_to_zero"
        else:
            per, rem = divmod(B, m)  # "every prompt gets n" (n = B / M)
            r[:] = per
            r[:rem] += 1
            info["path"] = "no_effective_uniform"
    elif R > 0:
        # 3. fallback
        need = rollouts_needed(p_hat[eidx], allocator.alpha, allocator.cost_rule)
        C = int(np.floor(np.minimum(U, need)).sum())
        if C < R and eidx.size < m:
            surplus = R - C
            targets = zidx if zidx.size else np.flatnonzero(~eff)
            per, rem = divmod(surplus, targets.size)
            r[targets] += per
            r[targets[:rem]] += 1
            info.update(path="fallback", surplus=surplus)
            R = C
        # 4. knapsack over effective prompts; k = 0 is worth 0, k >= 1 worth Value(L + k)
        gain = paper_gains(p_hat[eidx], L, first_from_zero=True)
        take = min(R, eidx.size * (U - L))
        if take > 0:
            r[eidx] += solve_concave(gain, np.full(eidx.size, U - L, np.int64), take)
        left = R - take
        if left > 0:  # round-robin over effective prompts, may pass U
            per, rem = divmod(left, eidx.size)
            r[eidx] += per
            r[eidx[:rem]] += 1
            info["round_robin"] = left
    return _result(allocator, batch, r, upper_exact=False, extra=info)


def _allocate_tokens(allocator: Allocator, batch: _Batch) -> Allocation:
    """``sum_i cost_i N_i <= token_budget`` (knapsack, bayes, uniform); LP bound beside."""
    L, U = allocator.min_rollouts, allocator.max_rollouts
    c, T = batch.cost, batch.token_budget
    m = c.shape[0]
    base = float((c * L).sum())
    slack = TOKEN_SLACK * max(T, base)  # a sum of float costs may round past the budget
    if T + slack < base:
        raise ValueError(
            f"token_budget {T:g} cannot pay for min_rollouts={L} on every prompt (needs {base:g})"
        )
    if allocator.method == "uniform":
        n_uni = int(min(U, (T + slack) // float(c.sum())))
        r = np.full(m, max(L, n_uni), dtype=np.int64)
        return _result(allocator, batch, r, upper_exact=False).replace(
            token_cost=float((c * r).sum())
        )
    caps = np.where(_valued(allocator, batch), U - L, 0).astype(np.int64)
    sol = solve_concave_costs(_gains(allocator, batch), caps, c, max(0.0, T - base) + slack)
    r = L + sol.units
    res = _result(allocator, batch, r, upper_exact=False)
    base_value = res.objective - sol.gain
    return res.replace(
        upper_bound=max(res.objective, base_value + sol.upper_bound),
        token_cost=float((c * r).sum()),
    )


#: method name -> function(allocator, batch) -> Allocation (token budgets aside)
_METHODS: dict[str, Callable[[Allocator, _Batch], Allocation]] = {
    "knapsack": _knapsack,
    "paper": _paper,
    "bayes": _knapsack,
    "uniform": _uniform,
}
METHODS = tuple(_METHODS)


def allocate(
    p=None,
    *,
    budget: int | None = None,
    rollouts_per_prompt: int | None = None,
    min_rollouts: int = defaults.MIN_ROLLOUTS,
    max_rollouts: int = defaults.MAX_ROLLOUTS,
    method: str = defaults.METHOD,
    successes=None,
    attempts=None,
    valid=None,
    cost=None,
    token_budget: float | None = None,
    prior: tuple[float, float] | None = None,
    value: str = "paper",
    per_prompt: int | None = None,
) -> np.ndarray:
    """Rollouts per prompt (int64 array, input order). See :class:`Allocator`.

    Example:
        >>> allocate([0.1, 0.5, 0.9, 1.0], budget=32).sum()
        np.int64(32)
    """
    if per_prompt is not None:
        _deprecated_per_prompt()
        rollouts_per_prompt = per_prompt if rollouts_per_prompt is None else rollouts_per_prompt
    return (
        Allocator(method=method, min_rollouts=min_rollouts, max_rollouts=max_rollouts, value=value)
        .allocate(
            p,
            budget=budget,
            rollouts_per_prompt=rollouts_per_prompt,
            successes=successes,
            attempts=attempts,
            valid=valid,
            cost=cost,
            token_budget=token_budget,
            prior=prior,
        )
        .rollouts
    )
