import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knapsack_rl.allocation.rounds import allocate_round
from knapsack_rl.allocation.screening import choose_screen, group_rise


def test_group_rise_by_hand():
    # N = 8, K = 2 at p = 0.25: p (1-p) sqrt(7 * 2 * 6 / 8) = 0.1875 * sqrt(10.5)
    assert group_rise(8, 2, 0.25) == pytest.approx(0.1875 * np.sqrt(10.5))
    # tied groups and groups of one move nothing
    np.testing.assert_array_equal(group_rise([8, 8, 1, 0], [0, 8, 1, 0], 0.5), 0.0)
    # symmetric in successes and failures
    assert group_rise(6, 1, 0.3) == pytest.approx(group_rise(6, 5, 0.3))


def test_screens_all_when_half_the_prompts_are_hopeless():
    """The first half is near 0 (its pilots free their rollouts for the mid-range half):
    screening every drawn prompt wins."""
    a = np.r_[np.full(32, 0.2), np.full(32, 5.0)]
    b = np.r_[np.full(32, 40.0), np.full(32, 5.0)]
    k, scores = choose_screen(a, b, budget=256, options=[32, 64], seed=0)
    assert k == 64 and scores[64] > 2 * scores[32]


def test_keeps_groups_whole_when_every_prompt_is_mid_range():
    """Every prompt is near p = 0.5 or confidently near 0.9: piloting twice the prompts
    only halves the groups, so the uniform count wins."""
    for a, b in ((5.0, 5.0), (18.0, 2.0)):
        k, scores = choose_screen(np.full(64, a), np.full(64, b), budget=256, options=[32, 64])
        assert k == 32 and scores[32] > scores[64]


def test_same_seed_same_choice_and_scores_match_a_direct_simulation():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0.3, 4.0, 12), rng.uniform(0.3, 4.0, 12)
    k1, s1 = choose_screen(a, b, budget=48, options=[6, 12], samples=8, seed=[7, 1])
    k2, s2 = choose_screen(a, b, budget=48, options=[6, 12], samples=8, seed=[7, 1])
    assert k1 == k2 and s1 == s2
    # the same draws, written out: p, the pilot, allocate_round, the rest
    g = np.random.default_rng([7, 1])
    p = g.beta(a, b, size=(8, 12))
    s_pilot = (g.random((8, 12, 2)) < p[:, :, None]).sum(axis=2)
    rest_seed = int(g.integers(2**32))
    for k in (6, 12):
        draw, total = np.random.default_rng(rest_seed), 0.0
        for s in range(8):
            extra = allocate_round(
                s_pilot[s, :k],
                np.full(k, 2),
                budget=48 - 2 * k,
                prior_a=a[:k],
                prior_b=b[:k],
                value="grpo",
            )
            won = s_pilot[s, :k] + draw.binomial(extra, p[s, :k])
            total += group_rise(2 + extra, won, p[s, :k]).sum()
        assert s1[k] == pytest.approx(total / 8)


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(2, 10),
    per=st.integers(2, 6),
    seed=st.integers(0, 2**16),
)
def test_choice_is_a_feasible_option(m, per, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.2, 5.0, 2 * m), rng.uniform(0.2, 5.0, 2 * m)
    budget = m * per
    k, scores = choose_screen(a, b, budget=budget, options=[m, 2 * m], samples=4, seed=seed)
    assert k in (m, 2 * m) and k * 2 <= budget
    assert all(v >= 0 for v in scores.values())
    if scores:
        assert scores[k] == max(scores.values())


def test_options_the_budget_cannot_serve_are_skipped():
    a = b = np.ones(8)
    # 8 prompts x pilot 2 = 16 > budget 12: only 4 can be piloted
    assert choose_screen(a, b, budget=12, options=[4, 8]) == (4, {})
    with pytest.raises(ValueError, match="no screening option"):
        choose_screen(a, b, budget=4, options=[4, 8])
    with pytest.raises(ValueError, match="equal non-zero lengths"):
        choose_screen(a, b[:3], budget=16, options=[4, 8])
