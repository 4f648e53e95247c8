import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from scipy.special import betaln
from scipy.stats import beta as beta_dist

import knapsack_rl
from knapsack_rl.allocation.rounds import VALUES, allocate_round, round_value, value_model


def brute_force(s, n, pa, pb, L, U, budget, value):
    need, room = np.maximum(L - n, 0), np.maximum(U - n, 0)
    vm = value_model(value)
    target = min(budget, int(room.sum()))
    best = -1.0
    for e in itertools.product(*[range(need[i], room[i] + 1) for i in range(len(s))]):
        if sum(e) == target:
            v = round_value(np.array(e), s, n, pa + s, pb + n - s, vm)
            best = max(best, float(v.sum()))
    return best, target


@st.composite
def instances(draw, scalar_prior: bool):
    m = draw(st.integers(1, 4))
    n = np.array(draw(st.lists(st.integers(0, 5), min_size=m, max_size=m)))
    s = np.array([draw(st.integers(0, int(k))) for k in n])
    L = draw(st.integers(1, 3))
    U = draw(st.integers(L, 8))
    need, room = np.maximum(L - n, 0), np.maximum(U - n, 0)
    budget = draw(st.integers(int(need.sum()), int(room.sum()) + 2))
    if scalar_prior:
        pa = np.full(m, draw(st.floats(0.1, 5)))
        pb = np.full(m, draw(st.floats(0.1, 5)))
    else:
        pa = np.array(draw(st.lists(st.floats(0.1, 5), min_size=m, max_size=m)))
        pb = np.array(draw(st.lists(st.floats(0.1, 5), min_size=m, max_size=m)))
    value = draw(st.sampled_from(VALUES))
    return s, n, pa, pb, L, U, budget, value


@pytest.mark.parametrize("scalar_prior", [False, True])
def test_exact_against_brute_force(scalar_prior):
    @settings(max_examples=150, deadline=None)
    @given(instances(scalar_prior))
    def check(inst):
        s, n, pa, pb, L, U, budget, value = inst
        x = allocate_round(
            s, n, budget=budget, prior_a=pa, prior_b=pb, min_rollouts=L, max_rollouts=U, value=value
        )
        best, target = brute_force(s, n, pa, pb, L, U, budget, value)
        assert x.dtype == np.int64 and x.sum() == target
        assert np.all(x >= 0) and np.all(n + x <= np.maximum(U, n))
        assert np.all(n + x >= np.minimum(L, np.maximum(U, n)))
        got = float(round_value(x, s, n, pa + s, pb + n - s, value_model(value)).sum())
        assert got >= best - 1e-12 * max(1.0, best)

    check()


def test_retired_value_models_and_weights_give_clear_errors():
    for name in ("informative", "size", "coba"):
        with pytest.raises(ValueError, match=f"value: '{name}' was removed in 0.2.0"):
            allocate_round([0, 1], [2, 2], budget=4, value=name)
    with pytest.raises(TypeError, match="weights"):
        allocate_round([0, 1], [2, 2], budget=4, weights=[1.0, 1.0])


def test_type_path_matches_general_solver():
    rng = np.random.default_rng(1)
    n = rng.integers(0, 6, 3000)
    s = rng.binomial(n, rng.beta(0.5, 0.5, 3000))
    x1 = allocate_round(s, n, budget=9000, prior_a=0.7, prior_b=1.3)  # one prior: by type
    pa = np.full(3000, 0.7)
    pa[0] = 0.7 * (1 + 1e-15)  # per-prompt priors: general solver
    x2 = allocate_round(s, n, budget=9000, prior_a=pa, prior_b=1.3)
    v1 = round_value(x1, s, n, 0.7 + s, 1.3 + n - s).sum()
    v2 = round_value(x2, s, n, 0.7 + s, 1.3 + n - s).sum()
    assert x1.sum() == x2.sum() == 9000
    assert v1 == pytest.approx(v2, rel=1e-12)


@pytest.mark.parametrize("s,n", [(0, 3), (3, 3), (0, 0)])
def test_constant_weight_value_is_tie_break_probability(s, n):
    """With ``w(p) = 1`` the closed form is the probability that the group is informative."""
    from knapsack_rl.allocation.rounds import ValueModel

    a, b = 0.8 + s, 1.7 + n - s
    for m in (1, 2, 5, 20):
        got = float(round_value(m, s, n, a, b, ValueModel("tie-break", ((1.0, 0.0, 0.0),))))
        if n == 0:
            want = (
                1
                - np.exp(betaln(a + m, b) - betaln(a, b))
                - np.exp(betaln(a, b + m) - betaln(a, b))
            )
            want = 0.0 if m < 2 else want
        elif s == 0:
            want = 1 - np.exp(betaln(a, b + m) - betaln(a, b))  # 1 - E[(1-p)^m]
        else:
            want = 1 - np.exp(betaln(a + m, b) - betaln(a, b))

        # and by numerical integration over the posterior
        def informative(p, m=m):
            miss = p**m + (1 - p) ** m if n == 0 else (1 - p) ** m if s == 0 else p**m
            return (1 - miss) * beta_dist.pdf(p, a, b)

        num = integrate.quad(informative, 0, 1)[0]
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
        if not (n == 0 and m < 2):
            assert got == pytest.approx(num, rel=1e-6)


def test_paper_value_mixed_group_gains_nothing():
    # a mixed group is informative already: under `paper` extra rollouts go elsewhere
    x = allocate_round([2, 0, 4], [4, 4, 4], budget=8, prior_a=1, prior_b=1)
    assert x[0] == 0 and x.sum() == 8
    # the size-aware value keeps giving mixed groups something
    y = allocate_round([2, 0, 4], [4, 4, 4], budget=60, prior_a=1, prior_b=1, value="grpo")
    assert y[0] > 0


def test_grpo_value_is_symmetric_with_size_credit():
    from knapsack_rl.allocation.rounds import point_value

    p = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    w = (p * (1 - p)) ** 1.5
    want = w * (1 - p**2 - (1 - p) ** 2) + 10.0 * w * (1 - 1 / 2)
    np.testing.assert_allclose(point_value(2, p, "grpo"), want, rtol=1e-12)
    # symmetric in p: an all-failed and an all-succeeded pilot are worth the same
    x = allocate_round([0, 4], [4, 4], budget=6, prior_a=1, prior_b=1, value="grpo")
    assert x[0] == x[1] == 3
    # a mixed pilot (p near 1/2) draws more than near-certain ties; `paper` gives it nothing
    y = allocate_round([2, 0, 4], [4, 4, 4], budget=12, prior_a=1, prior_b=1, value="grpo")
    assert y[0] > max(y[1], y[2])


def test_room_and_minimum():
    # every prompt at its cap: returns the room left
    x = allocate_round([0, 1], [3, 2], budget=100, min_rollouts=2, max_rollouts=4)
    assert x.tolist() == [1, 2]
    # undrawn prompts are brought to min_rollouts
    y = allocate_round([0, 0], [0, 5], budget=3, min_rollouts=3, max_rollouts=8)
    assert y[0] >= 3 and y.sum() == 3
    assert knapsack_rl.allocate_round is allocate_round


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(successes=[3], attempts=[2], budget=4), "successes"),
        (dict(successes=[1.5], attempts=[2], budget=4), "not a count"),
        (dict(successes=[0, 0], attempts=[0, 0], budget=1), "min_rollouts"),
        (dict(successes=[0], attempts=[2], budget=4, prior_a=np.inf, prior_b=1), "prior_a"),
        (dict(successes=[0], attempts=[2], budget=4, prior_a=1), "both"),
        (dict(successes=[0], attempts=[2], budget=4, value="nope"), "value"),
        (dict(successes=[0], attempts=[2], budget=4.0), "integer"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        allocate_round(**kwargs)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(1, 2),
    st.integers(0, 5),
    st.sampled_from(VALUES),
    st.sampled_from(["knapsack", "bayes"]),
    st.integers(0, 2**32 - 1),
)
def test_one_shot_allocate_takes_a_value_model(m, L, width, value, method, seed):
    """allocate(value=...) is the exact optimum of the value model: at point estimates for
    knapsack, under the posterior of a group not yet drawn for bayes."""
    from knapsack_rl import Allocator
    from knapsack_rl.allocation.rounds import point_value

    rng = np.random.default_rng(seed)
    U = L + width
    budget = int(rng.integers(m * L, m * U + 1))
    if method == "knapsack":
        p = rng.choice([0.0, 1.0, 0.05, 0.5, 0.9, rng.random()], m)
        res = Allocator(method=method, min_rollouts=L, max_rollouts=U, value=value).allocate(
            p, budget=budget
        )
        vm = value_model(value)

        def total(e):
            return float(point_value(np.array(e), p, vm).sum())

    else:
        s = rng.integers(0, 4, m).astype(float)
        n = s + rng.integers(0, 4, m)
        res = Allocator(
            method=method, min_rollouts=L, max_rollouts=U, value=value, prior=(0.7, 1.3)
        ).allocate(successes=s, attempts=n, budget=budget)
        a, b = 0.7 + s, 1.3 + n - s
        vm = value_model(value)
        zero = np.zeros(m)

        def total(e):
            return float(round_value(np.array(e), zero, zero, a, b, vm).sum())

    best = max(total(e) for e in itertools.product(range(L, U + 1), repeat=m) if sum(e) == budget)
    assert res.rollouts.sum() == budget
    assert total(res.rollouts) >= best - 1e-12 * max(1.0, best)
    assert res.objective == pytest.approx(total(res.rollouts), rel=1e-9, abs=1e-12)


def test_one_shot_value_defaults_and_errors():
    from knapsack_rl import Allocator, allocate

    p = [0.05, 0.3, 0.5, 0.9]
    assert (
        allocate(p, rollouts_per_prompt=8).tolist()
        == allocate(p, rollouts_per_prompt=8, value="paper").tolist()
    )
    with pytest.raises(ValueError, match="value"):
        Allocator(value="nope")
    with pytest.raises(ValueError, match="paper's value"):
        Allocator(method="paper", value="grpo")
