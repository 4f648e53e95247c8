"""Exactness of the concave solvers against exhaustive dynamic programs."""

from __future__ import annotations

import contextlib
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knapsack_rl.allocation import solvers
from knapsack_rl.allocation.solvers import (
    GainModel,
    Guided,
    solve_concave,
    solve_concave_costs,
    solve_greedy,
)
from knapsack_rl.allocation.values import BayesGains, PaperGains, paper_gain, paper_gains

SETTINGS = settings(max_examples=400, deadline=None)


@contextlib.contextmanager
def search_knobs(data):
    """Shrink the solver's enumeration floor and subsample threshold so that tiny
    instances exercise the bracket search and the subsample warm start too."""
    floor = data.draw(st.sampled_from([1, 2, 5, solvers._CANDIDATE_FLOOR]), label="floor")
    sample = data.draw(st.sampled_from([2, solvers._SAMPLE_MIN]), label="sample_min")
    with (
        mock.patch.object(solvers, "_CANDIDATE_FLOOR", floor),
        mock.patch.object(solvers, "_SAMPLE_MIN", sample),
        mock.patch.object(solvers, "_SAMPLE_SIZE", 2 if sample == 2 else solvers._SAMPLE_SIZE),
    ):
        yield


def table_gain(table: np.ndarray):
    """A GainFn reading gains from a (M, K) table (rows non-increasing)."""

    def fn(j, i):
        return table[i, j]

    return fn


def dp_best(table: np.ndarray, caps: np.ndarray, budget: int) -> float:
    """Best total gain with sum k_i == budget, 0 <= k_i <= caps[i] (plain DP, no concavity used)."""
    best = np.full(budget + 1, -np.inf)
    best[0] = 0.0
    for i in range(table.shape[0]):
        prefix = np.concatenate([[0.0], np.cumsum(table[i, : caps[i]])])
        new = np.full(budget + 1, -np.inf)
        for k in range(min(caps[i], budget) + 1):
            new[k:] = np.maximum(new[k:], best[: budget + 1 - k] + prefix[k])
        best = new
    return float(best[budget])


def total(table: np.ndarray, k: np.ndarray) -> float:
    return float(sum(table[i, : k[i]].sum() for i in range(table.shape[0])))


@st.composite
def concave_tables(draw, max_m=8, max_k=8):
    m = draw(st.integers(1, max_m))
    k = draw(st.integers(1, max_k))
    # small integers make exact ties common; sorting each row makes it concave
    raw = draw(st.lists(st.integers(0, 6), min_size=m * k, max_size=m * k))
    table = -np.sort(-np.array(raw, dtype=np.float64).reshape(m, k), axis=1)
    caps = np.array(draw(st.lists(st.integers(0, k), min_size=m, max_size=m)), dtype=np.int64)
    return table, caps


@SETTINGS
@given(concave_tables(), st.data())
def test_solve_concave_matches_dp(tc, data):
    table, caps = tc
    budget = data.draw(st.integers(0, int(caps.sum())))
    with search_knobs(data):
        k = solve_concave(table_gain(table), caps, budget)
    assert k.dtype == np.int64
    assert k.sum() == budget
    assert np.all(k >= 0) and np.all(k <= caps)
    assert total(table, k) == pytest.approx(dp_best(table, caps, budget), abs=1e-9)


@SETTINGS
@given(concave_tables(), st.data())
def test_greedy_reference_matches_dp_and_fast_solver(tc, data):
    """The heap greedy (the readable reference) is optimal, and the fast threshold
    solver returns exactly its allocation (same tie rule)."""
    table, caps = tc
    budget = data.draw(st.integers(0, int(caps.sum())))
    ref = solve_greedy(table_gain(table), caps, budget)
    assert ref.sum() == budget and np.all(ref <= caps)
    assert total(table, ref) == pytest.approx(dp_best(table, caps, budget), abs=1e-9)
    with search_knobs(data):
        assert np.array_equal(solve_concave(table_gain(table), caps, budget), ref)


@SETTINGS
@given(
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12),
    st.integers(1, 3),
    st.integers(0, 12),
    st.booleans(),
    st.data(),
)
def test_paper_gains_against_greedy(p, offset, cap, first, data):
    """The closed-form speed-ups (count_bounds, threshold_guess) never change the answer."""
    p = np.array(p)
    caps = np.full(p.size, cap, dtype=np.int64)
    budget = data.draw(st.integers(0, int(caps.sum())))
    fn = paper_gains(p, offset, first_from_zero=first)
    assert isinstance(fn, GainModel)
    with search_knobs(data):
        k = solve_concave(fn, caps, budget)
    ref = solve_greedy(fn, caps, budget)
    assert float(fn(*_units(k)).sum()) == pytest.approx(float(fn(*_units(ref)).sum()), rel=1e-12)


def _units(k):
    owners = np.repeat(np.arange(k.size), k)
    j = np.arange(owners.size) - np.repeat(np.cumsum(k) - k, k)
    return j, owners


def test_bayes_gains_guided_by_paper_model():
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0.3, 20, 300), rng.uniform(0.3, 20, 300)
    plain = BayesGains(a, b, 2)
    guided = Guided(plain, paper_gains(a / (a + b), 2))
    caps = np.full(300, 30, dtype=np.int64)
    for budget in (1, 1000, 8999):
        assert np.array_equal(
            solve_concave(guided, caps, budget), solve_greedy(plain, caps, budget)
        )


@SETTINGS
@given(concave_tables(), st.data())
def test_solve_concave_tie_rule(tc, data):
    """Among units of equal gain, lower prompt indices are served first."""
    table, caps = tc
    budget = data.draw(st.integers(0, int(caps.sum())))
    with search_knobs(data):
        k = solve_concave(table_gain(table), caps, budget)
    assert np.array_equal(k, solve_concave(table_gain(table), caps, budget))
    # Reference: sort all units by (-gain, prompt, unit) and take the first `budget`.
    units = [(-table[i, j], i, j) for i in range(len(caps)) for j in range(caps[i])]
    units.sort()
    want = np.zeros(len(caps), dtype=np.int64)
    for _, i, _ in units[:budget]:
        want[i] += 1
    assert np.array_equal(k, want)


def test_solve_concave_all_ties_large():
    """Every unit has the same gain: the bracket cannot separate them."""
    m = 20000
    caps = np.full(m, 5, dtype=np.int64)
    k = solve_concave(lambda j, i: np.ones(np.shape(j)), caps, 12345)
    want = np.zeros(m, dtype=np.int64)
    want[: 12345 // 5] = 5
    want[12345 // 5] = 12345 % 5
    assert np.array_equal(k, want)


def test_solve_concave_large_kkt():
    """Large batch (subsample warm start): the optimality certificate holds."""
    rng = np.random.default_rng(3)
    m, L, U = 50000, 2, 128
    p = rng.uniform(0, 1, m)
    caps = np.full(m, U - L, dtype=np.int64)
    budget = 6 * m + 17
    k = solve_concave(PaperGains(p, L), caps, budget)
    assert k.sum() == budget and k.min() >= 0 and k.max() <= U - L
    n = L + k
    last = np.where(k > 0, paper_gain(n - 1, p), np.inf)  # worst unit taken
    nxt = np.where(k < U - L, paper_gain(n, p), -np.inf)  # best unit left out
    assert last.min() >= nxt.max() * (1 - 1e-12)


def test_large_model_and_subsample_paths_agree():
    """The closed-form-model path (PaperGains) and the generic subsample path (a plain
    function) must return the very same allocation: both are exact with one tie rule."""
    rng = np.random.default_rng(4)
    m = 60000
    p = rng.choice([0.05, 0.2, 0.5, 0.7], m)  # many exact ties
    p[::7] = rng.uniform(0, 1, p[::7].size)
    caps = np.full(m, 40, dtype=np.int64)
    fn = PaperGains(p, 2)
    for budget in (1, 3 * m + 5, 39 * m):
        k_model = solve_concave(fn, caps, budget)
        k_plain = solve_concave(lambda j, i: fn(j, i), caps, budget)
        assert np.array_equal(k_model, k_plain)
        assert k_model.sum() == budget


def test_solve_concave_rejects_bad_budget():
    with pytest.raises(ValueError):
        solve_concave(lambda j, i: np.ones(np.shape(j)), np.array([1, 2]), 4)
    with pytest.raises(ValueError):
        solve_concave(lambda j, i: np.ones(np.shape(j)), np.array([1, 2]), -1)


def dp_costs(table, caps, cost, budget):
    """Best total gain with sum cost_i k_i <= budget (integer costs)."""
    best = np.zeros(budget + 1)
    for i in range(table.shape[0]):
        prefix = np.concatenate([[0.0], np.cumsum(table[i, : caps[i]])])
        new = best.copy()
        for k in range(1, caps[i] + 1):
            c = k * cost[i]
            if c > budget:
                break
            new[c:] = np.maximum(new[c:], best[: budget + 1 - c] + prefix[k])
        best = new
    return float(best[budget])


@SETTINGS
@given(concave_tables(max_m=5, max_k=6), st.data())
def test_solve_concave_costs_bounds(tc, data):
    table, caps = tc
    cost = np.array(data.draw(st.lists(st.integers(1, 4), min_size=len(caps), max_size=len(caps))))
    budget = data.draw(st.integers(0, int((cost * caps).sum()) + 2))
    with search_knobs(data):
        sol = solve_concave_costs(table_gain(table), caps, cost.astype(float), budget)
    assert np.all(sol.units >= 0) and np.all(sol.units <= caps)
    assert float((cost * sol.units).sum()) <= budget + 1e-9
    assert sol.spent == pytest.approx(float((cost * sol.units).sum()))
    assert sol.gain == pytest.approx(total(table, sol.units), abs=1e-9)
    best = dp_costs(table, caps, cost, budget)
    assert sol.gain <= best + 1e-9 <= sol.upper_bound + 2e-9


def test_solve_concave_costs_unit_costs_exact():
    """With equal costs and an integral budget the ratio greedy is optimal (gap 0)."""
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 300)
    caps = np.full(300, 30, dtype=np.int64)
    fn = PaperGains(p, 2)
    sol = solve_concave_costs(fn, caps, np.full(300, 2.0), 2.0 * 2000)
    k = solve_concave(fn, caps, 2000)
    assert sol.units.sum() == 2000
    assert sol.gain == pytest.approx(
        float(fn(np.zeros(0, np.int64), np.zeros(0, np.int64)).sum())
        + sum(fn(np.arange(k[i]), np.full(k[i], i)).sum() for i in range(300)),
        rel=1e-12,
    )
    assert sol.upper_bound == pytest.approx(sol.gain, rel=1e-12)
