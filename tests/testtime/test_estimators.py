from collections import deque
from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knapsack_rl.testtime import (
    TestTimePlanner,
    fit_prior,
    pass_at_k,
    pooled_pass_at_1,
    posterior_pass_at_k,
)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 30), data=st.data())
def test_pass_at_k_matches_its_combinatorial_definition(n, data):
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    want = 1 - comb(n - c, k) / comb(n, k)
    assert pass_at_k([c], [n], k)[0] == pytest.approx(want, abs=1e-9)


def _coverage_runs(rng, p, max_samples):
    """Stop each question at its first correct sample: optional stopping."""
    m = p.size
    planner = TestTimePlanner("coverage", max_samples=max_samples)
    queue = deque(planner.start(list(range(m)), m * max_samples).tolist())
    while queue:
        i = queue.popleft()
        queue.extend(planner.record(i, None, correct=bool(rng.random() < p[i])).tolist())
    planner.finish()
    c = np.asarray([sum(x) for x in planner.correct])
    return c, planner.samples.copy()


def test_optional_stopping_biases_the_naive_estimators_but_not_the_posterior():
    """pass@1 when every question stops at its first correct sample (coverage). The true
    rates come from a known Beta prior, so the posterior mean under that prior is unbiased;
    the per-question mean c/n and the pooled sum c / sum n are not."""
    rng = np.random.default_rng(0)
    a, b, m, reps = 0.6, 1.4, 400, 30
    naive, pooled, post, truth = [], [], [], []
    for _ in range(reps):
        p = rng.beta(a, b, m)
        c, n = _coverage_runs(rng, p, max_samples=8)
        truth.append(p.mean())
        naive.append(pass_at_k(c, n, 1).mean())
        pooled.append(pooled_pass_at_1(c, n))
        post.append(posterior_pass_at_k(c, n, 1, prior=(a, b)).mean())
    truth = np.asarray(truth)

    def z(est):  # bias over its standard error
        d = np.asarray(est) - truth
        return d.mean() / (d.std(ddof=1) / np.sqrt(reps)), d.mean()

    z_naive, bias_naive = z(naive)
    z_pooled, bias_pooled = z(pooled)
    z_post, _ = z(post)
    assert z_naive > 5 and bias_naive > 0.03  # 1/N overstates p
    assert z_pooled < -5 and bias_pooled < -0.03  # many samples of the questions that fail
    assert abs(z_post) < 3


def test_pass_at_k_is_unbiased_for_ragged_counts_fixed_in_advance():
    rng = np.random.default_rng(1)
    m, reps = 300, 40
    p = rng.beta(0.8, 1.2, m)
    n = rng.integers(2, 12, m)  # ragged, but chosen before any sample
    truth = np.mean(1 - (1 - p) ** 2)
    est = [pass_at_k(rng.binomial(n, p), n, 2).mean() for _ in range(reps)]
    d = np.asarray(est) - truth
    assert abs(d.mean()) < 3 * d.std(ddof=1) / np.sqrt(reps)


def test_fit_prior_recovers_the_prior_under_optional_stopping():
    rng = np.random.default_rng(2)
    p = rng.beta(0.6, 1.4, 3000)
    c, n = _coverage_runs(rng, p, max_samples=8)
    a, b = fit_prior(c, n)
    assert a / (a + b) == pytest.approx(0.3, abs=0.03)


def test_estimators_name_the_bad_question():
    with pytest.raises(ValueError, match="question 1 has 1 samples, fewer than k = 2"):
        pass_at_k([0, 0], [3, 1], 2)
    with pytest.raises(ValueError, match="question 0: 4 correct of 3"):
        pooled_pass_at_1([4], [3])
