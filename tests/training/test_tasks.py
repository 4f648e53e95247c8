"""Tests for knapsack_rl.training.tasks (pure Python: no torch)."""

import json
import math

import pytest

from knapsack_rl.training.tasks import (
    ArithmeticTask,
    DatasetError,
    Example,
    JsonlTask,
    check_rewards,
    exact_match_reward,
    load_jsonl,
    make_task,
    math_verify_reward,
)


def test_arithmetic_deterministic_and_disjoint():
    task = ArithmeticTask(seed=3)
    a = task.examples(200, "train")
    b = ArithmeticTask(seed=3).examples(200, "train")
    assert a == b
    assert ArithmeticTask(seed=4).examples(200, "train") != a
    test = task.examples(100, "test")
    assert not {e.prompt for e in a} & {e.prompt for e in test}
    assert {e.level for e in a} == set(task.levels)
    assert len({e.id for e in a}) == len(a)


def test_arithmetic_answers_are_correct_and_charset_small():
    task = ArithmeticTask(digits=(1, 2, 3), terms=(2, 3, 2), operators=("+", "+-", "*"), seed=0)
    for e in task.examples(90):
        expr = e.prompt[:-1]
        assert e.prompt.endswith("=")
        assert set(e.prompt + e.answer) <= set(task.charset)
        # recompute the answer left to right with precedence, independently of the generator
        assert str(eval(expr)) == e.answer
        assert e.level in (0, 1, 2)


def test_arithmetic_levels_balanced_and_weighted():
    ex = ArithmeticTask(seed=1).examples(40)
    counts = [sum(e.level == lv for e in ex) for lv in range(4)]
    assert counts == [10, 10, 10, 10]
    assert [e.level for e in ex[:4]] == [0, 1, 2, 3]  # interleaved
    ex = ArithmeticTask(seed=1, weights=(3, 1, 0, 0)).examples(40)
    assert [sum(e.level == lv for e in ex) for lv in range(4)] == [30, 10, 0, 0]


def test_small_level_repeats_when_exhausted():
    task = ArithmeticTask(digits=(1,), terms=(2,), operators=("+",), seed=0)
    ex = task.examples(200)
    assert len(ex) == 200
    assert len({e.id for e in ex}) == 200
    assert len({e.prompt for e in ex}) <= 100


def test_arithmetic_bad_config():
    with pytest.raises(ValueError, match="one entry per level"):
        ArithmeticTask(digits=(1, 2), terms=(2,), operators=("+",))
    with pytest.raises(ValueError, match="operators"):
        ArithmeticTask(digits=(1,), terms=(2,), operators=("/",))
    with pytest.raises(ValueError, match="split"):
        ArithmeticTask().examples(3, "valid")


def test_exact_match_reward_trl_convention():
    r = exact_match_reward(
        ["1+1=", "2+2=", "3+3=", "4+4="],
        ["2", " 4 \nextra", "7", [{"role": "assistant", "content": "8"}]],
        answer=["2", "4", "6", "8"],
        other_column=[1, 2, 3, 4],
    )
    assert r == [1.0, 1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="answers"):
        exact_match_reward(["a"], ["1", "2"], answer=["1"])


def test_math_verify_reward():
    r = math_verify_reward(
        ["q", "q", "q"], ["The answer is $\\frac{1}{2}$", "0.5", "3"], answer=["0.5", "1/2", "4"]
    )
    assert r == [1.0, 1.0, 0.0]


def test_check_rewards():
    assert check_rewards([1, 0.5], 2) == [1.0, 0.5]
    with pytest.raises(ValueError, match="returned 1 rewards for 2"):
        check_rewards([1.0], 2)
    with pytest.raises(ValueError, match="not finite"):
        check_rewards([1.0, math.nan], 2)


def test_load_jsonl_and_errors(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(
        '{"prompt": "1+1=", "answer": 2}\n\n{"prompt": "x", "answer": "y", "level": 1, "id": "a"}\n'
    )
    ex = load_jsonl(p)
    assert ex == [Example("d:1", "1+1=", "2", 0), Example("a", "x", "y", 1)]
    p.write_text('{"prompt": "1+1=", "answer": "2"}\n{"prompt": "3"}\n')
    with pytest.raises(DatasetError, match=r"d\.jsonl:2: missing field 'answer'"):
        load_jsonl(p)
    p.write_text('{"prompt": "1+1="\n')
    with pytest.raises(DatasetError, match=r"d\.jsonl:1: invalid JSON"):
        load_jsonl(p)
    with pytest.raises(DatasetError, match="not found"):
        load_jsonl(tmp_path / "missing.jsonl")


def test_jsonl_task_split(tmp_path):
    p = tmp_path / "d.jsonl"
    rows = [{"prompt": f"{i}+{i}=", "answer": str(2 * i)} for i in range(200)]
    p.write_text("\n".join(json.dumps(r) for r in rows))
    task = JsonlTask(str(p), test_fraction=0.25, reward_name="exact_match")
    tr, te = task.examples(None, "train"), task.examples(None, "test")
    assert len(tr) + len(te) == 200 and 20 < len(te) < 80
    assert not {e.prompt for e in tr} & {e.prompt for e in te}
    assert task.reward(
        [e.prompt for e in te], [e.answer for e in te], answer=[e.answer for e in te]
    ) == [1.0] * len(te)


def test_make_task_unknown():
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        make_task("nope")
    assert isinstance(make_task("arithmetic", seed=2), ArithmeticTask)


def test_reasoning_gym_task():
    pytest.importorskip("reasoning_gym")
    task = make_task("reasoning_gym", name="basic_arithmetic", seed=0, size=5)
    ex = task.examples(5)
    assert len(ex) == 5
    r = task.reward([e.prompt for e in ex], [e.answer for e in ex], answer=[e.answer for e in ex])
    assert r == [1.0] * 5
    assert task.reward([ex[0].prompt], ["garbage"], answer=[ex[0].answer]) == [0.0]
