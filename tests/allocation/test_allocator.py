"""allocate / Allocator: optimality against brute force, paper mode by hand, errors."""

from __future__ import annotations

import contextlib
import math
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import knapsack_rl
from knapsack_rl import Allocator, allocate
from knapsack_rl.allocation import solvers
from knapsack_rl.allocation.values import bayes_value, paper_value

SETTINGS = settings(max_examples=300, deadline=None)


def V(n: int, p: float) -> float:
    """Value(N, p) written out by hand (docs/method.md)."""
    if n <= 1:
        return 0.0
    return (1 - p**n - (1 - p) ** n) * p * (1 - p) ** 2


def dp_allocation(values: list[list[float]], lo: int, budget: int) -> float:
    """Best sum_i values[i][N_i - lo] with sum N_i == budget (exhaustive DP)."""
    best = {0: 0.0}
    for row in values:
        new: dict[int, float] = {}
        for used, v in best.items():
            for k, val in enumerate(row):
                n = used + lo + k
                if n <= budget and v + val > new.get(n, -math.inf):
                    new[n] = v + val
        best = new
    return best[budget]


@contextlib.contextmanager
def search_knobs(data):
    floor = data.draw(st.sampled_from([1, 4, solvers._CANDIDATE_FLOOR]), label="floor")
    sample = data.draw(st.sampled_from([2, solvers._SAMPLE_MIN]), label="sample_min")
    with (
        mock.patch.object(solvers, "_CANDIDATE_FLOOR", floor),
        mock.patch.object(solvers, "_SAMPLE_MIN", sample),
        mock.patch.object(solvers, "_SAMPLE_SIZE", 2 if sample == 2 else solvers._SAMPLE_SIZE),
    ):
        yield


rates = st.one_of(
    st.floats(0.0, 1.0, allow_nan=False),
    st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0]),  # ties and p in {0, 1}
)


@st.composite
def batches(draw, max_m=7):
    m = draw(st.integers(1, max_m))
    lo = draw(st.integers(1, 3))
    hi = draw(st.integers(lo, lo + 9))
    p = np.array(draw(st.lists(rates, min_size=m, max_size=m)))
    budget = draw(st.integers(m * lo, m * hi))
    return p, lo, hi, budget


# ----------------------------------------------------------------- knapsack
@SETTINGS
@given(batches(), st.data())
def test_knapsack_is_optimal(batch, data):
    p, lo, hi, budget = batch
    with search_knobs(data):
        res = Allocator(min_rollouts=lo, max_rollouts=hi).allocate(p, budget=budget)
    r = res.rollouts
    assert r.dtype == np.int64 and r.shape == p.shape
    assert r.sum() == budget and r.min() >= lo and r.max() <= hi
    got = sum(V(int(n), float(q)) for n, q in zip(r, p))
    best = dp_allocation([[V(n, q) for n in range(lo, hi + 1)] for q in p], lo, budget)
    assert got == pytest.approx(best, rel=1e-12, abs=1e-15)
    assert res.objective == pytest.approx(got, rel=1e-12, abs=1e-15)
    assert res.upper_bound == res.objective and res.gap == 0.0
    # p in {0, 1} have no value: they stay at min unless every valued prompt is full
    dead = (p == 0) | (p == 1)
    if np.any(r[~dead] < hi):
        assert np.all(r[dead] == lo)


@SETTINGS
@given(batches(), st.data())
def test_knapsack_deterministic_ties(batch, data):
    p, lo, hi, budget = batch
    r1 = allocate(p, budget=budget, min_rollouts=lo, max_rollouts=hi)
    with search_knobs(data):
        r2 = allocate(p, budget=budget, min_rollouts=lo, max_rollouts=hi)
    assert np.array_equal(r1, r2)
    # equal rates: earlier prompts never get fewer rollouts than later ones
    for q in np.unique(p):
        idx = np.flatnonzero(p == q)
        assert np.all(np.diff(r1[idx]) <= 0)


def test_knapsack_ties_go_to_earlier_prompts():
    r = allocate([0.3] * 5, budget=5 * 2 + 7)
    assert r.tolist() == [4, 4, 3, 3, 3]


def test_knapsack_leftover_to_zero_then_rest():
    # valued prompt 0 fills to max 4; 3 left: p = 0 prompt first (to max), then p = 1
    r = allocate([0.5, 0.0, 1.0], budget=11, min_rollouts=2, max_rollouts=4)
    assert r.tolist() == [4, 4, 3]
    r = allocate([0.0, 1.0, 0.0, 1.0], budget=4 * 2 + 7, min_rollouts=2, max_rollouts=8)
    assert r.tolist() == [6, 2, 5, 2]


def test_counts_equal_rates():
    s = np.array([1, 3, 0, 8])
    n = np.array([4, 4, 8, 8])
    assert np.array_equal(allocate(successes=s, attempts=n, budget=40), allocate(s / n, budget=40))


def test_large_batch_certificate():
    """M = 100k takes the subsample path; check the exchange (KKT) certificate."""
    rng = np.random.default_rng(5)
    p = rng.uniform(0, 1, 100_000)
    p[:1000] = 0.0
    res = Allocator().allocate(p, rollouts_per_prompt=8)
    r = res.rollouts
    assert r.sum() == 800_000 and r.min() >= 2 and r.max() <= 128
    gain = paper_value(r + 1, p) - paper_value(r, p)
    loss = paper_value(r, p) - paper_value(r - 1, p)
    valued = (p > 0) & (p < 1)
    worst_taken = loss[valued & (r > 2)].min()
    best_left = gain[valued & (r < 128)].max()
    assert worst_taken >= best_left - 1e-15
    assert np.all(r[:1000] == 2)


# -------------------------------------------------------------------- bayes
@st.composite
def count_batches(draw, max_m=6):
    m = draw(st.integers(1, max_m))
    lo = draw(st.integers(1, 3))
    hi = draw(st.integers(lo, lo + 8))
    n = np.array(draw(st.lists(st.integers(0, 20), min_size=m, max_size=m)))
    s = np.array([draw(st.integers(0, int(k))) for k in n])
    budget = draw(st.integers(m * lo, m * hi))
    prior = draw(st.one_of(st.none(), st.tuples(st.floats(0.2, 5), st.floats(0.2, 5))))
    return s, n, lo, hi, budget, prior


@SETTINGS
@given(count_batches(), st.data())
def test_bayes_is_optimal(batch, data):
    s, n, lo, hi, budget, prior = batch
    with search_knobs(data):
        res = Allocator(method="bayes", min_rollouts=lo, max_rollouts=hi).allocate(
            successes=s, attempts=n, budget=budget, prior=prior
        )
    r = res.rollouts
    assert r.sum() == budget and r.min() >= lo and r.max() <= hi
    a0, b0 = res.prior
    if prior is not None:
        assert (a0, b0) == prior
    a, b = a0 + s, b0 + n - s
    vals = [[float(bayes_value(k, a[i], b[i])) for k in range(lo, hi + 1)] for i in range(len(s))]
    best = dp_allocation(vals, lo, budget)
    assert res.objective == pytest.approx(best, rel=1e-10, abs=1e-15)
    assert np.allclose(res.p, a / (a + b))


def test_bayes_needs_counts():
    with pytest.raises(ValueError, match="successes"):
        allocate([0.5, 0.5], budget=8, method="bayes")


def test_bayes_all_wrong_prompts_keep_value():
    # observed only as all-wrong: the posterior still gives them a share
    r = allocate(
        successes=[0, 0, 5], attempts=[8, 8, 10], budget=60, method="bayes", prior=(1.0, 1.0)
    )
    assert r[0] > 2 and r[0] - r[1] in (0, 1)  # equal posteriors: ties to the first


# --------------------------------------------------------------- token cost
@st.composite
def cost_batches(draw, max_m=5):
    m = draw(st.integers(1, max_m))
    lo = draw(st.integers(1, 3))
    hi = draw(st.integers(lo, lo + 6))
    p = np.array(draw(st.lists(rates, min_size=m, max_size=m)))
    cost = np.array(draw(st.lists(st.integers(1, 4), min_size=m, max_size=m)))
    base = int((cost * lo).sum())
    tokens = draw(st.integers(base, int((cost * hi).sum()) + 3))
    return p, cost, lo, hi, tokens


def dp_tokens(p, cost, lo, hi, tokens):
    """Best sum V(N_i, p_i) with sum cost_i N_i <= tokens (exhaustive over spent tokens)."""
    best = {0: 0.0}
    for q, c in zip(p, cost):
        new: dict[int, float] = {}
        for used, v in best.items():
            for n in range(lo, hi + 1):
                u = used + c * n
                if u <= tokens and v + V(n, q) > new.get(u, -math.inf):
                    new[u] = v + V(n, q)
        best = new
    return max(best.values())


@SETTINGS
@given(cost_batches(), st.data())
def test_token_budget_bound(batch, data):
    p, cost, lo, hi, tokens = batch
    with search_knobs(data):
        res = Allocator(min_rollouts=lo, max_rollouts=hi).allocate(
            p, cost=cost, token_budget=tokens
        )
    r = res.rollouts
    assert r.min() >= lo and r.max() <= hi
    assert res.token_cost == pytest.approx(float((cost * r).sum()))
    assert res.token_cost <= tokens + 1e-9
    best = dp_tokens(p, cost, lo, hi, tokens)
    assert res.objective <= best + 1e-12
    assert best <= res.upper_bound + 1e-12
    assert res.gap is not None and res.gap >= 0


@settings(max_examples=60, deadline=None)
@given(count_batches(max_m=4), st.lists(st.integers(1, 3), min_size=4, max_size=4))
def test_token_budget_bayes_bound(batch, costs):
    s, n, lo, hi, _, prior = batch
    cost = np.array(costs[: len(s)])
    tokens = int((cost * (lo + hi)).sum()) // 2 + int((cost * lo).sum()) // 2
    res = Allocator(method="bayes", min_rollouts=lo, max_rollouts=hi).allocate(
        successes=s, attempts=n, cost=cost, token_budget=tokens, prior=prior
    )
    a0, b0 = res.prior
    a, b = a0 + s, b0 + n - s
    best = {0: 0.0}
    for i, c in enumerate(cost):
        new: dict[int, float] = {}
        for used, v in best.items():
            for k in range(lo, hi + 1):
                u = used + c * k
                val = v + float(bayes_value(k, a[i], b[i]))
                if u <= tokens and val > new.get(u, -math.inf):
                    new[u] = val
        best = new
    opt = max(best.values())
    assert res.objective <= opt + 1e-12 <= res.upper_bound + 2e-12


def test_token_budget_errors():
    with pytest.raises(ValueError, match="cannot pay"):
        allocate([0.5, 0.5], cost=[10, 10], token_budget=30)
    with pytest.raises(ValueError, match="together"):
        allocate([0.5, 0.5], cost=[10, 10])
    with pytest.raises(ValueError, match="> 0"):
        allocate([0.5, 0.5], cost=[10, 0], token_budget=100)
    with pytest.raises(ValueError, match="paper"):
        allocate([0.5, 0.5], cost=[1, 1], token_budget=10, method="paper")


# ------------------------------------------------------------------ uniform
def test_uniform_split():
    assert allocate([0.1, 0.2, 0.3], budget=11, method="uniform").tolist() == [4, 4, 3]
    assert allocate([0.1, 0.2], rollouts_per_prompt=8, method="uniform").tolist() == [8, 8]


# ----------------------------------------------------------- paper by hand
def paper(p, valid=None, **kw):
    lo = kw.pop("min_rollouts", 2)
    hi = kw.pop("max_rollouts", 128)
    return Allocator(method="paper", min_rollouts=lo, max_rollouts=hi).allocate(
        np.array(p, dtype=float), valid=valid, **kw
    )


def test_paper_base_invalid_and_fallback_to_zero_prompts():
    # base: effective 2, valid p=0 -> 2, valid p=1 -> 2, invalid -> n = 8; sum 14, R = 6
    # fallback: c = ln 0.1 / ln 0.5 = 3.32 -> C = 3 < 6: surplus 3 over the p_hat = 0
    # prompts (1 and the invalid 3): +2, +1; knapsack: the only effective prompt takes 3.
    assert math.floor(math.log(0.1) / math.log(0.5)) == 3
    res = paper([0.5, 0.0, 1.0, 0.3], valid=[True, True, True, False], budget=20)
    assert res.rollouts.tolist() == [5, 4, 2, 9]
    assert res.extra["path"] == "fallback" and res.extra["surplus"] == 3


def test_paper_fallback_to_non_effective_when_no_zero_prompts():
    # base [2, 2, 2], R = 8, C = 3: surplus 5 over the p = 1 prompts (+3, +2), knapsack 3
    res = paper([0.5, 1.0, 1.0], budget=14)
    assert res.rollouts.tolist() == [5, 5, 4]


def test_paper_no_effective_prompts_to_zero_prompts():
    # base [2, 2, 2], R = 7 over the two p_hat = 0 prompts: +4, +3
    res = paper([0.0, 1.0, 0.0], budget=13)
    assert res.rollouts.tolist() == [6, 2, 5]
    assert res.extra["path"] == "no_effective_to_zero"
    # invalid prompts count as p_hat = 0 here too
    res = paper([0.4, 1.0], valid=[False, True], budget=12)  # base [8, 2], R = 2 -> prompt 0
    assert res.rollouts.tolist() == [10, 2]


def test_paper_no_effective_no_zero_every_prompt_gets_n():
    res = paper([1.0, 1.0, 1.0], rollouts_per_prompt=8)
    assert res.rollouts.tolist() == [8, 8, 8]
    assert res.extra["path"] == "no_effective_uniform"


def test_paper_knapsack_step_k0_worth_zero():
    # two effective prompts, R = 2 (C = 3 + 21 > 2, no fallback). Items: k = 0 worth 0.
    p0, p1 = 0.5, 0.1
    options = {
        (2, 0): V(4, p0),
        (1, 1): V(3, p0) + V(3, p1),
        (0, 2): V(4, p1),
    }
    best = max(options, key=options.get)
    assert best == (1, 1)
    assert paper([p0, p1], budget=6).rollouts.tolist() == [2 + best[0], 2 + best[1]]
    # the knapsack method counts Value(L) for k = 0, and prefers (2, 0) here
    full = {k: V(2 + k[0], p0) + V(2 + k[1], p1) for k in options}
    kbest = max(full, key=full.get)
    assert kbest == (2, 0)
    assert allocate([p0, p1], budget=6).tolist() == [2 + kbest[0], 2 + kbest[1]]


def test_paper_all_effective_division_by_zero_case():
    # every prompt effective and C = 6 < R = 10: the reference divides by zero here.
    res = paper([0.5, 0.5], budget=14)
    assert res.rollouts.sum() == 14
    assert res.rollouts.tolist() == [7, 7]
    res = paper([0.5, 0.9, 0.2], budget=3 * 2 + 400, max_rollouts=200)
    assert res.rollouts.sum() == 406


def test_paper_round_robin_passes_max():
    # base [2, 2, 2, 2], R = 8; C = 3 + 4 = 7 < 8: surplus 1 to the non-effective prompts
    # (no p_hat = 0 ones) -> prompt 2; knapsack caps U - L = 2 each spend 4 of R = 7, and
    # the 3 left go round-robin over the effective prompts, past U = 4.
    assert math.floor(math.log(0.1) / math.log(0.6)) == 4
    res = paper([0.5, 0.4, 1.0, 1.0], budget=16, max_rollouts=4)
    assert res.rollouts.tolist() == [6, 5, 3, 2]
    assert res.extra["round_robin"] == 3


def test_paper_budget_below_base():
    with pytest.raises(ValueError, match="base allocation"):
        paper([0.5, 0.5], valid=[False, False], budget=10)  # base 16


def reference_paper(p, valid, budget, lo, hi, n, alpha=0.9):
    """Straightforward re-implementation of paper mode (docs/method.md) with a plain DP knapsack."""
    m = len(p)
    p_hat = [p[i] if valid[i] else 0.0 for i in range(m)]
    eff = [i for i in range(m) if valid[i] and 0 < p_hat[i] < 1]
    zero = [i for i in range(m) if p_hat[i] == 0]
    r = [lo if i in eff else (n if not valid[i] else lo) for i in range(m)]
    R = budget - sum(r)

    def spread(targets, extra):
        for k, i in enumerate(targets):
            r[i] += extra // len(targets) + (1 if k < extra % len(targets) else 0)

    if R <= 0:
        return r
    if not eff:
        if zero:
            spread(zero, R)
        else:
            r = [budget // m + (1 if i < budget % m else 0) for i in range(m)]
        return r

    def needed(q):
        log_q = math.log(max(q, 1 - q))
        return math.log(1 - alpha) / log_q if log_q < 0 else math.inf  # p ~ 1e-53: 1 - p == 1

    C = sum(math.floor(min(hi, needed(p_hat[i]))) for i in eff)
    if C < R and len(eff) < m:
        spread(zero if zero else [i for i in range(m) if i not in eff], R - C)
        R = C
    take = min(R, len(eff) * (hi - lo))
    # DP over effective prompts: item value 0 for k = 0, Value(lo + k) for k >= 1
    best = {0: (0.0, [])}
    for i in eff:
        new = {}
        for used, (v, ks) in best.items():
            for k in range(0, hi - lo + 1):
                u = used + k
                if u > take:
                    break
                val = v + (V(lo + k, p_hat[i]) if k else 0.0)
                if u not in new or val > new[u][0]:
                    new[u] = (val, ks + [k])
        best = new
    for i, k in zip(eff, best[take][1]):
        r[i] += k
    left = R - take
    if left > 0:
        spread(eff, left)
    return r


def knap_value(r, p, valid, lo):
    return sum(
        V(int(r[i]), p[i]) if r[i] > lo else 0.0 for i in range(len(p)) if valid[i] and 0 < p[i] < 1
    )


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_paper_matches_reference_reimplementation(data):
    m = data.draw(st.integers(1, 7))
    lo = data.draw(st.integers(1, 3))
    hi = data.draw(st.integers(lo, lo + 8))
    n = data.draw(st.integers(lo, hi + 2))
    p = data.draw(st.lists(rates, min_size=m, max_size=m))
    valid = data.draw(st.lists(st.booleans(), min_size=m, max_size=m))
    base = sum(n if not v else lo for v in valid)
    lo_b, hi_b = max(base, m * lo), m * hi
    if lo_b > hi_b:
        return
    budget = data.draw(st.integers(lo_b, hi_b))
    with search_knobs(data):
        res = Allocator(
            method="paper", min_rollouts=lo, max_rollouts=hi, rollouts_per_prompt=n
        ).allocate(np.array(p), valid=valid, budget=budget)
    got = res.rollouts
    want = np.array(reference_paper(p, valid, budget, lo, hi, n))
    assert got.sum() == budget == want.sum()
    eff = np.array([v and 0 < q < 1 for q, v in zip(p, valid)], dtype=bool)
    # outside the knapsack step everything is deterministic and must match exactly
    assert np.array_equal(got[~eff], want[~eff])
    assert knap_value(got, p, valid, lo) == pytest.approx(
        knap_value(want, p, valid, lo), rel=1e-12, abs=1e-15
    )


# ------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"p": [0.5, 0.5], "budget": 3}, "cannot be met"),
        ({"p": [0.5, 0.5], "budget": 257}, "cannot be met"),
        ({"p": [0.5, 0.5], "budget": 8, "rollouts_per_prompt": 4}, "exactly one"),
        ({"p": [0.5, 0.5]}, "exactly one"),
        ({"p": [0.5, 1.5], "budget": 8}, r"p\[1\]"),
        ({"p": [0.5, float("nan")], "budget": 8}, "not finite"),
        ({"successes": [3, 2], "attempts": [2, 2], "budget": 8}, "successes"),
        ({"successes": [-1, 2], "attempts": [2, 2], "budget": 8}, "negative"),
        ({"p": [0.5, 0.5], "budget": 8.5}, "integer"),
        ({"p": [0.5, 0.5], "budget": 8, "method": "greedy"}, "unknown"),
        ({"p": [0.5, 0.5], "budget": 8, "min_rollouts": 5, "max_rollouts": 4}, "min_rollouts"),
        ({"p": [], "budget": 0}, "no prompts"),
        ({"p": [0.5, 0.5], "successes": [1, 1], "attempts": [2, 2], "budget": 8}, "either"),
    ],
)
def test_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        allocate(**kwargs)


def test_allocation_object():
    res = Allocator(rollouts_per_prompt=8).allocate([0.1, 0.5, 0.9, 1.0])
    assert isinstance(res, knapsack_rl.Allocation)
    assert len(res) == 4 and res.budget == 32 and res.method == "knapsack"
    assert res.objective == pytest.approx(float(res.value.sum()))
    assert np.allclose(res.value, paper_value(res.rollouts, [0.1, 0.5, 0.9, 1.0]))
    assert res.seconds >= 0


# ------------------------------------------------- issue 10: rounding, priors, names
def test_token_budget_float_rounding_keeps_every_rollout():
    # 30 rollouts at cost 0.1 sum to 3.0000000000000004 in floats: they still fit in 3.0
    r = allocate([0.3, 0.6, 0.5], cost=[0.1] * 3, token_budget=3.0)
    assert r.sum() == 30
    assert allocate(
        [0.3, 0.6, 0.5], cost=[0.1] * 3, token_budget=3.0, method="uniform"
    ).tolist() == [
        10,
        10,
        10,
    ]


@pytest.mark.parametrize("c", [0.1, 0.3, 0.7, 1.1, 2.9, 0.01])
def test_equal_non_integer_costs_match_the_rollout_budget(c):
    p = np.array([0.05, 0.2, 0.4, 0.6, 0.9])
    for budget in (10, 17, 33, 64):
        by_tokens = Allocator(max_rollouts=16).allocate(p, cost=[c] * 5, token_budget=c * budget)
        by_count = Allocator(max_rollouts=16).allocate(p, budget=budget)
        assert by_tokens.rollouts.sum() == budget
        assert by_tokens.objective == pytest.approx(by_count.objective, rel=1e-12)


def test_token_budget_exactly_at_the_minimum():
    r = allocate([0.3, 0.6, 0.5], cost=[0.1] * 3, token_budget=0.6)  # 0.1 * 2 * 3
    assert r.tolist() == [2, 2, 2]


@pytest.mark.parametrize(
    "prior, counts",
    [
        ((float("inf"), 1.0), 1.0),
        ((1e308, 1e308), 1.0),
        ((1.0, 1.0), 1e15),
    ],
)
def test_bayes_prior_out_of_range_rejected(prior, counts):
    s, n = np.array([3.0, 5.0]) * counts, np.array([8.0, 8.0]) * counts
    with pytest.raises(ValueError, match="cannot be computed stably|prior must"):
        Allocator(method="bayes").allocate(successes=s, attempts=n, prior=prior, budget=16)


def test_bayes_large_but_stable_counts_stay_bounded():
    s, n = np.array([3.0, 5.0]) * 1e6, np.array([8.0, 8.0]) * 1e6
    res = Allocator(method="bayes").allocate(successes=s, attempts=n, prior=(1, 1), budget=16)
    assert res.rollouts.sum() == 16 and np.all(res.value <= 4 / 27 + 1e-12)
    assert np.allclose(res.value, paper_value(res.rollouts, s / n), rtol=1e-4)


def test_per_prompt_is_a_deprecated_alias():
    with pytest.warns(DeprecationWarning, match="rollouts_per_prompt"):
        old = Allocator(per_prompt=8).allocate([0.1, 0.5])
    with pytest.warns(DeprecationWarning):
        old_call = Allocator().allocate([0.1, 0.5], per_prompt=8)
    new = Allocator(rollouts_per_prompt=8).allocate([0.1, 0.5])
    assert np.array_equal(old.rollouts, new.rollouts)
    assert np.array_equal(old_call.rollouts, new.rollouts)


def test_prompt_stats_form_equals_array_form():
    from knapsack_rl.allocation.stats import PromptStats

    p = np.array([0.0, 0.2, 0.5, 1.0])
    s, n = np.array([0.0, 2.0, 4.0, 8.0]), np.array([8.0, 10.0, 8.0, 8.0])
    valid = np.array([True, True, False, True])
    st = PromptStats(p=p, successes=s, attempts=n, valid=valid, prior=(2.0, 3.0))
    for method, kw in (
        ("knapsack", {"p": p}),
        ("uniform", {"p": p}),
        ("paper", {"p": p, "valid": valid}),
        ("bayes", {"successes": s, "attempts": n, "prior": (2.0, 3.0)}),
    ):
        a = Allocator(method=method, max_rollouts=16).allocate(st, budget=30)
        b = Allocator(method=method, max_rollouts=16).allocate(**kw, budget=30)
        assert np.array_equal(a.rollouts, b.rollouts), method
        assert a.objective == b.objective


def test_paper_budget_above_m_times_max():
    """The reference's behaviour: prompts that are not valid get n, and the
    round-robin leftovers may pass max."""
    res = Allocator(method="paper", max_rollouts=4, rollouts_per_prompt=8).allocate(
        [0.5, 0.3, 0.0], valid=[True, True, False], budget=30
    )
    assert res.rollouts.sum() == 30 and res.rollouts[2] >= 8
    assert res.rollouts.max() > 4 and res.extra["round_robin"] > 0
    with pytest.raises(ValueError, match="cannot be met"):
        Allocator(method="knapsack", max_rollouts=4).allocate([0.5, 0.3, 0.0], budget=30)
