"""Value of giving a prompt N rollouts, and its marginal gains.

Section 2 of the spec: ``Value(N, p) = (1 - p^N - (1 - p)^N) * p * (1 - p)^2``.
Section 5: the same value in expectation under a ``Beta(a, b)`` posterior on p.

Every value here is concave in N, so the exact solvers in
:mod:`knapsack_rl.allocation.solvers` apply. Functions are vectorised over prompts:
``n`` and ``p`` (or ``a``, ``b``) broadcast against each other.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "info_gain",
    "prob_nonzero_gradient",
    "paper_value",
    "paper_gain",
    "PaperGains",
    "beta_moment",
    "bayes_value",
    "bayes_gain",
    "BayesGains",
    "rollouts_needed",
    "fit_beta_prior",
]


def info_gain(p: np.ndarray | float) -> np.ndarray:
    """``InfoGain(p) = p (1 - p)^2``: expected rise of p after one step (peaks at p = 1/3)."""
    p = np.asarray(p, dtype=np.float64)
    return p * (1.0 - p) ** 2


def prob_nonzero_gradient(n: np.ndarray | int, p: np.ndarray | float) -> np.ndarray:
    """Probability that ``n`` Bernoulli(p) rewards are not all equal: ``1 - p^n - (1-p)^n``.

    Defined as 0 for ``n <= 1`` (one rollout, or none, never gives a gradient).
    """
    n = np.asarray(n, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    out = 1.0 - p**n - (1.0 - p) ** n
    return np.where(n <= 1, 0.0, np.maximum(out, 0.0))


def paper_value(n: np.ndarray | int, p: np.ndarray | float) -> np.ndarray:
    """``Value(N, p) = ProbNonZeroGradient(N, p) * InfoGain(p)`` (spec section 2)."""
    return prob_nonzero_gradient(n, p) * info_gain(p)


def paper_gain(n: np.ndarray | int, p: np.ndarray | float) -> np.ndarray:
    """Marginal gain ``Value(n + 1, p) - Value(n, p)`` for ``n >= 1``.

    Equals ``InfoGain(p) * (p^n (1 - p) + (1 - p)^n p)``; positive and strictly
    decreasing in n for 0 < p < 1, zero for p in {0, 1}.
    """
    n = np.asarray(n, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    q = 1.0 - p
    return info_gain(p) * (p**n * q + q**n * p)


class PaperGains:
    """Marginal paper gains for fixed rates, in the solvers' ``gain(j, idx)`` form.

    ``gains(j, idx) == paper_gain(offset + j, p[idx])`` up to rounding, computed as
    ``IG q exp(n ln p) + IG p exp(n ln q)`` with the logs precomputed (faster than
    ``**``, and still non-increasing in ``j``). Also offers the solver a closed-form
    model of the counts (:meth:`count_bounds`, :meth:`threshold_guess`), which only
    makes the exact search shorter.

    With ``first_from_zero=True`` unit 0 is instead worth ``Value(offset + 1, p)``
    (the paper procedure's knapsack item, where k = 0 extra rollouts is worth 0);
    still non-increasing for ``offset >= 1``.

    Args:
        p: success rates, shape (M,).
        offset: rollouts already given before unit ``j = 0`` (>= 1).
        first_from_zero: value unit 0 from zero, as above.
    """

    def __init__(self, p: np.ndarray, offset: int, first_from_zero: bool = False) -> None:
        p = np.asarray(p, dtype=np.float64)
        self._first = paper_value(int(offset) + 1, p) if first_from_zero else None
        ig = info_gain(p)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_p = np.log(p)
            log_q = np.log1p(-p)
            # gain(n) / IG = Q^n r + r^n Q with Q = max(p, 1 - p), r = 1 - Q, and
            # r^n Q <= Q^n r for n >= 1, so  c Q^n <= gain(n) <= 2 c Q^n,  c = IG r
            log_big = np.maximum(log_p, log_q)
            log_c = np.log(ig) + np.minimum(log_p, log_q)
            # sharper: gain(n) = c Q^n (1 + (r/Q)^(n-1)) <= c Q^n (1 + (r/Q)^(offset-1))
            log_up = np.log1p(np.exp((max(int(offset), 1) - 1) * (log_c - np.log(ig) - log_big)))
        degenerate = ~((log_big < 0) & np.isfinite(log_c))  # p in {0, 1}: all gains 0
        self._log_big = np.where(degenerate, -1.0, log_big)
        self._log_c = np.where(degenerate, -np.inf, log_c)
        self._log_up = np.where(degenerate, 0.0, log_up)  # in [0, ln 2]
        self._dead = (p <= 0) | (p >= 1)
        self._model = None  # (caps, ...) cached by threshold_guess
        # columns: ln p, ln q, IG q, IG p (one gather per call)
        self._table = np.stack([log_p, log_q, ig * (1.0 - p), ig * p], axis=1)
        self.offset = int(offset)

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
        """Narrow ``[lo, hi]``, known to hold the number of units with gain >= ``t > 0``.

        From ``c Q^n <= gain(n) <= c Q^n (1 + (r/Q)^(offset-1)) <= 2 c Q^n`` the count
        lies between the number of units with ``c Q^n >= t`` and with the upper
        curve ``>= t``; the bounds are widened by far more than the rounding of
        either side (so ill-conditioned prompts, with ``ln Q`` near 0, keep
        ``[lo, hi]``), then clipped to ``[lo, hi]``.
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
        dead = self._dead[idx]  # p in {0, 1}: every gain is 0 < t, the count is lo (= 0)
        b = np.where(dead, -np.inf, b)
        if self._first is not None:  # unit 0 is worth more (up to Value(offset + 1)) only
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


def beta_moment(a: np.ndarray, b: np.ndarray, s: np.ndarray | float, t: np.ndarray | float):
    """``E[p^s (1 - p)^t]`` for ``p ~ Beta(a, b)``: ``B(a + s, b + t) / B(a, b)``."""
    from scipy.special import betaln

    return np.exp(betaln(a + s, b + t) - betaln(a, b))


class BayesGains:
    """Marginal posterior gains in the solvers' ``gain(j, idx)`` form.

    ``gains(j, idx) == bayes_gain(offset + j, a[idx], b[idx])`` exactly (same
    formula), with ``ln B(a, b)`` computed once per prompt instead of per call.

    Args:
        a, b: Beta posterior parameters, shape (M,), > 0.
        offset: rollouts already given before unit ``j = 0`` (>= 1).
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, offset: int) -> None:
        from scipy.special import betaln

        self.a = np.asarray(a, dtype=np.float64)
        self.b = np.asarray(b, dtype=np.float64)
        self.log_beta = betaln(self.a, self.b)
        self.offset = int(offset)
        self._point = None

    def threshold_guess(self, caps: np.ndarray, budget: float) -> float | None:
        """A starting level for the solver: the paper model at the posterior means.

        Only a guess (the solver corrects it with exact counts)."""
        if self._point is None:
            self._point = PaperGains(self.a / (self.a + self.b), self.offset)
        return self._point.threshold_guess(caps, budget)

    def __call__(self, j: np.ndarray, idx: np.ndarray) -> np.ndarray:
        from scipy.special import betaln

        n = np.asarray(j, dtype=np.float64) + self.offset
        a, b, lb = self.a[idx], self.b[idx], self.log_beta[idx]
        return np.exp(betaln(a + (n + 1.0), b + 3.0) - lb) + np.exp(
            betaln(a + 2.0, b + (n + 2.0)) - lb
        )


def bayes_value(n: np.ndarray | int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Posterior expected value ``E[Value(N, p)]`` for ``p ~ Beta(a, b)`` (spec section 5).

    ``E[p(1-p)^2] - E[p^(N+1)(1-p)^2] - E[p(1-p)^(N+2)]``, 0 for ``N <= 1``.
    """
    n = np.asarray(n, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    v = (
        beta_moment(a, b, 1.0, 2.0)
        - beta_moment(a, b, n + 1.0, 2.0)
        - beta_moment(a, b, 1.0, n + 2.0)
    )
    return np.where(n <= 1, 0.0, np.maximum(v, 0.0))


def bayes_gain(n: np.ndarray | int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Marginal gain ``E[Value(n + 1)] - E[Value(n)]`` for ``n >= 1``.

    ``E[p^(n+1) (1-p)^3] + E[p^2 (1-p)^(n+2)]``: positive, strictly decreasing in n.
    """
    n = np.asarray(n, dtype=np.float64)
    return beta_moment(a, b, n + 1.0, 3.0) + beta_moment(a, b, 2.0, n + 2.0)


def rollouts_needed(p: np.ndarray | float, alpha: float = 0.9, rule: str = "probability"):
    """Rollouts a prompt "needs" (spec section 3, fallback step), as a float.

    ``probability``: ``ln(1 - alpha) / ln(max(p, 1 - p))`` (non-zero gradient with
    probability alpha). ``expectation``: ``1 / (p (1 - p)) - 1``. Defined for 0 < p < 1;
    ``inf`` for p in {0, 1} (no number of rollouts gives a gradient).
    """
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if rule == "probability":
            # ln(max(p, 1 - p)), with log1p so that tiny p (1 - p == 1.0) stays finite
            log_q = np.where(p >= 0.5, np.log(p), np.log1p(-p))
            return np.where(log_q < 0, np.log1p(-alpha) / log_q, np.inf)
        if rule == "expectation":
            return 1.0 / (p * (1.0 - p)) - 1.0
    raise ValueError(f"unknown cost rule {rule!r}; expected 'probability' or 'expectation'")


def fit_beta_prior(
    successes: np.ndarray, attempts: np.ndarray, default: tuple[float, float] = (1.0, 1.0)
) -> tuple[float, float]:
    """Empirical-Bayes ``Beta(a0, b0)`` prior from per-prompt counts (method of moments).

    Uses prompts with ``attempts > 0``; the variance of the observed rates is
    corrected for binomial noise. The concentration ``a0 + b0`` is kept in
    [0.2, 1000] and each parameter >= 0.05 (U-shaped priors are allowed: RL
    batches are often bimodal). Returns ``default`` (uniform) with fewer than
    two observed prompts or no spread.
    """
    s = np.asarray(successes, dtype=np.float64)
    n = np.asarray(attempts, dtype=np.float64)
    seen = n > 0
    if seen.sum() < 2:
        return default
    r = s[seen] / n[seen]
    inv_n = float(np.mean(1.0 / n[seen]))
    m = float(np.clip(r.mean(), 1e-3, 1 - 1e-3))
    var_r = float(r.var())
    base = m * (1.0 - m)
    denom = max(1.0 - inv_n, 1e-6)
    var_p = (var_r - base * inv_n) / denom
    var_p = float(np.clip(var_p, base / 1001.0, base / 1.2))
    kappa = float(np.clip(base / var_p - 1.0, 0.2, 1000.0))
    return max(m * kappa, 0.05), max((1.0 - m) * kappa, 0.05)
