import numpy as np
import pytest

from knapsack_rl import RoundPlanner
from knapsack_rl.tracking import make_tracker
from knapsack_rl.tracking.priors import PriorModel


def run_step(planner, ids, budget, p, rng):
    idx = planner.start(ids, budget)
    sizes = []
    while idx.size:
        sizes.append(int(idx.size))
        idx = planner.record(idx, (rng.random(idx.size) < p[idx]).astype(float))
    return sizes, planner.finish()


def test_rounds_spend_budget_and_respect_bounds():
    rng = np.random.default_rng(0)
    p = np.array([0.0, 0.02, 0.5, 0.98, 1.0, 0.3])
    planner = RoundPlanner(make_tracker("beta"), rounds=3, pilot=2, min_rollouts=2, max_rollouts=16)
    ids = [f"q{i}" for i in range(6)]
    sizes, out = run_step(planner, ids, 48, p, rng)
    assert len(sizes) == 3 and sum(sizes) == 48 and sizes[0] == 12
    assert out["attempts"].sum() == 48
    assert np.all(out["attempts"] >= 2) and np.all(out["attempts"] <= 16)
    # one tracker visit per prompt with every draw of the step
    st = planner.tracker.stats(ids)
    np.testing.assert_allclose(st.attempts, out["attempts"])


def test_second_round_goes_to_unbroken_ties():
    rng = np.random.default_rng(1)
    p = np.array([0.5] * 8 + [0.05] * 8)
    planner = RoundPlanner(make_tracker("beta", prior=(1.0, 1.0)), rounds=2, pilot=4, value="paper")
    _, out = run_step(planner, list(range(16)), 16 * 8, p, rng)
    mixed = (out["successes"] > 0) & (out["successes"] < out["attempts"])
    # under the paper value every extra rollout goes to groups that were all-equal after the pilot
    assert out["attempts"][:8].mean() < out["attempts"][8:].mean()
    assert mixed.sum() >= 8


def test_pilot_prior_was_removed():
    with pytest.raises(ValueError, match="removed in 0.2.0"):
        RoundPlanner(make_tracker("beta"), pilot="prior")


def test_record_returns_the_next_round_only_when_the_round_is_in():
    planner = RoundPlanner(make_tracker("beta"), rounds=2, pilot=2)
    sends = planner.start(["a", "b", "c"], 12)
    assert sends.tolist() == [0, 0, 1, 1, 2, 2]
    assert planner.record(sends[:5], [1, 0, 0, 0, 1]).size == 0  # one still out
    rest = planner.record(sends[5:], [1])
    assert rest.size == 6 and planner.record(rest, np.zeros(6)).size == 0
    with pytest.raises(ValueError, match="prompt 0 .* pending"):
        planner.record([0], [1.0])  # nothing of prompt 0 is out any more
    out = planner.finish()
    assert out["attempts"].sum() == 12


def test_decay_pulls_stale_prompts_back_to_the_pool():
    pm = PriorModel(half_life=2.0)
    pm.mark_seen(["old", "new"], 0)
    pm.mark_seen(["new"], 10)
    a, b = pm.priors(["old", "new"], [0.0, 0.0], [8.0, 8.0], step=10)
    assert b[0] - b[1] < -7  # 10 steps = 5 half-lives: old evidence nearly gone
    # groups get their own empirical-Bayes pool
    pm = PriorModel(min_pool=2)
    pm.set_groups(["e1", "e2", "h1", "h2"], ["easy", "easy", "hard", "hard"])
    a, b = pm.priors(["e1", "e2", "h1", "h2"], [7, 8, 0, 1], [8, 8, 8, 8], step=0)
    assert (a / (a + b))[0] > 0.6 and (a / (a + b))[2] < 0.4


def test_state_round_trip_and_bad_input():
    pm = PriorModel()
    pm.set_offline(["a", ("b", 1)], [0.2, float("nan")])
    pm.set_groups(["a"], [3])
    pm.mark_seen([("b", 1)], 4)
    back = PriorModel.from_state_dict(pm.state_dict())
    assert back == pm
    with pytest.raises(ValueError, match="outside"):
        pm.set_offline(["x"], [1.5])
    with pytest.raises(ValueError, match="pilot"):
        RoundPlanner(make_tracker("beta"), pilot=0)
    with pytest.raises(ValueError, match="budget"):
        RoundPlanner(make_tracker("beta")).start(["a", "b"], 3)


def test_pools_are_kept_apart_by_key_not_by_hash():
    # hash(-1) == hash(-2) in CPython: the pools of keys -1 and -2 must not merge
    pm = PriorModel(min_pool=2)
    seen = ["a1", "a2", "b1", "b2"]
    pm.set_groups([*seen, "a3", "b3"], [-1, -1, -2, -2, -1, -2])
    known = (seen, [8, 7, 0, 1], [8, 8, 8, 8])
    a, b = pm.priors(["a3", "b3"], [0, 0], [0, 0], step=0, known=known)
    mean = a / (a + b)  # unseen prompts: their own pool's prior
    assert mean[0] > 0.7 and mean[1] < 0.3


def test_planner_save_and_load_round_trip(tmp_path):
    """save/load keep the step and the priors (pools, last visits); a missing file is False."""
    tr = make_tracker("beta")
    p = RoundPlanner(tr, rounds=2, pilot=2)
    p.priors.set_groups(["a", "b"], [0, 1])
    p.start(["a", "b"], budget=8)
    rest = p.record([0, 0, 1, 1], [1, 0, 0, 0])
    p.record(rest, np.zeros(rest.size))
    p.finish()
    path = tmp_path / "planner.json"
    p.save(path)
    q = RoundPlanner(tr, rounds=2, pilot=2)
    assert not q.load(tmp_path / "missing.json") and q.step == 0
    assert q.load(path)
    assert q.step == 1 and q.state_dict() == p.state_dict()
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically, no temp file left


def test_old_import_path_warns_with_its_removal_version():
    import importlib
    import sys

    sys.modules.pop("knapsack_rl.tracking.planner", None)
    with pytest.warns(DeprecationWarning, match="removed in 0.3.0; use knapsack_rl.planning"):
        mod = importlib.import_module("knapsack_rl.tracking.planner")
    from knapsack_rl import RoundPlanner

    assert mod.RoundPlanner is RoundPlanner
