"""Value of giving a prompt N rollouts, and its marginal gains.

``Value(N, p) = (1 - p^N - (1 - p)^N) * p * (1 - p)^2``, and the same value in
expectation under a ``Beta(a, b)`` posterior on p (``docs/method.md``).

Every value here is concave in N, so the exact solvers in
:mod:`knapsack_rl.allocation.solvers` apply. Functions are vectorised over prompts:
``n`` and ``p`` (or ``a``, ``b``) broadcast against each other.
"""

from __future__ import annotations

import numpy as np

from knapsack_rl.allocation.solvers import GeometricGains

__all__ = [
    "info_gain",
    "prob_nonzero_gradient",
    "paper_value",
    "paper_gain",
    "paper_gains",
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
    """``Value(N, p) = ProbNonZeroGradient(N, p) * InfoGain(p)`` (``docs/method.md``)."""
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


def paper_gains(p: np.ndarray, offset: int, first_from_zero: bool = False) -> GeometricGains:
    """Marginal paper gains for fixed rates, in the solvers' ``gain(j, idx)`` form.

    ``gains(j, idx) == paper_gain(offset + j, p[idx])`` up to rounding, written as the
    two geometric terms ``IG q p^n + IG p q^n`` (see :class:`GeometricGains`, which
    also gives the solver its closed-form model of the counts).

    With ``first_from_zero=True`` unit 0 is instead worth ``Value(offset + 1, p)``
    (the paper procedure's knapsack item, where k = 0 extra rollouts is worth 0);
    still non-increasing for ``offset >= 1``.
    """
    p = np.asarray(p, dtype=np.float64)
    first = paper_value(int(offset) + 1, p) if first_from_zero else None
    ig = info_gain(p)
    with np.errstate(divide="ignore"):
        log_p, log_q = np.log(p), np.log1p(-p)
    return GeometricGains(ig * (1.0 - p), log_p, ig * p, log_q, int(offset), first=first)


PaperGains = paper_gains  # the former class name


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

    def __call__(self, j: np.ndarray, idx: np.ndarray) -> np.ndarray:
        from scipy.special import betaln

        n = np.asarray(j, dtype=np.float64) + self.offset
        a, b, lb = self.a[idx], self.b[idx], self.log_beta[idx]
        return np.exp(betaln(a + (n + 1.0), b + 3.0) - lb) + np.exp(
            betaln(a + 2.0, b + (n + 2.0)) - lb
        )


def bayes_value(n: np.ndarray | int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Posterior expected value ``E[Value(N, p)]`` for ``p ~ Beta(a, b)`` (``docs/method.md``, bayes).

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
    """Rollouts a prompt "needs" (the ``paper`` fallback step, ``docs/method.md``), as a float.

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
