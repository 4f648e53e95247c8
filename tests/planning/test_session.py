import numpy as np
import pytest

from knapsack_rl.planning import OneShotPlanner, RoundPlanner, StreamPlanner, run_batched
from knapsack_rl.planning.base import makespan, run_streaming
from knapsack_rl.planning.session import AllocationConfig, AllocationSession


def test_config_lists_every_problem_by_field():
    bad = AllocationConfig(method="nope", value="median", rounds=0, commit=2.0, concurrency=0)
    found = bad.problems()
    assert any(p.startswith("method: unknown 'nope'") for p in found)
    assert any(p.startswith("value: unknown 'median'") for p in found)
    assert any(p.startswith("rounds must be") for p in found)
    assert any(p.startswith("commit must be in (0, 1]") for p in found)
    assert any(p.startswith("concurrency") for p in found)
    with pytest.raises(ValueError, match="method: unknown"):
        bad.validate()
    with pytest.raises(ValueError, match="tracker_kwargs"):
        AllocationConfig(tracker="beta", tracker_kwargs={"discount": "auto"}).validate()
    assert AllocationConfig().validate().problems() == []


@pytest.mark.parametrize(
    "method, kind",
    [("knapsack", OneShotPlanner), ("rounds", RoundPlanner), ("stream", StreamPlanner)],
)
def test_session_picks_the_planner_and_spends_the_budget(method, kind):
    cfg = AllocationConfig(method=method, rollouts_per_prompt=4)
    assert cfg.step_prompts(8) == (16 if method != "knapsack" else 8)
    session = AllocationSession(cfg)
    assert isinstance(session.planner, kind)
    rng = np.random.default_rng(0)
    p = rng.random(16)
    for _ in range(3):
        ids = [f"q{i}" for i in rng.permutation(16)[: cfg.step_prompts(8)]]
        rec = run_batched(
            session, ids, 32, lambda pos: (rng.random(pos.size) < p[pos]).astype(float)
        )
        assert rec.rollouts.sum() == 32 and rec.rollouts.min() >= 2
        assert (rec.pilot is None) == (method == "knapsack")
        assert "rollouts_per_prompt/mean" in rec.metrics
    if method != "knapsack":
        assert rec.pilot.tolist() == [2] * 16  # the first request: 2 per prompt
        assert "rounds/pilot_all_correct" in rec.metrics
        assert rec.pilot_successes.max() <= 2


def test_rounds_session_matches_the_planner_alone():
    """The session adds bookkeeping only: the same allocations as a bare RoundPlanner."""
    from knapsack_rl.tracking import make_tracker
    from knapsack_rl.tracking.priors import PriorModel

    cfg = AllocationConfig(method="rounds")
    session = AllocationSession(cfg)
    bare = RoundPlanner(make_tracker("beta"), priors=PriorModel(half_life=cfg.prior_half_life))
    p = np.linspace(0.05, 0.95, 12)
    for step in range(4):
        ids = list(range(step, step + 12))
        outs = []
        for planner in (session, bare):
            rng = np.random.default_rng(step)
            out = run_batched(
                planner, ids, 48, lambda pos, rng=rng: (rng.random(pos.size) < p[pos]).astype(float)
            )
            outs.append(out)
        np.testing.assert_array_equal(outs[0].rollouts, outs[1]["attempts"])
        np.testing.assert_array_equal(outs[0].successes, outs[1]["successes"])


def test_save_load_round_trip(tmp_path):
    session = AllocationSession(AllocationConfig(method="stream"))
    rng = np.random.default_rng(1)
    run_batched(session, list("abcdef"), 24, lambda pos: rng.random(pos.size).round())
    session.save(tmp_path)
    again = AllocationSession(AllocationConfig(method="stream"))
    assert again.load(tmp_path) and again.state_dict()["planner"] == session.state_dict()["planner"]
    np.testing.assert_array_equal(
        again.tracker.stats(list("abc")).p, session.tracker.stats(list("abc")).p
    )
    assert not AllocationSession(AllocationConfig()).load(tmp_path / "empty")
    with pytest.raises(ValueError, match="holds a 'beta' tracker"):
        AllocationSession(AllocationConfig(method="paper")).load(tmp_path)


def test_drop_frees_a_rollout_without_evidence():
    session = AllocationSession(AllocationConfig(method="rounds"))
    sends = session.start(["a", "b"], 8)
    more = session.record(sends[:3], [1.0, 0.0, 1.0])
    assert more.size == 0
    more = session.drop(sends[3:])  # the last pilot rollout failed to score
    assert more.size == 4 and session.planner.attempts.tolist() == [2, 1]
    session.record(more, np.ones(4))
    assert session.finish().rollouts.sum() == 7  # the dropped one is not a rollout


def test_engine_model_makespan_and_order():
    assert makespan([3.0, 1.0, 2.0]) == 3.0
    assert makespan([3.0, 1.0, 2.0], capacity=1) == 6.0
    assert makespan([2.0, 2.0, 1.0, 1.0], capacity=2) == 3.0  # FIFO: 2|2 then 1|1
    session = AllocationSession(AllocationConfig(method="uniform", rollouts_per_prompt=2))
    rec, run = run_streaming(
        session,
        ["x", "y"],
        4,
        lambda pos: np.ones(pos.size),
        lambda pos, r: np.where(pos == 0, 5.0, 1.0),
        capacity=2,
    )
    assert run.makespan == 6.0 and run.busy == 12.0  # x, x first (FIFO), then y, y
    assert run.order.tolist() == [0, 0, 1, 1] and rec.rollouts.tolist() == [2, 2]
