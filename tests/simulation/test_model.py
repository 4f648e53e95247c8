"""The simulator's population and learning model against closed forms, and its config checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from knapsack_rl.allocation.stats import StatsError
from knapsack_rl.allocation.values import info_gain
from knapsack_rl.simulation.model import (
    PRESETS,
    ModelConfig,
    Population,
    load_initial_rates,
    preset,
    sigmoid,
)


def fixed_population(p, **overrides) -> Population:
    cfg = preset("small", prompts_per_step=1, **overrides)
    return Population.create(cfg, seed=0, init_p=np.asarray(p, dtype=float))


@pytest.mark.parametrize("p", [0.02, 0.2, 0.5, 0.85])
@pytest.mark.parametrize("n", [2, 8])
def test_all_equal_probability_matches_closed_form(p, n):
    pop = fixed_population([p])
    rng = np.random.default_rng(1)
    draws = 40_000
    k, flat, rewards = pop.sample(np.zeros(draws, dtype=np.int64), np.full(draws, n), rng)
    assert flat.size == rewards.size == draws * n
    measured = float(np.mean((k == 0) | (k == n)))
    expected = p**n + (1 - p) ** n  # 1 - (1 - p^N - (1-p)^N)
    sd = np.sqrt(expected * (1 - expected) / draws)
    assert abs(measured - expected) < 4.5 * sd + 1e-12
    # successes per group: mean N p, variance N p (1 - p)
    assert abs(k.mean() - n * p) < 4.5 * np.sqrt(n * p * (1 - p) / draws)
    assert abs(k.var() - n * p * (1 - p)) < 0.05 * n * p * (1 - p) + 1e-3


def test_sample_groups_follow_counts_and_order():
    pop = fixed_population([0.0 + 1e-9, 1 - 1e-9, 0.5], p_clip=1e-9)
    idx = np.array([1, 0, 2, 1])
    counts = np.array([3, 2, 0, 4])
    k, flat, rewards = pop.sample(idx, counts, np.random.default_rng(0))
    assert flat.tolist() == [1, 1, 1, 0, 0, 1, 1, 1, 1]
    assert k.tolist() == [3, 0, 0, 4]
    assert rewards.dtype == np.int8 and set(rewards.tolist()) <= {0, 1}


def test_all_equal_groups_change_nothing_informative_groups_gain_lr_one_minus_p():
    p = np.array([0.3, 0.6, 0.9])
    pop = fixed_population(p, lr=0.5)
    before = pop.skill.copy()
    pop.learn(np.array([0, 1, 2]), np.array([8, 8, 8]), np.array([0, 8, 0]))
    np.testing.assert_array_equal(pop.skill, before)
    pop.learn(np.array([0, 1, 2]), np.array([8, 8, 4]), np.array([1, 7, 2]))
    np.testing.assert_allclose(pop.skill - before, 0.5 * (1 - p), rtol=1e-12)
    # a prompt trained twice in one step gains twice
    b2 = pop.skill.copy()
    p0 = pop.p(np.array([0]))[0]
    pop.learn(np.array([0, 0]), np.array([8, 8]), np.array([3, 3]))
    assert pop.skill[0] - b2[0] == pytest.approx(2 * 0.5 * (1 - p0), rel=1e-12)


@pytest.mark.parametrize("p", [0.05, 1 / 3, 0.7])
def test_first_order_rise_of_p_is_lr_times_infogain(p):
    lr = 1e-5
    pop = fixed_population([p], lr=lr)
    p0 = pop.p()[0]
    pop.learn(np.array([0]), np.array([8]), np.array([3]))
    dp = pop.p()[0] - p0
    assert dp / lr == pytest.approx(float(info_gain(p0)), rel=1e-3)


def test_size_exponent_scales_gain_with_group_size():
    pop = fixed_population([0.5, 0.5], lr=1.0, size_exponent=1.0)
    g = pop.gains(np.array([0, 1]), np.array([16, 4]), np.array([5, 2]))
    np.testing.assert_allclose(g, [0.5 * 16 / 8, 0.5 * 4 / 8])


def test_transfer_shares_gain_within_cluster_and_conserves_total():
    cfg = preset("small", prompts_per_step=1, lr=1.0, transfer=0.4, clusters=3)
    pop = Population.create(cfg, seed=3, init_p=np.full(60, 0.5))
    before = pop.skill.copy()
    own = pop.gains(np.array([5]), np.array([8]), np.array([4]))[0]
    pop.learn(np.array([5]), np.array([8]), np.array([4]))
    delta = pop.skill - before
    same = pop.cluster == pop.cluster[5]
    assert delta.sum() == pytest.approx(own)
    assert np.all(delta[~same] == 0)
    share = 0.4 * own / same.sum()
    assert delta[5] == pytest.approx(0.6 * own + share)
    others = same.copy()
    others[5] = False
    np.testing.assert_allclose(delta[others], share)


def test_create_is_deterministic_and_matches_parameters():
    cfg = preset("paper")
    a = Population.create(cfg, seed=11)
    b = Population.create(cfg, seed=11)
    c = Population.create(cfg, seed=12)
    np.testing.assert_array_equal(a.skill, b.skill)
    np.testing.assert_array_equal(a.cluster, b.cluster)
    assert not np.array_equal(a.skill, c.skill)
    assert len(a) == 17_000
    assert a.skill.mean() == pytest.approx(cfg.init_mean, abs=4 * cfg.init_std / np.sqrt(17_000))
    assert a.skill.std() == pytest.approx(cfg.init_std, rel=0.05)
    np.testing.assert_allclose(a.p(), sigmoid(a.skill))


def test_init_rates_are_clipped_to_finite_skills():
    pop = fixed_population([0.0, 1.0, 0.25], p_clip=0.01)
    np.testing.assert_allclose(pop.p(), [0.01, 0.99, 0.25])
    assert np.all(np.isfinite(pop.skill))


def test_presets():
    paper = preset("paper")
    assert (paper.prompts, paper.prompts_per_step, paper.rollouts_per_prompt, paper.budget) == (
        17_000,
        256,
        8,
        2048,
    )
    assert (paper.min_rollouts, paper.max_rollouts) == (2, 128)
    assert set(PRESETS) == {"paper", "small"}
    assert preset("small", lr=0.1).lr == 0.1
    with pytest.raises(ValueError, match="unknown preset 'big'"):
        preset("big")
    with pytest.raises(ValueError, match="unknown model parameter 'learning_rate'"):
        preset("small", learning_rate=1.0)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("prompts", 0, "prompts must be >= 1"),
        ("prompts_per_step", 0, "prompts_per_step must be >= 1"),
        ("prompts_per_step", 10_000, r"prompts_per_step \(10000\) > prompts"),
        ("rollouts_per_prompt", 1, "rollouts_per_prompt must be in"),
        ("rollouts_per_prompt", 2.5, "rollouts_per_prompt must be an integer"),
        ("min_rollouts", 0, "min_rollouts must be >= 1"),
        ("max_rollouts", 1, r"max_rollouts \(1\) < min_rollouts"),
        ("init_std", -1.0, "init_std must be >= 0"),
        ("init_mean", float("nan"), "init_mean must be finite"),
        ("lr", -0.1, "lr must be >= 0"),
        ("lr", "fast", "lr must be a number"),
        ("size_exponent", -1.0, "size_exponent must be >= 0"),
        ("transfer", 1.5, r"transfer must be in \[0, 1\]"),
        ("clusters", 0, "clusters must be >= 1"),
        ("p_clip", 0.5, r"p_clip must be in \(0, 0.5\)"),
        ("prompts", True, "prompts must be an integer"),
    ],
)
def test_bad_config_values_raise_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**PRESETS["small"], field: value}).validate()


def test_load_initial_rates_p_and_counts(tmp_path):
    f = tmp_path / "rates.csv"
    f.write_text("id,p\na,0.1\nb,0.9\n")
    r = load_initial_rates(f)
    assert r.ids == ["a", "b"] and r.p.tolist() == [0.1, 0.9]
    g = tmp_path / "rates.jsonl"
    g.write_text(
        json.dumps({"id": 1, "successes": 3, "attempts": 4})
        + "\n"
        + json.dumps({"id": 2, "successes": 0, "attempts": 16})
        + "\n"
    )
    r = load_initial_rates(g)
    assert r.ids == [1, 2] and r.p.tolist() == [0.75, 0.0]


@pytest.mark.parametrize(
    "name,text,pattern",
    [
        ("a.csv", "id,p\na,0.1\nb,1.5\n", r"a\.csv, line 3, field 'p': 1\.5 is outside"),
        ("b.csv", "id,q\na,0.1\n", r"b\.csv, line 2: missing column 'p'"),
        ("c.csv", "id,p\na,x\n", r"c\.csv, line 2, field 'p': 'x' is not a number"),
        ("d.jsonl", '{"id": 1, "successes": 0, "attempts": 0}\n', r"d\.jsonl, row 1 .*'attempts'"),
        (
            "e.jsonl",
            '{"id": 1, "successes": 5, "attempts": 4}\n',
            r"e\.jsonl, line 1, field 'successes'",
        ),
        ("f.csv", "", r"f\.csv: empty file"),
        ("g.txt", "id,p\n", r"g\.txt: unsupported file type"),
    ],
)
def test_bad_init_files_name_file_line_and_field(tmp_path, name, text, pattern):
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(StatsError, match=pattern):
        load_initial_rates(f)
    with pytest.raises(StatsError, match="no such file"):
        load_initial_rates(tmp_path / "missing.csv")
