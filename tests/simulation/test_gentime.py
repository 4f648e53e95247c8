"""The generation-time model in the simulator: barriers add up, streaming has none."""

from __future__ import annotations

import numpy as np
import pytest

from knapsack_rl.planning.base import makespan
from knapsack_rl.simulation import Env, Population, preset, run
from knapsack_rl.simulation.gentime import GpuClock, LengthModel, prompt_units


def _config(**kw):
    return preset("small", prompts=400, prompts_per_step=32, **kw)


def test_lengths_are_heavy_tailed_longer_when_failed_and_capped():
    lm = LengthModel()
    rng = np.random.default_rng(0)
    u = np.full(20000, 0.5)
    ok = lm.sample(u, np.zeros(u.size, bool), rng)
    bad = lm.sample(u, np.ones(u.size, bool), rng)
    assert np.median(ok) == pytest.approx(lm.median_tokens, rel=0.05)
    assert np.median(bad) / np.median(ok) == pytest.approx(lm.fail_ratio, rel=0.05)
    assert ok.max() <= lm.max_tokens and bad.max() == lm.max_tokens
    assert np.mean(ok) > np.median(ok)  # right-skewed


def test_prompt_units_match_the_clock():
    clock = GpuClock(seed=3)
    u = prompt_units(3, 5)
    rng_a = np.random.default_rng([3, 7_777, 0, 1])
    want = clock.lengths.sample(u[[1, 4]], np.array([False, True]), rng_a) * 0.02
    np.testing.assert_allclose(clock.durations([1, 4], np.array([False, True]), 0, 1), want)


def test_each_rollout_call_is_one_barrier():
    cfg = _config()
    pop = Population(cfg, np.zeros(cfg.prompts), np.zeros(cfg.prompts, dtype=np.int64))
    env = Env(pop, seed=0, name="t")
    idx = np.arange(4)
    _, flat, r = env.rollout(idx, np.array([2, 3, 0, 1]))
    first = env.gen_seconds
    assert first > 0
    env.rollout(idx, np.array([1, 1, 1, 1]), timed=False)
    assert env.gen_seconds == first  # untimed: the caller runs its own clock
    env.rollout(idx, np.array([1, 0, 0, 0]))
    assert env.gen_seconds > first


def test_rounds_pay_two_barriers_and_stream_none():
    res = run(_config(), ["uniform", "rounds", "stream", "pipelined"], steps=6, seed=1)
    g = {k: t.metrics["gen_seconds"] for k, t in res.traces.items()}
    assert np.all(g["uniform"] > 0)
    # two barriers: the pilot's tail, then the rest's
    assert np.all(g["rounds"] > 1.1 * g["uniform"])
    assert g["rounds"].mean() > 1.5 * g["uniform"].mean()
    assert g["stream"].mean() < 0.8 * g["rounds"].mean()
    # pipelined: one call a step (the first step also pays its own pilot's call)
    assert g["pipelined"][0] > 1.1 * g["uniform"][0]
    assert np.all(g["pipelined"][1:] < g["rounds"][1:])
    assert g["pipelined"][1:].mean() <= 1.05 * g["uniform"][1:].mean()


def test_capacity_lengthens_a_step_and_is_checked():
    full = run(_config(), ["uniform"], steps=3, seed=2).traces["uniform"].metrics["gen_seconds"]
    small = run(_config(capacity=16), ["uniform"], steps=3, seed=2).traces["uniform"]
    assert np.all(small.metrics["gen_seconds"] > full)
    with pytest.raises(ValueError, match="capacity"):
        _config(capacity=0)


def test_makespan_fifo():
    assert makespan([3.0, 1.0, 1.0, 1.0], capacity=2) == 3.0
    assert makespan([1.0, 1.0, 1.0], capacity=1) == 3.0
    assert makespan([2.0, 5.0]) == 5.0
