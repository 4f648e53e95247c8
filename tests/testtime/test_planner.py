import itertools
import math
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knapsack_rl.planning import Planner
from knapsack_rl.testtime import TestTimePlanner
from knapsack_rl.testtime.values import block_gain, change_probability, coverage_gain


def drive(planner, m, budget, dist, rng, concurrency=None, shuffle=True):
    """Samples return in random order; answer k of question i has probability dist[i][k]
    (answer 0 is the correct one); checks the in-flight bound on the way."""
    out = list(planner.start(list(range(m)), budget))
    asked = len(out)
    while out:
        if concurrency is not None:
            assert len(out) <= concurrency
        i = int(out.pop(rng.integers(len(out)) if shuffle else 0))
        a = int(rng.choice(len(dist[i]), p=dist[i]))
        more = planner.record(i, a, correct=a == 0, score=float(a == 0) + rng.normal())
        asked += more.size
        out.extend(more.tolist())
    return asked, planner.finish()


def test_follows_the_planner_shape():
    assert isinstance(TestTimePlanner(), Planner)


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 10),
    lo=st.integers(1, 3),
    extra=st.integers(0, 6),
    per=st.floats(0.0, 1.0),
    conc=st.one_of(st.none(), st.integers(1, 30)),
    objective=st.sampled_from(["majority", "best_of_n"]),
    seed=st.integers(0, 10_000),
)
def test_requests_exactly_the_budget_within_bounds(m, lo, extra, per, conc, objective, seed):
    rng = np.random.default_rng(seed)
    hi = lo + extra
    budget = m * lo + int(per * m * (hi - lo))
    planner = TestTimePlanner(objective, min_samples=lo, max_samples=hi, concurrency=conc)
    dist = [rng.dirichlet(np.ones(3)) for _ in range(m)]
    asked, chosen = drive(planner, m, budget, dist, rng, conc)
    assert asked == budget == planner.samples.sum() == planner.requested
    assert planner.samples.min() >= lo and planner.samples.max() <= hi
    assert len(chosen) == m and all(c in (0, 1, 2) for c in chosen)


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 8), hi=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_coverage_stops_solved_questions(m, hi, seed):
    rng = np.random.default_rng(seed)
    p = rng.choice([0.0, 0.3, 1.0], size=m)
    dist = [np.array([q, 1 - q]) for q in p]
    planner = TestTimePlanner("coverage", max_samples=hi)
    asked, solved = drive(planner, m, m * hi, dist, rng, shuffle=False)
    assert asked == planner.requested <= m * hi
    for i in range(m):
        hits = planner.correct[i]
        assert solved[i] == any(hits)
        if any(hits):  # after the first correct one, only samples already in flight came back
            assert planner.samples[i] - (hits.index(True) + 1) < m
    if planner.unused:  # budget left only when every question is solved or full
        assert all(solved[i] or planner.samples[i] == hi for i in range(m))


def _brute_change(lead, second, rest, m):
    """P(the runner-up ends above the leader, ties half), by enumerating Polya-urn draws."""
    total = 0.0
    for seq in itertools.product(range(3), repeat=m):
        w, c = 1.0, [lead, second, rest]
        for s in seq:
            w *= c[s] / sum(c)
            c[s] += 1
        swing = (c[1] - second) - (c[0] - lead) - (lead - second)
        total += w * (1.0 if swing > 0 else 0.5 if swing == 0 else 0.0)
    return total


@settings(max_examples=40, deadline=None)
@given(
    lead=st.integers(1, 6),
    gap=st.integers(0, 5),
    rest=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    m=st.integers(0, 5),
)
def test_change_probability_matches_brute_force(lead, gap, rest, m):
    second = max(lead - gap, 0) + 0.5 if gap >= lead else lead - gap
    got = change_probability(float(lead), float(second), rest, m)
    assert got[0] == 0.0  # no new samples: the winner stands, by definition
    for k in range(1, m + 1):
        want = _brute_change(float(lead), float(second), rest, k)
        assert got[k] == pytest.approx(want, abs=1e-10)


def test_block_gain_sees_a_pair_that_one_step_misses():
    """A lead of two: one more sample cannot even tie; two can."""
    v = change_probability(3.0, 1.0, 0.0, 2)
    assert v[1] == 0.0
    assert block_gain(v, 0, 2) > 0.0


def test_coverage_gain_is_concave_and_matches_its_definition():
    a, b = 0.7, 1.3
    g = coverage_gain(np.arange(20), 0, a, b)
    assert np.all(np.diff(g) < 0)
    # E[p] under Beta(a, b + f): the first sample's chance of success
    assert g[0] == pytest.approx(a / (a + b))
    assert g[3] == pytest.approx(
        math.exp(
            math.lgamma(a + 1)
            + math.lgamma(b + 3)
            - math.lgamma(a + b + 4)
            - (math.lgamma(a) + math.lgamma(b + 3) - math.lgamma(a + b + 3))
        )
    )


def test_coverage_allocation_matches_brute_force_when_nothing_is_solved():
    """With every sample wrong, the greedy split maximises the expected number solved."""
    m, budget, a, b = 4, 11, 1.0, 1.0
    planner = TestTimePlanner("coverage", prior=(a, b))
    queue = deque(planner.start(list(range(m)), budget).tolist())
    while queue:
        queue.extend(planner.record(queue.popleft(), "x", correct=False).tolist())
    got = planner.samples

    def solved(n):  # 1 - E[(1-p)^n] under Beta(a, b)
        return 1.0 - math.exp(
            math.lgamma(b + n) + math.lgamma(a + b) - math.lgamma(b) - math.lgamma(a + b + n)
        )

    best = max(
        (c for c in itertools.product(range(1, budget + 1), repeat=m) if sum(c) == budget),
        key=lambda c: sum(solved(n) for n in c),
    )
    assert sum(solved(n) for n in got) == pytest.approx(sum(solved(n) for n in best))


def test_majority_spends_more_where_answers_disagree():
    planner = TestTimePlanner("majority", max_samples=32)
    queue = deque(planner.start(["agree", "split"], 40).tolist())
    k = 0
    while queue:
        i = queue.popleft()
        k += 1
        queue.extend(planner.record(i, "7" if i == 0 else str(k % 2)).tolist())
    assert planner.samples[1] > 3 * planner.samples[0]
    assert planner.finish()[0] == "7"


def test_ties_go_to_the_first_answer_seen_and_none_never_wins():
    planner = TestTimePlanner(max_samples=4)
    planner.start(["q"], 4)
    planner.record(0, None)
    for a in ("b", "a", "a"):
        planner.record(0, a)
    assert planner.choose(0) == "a"
    p2 = TestTimePlanner(max_samples=2)
    p2.start(["q"], 2)
    p2.record(0, "b")
    p2.record(0, "a")
    assert p2.finish() == ["b"]


def test_best_of_n_selectors():
    samples = [("x", 0.1), ("y", 0.9), ("x", 0.5), ("x", 0.4), ("z", 0.95)]
    out = {}
    for sel in ("best", "bom"):
        p = TestTimePlanner("best_of_n", selector=sel, max_samples=5, min_share=0.3)
        p.start(["q"], 5)
        for a, s in samples:
            p.record(0, a, score=s)
        out[sel] = p.finish()[0]
    assert out == {"best": "z", "bom": "x"}  # z and y are below 30% of the votes


def test_best_of_n_accept_stops_a_question():
    p = TestTimePlanner("best_of_n", accept=0.9, max_samples=8)
    sends = p.start(["a", "b"], 16)
    assert sorted(sends.tolist()) == [0, 1]
    more = p.record(0, "1", score=0.95)  # accepted: question 0 is done
    assert 0 not in more.tolist()
    more = p.record(1, "2", score=0.1)
    assert set(more.tolist()) == {1}


# ---------------------------------------------------------------- bad input
def _started(objective="majority", **kw):
    p = TestTimePlanner(objective, **kw)
    p.start(["a", "b", "c"], 9)
    return p


@pytest.mark.parametrize(
    "objective, call, match",
    [
        ("majority", lambda p: p.record(0, ["list"]), "position 0.*not hashable"),
        ("majority", lambda p: p.record(0, float("nan")), "NaN"),
        ("coverage", lambda p: p.record(1, "x"), "'b'.*needs correct="),
        ("best_of_n", lambda p: p.record(2, "x"), "'c'.*needs score="),
        ("best_of_n", lambda p: p.record(2, "x", score=float("inf")), "finite"),
        ("majority", lambda p: p.record(5, "x"), "position 5 is out of range"),
        ("majority", lambda p: p.record([0, 0], ["x", "y"]), "'a'.*2 samples recorded but 1"),
        ("majority", lambda p: p.record(1.5, "x"), "integers"),
        ("majority", lambda p: p.record([0, 1], ["x"]), "2 positions but 1 values of answer"),
    ],
)
def test_bad_records_raise_and_lose_nothing(objective, call, match):
    p = _started(objective)
    p.record(0, "kept", correct=False, score=0.0)
    before = p.state_dict()
    with pytest.raises(ValueError, match=match):
        call(p)
    assert p.state_dict() == before


def test_budget_and_lifecycle_errors():
    with pytest.raises(ValueError, match="budget 2 is below min_samples"):
        TestTimePlanner(min_samples=1).start(["a", "b", "c"], 2)
    with pytest.raises(ValueError, match="cannot be met"):
        TestTimePlanner(max_samples=2).start(["a", "b"], 5)
    with pytest.raises(ValueError, match="appears twice"):
        TestTimePlanner().start(["a", "a"], 4)
    with pytest.raises(ValueError, match="not hashable"):
        TestTimePlanner().start([["a"]], 4)
    with pytest.raises(ValueError, match="call start"):
        TestTimePlanner().record(0, "x")
    p = _started()
    p.finish()
    with pytest.raises(ValueError, match="finished"):
        p.record(0, "x")
    with pytest.raises(ValueError, match="objective"):
        TestTimePlanner("vote")
    with pytest.raises(ValueError, match="min_samples <= max_samples"):
        TestTimePlanner(min_samples=5, max_samples=2)


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    dist = [rng.dirichlet(np.ones(3)) for _ in range(6)]
    p = TestTimePlanner(concurrency=4)
    queue = deque(p.start(list(range(6)), 30).tolist())
    for _ in range(10):
        i = queue.popleft()
        queue.extend(p.record(i, int(rng.choice(3, p=dist[i]))).tolist())
    q = TestTimePlanner(concurrency=4)
    q.load_state_dict(p.state_dict())
    assert q.state_dict() == p.state_dict()
    for _ in range(10):
        i = queue.popleft()
        a = int(rng.choice(3, p=dist[i]))
        more = p.record(i, a)
        assert np.array_equal(more, q.record(i, a))
        queue.extend(more.tolist())
    with pytest.raises(ValueError, match="another configuration"):
        TestTimePlanner("coverage").load_state_dict(p.state_dict())


def test_drop_returns_the_sample_to_the_budget():
    p = TestTimePlanner(max_samples=4)
    sends = p.start(["a", "b"], 4)
    more = p.drop(sends[0])
    assert more.tolist() == [0]  # the dropped first sample is owed and asked again
    assert p.requested == 2
    queue = deque([1, 0])
    while queue:
        queue.extend(p.record(queue.popleft(), "x").tolist())
    assert p.requested == 4 == p.samples.sum()


def test_unanswered_questions_do_not_drain_the_budget():
    """A question that never gives an answer is worth less with every empty sample; a
    contested one keeps its value."""
    p = TestTimePlanner(max_samples=64, concurrency=1)  # one decision per sample
    queue = deque(p.start(["mute", "contested"], 40).tolist())
    while queue:
        i = queue.popleft()
        answer = None if i == 0 else "ab"[int(p.samples[1]) % 2]
        queue.extend(p.record(i, answer).tolist())
    assert p.samples[0] < p.samples[1] / 2
