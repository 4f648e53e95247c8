"""Step metrics and group advantages against hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from knapsack_rl.metrics import (
    allocation_stats,
    effective_gradient_ratio,
    frac_reward_zero_std,
    group_advantages,
    group_index,
    pilot_stats,
    step_metrics,
    tie_break_stats,
)

# groups: a = [1, 0, 0, 1] (mixed), b = [1, 1] (all equal), c = [0, 1, 0] (mixed), d = [1] (size 1)
IDS = ["a", "b", "a", "c", "a", "b", "c", "a", "c", "d"]
REW = [1, 1, 0, 0, 0, 1, 1, 1, 0, 1]


def test_group_index_first_seen_order():
    assert group_index(IDS)[0].tolist() == [0, 1, 0, 2, 0, 1, 2, 0, 2, 3]
    idx, n = group_index(np.array([7, 3, 7, 9, 3]))
    assert idx.tolist() == [0, 1, 0, 2, 1] and n == 3


def test_effective_gradient_ratio_and_zero_std():
    assert effective_gradient_ratio(IDS, REW) == pytest.approx(7 / 10)  # a (4) + c (3)
    assert frac_reward_zero_std(IDS, REW) == pytest.approx(2 / 4)  # b and d
    ints = [{"a": 0, "b": 1, "c": 2, "d": 3}[g] for g in IDS]
    assert effective_gradient_ratio(ints, REW) == pytest.approx(7 / 10)
    assert effective_gradient_ratio([], []) == 0.0


def test_group_advantages_by_hand():
    adv = group_advantages(IDS, REW)
    # group a: mean 0.5, unbiased std sqrt(4 * 0.25 / 3)
    sa = math.sqrt(1 / 3)
    # group c: mean 1/3, unbiased std sqrt(((1/3)^2 * 2 + (2/3)^2) / 2)
    sc = math.sqrt(((1 / 3) ** 2 * 2 + (2 / 3) ** 2) / 2)
    want = [
        0.5 / (sa + 1e-4),
        0.0,
        -0.5 / (sa + 1e-4),
        -(1 / 3) / (sc + 1e-4),
        -0.5 / (sa + 1e-4),
        0.0,
        (2 / 3) / (sc + 1e-4),
        0.5 / (sa + 1e-4),
        -(1 / 3) / (sc + 1e-4),
        0.0,
    ]
    assert adv == pytest.approx(want, rel=1e-12)
    raw = group_advantages(IDS, REW, scale=False)
    assert raw[0] == pytest.approx(0.5) and raw[1] == 0.0 and raw[9] == 0.0


def test_group_advantages_clip_and_equal_groups():
    # a lone success in a group of 93: (1 - 1/93) / std = 92 / sqrt(93) ~ 9.5 before clipping
    # (unbiased std 1 / sqrt(93); the spec's sqrt(92) ~ 9.6 is the population-std figure)
    ids = [0] * 93
    rew = [1.0] + [0.0] * 92
    unclipped = group_advantages(ids, rew, clip=None)
    std = math.sqrt((92 / 93) ** 2 / 92 + (1 / 93) ** 2 * 92 / 92)
    assert unclipped[0] == pytest.approx((1 - 1 / 93) / (std + 1e-4))
    assert unclipped[0] == pytest.approx(92 / math.sqrt(93), rel=2e-3)
    assert group_advantages(ids, rew)[0] == 5.0
    assert np.all(group_advantages([1, 1, 1], [0.7, 0.7, 0.7]) == 0.0)
    assert group_advantages([5], [1.0]).tolist() == [0.0]
    assert group_advantages([], []).shape == (0,)
    with pytest.raises(ValueError):
        group_advantages([1, 2], [1.0])


def test_allocation_stats_and_step_metrics():
    st = allocation_stats([2, 0, 10, 4])
    assert st == {
        "rollouts_per_prompt/min": 0.0,
        "rollouts_per_prompt/mean": 4.0,
        "rollouts_per_prompt/max": 10.0,
        "prompts": 4,
        "prompts_covered": 3,
        "rollouts": 16,
    }
    assert allocation_stats([])["prompts"] == 0
    m = step_metrics(IDS, REW)
    assert m["reward"] == pytest.approx(0.6)
    assert m["reward_std"] == pytest.approx(float(np.std(REW, ddof=1)))
    assert m["effective_gradient_ratio"] == pytest.approx(0.7)
    assert m["frac_reward_zero_std"] == pytest.approx(0.5)
    assert m["rollouts_per_prompt/max"] == 4.0 and m["rollouts_per_prompt/min"] == 1.0
    assert m["prompts"] == 4 and m["rollouts"] == 10


def test_tie_break_stats_by_hand():
    # prior Beta(1, 1); prompt 0: 2/2 pilot then 2 more, final 3/4 (broke);
    # prompt 1: 0/2 then 3 more, final 0/5 (held); prompt 2 mixed; prompt 3: 2/2, nothing more
    out = tie_break_stats([1] * 4, [1] * 4, [2, 2, 2, 2], [2, 0, 1, 2], [4, 5, 4, 2], [3, 0, 2, 2])
    # after 2/2 under Beta(1, 1): p ~ Beta(3, 1), P(2 more all succeed) = E[p^2] = 3/5
    # after 0/2: p ~ Beta(1, 3), P(3 more all fail) = E[(1-p)^3] = B(1, 6) / B(1, 3) = 1/2
    assert out["rounds/tie_break_predicted"] == pytest.approx(((1 - 3 / 5) + (1 - 1 / 2)) / 2)
    assert out["rounds/tie_break_realized"] == 0.5
    assert tie_break_stats([1], [1], [2], [1], [4], [2]) == {}  # no tied pilot


def test_pilot_stats_by_hand():
    # 4 prompts piloted with 2: all correct, mixed, all wrong, all correct; the rest 2, 3, 0, 1
    out = pilot_stats([2, 2, 2, 2], [2, 1, 0, 2], [4, 5, 2, 3])
    assert out["rounds/pilot_all_correct"] == 0.5
    assert out["rounds/pilot_all_wrong"] == 0.25
    assert out["rounds/rest_to_tied"] == 3 / 6  # 2 + 0 + 1 of the 6 later rollouts
    # prompts left out of the pilot do not count; no later rollouts gives 0
    out = pilot_stats([0, 2], [0, 1], [2, 2])
    assert out["rounds/pilot_all_correct"] == 0 and out["rounds/pilot_all_wrong"] == 0
    assert out["rounds/rest_to_tied"] == 0.0
