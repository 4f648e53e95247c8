"""Per-prompt rollout allocation: ``allocate``, ``Allocator`` and ``Allocation``.

Methods (spec sections 2, 3, 5):

- ``knapsack``: exact optimum of ``sum_i Value(N_i, p_i)`` with ``sum N_i = budget``
  and ``min <= N_i <= max``. Prompts with p in {0, 1} have no value and get
  ``min``; budget that no valued prompt can take goes to p = 0 prompts first,
  then evenly to the rest.
- ``paper``: the reference procedure of section 3, step by step (base allocation,
  fallback with alpha = 0.9, knapsack step whose k = 0 is worth 0, round-robin
  leftovers), minus the reference's division by zero.
- ``bayes``: exact optimum of the posterior expected value under
  ``Beta(a0 + s_i, b0 + f_i)``; the prior is fitted to the batch unless given.
- ``uniform``: the budget split as evenly as possible (the first prompts get
  the remainder).

With ``cost`` and ``token_budget`` (knapsack, bayes, uniform) the constraint is
``sum_i cost_i N_i <= token_budget`` instead; the result carries the achieved
value and an LP upper bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from knapsack_rl.allocation.solvers import solve_concave, solve_concave_costs
from knapsack_rl.allocation.values import (
    BayesGains,
    PaperGains,
    bayes_value,
    fit_beta_prior,
    paper_value,
    rollouts_needed,
)

__all__ = ["METHODS", "Allocation", "Allocator", "allocate"]

METHODS = ("knapsack", "paper", "bayes", "uniform")


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


@dataclass
class Allocator:
    """Allocation settings; ``allocate(...)`` returns an :class:`Allocation`.

    Attributes:
        method: one of ``knapsack``, ``paper``, ``bayes``, ``uniform``.
        min_rollouts: smallest group per prompt, L (>= 1).
        max_rollouts: largest group per prompt, U (the paper's round-robin
            leftovers may exceed it in ``paper`` mode only).
        per_prompt: default per-prompt budget (also the uniform n of ``paper``).
        alpha: fallback confidence in ``paper`` mode (0.9).
        cost_rule: ``probability`` or ``expectation`` (``paper`` fallback).
        negative_n / positive_n: ``paper`` base rollouts for p = 0 / p = 1 (default L).
        prior: ``(a0, b0)`` Beta prior for ``bayes``; None fits it to the batch.
    """

    method: str = "knapsack"
    min_rollouts: int = 2
    max_rollouts: int = 128
    per_prompt: int | None = None
    alpha: float = 0.9
    cost_rule: str = "probability"
    negative_n: int | None = None
    positive_n: int | None = None
    prior: tuple[float, float] | None = None

    def __post_init__(self) -> None:
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
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.cost_rule not in ("probability", "expectation"):
            raise ValueError(f"cost_rule: unknown {self.cost_rule!r}")

    # ------------------------------------------------------------------ inputs
    def _rates(self, p, successes, attempts):
        if p is not None and (successes is not None or attempts is not None):
            raise ValueError("give either p or successes/attempts, not both")
        if p is None:
            if successes is None or attempts is None:
                raise ValueError("give p, or both successes and attempts")
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
            with np.errstate(divide="ignore", invalid="ignore"):
                rate = np.where(n > 0, s / np.where(n > 0, n, 1), 0.0)
            return rate, s, n
        rate = _as_array(p, "p", None)
        _check_finite(rate, "p")
        bad = np.flatnonzero((rate < 0) | (rate > 1))
        if bad.size:
            raise ValueError(f"p[{bad[0]}] = {rate[bad[0]]} is outside [0, 1]")
        return rate, None, None

    def _budget(self, m: int, budget, per_prompt) -> int:
        if (budget is None) == (per_prompt is None):
            raise ValueError("give exactly one of budget or per_prompt")
        if budget is not None:
            b = _as_int(budget, "budget")
        else:
            b = _as_int(per_prompt, "per_prompt") * m
        lo, hi = m * self.min_rollouts, m * self.max_rollouts
        if b < lo or b > hi:
            raise ValueError(
                f"budget {b} cannot be met by {m} prompts with "
                f"{self.min_rollouts} <= rollouts <= {self.max_rollouts} (needs {lo}..{hi})"
            )
        return b

    # -------------------------------------------------------------- allocate
    def allocate(
        self,
        p=None,
        *,
        budget: int | None = None,
        per_prompt: int | None = None,
        successes=None,
        attempts=None,
        valid=None,
        cost=None,
        token_budget: float | None = None,
        prior: tuple[float, float] | None = None,
    ) -> Allocation:
        """Allocate rollouts over a batch of prompts.

        Args:
            p: success rates in [0, 1], shape (M,); or give ``successes`` and
                ``attempts`` (counts, shape (M,); fractional counts are fine).
            budget: total rollouts; or ``per_prompt`` (budget = per_prompt * M).
            valid: bool (M,), ``paper`` only: prompts with enough observations.
            cost: per-rollout cost of each prompt (e.g. expected tokens), with
                ``token_budget`` (total cost) replacing ``budget``.
            prior: ``(a0, b0)`` for ``bayes`` (overrides the Allocator's).
        """
        t0 = time.perf_counter()
        rate, s, n = self._rates(p, successes, attempts)
        m = rate.shape[0]
        if m == 0:
            raise ValueError("no prompts to allocate")
        if per_prompt is None and budget is None and token_budget is None:
            per_prompt = self.per_prompt
        L, U = self.min_rollouts, self.max_rollouts
        method = self.method
        a_post = b_post = None
        used_prior = None
        if method == "bayes":
            if s is None:
                raise ValueError("method 'bayes' needs successes and attempts, not p")
            used_prior = prior or self.prior or fit_beta_prior(s, n)
            a0, b0 = float(used_prior[0]), float(used_prior[1])
            if not (a0 > 0 and b0 > 0):
                raise ValueError(f"prior must have a0 > 0 and b0 > 0, got {used_prior}")
            a_post, b_post = a0 + s, b0 + (n - s)
            rate = a_post / (a_post + b_post)

        def value_of(r: np.ndarray) -> np.ndarray:
            if method == "bayes":
                return bayes_value(r, a_post, b_post)
            return paper_value(r, rate)

        if method == "bayes":
            valued = np.ones(m, dtype=bool)
        else:
            valued = (rate > 0) & (rate < 1)

        def gain_fn(idx=None):
            """Marginal gains from L on, for the prompts ``idx`` (all if None)."""
            if method == "bayes":
                if idx is None:
                    return BayesGains(a_post, b_post, L)
                return BayesGains(a_post[idx], b_post[idx], L)
            return PaperGains(rate if idx is None else rate[idx], L)

        if token_budget is not None or cost is not None:
            return self._allocate_tokens(
                rate,
                cost,
                token_budget,
                budget,
                per_prompt,
                valued,
                gain_fn(),
                value_of,
                t0,
                used_prior,
            )

        B = self._budget(m, budget, per_prompt)
        upper = None
        extra: dict = {}
        if method == "uniform":
            per, rem = divmod(B, m)
            r = np.full(m, per, dtype=np.int64)
            r[:rem] += 1
        elif method == "paper":
            n_default = per_prompt if per_prompt is not None else self.per_prompt
            n_uniform = _as_int(n_default, "per_prompt") if n_default is not None else 8
            vmask = np.ones(m, dtype=bool) if valid is None else _as_array(valid, "valid", m, bool)
            r, extra = self._paper(rate, vmask, B, n_uniform)
        else:
            r = np.full(m, L, dtype=np.int64)
            R = B - m * L
            vidx = np.flatnonzero(valued)
            take = min(R, vidx.size * (U - L))
            if take > 0:
                fn = gain_fn(vidx if vidx.size < m else None)
                k = solve_concave(fn, np.full(vidx.size, U - L, np.int64), take)
                r[vidx] += k
            left = R - take
            if left > 0:
                zeros = np.flatnonzero(~valued & (rate <= 0))
                rest = np.flatnonzero(~valued & (rate > 0))
                left = _spread(r, [zeros, rest], left, U)
                assert left == 0
        value = value_of(r)
        objective = float(value.sum())
        if method in ("knapsack", "bayes"):
            upper = objective
        return Allocation(
            rollouts=r,
            value=value,
            objective=objective,
            upper_bound=upper,
            method=method,
            p=rate,
            budget=B,
            seconds=time.perf_counter() - t0,
            prior=used_prior,
            extra=extra,
        )

    def _allocate_tokens(
        self, rate, cost, token_budget, budget, per_prompt, valued, gain, value_of, t0, prior
    ) -> Allocation:
        m = rate.shape[0]
        L, U = self.min_rollouts, self.max_rollouts
        if cost is None or token_budget is None:
            raise ValueError("cost and token_budget go together")
        if budget is not None or per_prompt is not None:
            raise ValueError("give token_budget or budget/per_prompt, not both")
        if self.method == "paper":
            raise ValueError("method 'paper' does not support token budgets")
        c = _as_array(cost, "cost", m)
        _check_finite(c, "cost")
        bad = np.flatnonzero(c <= 0)
        if bad.size:
            raise ValueError(f"cost[{bad[0]}] = {c[bad[0]]} must be > 0")
        T = float(token_budget)
        if not np.isfinite(T):
            raise ValueError(f"token_budget = {token_budget} is not finite")
        base = float((c * L).sum())
        if T < base:
            raise ValueError(
                f"token_budget {T:g} cannot pay for min_rollouts={L} on every prompt (needs {base:g})"
            )
        if self.method == "uniform":
            n_uni = int(min(U, (T // float(c.sum())))) if c.sum() > 0 else U
            r = np.full(m, max(L, n_uni), dtype=np.int64)
            value = value_of(r)
            return Allocation(
                r,
                value,
                float(value.sum()),
                None,
                "uniform",
                rate,
                None,
                float((c * r).sum()),
                time.perf_counter() - t0,
                prior,
            )
        caps = np.where(valued, U - L, 0).astype(np.int64)
        sol = solve_concave_costs(gain, caps, c, T - base)
        r = L + sol.units
        value = value_of(r)
        objective = float(value.sum())
        base_value = objective - sol.gain
        return Allocation(
            rollouts=r,
            value=value,
            objective=objective,
            upper_bound=max(objective, base_value + sol.upper_bound),
            method=self.method,
            p=rate,
            budget=None,
            token_cost=float((c * r).sum()),
            seconds=time.perf_counter() - t0,
            prior=prior,
        )

    # ------------------------------------------------------------ paper mode
    def _paper(self, p: np.ndarray, valid: np.ndarray, B: int, n: int):
        """The reference procedure of spec section 3, step by step."""
        m = p.shape[0]
        L, U = self.min_rollouts, self.max_rollouts
        neg_n = L if self.negative_n is None else self.negative_n
        pos_n = L if self.positive_n is None else self.positive_n
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
        if R == 0:
            return r, info
        # 2. no effective prompts
        if eidx.size == 0:
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
            return r, info
        # 3. fallback
        need = rollouts_needed(p_hat[eidx], self.alpha, self.cost_rule)
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
        gain = PaperGains(p_hat[eidx], L, first_from_zero=True)

        take = min(R, eidx.size * (U - L))
        if take > 0:
            r[eidx] += solve_concave(gain, np.full(eidx.size, U - L, np.int64), take)
        left = R - take
        if left > 0:  # round-robin over effective prompts, may pass U
            per, rem = divmod(left, eidx.size)
            r[eidx] += per
            r[eidx[:rem]] += 1
            info["round_robin"] = left
        return r, info


def allocate(
    p=None,
    *,
    budget: int | None = None,
    per_prompt: int | None = None,
    min_rollouts: int = 2,
    max_rollouts: int = 128,
    method: str = "knapsack",
    successes=None,
    attempts=None,
    valid=None,
    cost=None,
    token_budget: float | None = None,
    prior: tuple[float, float] | None = None,
) -> np.ndarray:
    """Rollouts per prompt (int64 array, input order). See :class:`Allocator`.

    Example:
        >>> allocate([0.1, 0.5, 0.9, 1.0], budget=32).sum()
        np.int64(32)
    """
    return (
        Allocator(method=method, min_rollouts=min_rollouts, max_rollouts=max_rollouts)
        .allocate(
            p,
            budget=budget,
            per_prompt=per_prompt,
            successes=successes,
            attempts=attempts,
            valid=valid,
            cost=cost,
            token_budget=token_budget,
            prior=prior,
        )
        .rollouts
    )
