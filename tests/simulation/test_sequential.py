"""Sequential strategies: exact budget, groups over all rounds, elimination, registry."""

from __future__ import annotations

import numpy as np
import pytest

from knapsack_rl import defaults
from knapsack_rl.simulation import (
    STRATEGIES,
    Env,
    Population,
    make_strategy,
    preset,
    run,
    run_strategy,
)
from knapsack_rl.simulation.runner import paired_differences, rates_from_allocations
from knapsack_rl.simulation.sequential import (
    ROUNDS_DEFAULT_VALUE,
    SEQUENTIAL_STRATEGIES,
    PilotCommitStrategy,
    ReinforceAdaStrategy,
    RoundsStrategy,
)

NAMES = sorted(SEQUENTIAL_STRATEGIES)


class RecordingEnv(Env):
    """Env that logs every rollout call: (idx, counts, successes)."""

    def __init__(self, population, seed=0, name="t"):
        super().__init__(population, seed, name)
        self.calls: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def rollout(self, idx, counts, timed=True):
        k, flat, rewards = super().rollout(idx, counts, timed)
        self.calls.append((np.asarray(idx).copy(), np.asarray(counts).copy(), k.copy()))
        return k, flat, rewards


def _config(**over):
    return preset("small", **{"prompts": 64, "prompts_per_step": 16, **over})


def _population(p, cfg=None):
    """A population with the given true success rates (cycled over 64 prompts)."""
    cfg = cfg or _config()
    p = np.resize(np.asarray(p, dtype=np.float64), cfg.prompts)
    skill = np.log(p) - np.log1p(-p)
    return Population(cfg, skill, np.zeros(cfg.prompts, dtype=np.int64))


def _step(strategy, population, seed=0):
    env = RecordingEnv(population, seed)
    strategy.reset(env)
    env.spent = 0
    return env, strategy.step(env)


def _totals(calls):
    """Rollouts and successes per prompt over the calls ``(idx, counts, successes)``."""
    n, k = {}, {}
    for idx, c, got in calls:
        for i, ci, gi in zip(idx.tolist(), c.tolist(), got.tolist(), strict=True):
            n[i] = n.get(i, 0) + ci
            k[i] = k.get(i, 0.0) + gi
    return n, k


def test_registered_by_name():
    for name in NAMES:
        assert name in STRATEGIES
        s = make_strategy(name)
        assert s.name == name
        assert s.fixed_budget
    assert {"rounds", "pilot-commit", "reinforce-ada"} <= set(NAMES)
    assert {"rounds-paper", "rounds-grpo", "stream", "stream-paper", "stream-grpo"} <= set(NAMES)
    assert make_strategy("rounds").value == ROUNDS_DEFAULT_VALUE
    assert make_strategy("rounds-paper", pilot=3).pilot == 3
    with pytest.raises(ValueError, match="'coba' was removed in 0.2.0"):
        make_strategy("rounds", value="coba")
    assert make_strategy("rounds").oversample == defaults.OVERSAMPLE == 2
    assert make_strategy("rounds", oversample=1).oversample == 1
    with pytest.raises(ValueError, match="oversample"):
        make_strategy("rounds", oversample=0)


@pytest.mark.parametrize("name", NAMES)
def test_exact_budget_every_step_and_groups_hold_all_rounds(name):
    cfg = _config()
    pop = Population.create(cfg, seed=3)
    strategy = make_strategy(name)
    env = RecordingEnv(pop, 3, name)
    strategy.reset(env)
    last: list = []
    for step in range(6):
        env.spent = 0
        env.calls = []
        out = strategy.step(env)
        assert env.spent == cfg.budget
        assert int(np.sum(out.n)) == cfg.budget
        assert out.dropped_n.size == 0
        calls = env.calls
        if name.startswith("pipelined"):  # the pilot came in the last step's call
            calls = [c for c in last + env.calls if np.array_equal(c[0], out.idx)]
            assert len(calls) == 2 and len(env.calls) == 2 + (step == 0)
        last = env.calls
        n, k = _totals(calls)
        got_n = {i: c for i, c in n.items() if c > 0}
        assert dict(zip(out.idx.tolist(), out.n.tolist(), strict=True)) == got_n
        assert dict(zip(out.idx.tolist(), out.k.tolist(), strict=True)) == {i: k[i] for i in got_n}
        # the same prompts as uniform; rounds draws `oversample` times as many
        want = cfg.prompts_per_step * getattr(strategy, "oversample", 1)
        assert out.idx.size == want
        assert len(set(out.idx.tolist())) == want
        assert np.all(out.n <= cfg.max_rollouts)
        pop.learn(out.idx, out.n, out.k)


@pytest.mark.parametrize("name", NAMES)
def test_runner_accepts_and_is_deterministic(name):
    cfg = _config()
    a = run(cfg, [name], steps=15, seed=1).traces[name].metrics
    b = run(cfg, [name], steps=15, seed=1).traces[name].metrics
    c = run(cfg, [name], steps=15, seed=2).traces[name].metrics
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert np.all(a["rollouts"] == cfg.budget)
    assert any(not np.array_equal(a[key], c[key]) for key in ("mean_p", "reward"))


def test_rounds_pilot_then_planned_round():
    cfg = _config()
    pop = _population([0.02, 0.5, 0.98], cfg)
    env, out = _step(RoundsStrategy(pilot=4, value="paper", oversample=1), pop)
    assert len(env.calls) == 2  # two rounds
    assert np.all(env.calls[0][1] == 4)  # the pilot
    assert np.all(out.n >= cfg.min_rollouts)
    # under `paper` the planned round goes where the pilot drew all-equal groups, not to mixed ones
    pilot_k, second = env.calls[0][2], env.calls[1][1]
    mixed = (pilot_k > 0) & (pilot_k < 4)
    if mixed.any() and (~mixed).any():
        assert second[mixed].mean() < second[~mixed].mean()


def test_rounds_oversample_screens_more_prompts_at_the_same_budget():
    cfg = _config()  # 16 prompts x 8 rollouts
    pop = _population([0.02, 0.5, 0.98], cfg)
    s = RoundsStrategy(value="grpo")  # oversample 2, pilot 2
    env = RecordingEnv(pop)
    s.reset(env)
    second = np.zeros(cfg.prompts)
    visits = np.zeros(cfg.prompts)
    for step in range(8):
        env.spent, env.calls = 0, []
        out = s.step(env)
        assert out.idx.size == 2 * cfg.prompts_per_step
        assert np.all(env.calls[0][1] == defaults.PILOT)  # every drawn prompt is piloted
        assert int(out.n.sum()) == cfg.budget
        if step >= 4:  # once the tracker knows the prompts
            np.add.at(second, env.calls[1][0], env.calls[1][1])
            np.add.at(visits, env.calls[1][0], 1)
    # the planned rounds go to the uncertain prompts, not to the confident ones
    p = pop.p(np.arange(cfg.prompts))
    per_visit = second / np.maximum(visits, 1)
    mid, edge = np.abs(p - 0.5) < 0.1, np.abs(p - 0.5) > 0.4
    assert per_visit[mid].mean() > per_visit[edge].mean() + 1


def test_rounds_updates_its_tracker_once_per_step():
    cfg = _config()
    s = RoundsStrategy()
    env = RecordingEnv(Population.create(cfg, seed=0))
    s.reset(env)
    for _ in range(3):
        env.spent = 0
        s.step(env)
    assert s.planner.step == 3


def test_reinforce_ada_retires_prompts_with_a_success_and_a_failure():
    cfg = _config()
    pop = _population([1e-6, 0.5, 0.5, 0.5], cfg)
    env, out = _step(ReinforceAdaStrategy(round_size=2, target=1), pop)
    n = np.zeros(cfg.prompts, dtype=np.int64)
    k = np.zeros(cfg.prompts)
    for idx, c, got in env.calls:
        active = (k[idx] < 1) | (n[idx] - k[idx] < 1)
        assert np.all(active[c > 0]), "a retired prompt got more rollouts"
        assert np.all(c <= 2)
        np.add.at(n, idx, c)
        np.add.at(k, idx, got)
    # the hopeless prompts (p ~ 0) never retire and take the rest of the budget
    hard = pop.p(out.idx) < 1e-3
    assert hard.any()
    assert out.n[hard].min() > out.n[~hard].max()


def test_reinforce_ada_balance_needs_target_of_each():
    cfg = _config()
    pop = _population([0.5], cfg)
    env, out = _step(make_strategy("reinforce-ada-balance", round_size=1), pop)
    assert make_strategy("reinforce-ada-balance").target is None  # rollouts_per_prompt // 2
    n = np.zeros(cfg.prompts, dtype=np.int64)
    k = np.zeros(cfg.prompts)
    for idx, c, got in env.calls:
        retired = (k[idx] >= 4) & (n[idx] - k[idx] >= 4)
        assert not np.any(retired & (c > 0))
        np.add.at(n, idx, c)
        np.add.at(k, idx, got)


def test_reinforce_ada_spreads_the_rest_when_all_retired():
    cfg = _config()
    pop = _population([0.5], cfg)
    # p = 0.5 retires fast; the rest of B is spread evenly
    env, out = _step(ReinforceAdaStrategy(round_size=8, target=1), pop)
    assert int(out.n.sum()) == cfg.budget
    assert out.n.max() - out.n.min() <= 8


def test_pilot_commit_commits_to_kept_prompts_only():
    cfg = _config()
    pop = _population([1e-6, 0.5, 1 - 1e-6], cfg)
    env, out = _step(PilotCommitStrategy(), pop)
    pilot_idx, pilot_n, pilot_k = env.calls[0]
    assert np.all(pilot_n == cfg.rollouts_per_prompt // 4)
    rate = pilot_k / pilot_n
    kept = (rate >= 0.125) & (rate <= 0.75)
    commit = out.n - pilot_n
    assert kept.any()
    assert np.all(commit[~kept] == 0)
    assert commit[kept].max() - commit[kept].min() <= 1


def test_pilot_commit_without_kept_prompts_spreads_evenly():
    cfg = _config()
    pop = _population([1e-6], cfg)
    _, out = _step(PilotCommitStrategy(), pop)
    assert out.n.max() - out.n.min() <= 1
    assert int(out.n.sum()) == cfg.budget


@pytest.mark.parametrize(
    "make",
    [
        lambda: RoundsStrategy(value="nope"),
        lambda: RoundsStrategy(rounds=0),
        lambda: PilotCommitStrategy(pilot=0),
        lambda: PilotCommitStrategy(lower=0.9, upper=0.5),
        lambda: ReinforceAdaStrategy(round_size=0),
        lambda: ReinforceAdaStrategy(target=0),
    ],
)
def test_bad_settings(make):
    with pytest.raises(ValueError):
        make()


def test_paired_differences():
    cfg = _config()
    results = [run(cfg, ["uniform", "reinforce-ada"], steps=10, seed=s) for s in (0, 1, 2)]
    rows = {r["strategy"]: r for r in paired_differences(results)}
    assert rows["uniform"]["mean_p_diff"] == 0.0
    ra = rows["reinforce-ada"]
    diffs = [
        res.traces["reinforce-ada"].summary()["mean_p"] - res.traces["uniform"].summary()["mean_p"]
        for res in results
    ]
    assert ra["mean_p_diffs"] == pytest.approx(diffs)
    assert ra["mean_p_se"] == pytest.approx(np.std(diffs, ddof=1) / np.sqrt(3))
    with pytest.raises(ValueError):
        paired_differences(results, strategies=["missing"])
    with pytest.raises(ValueError):
        paired_differences(results, base="missing")


def test_run_strategy_checks_budget_of_sequential():
    cfg = _config()
    trace = run_strategy(make_strategy("rounds"), Population.create(cfg, seed=0), steps=4)
    assert trace.metrics["rollouts"].tolist() == [cfg.budget] * 4


def test_rates_from_allocations(tmp_path):
    import json

    path = tmp_path / "allocations.jsonl"
    recs = [
        {"step": 0, "ids": [1, 2], "rollouts": [8, 8], "successes": [2, 0]},
        {"step": 1, "ids": [1, 3], "rollouts": [8, 4], "successes": [6, 4]},
        {"step": 2, "ids": [2], "rollouts": [8], "successes": [8]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    rates = rates_from_allocations(path, steps=2)
    assert rates.ids == [1, 2, 3]
    np.testing.assert_allclose(rates.p, [0.5, 0.0, 1.0])
    assert rates_from_allocations(path).p[1] == 0.5
    res = run(_config(prompts=3, prompts_per_step=2), ["uniform"], steps=2, init_p=rates.p)
    assert res.config.prompts == 3
    path.write_text('{"step": 0, "ids": [1]}\n')
    with pytest.raises(ValueError, match="line 1"):
        rates_from_allocations(path)
