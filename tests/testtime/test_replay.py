import numpy as np
import pytest

from knapsack_rl.io import InputError
from knapsack_rl.testtime import (
    AdaptiveConsistency,
    EarlyStoppingConsistency,
    TestTimePlanner,
    UniformPlanner,
    compare,
    read_cache,
    replay,
)
from knapsack_rl.testtime.compare import summarise


def test_read_cache_groups_samples_by_question(tmp_path, write_pool):
    pool = read_cache(write_pool(tmp_path / "c.jsonl"))
    assert len(pool.ids) == 30 and pool.sizes.tolist() == [24] * 30
    assert set(pool.levels.tolist()) == {0, 1}
    i = 0
    a = pool.answers[i][0]
    assert pool.is_correct(i, a) == bool(pool.correct[i][0])
    assert not pool.is_correct(i, None) and not pool.is_correct(i, "never")


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"id": "a", "answer": "1", "correct": true}\n{"id": "a", "ans', "line 2: torn last line"),
        ('{"id": "a", "answer": "1"}\n', "line 1: missing field 'correct'"),
        ('{"id": "a", "answer": "1", "correct": 1}\n', "field 'correct': expected true or false"),
        ('{"id": "a", "answer": [1], "correct": true}\n', "field 'answer'"),
        ('{"id": "a", "answer": "1", "correct": true, "score": "x"}\n', "field 'score'"),
        ('{"id": null, "answer": "1", "correct": true}\n', "field 'id'"),
        (
            '{"id": "a", "answer": "1", "correct": true, "level": 1}\n'
            '{"id": "a", "answer": "1", "correct": true, "level": 2}\n',
            "line 2, field 'level': question 'a' was level 1",
        ),
        ("\n", "no samples"),
    ],
)
def test_read_cache_names_the_line(tmp_path, text, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(InputError, match=match):
        read_cache(path)


def test_replay_refuses_a_pool_too_small(tmp_path, write_pool):
    pool = read_cache(write_pool(tmp_path / "c.jsonl", per=8))
    with pytest.raises(ValueError, match="question 'q0' has 8 samples.*up to 64"):
        replay(TestTimePlanner(max_samples=64), pool, 60)


def test_replay_is_paired_by_seed_and_spends_the_budget(tmp_path, write_pool):
    pool = read_cache(write_pool(tmp_path / "c.jsonl"))
    a = replay(TestTimePlanner(max_samples=24), pool, 150, seed=3)
    b = replay(TestTimePlanner(max_samples=24), pool, 150, seed=3)
    assert a.samples.sum() == 150 and np.array_equal(a.samples, b.samples)
    assert np.array_equal(a.solved, b.solved)
    u = replay(UniformPlanner(max_samples=24), pool, 150, seed=3)
    assert u.samples.tolist() == [5] * 30


def test_baselines_stop_by_their_rules():
    ac = AdaptiveConsistency(0.95)
    ac.start(["q"], 40)
    for _ in range(3):
        assert ac.record(0, "x").tolist() == [0]
    assert ac.record(0, "x").size == 0  # 1 - I_0.5(5, 1) = 0.969 > 0.95 after four agreeing
    esc = EarlyStoppingConsistency(window=3)
    assert esc.start(["q"], 40).tolist() == [0, 0, 0]
    assert esc.record([0, 0, 0], ["x", "y", "x"]).tolist() == [0, 0, 0]  # disagreed: a window
    assert esc.record([0, 0, 0], ["y", "y", "y"]).size == 0  # agreed: stop
    assert esc.finish() == ["y"]


def test_compare_pairs_rules_at_equal_samples(tmp_path, write_pool):
    pool = read_cache(write_pool(tmp_path / "c.jsonl"))
    rows = compare(pool, budgets=(2, 4), replays=2, max_samples=24, reference=4)
    methods = {(r["method"], r["setting"]) for r in rows}
    assert ("uniform", "4/question") in methods and ("knapsack", "2/question") in methods
    for r in rows:
        if r["setting"].startswith("= "):  # matched to another rule's samples
            twin = next(
                x for x in rows if x["method"] == r["vs"] and r["setting"].endswith(x["setting"])
            )
            assert r["samples"] == pytest.approx(twin["samples"], abs=1.0 / 30)
    s = summarise(rows, reference=4)
    assert s["uniform_reference"]["samples"] == 4
    cov = compare(pool, "coverage", budgets=(2,), replays=2, max_samples=24, reference=4)
    assert {r["method"] for r in cov} == {"uniform", "knapsack"}
    with pytest.raises(ValueError, match="unknown method 'vote'"):
        compare(pool, methods=("vote",))


def test_compare_estimates_pass_at_1_from_what_each_rule_drew(tmp_path, write_pool):
    """Coverage stops solved questions, so the pooled rate of what it drew falls far below
    the pool's own pass rate; the posterior under a fitted prior stays near it."""
    pool = read_cache(write_pool(tmp_path / "c.jsonl", m=60))
    truth = pool.pass_rates().mean()
    rows = compare(pool, "coverage", budgets=(8,), replays=3, max_samples=24, reference=8)
    planner = next(r for r in rows if r["method"] == "knapsack")
    uniform = next(r for r in rows if r["method"] == "uniform")
    assert planner["pass@1_pooled"] < truth - 0.1
    assert abs(planner["pass@1_posterior"] - truth) < 0.05
    assert abs(uniform["pass@1_pooled"] - truth) < 0.05  # fixed counts: no bias
