import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knapsack_rl import StreamPlanner, allocate_round
from knapsack_rl.allocation.rounds import round_value
from knapsack_rl.planning import Planner
from knapsack_rl.tracking import make_tracker


def drive(planner, ids, budget, p, rng, concurrency=None):
    """Completions return in random order; checks the in-flight bound on the way."""
    out = list(planner.start(ids, budget))
    asked = len(out)
    while out:
        if concurrency is not None:
            assert len(out) <= concurrency
        i = int(out.pop(rng.integers(len(out))))
        more = planner.record(i, float(rng.random() < p[i]))
        asked += more.size
        out.extend(more.tolist())
    return asked, planner.finish()


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 12),
    lo=st.integers(1, 3),
    extra=st.integers(0, 6),
    per=st.floats(0.0, 1.0),
    conc=st.one_of(st.none(), st.integers(1, 40)),
    commit=st.sampled_from([0.25, 0.5, 1.0]),
    seed=st.integers(0, 10_000),
)
def test_spends_exactly_the_budget_within_bounds(m, lo, extra, per, conc, commit, seed):
    rng = np.random.default_rng(seed)
    hi = lo + extra
    budget = m * lo + int(per * m * (hi - lo))
    planner = StreamPlanner(
        make_tracker("beta"), min_rollouts=lo, max_rollouts=hi, concurrency=conc, commit=commit
    )
    asked, out = drive(planner, list(range(m)), budget, rng.random(m), rng, conc)
    assert asked == budget == out["attempts"].sum()
    assert out["attempts"].min() >= lo and out["attempts"].max() <= hi
    assert np.all(out["successes"] <= out["attempts"])


def test_plans_the_rest_with_the_exact_posterior_value():
    """All pilot results in one record: the rest is planned with nothing in flight,
    so it is allocate_round's optimum on the pilots' counts."""
    rng = np.random.default_rng(3)
    m, budget = 40, 320
    planner = StreamPlanner(make_tracker("beta"))
    pilots = planner.start(list(range(m)), budget)
    assert pilots.size == 2 * m
    p = rng.random(m)
    rewards = (rng.random(pilots.size) < p[pilots]).astype(float)
    rest = planner.record(pilots, rewards)
    got = np.bincount(rest, minlength=m)
    s, n = planner.successes.copy(), planner.attempts.copy()
    kw = dict(prior_a=planner.prior_a, prior_b=planner.prior_b, value=planner.value)
    want = allocate_round(s, n, budget=budget - 2 * m, min_rollouts=2, max_rollouts=128, **kw)
    a, b = planner.prior_a + s, planner.prior_b + n - s
    v = lambda x: round_value(x, s, n, a, b, planner.value).sum()  # noqa: E731
    assert got.sum() == want.sum() and v(got) == pytest.approx(v(want), rel=1e-9)


def test_releases_follow_the_pilot_results_and_keep_slots_full():
    planner = StreamPlanner(make_tracker("beta"), commit=0.5)
    pilots = planner.start(list(range(8)), 64)
    assert sorted(pilots.tolist()) == sorted(list(range(8)) * 2)
    assert pilots[:8].tolist() == list(range(8))  # round robin
    released = sum(planner.record(int(i), 1.0).size for i in pilots[:4])  # 1/4 of the pilots
    assert released == 24  # half of the rest of 48
    capped = StreamPlanner(make_tracker("beta"), concurrency=5)
    first = capped.start(list(range(8)), 64)
    assert first.size == 5
    assert capped.record(int(first[0]), 0.0).size == 1  # a freed slot is refilled at once


def test_bad_input_names_the_prompt_and_keeps_what_was_recorded():
    planner = StreamPlanner(make_tracker("beta"))
    with pytest.raises(ValueError, match="budget 3 cannot be met by 2 prompts"):
        planner.start(["a", "b"], 3)
    sends = planner.start(["a", "b"], 4)  # the pilots only
    planner.record(0, 1.0)
    with pytest.raises(ValueError, match="prompt position 5"):
        planner.record(5, 1.0)
    with pytest.raises(ValueError, match=r"prompt 1 \('b'\) is not finite|reward nan"):
        planner.record(1, float("nan"))
    with pytest.raises(ValueError, match=r"prompt 0 \('a'\) got 2 results but has 1 pending"):
        planner.record([0, 0], [1.0, 1.0])
    assert planner.attempts.tolist() == [1, 0] and planner.successes.tolist() == [1, 0]
    for i in sends[1:]:
        planner.record(int(i), 0.0)
    planner.finish()
    with pytest.raises(ValueError, match="finished"):
        planner.record(0, 1.0)
    with pytest.raises(ValueError, match="concurrency"):
        StreamPlanner(make_tracker("beta"), concurrency=0)
    with pytest.raises(ValueError, match="commit"):
        StreamPlanner(make_tracker("beta"), commit=0.0)


def test_one_tracker_update_and_the_planner_shape(tmp_path):
    tracker = make_tracker("beta")
    planner = StreamPlanner(tracker)
    assert isinstance(planner, Planner)
    rng = np.random.default_rng(0)
    _, out = drive(planner, ["x", "y", "z"], 12, np.array([0.1, 0.5, 0.9]), rng)
    np.testing.assert_allclose(tracker.stats(["x", "y", "z"]).attempts, out["attempts"])
    planner.save(tmp_path / "s.json")
    again = StreamPlanner(tracker)
    assert again.load(tmp_path / "s.json") and again.state_dict() == planner.state_dict()
