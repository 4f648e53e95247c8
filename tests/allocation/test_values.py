"""Value functions: closed forms, marginal gains, posterior expectations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from knapsack_rl.allocation.values import (
    PaperGains,
    bayes_gain,
    bayes_value,
    beta_moment,
    fit_beta_prior,
    info_gain,
    paper_gain,
    paper_value,
    prob_nonzero_gradient,
    rollouts_needed,
)


def test_rollouts_needed_closed_form():
    # spec: p = 0.01, alpha = 0.9 -> 229
    c = float(rollouts_needed(0.01, 0.9))
    assert c == pytest.approx(math.log(0.1) / math.log(0.99))
    assert math.floor(c) == 229
    assert float(rollouts_needed(0.99, 0.9)) == pytest.approx(c)  # symmetric in p <-> 1 - p
    assert float(rollouts_needed(0.5, 0.9)) == pytest.approx(math.log(0.1) / math.log(0.5))
    assert float(rollouts_needed(0.5, rule="expectation")) == pytest.approx(3.0)
    assert float(rollouts_needed(0.1, rule="expectation")) == pytest.approx(1 / 0.09 - 1)
    # no finite number of rollouts helps p in {0, 1}; tiny p stays finite and huge
    assert np.all(np.isinf(rollouts_needed(np.array([0.0, 1.0]))))
    assert 1e30 < float(rollouts_needed(1e-38)) < np.inf
    with pytest.raises(ValueError):
        rollouts_needed(0.5, rule="median")


def test_alpha_probability_meaning():
    # c is where the majority outcome alone stops being likely: max(p, 1-p)^N <= 1 - alpha
    # (the minority term p^N is ignored, so P(non-zero gradient) can fall a bit short)
    for p in (0.01, 0.2, 0.5, 0.93):
        c = float(rollouts_needed(p, 0.9))
        q = max(p, 1 - p)
        assert q ** math.ceil(c) <= 0.1 + 1e-12 < q ** (math.ceil(c) - 1)
        assert float(prob_nonzero_gradient(math.ceil(c), p)) >= 0.9 - q ** math.ceil(c)


def test_expected_rollouts_until_nonzero_gradient():
    # E[N] = sum_{n >= 0} P(N > n) = 1 + sum_{n >= 1} (p^n + (1-p)^n) = 1 / (p (1 - p)) - 1
    for p in (0.05, 0.3, 0.5):
        n = np.arange(1, 5000)
        expected = 1.0 + float((1.0 - prob_nonzero_gradient(n, p)).sum())
        assert expected == pytest.approx(float(rollouts_needed(p, rule="expectation")), rel=1e-9)


def test_info_gain_and_value_by_hand():
    assert float(info_gain(1 / 3)) == pytest.approx(4 / 27)
    grid = np.linspace(0, 1, 10001)
    assert grid[np.argmax(info_gain(grid))] == pytest.approx(1 / 3, abs=1e-4)
    assert float(paper_value(3, 0.5)) == pytest.approx(0.75 * 0.125)
    assert float(paper_value(4, 0.1)) == pytest.approx((1 - 0.1**4 - 0.9**4) * 0.1 * 0.81)
    assert float(prob_nonzero_gradient(1, 0.5)) == 0.0
    assert float(prob_nonzero_gradient(0, 0.5)) == 0.0
    assert np.all(paper_value(np.arange(1, 50), 0.0) == 0)
    assert np.all(paper_value(np.arange(1, 50), 1.0) == 0)


def test_paper_gain_is_the_difference_and_decreasing():
    n = np.arange(1, 200)
    for p in (0.01, 0.2, 1 / 3, 0.5, 0.77, 0.999):
        g = paper_gain(n, p)
        diff = paper_value(n + 1, p) - paper_value(n, p)
        # the difference of values cancels catastrophically once gains are tiny
        assert np.allclose(g, diff, rtol=1e-9, atol=1e-14 * float(info_gain(p)))
        assert np.all(g > 0)
        assert np.all(np.diff(g) <= 0)
        # q^n r <= gain / IG <= 2 q^n r (q = max(p, 1 - p), r = 1 - q)
        q = max(p, 1 - p)
        r = 1 - q
        ratio = g / float(info_gain(p)) / (q**n * r)
        assert np.all(ratio >= 1 - 1e-12) and np.all(ratio <= 2 + 1e-12)
    assert float(paper_gain(2, 0.5)) == pytest.approx(0.125 * (0.25 * 0.5 * 2))


def test_paper_gains_object_matches_paper_gain():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 500)
    p[:3] = [0.0, 1.0, 1e-300]
    fn = PaperGains(p, 2)
    j = rng.integers(0, 126, 5000)
    i = rng.integers(0, 500, 5000)
    assert np.allclose(fn(j, i), paper_gain(2 + j, p[i]), rtol=1e-12, atol=0)
    assert np.all(np.diff(fn(np.arange(200), np.full(200, 7))) <= 0)


@pytest.mark.parametrize("offset, first", [(1, False), (2, False), (5, False), (2, True)])
def test_paper_gains_count_bounds_hold(offset, first):
    """The closed-form bounds always contain the exact count (what the solver relies on)."""
    rng = np.random.default_rng(offset)
    p = np.concatenate([rng.uniform(0, 1, 3000), [0.0, 1.0, 0.5, 1e-300, 1e-9, 1 - 1e-12]])
    fn = PaperGains(p, offset, first_from_zero=first)
    m, cap = p.size, 130
    table = fn(np.tile(np.arange(cap), m), np.repeat(np.arange(m), cap)).reshape(m, cap)
    idx = np.arange(m)
    for t in np.concatenate(
        [
            table[rng.integers(0, m, 40), rng.integers(0, cap, 40)],
            10.0 ** rng.uniform(-12, -0.5, 40),
        ]
    ):
        exact = (table >= t).sum(axis=1)
        lo, hi = fn.count_bounds(float(t), idx, np.zeros(m, np.int64), np.full(m, cap))
        assert np.all(lo <= exact) and np.all(exact <= hi)
        assert np.mean(hi - lo) < 6  # and they are tight enough to matter (vs 130)
    # and the model's guess lands near the right level
    caps = np.full(m, cap)
    g = fn.threshold_guess(caps, 6 * m)
    assert 3 * m < (table >= g).sum() < 12 * m


def test_paper_gains_first_from_zero():
    p = np.array([0.1, 0.5, 0.9])
    fn = PaperGains(p, 2, first_from_zero=True)
    j = np.array([0, 0, 0, 1, 3])
    i = np.array([0, 1, 2, 1, 2])
    want = [V for V in paper_value(3, p)] + [float(paper_gain(3, 0.5)), float(paper_gain(5, 0.9))]
    assert fn(j, i) == pytest.approx(want, rel=1e-12)
    g = fn(np.arange(100), np.full(100, 1))
    assert np.all(np.diff(g) <= 0)  # still concave (k = 0 worth 0, then Value(L + k))


def test_beta_moment_against_integration():
    a, b = 2.5, 4.0
    for s, t in ((1, 2), (7, 3), (2, 12)):
        num, _ = integrate.quad(
            lambda x, s=s, t=t: x**s * (1 - x) ** t * stats.beta.pdf(x, a, b), 0, 1
        )
        assert float(beta_moment(a, b, s, t)) == pytest.approx(num, rel=1e-9)


@pytest.mark.parametrize("a, b", [(1.0, 1.0), (0.5, 3.0), (6.0, 2.0), (30.0, 70.0)])
def test_bayes_value_against_integration(a, b):
    for n in (1, 2, 5, 17, 90):
        num, _ = integrate.quad(
            lambda x, n=n: float(paper_value(n, x)) * stats.beta.pdf(x, a, b), 0, 1, limit=200
        )
        assert float(bayes_value(n, a, b)) == pytest.approx(num, rel=1e-7, abs=1e-14)


def test_bayes_value_monte_carlo():
    rng = np.random.default_rng(1)
    x = rng.beta(2.0, 5.0, 400_000)
    for n in (2, 8, 32):
        mc = paper_value(n, x)
        se = mc.std() / math.sqrt(x.size)
        assert abs(float(bayes_value(n, 2.0, 5.0)) - mc.mean()) < 5 * se


def test_bayes_gain_is_the_difference():
    n = np.arange(1, 100)
    for a, b in ((1.0, 1.0), (0.3, 0.3), (12.0, 3.0)):
        g = bayes_gain(n, a, b)
        diff = bayes_value(n + 1, a, b) - bayes_value(n, a, b)
        assert np.allclose(g, diff, rtol=1e-8, atol=1e-15)
        assert np.all(np.diff(g) <= 1e-18)
    # a very concentrated posterior behaves like the point estimate
    assert float(bayes_value(8, 3e6, 7e6)) == pytest.approx(float(paper_value(8, 0.3)), rel=1e-4)


def test_fit_beta_prior():
    rng = np.random.default_rng(2)
    p = rng.beta(2.0, 5.0, 20000)
    n = np.full(p.size, 64)
    s = rng.binomial(n, p)
    a0, b0 = fit_beta_prior(s, n)
    assert a0 == pytest.approx(2.0, rel=0.15) and b0 == pytest.approx(5.0, rel=0.15)
    # U-shaped truth (bimodal batches) is allowed
    p = rng.beta(0.3, 0.5, 20000)
    s = rng.binomial(n, p)
    a0, b0 = fit_beta_prior(s, n)
    assert a0 < 1 and b0 < 1
    # too little data: the default
    assert fit_beta_prior([1], [4]) == (1.0, 1.0)
    assert fit_beta_prior([0, 0], [0, 0], default=(2.0, 2.0)) == (2.0, 2.0)
