"""Strategies and runner: budgets, use of the core allocator/trackers, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from knapsack_rl import Allocator
from knapsack_rl.metrics import effective_gradient_ratio
from knapsack_rl.simulation import (
    DEFAULT_STRATEGIES,
    STRATEGIES,
    Env,
    Population,
    StepOutcome,
    Strategy,
    make_strategy,
    preset,
    run,
)
from knapsack_rl.simulation.strategies import (
    AR3POStrategy,
    DynamicSamplingStrategy,
    GresoStrategy,
)


def small_env(name="s", seed=0, **overrides):
    cfg = preset("small", **overrides)
    pop = Population.create(cfg, seed=seed)
    return Env(pop, seed, name), pop


@pytest.mark.parametrize("name", [n for n in STRATEGIES if STRATEGIES[n].fixed_budget])
def test_fixed_budget_strategies_spend_exactly_the_budget(name):
    env, pop = small_env(name)
    s = make_strategy(name)
    s.reset(env)
    assert s.fixed_budget
    for _ in range(40):
        env.spent = 0
        out = s.step(env)
        assert env.spent == env.budget == 256
        assert int(out.n.sum()) + int(out.dropped_n.sum()) == env.spent
        assert np.all(out.k <= out.n) and np.all(out.k >= 0)
        pop.learn(out.idx, out.n, out.k)


def test_dynamic_sampling_reports_real_spend_and_trains_on_informative_groups():
    env, pop = small_env("dapo")
    s = DynamicSamplingStrategy(max_gen_batches=10)
    s.reset(env)
    spends = []
    for _ in range(30):
        env.spent = 0
        out = s.step(env)
        spends.append(env.spent)
        assert env.spent % env.budget == 0 and env.spent >= env.budget
        assert int(out.n.sum() + out.dropped_n.sum()) == env.spent
        assert out.idx.size == 32
        assert np.all((out.k > 0) & (out.k < out.n))  # only informative groups are trained
        dropped_flat = (out.dropped_k == 0) | (out.dropped_k == out.dropped_n)
        # dropped groups: all-equal ones, plus informative surplus beyond the batch
        assert dropped_flat.sum() + (~dropped_flat).sum() == out.dropped_n.size
        pop.learn(out.idx, out.n, out.k)
    assert max(spends) > env.budget  # it had to refill at least once


def test_dynamic_sampling_stops_at_max_gen_batches():
    cfg = preset("small")
    pop = Population.create(cfg, seed=0, init_p=np.full(400, 0.999))
    env = Env(pop, 0, "dapo")
    s = DynamicSamplingStrategy(max_gen_batches=3)
    env.spent = 0
    out = s.step(env)
    assert env.spent == 3 * env.budget
    assert out.idx.size < 32


def test_ar3po_rounds_stop_on_both_outcomes_or_cap():
    env, pop = small_env("ar3po")
    s = AR3POStrategy(round_size=2, cap=12)
    for _ in range(20):
        env.spent = 0
        out = s.step(env)
        assert env.spent == env.budget
        assert out.n.max() <= 12 and out.n.min() >= 1
        informative = (out.k > 0) & (out.k < out.n)
        # a prompt stops as soon as it has both outcomes: it got at most one round too many
        # of neither kind; prompts without both outcomes hit the cap or the budget ran out
        unfinished = ~informative & (out.n < 12)
        assert unfinished.sum() <= 32
        pop.learn(out.idx, out.n, out.k)


def test_ar3po_pulls_new_prompts_when_all_stopped():
    cfg = preset("small")
    pop = Population.create(cfg, seed=0, init_p=np.full(400, 0.5))
    env = Env(pop, 0, "ar3po")
    out = AR3POStrategy(round_size=2, cap=32).step(env)
    assert env.spent == 256
    assert out.idx.size > 32  # p = 0.5 prompts finish fast, so more prompts were drawn


def test_greso_skips_prompts_that_were_all_equal_without_exploration():
    env, pop = small_env("greso")
    s = GresoStrategy(explore=0.0)
    s.reset(env)
    flat_before = set()
    for _ in range(30):
        env.spent = 0
        out = s.step(env)
        assert env.spent == env.budget
        chosen = set(out.idx.tolist())
        assert not (chosen & flat_before)  # none was all-equal on its last visit
        flat_before = {int(i) for i in np.flatnonzero(s._flat)}
        pop.learn(out.idx, out.n, out.k)


def test_greso_explore_one_takes_the_stream_like_uniform():
    env_g, pop_g = small_env("greso", seed=4)
    env_u, pop_u = small_env("uniform", seed=4)
    g, u = GresoStrategy(explore=1.0), make_strategy("uniform")
    g.reset(env_g)
    u.reset(env_u)
    for _ in range(30):
        og, ou = g.step(env_g), u.step(env_u)
        np.testing.assert_array_equal(og.idx, ou.idx)
        pop_g.learn(og.idx, og.n, og.k)
        pop_u.learn(ou.idx, ou.n, ou.k)
    assert g._flat.any()  # there were all-equal prompts to skip, and none was


@pytest.mark.parametrize(
    "name,method,tracker",
    [
        ("knapsack", "knapsack", "window"),
        ("paper", "paper", "paper"),
        ("bayes", "bayes", "beta"),
    ],
)
def test_allocator_strategies_use_the_core_allocator_and_trackers(name, method, tracker):
    env, pop = small_env(name)
    s = make_strategy(name)
    s.reset(env)
    assert s.tracker.kind == tracker
    for _ in range(25):
        pos = env._pos
        order = env._order.copy()
        env.spent = 0
        inputs = None  # the prompts the step will draw, when inside the current epoch
        if pos + 32 <= order.size:
            ids = order[pos : pos + 32]
            st = s.tracker.stats(ids)
            # what each method needs, written out (the former per-method mapping)
            if method == "paper":
                inputs = {"p": st.p, "valid": st.valid}
            elif method == "bayes":
                inputs = {"successes": st.successes, "attempts": st.attempts, "prior": st.prior}
            else:
                inputs = {"p": st.p}
        out = s.step(env)
        if inputs is not None:
            expect = (
                Allocator(method=method, min_rollouts=2, max_rollouts=64, rollouts_per_prompt=8)
                .allocate(**inputs, rollouts_per_prompt=8)
                .rollouts
            )
            np.testing.assert_array_equal(out.n, expect)
        assert len(s.tracker) > 0
        pop.learn(out.idx, out.n, out.k)
    assert out.n.max() > 8  # the allocation is not uniform once estimates exist


def test_oracle_uses_true_rates():
    env, pop = small_env("oracle")
    s = make_strategy("oracle")
    s.reset(env)
    out = s.step(env)
    expect = (
        Allocator(method="knapsack", min_rollouts=2, max_rollouts=64)
        .allocate(pop.p(out.idx), rollouts_per_prompt=8)
        .rollouts
    )
    np.testing.assert_array_equal(out.n, expect)


class _Recording(Strategy):
    """A user-defined strategy: 4 rollouts for 64 prompts; records the flat rewards."""

    name = "recording"

    def reset(self, env):
        self.flats = []

    def step(self, env):
        idx = env.next_prompts(64)
        n = np.full(64, 4)
        k, flat, rewards = env.rollout(idx, n)
        # group = position in the batch (a prompt drawn twice across an epoch
        # boundary forms two groups, as in a trainer that tags each sample)
        self.flats.append((np.repeat(np.arange(64), n), rewards))
        return StepOutcome(idx, n, k)


def test_custom_strategy_and_effective_ratio_matches_core_metric():
    s = _Recording()
    res = run(preset("small"), [s], steps=15, seed=2)
    eff = res.traces["recording"].metrics["effective_gradient_ratio"]
    assert eff.size == 15
    for e, (groups, rewards) in zip(eff, s.flats):
        assert e == pytest.approx(effective_gradient_ratio(groups, rewards))


class _Liar(Strategy):
    name = "liar"

    def step(self, env):
        idx = env.next_prompts(32)
        n = np.full(32, 8)
        k, _, _ = env.rollout(idx, n)
        return StepOutcome(idx[:10], n[:10], k[:10])


def test_runner_rejects_unaccounted_rollouts():
    with pytest.raises(RuntimeError, match="spent 256 rollouts but returned groups holding 80"):
        run(preset("small"), [_Liar()], steps=2)


def test_run_is_deterministic_under_a_seed():
    a = run(preset("small"), "all", steps=40, seed=5)
    b = run(preset("small"), "all", steps=40, seed=5)
    c = run(preset("small"), "all", steps=40, seed=6)
    assert list(a.traces) == list(DEFAULT_STRATEGIES)
    for name in a.traces:
        for key, v in a.traces[name].metrics.items():
            np.testing.assert_array_equal(v, b.traces[name].metrics[key], err_msg=f"{name}/{key}")
        np.testing.assert_array_equal(a.traces[name].alloc_n, b.traces[name].alloc_n)
    assert not np.array_equal(
        a.traces["uniform"].metrics["mean_p"], c.traces["uniform"].metrics["mean_p"]
    )


def test_every_strategy_spends_the_same_total_and_rows_are_consistent():
    res = run(preset("small"), "all", steps=30, seed=1)
    rows = {r["strategy"]: r for r in res.summary_rows()}
    for name, t in res.traces.items():
        m = t.metrics
        assert m["cum_rollouts"][-1] == m["rollouts"].sum()
        if name == "dapo":
            assert 30 * 256 <= m["rollouts"].sum() < 30 * 256 + 10 * 256
        else:
            assert m["rollouts"].sum() == 30 * 256 and np.all(m["rollouts"] == 256)
        assert np.all((m["effective_gradient_ratio"] >= 0) & (m["effective_gradient_ratio"] <= 1))
        assert rows[name]["max_rollouts"] == m["max_rollouts"].max()
    u = res.traces["uniform"].metrics
    assert rows["uniform"]["eff_groups"] == pytest.approx(1 - u["frac_reward_zero_std"].mean())
    # uniform: equal group sizes, so the rollout and group ratios agree
    assert rows["uniform"]["eff_groups"] == pytest.approx(
        rows["uniform"]["effective_gradient_ratio"]
    )
    d = res.traces["dapo"].metrics
    assert np.all(d["informative_groups"] == 32) and np.all(d["generated_groups"] >= 32)
    assert rows["uniform"]["eff_vs_uniform"] == 0.0
    assert rows["uniform"]["max_rollouts"] == 8


def test_run_rejects_bad_arguments():
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        run(preset("small"), "uniform", steps=0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        run(preset("small"), "uniform", steps=1, seed=-1)
    with pytest.raises(ValueError, match="unknown strategy 'greedy'"):
        run(preset("small"), "uniform,greedy", steps=1)
    with pytest.raises(ValueError, match="strategy 'uniform' given twice"):
        run(preset("small"), "uniform,uniform", steps=1)
    with pytest.raises(ValueError, match="explore must be in"):
        make_strategy("greso", explore=2.0)
    with pytest.raises(ValueError, match="round_size must be >= 1"):
        make_strategy("ar3po", round_size=0)
    with pytest.raises(ValueError, match="discount must be in"):
        make_strategy("bayes", discount=0.0)
    with pytest.raises(ValueError, match=r"prompts_per_step \(32\) > prompts in the dataset \(5\)"):
        run(preset("small"), "uniform", steps=1, init_p=np.full(5, 0.5))


def test_init_rates_set_the_dataset_size():
    res = run(preset("small"), "uniform", steps=3, init_p=np.linspace(0.05, 0.95, 40))
    assert res.config.prompts == 40
    assert res.initial["mean_p"] == pytest.approx(0.5)


def test_strategy_lists_accept_all_plus_extras():
    res = run(preset("small"), "all,oracle", steps=2)
    assert list(res.traces) == [*DEFAULT_STRATEGIES, "oracle"]


def test_paper_preset_calibration_targets_hold_under_uniform():
    """The documented calibration: late in a 1000-step uniform run, about 40% of
    prompts all-correct and 20% all-wrong at N = 8 (docs/simulation.md)."""
    res = run(preset("paper"), "uniform", steps=1000, seed=0)
    m = res.traces["uniform"].metrics
    assert m["all_correct"][900:].mean() == pytest.approx(0.40, abs=0.03)
    assert m["all_wrong"][900:].mean() == pytest.approx(0.20, abs=0.03)
    assert m["effective_gradient_ratio"][900:].mean() < 0.6  # the paper: below 60%


def test_knapsack_raises_the_effective_ratio_over_uniform_on_the_paper_preset():
    res = run(preset("paper"), "uniform,knapsack,paper", steps=250, seed=1)
    rows = {r["strategy"]: r for r in res.summary_rows()}
    assert (
        rows["knapsack"]["effective_gradient_ratio_late"]
        > rows["uniform"]["effective_gradient_ratio_late"]
    )
    assert (
        rows["paper"]["effective_gradient_ratio_late"]
        > rows["uniform"]["effective_gradient_ratio_late"]
    )
    assert rows["knapsack"]["max_rollouts"] > 8
