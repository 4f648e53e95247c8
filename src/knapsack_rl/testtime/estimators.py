"""pass@k that stays honest when questions got different numbers of samples.

With ``n_i`` samples of question ``i`` and ``c_i`` correct, three estimates of the mean pass@k:

- :func:`pass_at_k`: the unbiased estimator of Chen et al. (2021), ``1 - C(n - c, k) / C(n, k)``
  per question, averaged over questions. It is unbiased when each ``n_i`` was fixed before
  that question's samples were seen (a uniform ``n``, or ragged counts from a plan made in
  advance). It is **not** unbiased when ``n_i`` depends on the question's own outcomes.
- :func:`pooled_pass_at_1`: ``sum c / sum n``. Biased under adaptive counts, kept to show it.
- :func:`posterior_pass_at_k`: the Beta posterior mean of ``1 - (1 - p)^k`` per question,
  averaged. A rule that decides whether to sample again from the samples seen (optional
  stopping) changes which data are seen, not the likelihood of what was seen, so the
  posterior is the same as for a fixed ``n`` and stays valid. With the prior the questions
  were drawn from, the mean of the posterior means is unbiased for the mean pass@k under
  any stopping rule; :func:`fit_prior` estimates that prior from the questions themselves.

Why the other two fail under optional stopping: stopping a question at its first correct
sample (what coverage does) makes ``c_i / n_i = 1 / n_i``, and ``E[1 / N] > p`` for a
geometric ``N``; pooling weights each question by its ``n_i``, and ``n_i`` is largest for the
questions that fail most, so ``sum c / sum n`` falls below the mean pass rate. The test
``tests/testtime/test_estimators.py`` shows both biases, and the posterior's absence of bias.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, gammaln

__all__ = ["fit_prior", "pass_at_k", "pooled_pass_at_1", "posterior_pass_at_k"]


def _counts(correct, samples) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(correct, dtype=np.float64).reshape(-1)
    n = np.asarray(samples, dtype=np.float64).reshape(-1)
    if c.shape != n.shape:
        raise ValueError(f"{c.size} correct counts but {n.size} sample counts")
    if np.any(n < 0) or np.any(c < 0) or np.any(c > n) or np.any(c != np.round(c)):
        k = int(np.flatnonzero((n < 0) | (c < 0) | (c > n) | (c != np.round(c)))[0])
        raise ValueError(f"question {k}: {c[k]:g} correct of {n[k]:g} samples is not a count")
    return c, n


def pass_at_k(correct, samples, k: int) -> np.ndarray:
    """Per question, the unbiased pass@k of Chen et al.: ``1 - C(n-c, k) / C(n, k)``;
    float64 (Q,). Needs ``n_i >= k`` for every question."""
    c, n = _counts(correct, samples)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    short = np.flatnonzero(n < k)
    if short.size:
        i = int(short[0])
        raise ValueError(f"question {i} has {n[i]:g} samples, fewer than k = {k}")
    fail = n - c
    with np.errstate(invalid="ignore"):
        log_ratio = gammaln(fail + 1) - gammaln(fail - k + 1) - gammaln(n + 1) + gammaln(n - k + 1)
    return np.where(fail < k, 1.0, 1.0 - np.exp(np.where(fail < k, 0.0, log_ratio)))


def pooled_pass_at_1(correct, samples) -> float:
    """``sum c / sum n`` (biased when counts depend on outcomes; see the module docstring)."""
    c, n = _counts(correct, samples)
    return float(c.sum() / n.sum())


def posterior_pass_at_k(correct, samples, k: int = 1, prior=(1.0, 1.0)) -> np.ndarray:
    """Per question, ``E[1 - (1 - p)^k]`` under the Beta posterior from ``prior`` (a pair, or
    arrays of shape (Q,)); float64 (Q,). Valid under any stopping rule."""
    c, n = _counts(correct, samples)
    a = np.asarray(prior[0], dtype=np.float64) + c
    b = np.asarray(prior[1], dtype=np.float64) + (n - c)
    return 1.0 - np.exp(betaln(a, b + k) - betaln(a, b))


def fit_prior(correct, samples) -> tuple[float, float]:
    """The Beta(a, b) prior that best explains the questions' counts (maximum marginal
    likelihood of the sequences seen, which optional stopping leaves unchanged)."""
    c, n = _counts(correct, samples)
    keep = n > 0
    c, n = c[keep], n[keep]
    if not c.size:
        return (1.0, 1.0)

    def nll(x):
        a, b = np.exp(x)
        return -float(np.sum(betaln(a + c, b + n - c) - betaln(a, b)))

    m = (c.sum() + 0.5) / (n.sum() + 1.0)
    res = minimize(nll, np.log([m * 2.0, (1.0 - m) * 2.0]), method="Nelder-Mead")
    a, b = np.exp(np.clip(res.x, -7.0, 7.0))
    return float(a), float(b)
