"""Replaying cached samples: compare sampling rules on one fixed pool per question.

A cache is JSONL, one sample per line::

    {"id": "q17", "answer": "42", "correct": true, "score": -0.31, "level": 2}

(``score`` and ``level`` are optional; ``answer`` may be null for no answer.) A replay
draws each question's samples without replacement from its pool, in an order fixed by the
seed, and feeds a planner the way an engine would: requests are served first come, first
served, and each answer goes back to the planner as it is drawn. Every rule sees the same
order for a seed, so differences between rules are paired.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from knapsack_rl.io import InputError, jsonl_records, read_text, where

__all__ = ["Pool", "ReplayResult", "read_cache", "replay"]


@dataclass
class Pool:
    """Cached samples per question.

    Attributes:
        ids: question ids, (Q,).
        answers: per question, its samples' answers (object arrays).
        correct: per question, bool arrays.
        scores: per question, float64 arrays (NaN where the cache has no score).
        levels: int64 (Q,), -1 where the cache has none.
    """

    ids: list
    answers: list[np.ndarray]
    correct: list[np.ndarray]
    scores: list[np.ndarray]
    levels: np.ndarray
    source: str = ""
    _right: list[dict] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._right = [
            dict(zip(a.tolist(), c.tolist(), strict=True))
            for a, c in zip(self.answers, self.correct, strict=True)
        ]

    @property
    def sizes(self) -> np.ndarray:
        """Samples per question, int64 (Q,)."""
        return np.asarray([a.size for a in self.answers], dtype=np.int64)

    def is_correct(self, i: int, answer) -> bool:
        """Whether ``answer`` to question ``i`` is right (False for None or an answer the
        pool never gave)."""
        return answer is not None and bool(self._right[i].get(answer, False))

    def pass_rates(self) -> np.ndarray:
        """Each question's share of correct samples in its pool, float64 (Q,)."""
        return np.asarray([c.mean() for c in self.correct])

    def check(self, need: int) -> None:
        """Raise ``ValueError`` naming the first question with fewer than ``need`` samples."""
        short = np.flatnonzero(self.sizes < need)
        if short.size:
            i = int(short[0])
            raise ValueError(
                f"{self.source or 'cache'}: question {self.ids[i]!r} has {self.sizes[i]} samples, "
                f"but the replay may draw up to {need}; cache more or lower max_samples"
            )


def read_cache(path: str | os.PathLike) -> Pool:
    """Read a JSONL cache (see the module docstring); ``InputError`` names the line and field."""
    text = read_text(path)
    torn = bool(text) and not text.endswith("\n")
    rows: dict = {}
    try:
        for line, obj in jsonl_records(path, text):
            _row(path, line, obj, rows)
    except InputError as e:
        last = text.count("\n") + 1
        if torn and f", line {last}:" in str(e) and "not valid JSON" in str(e):
            raise InputError(
                f"{where(path, last)}: torn last line (the file ends mid-record; "
                "was it cut off while being written?)"
            ) from None
        raise
    if not rows:
        raise InputError(f"{path}: no samples")
    ids = list(rows)
    levels = np.asarray([rows[q]["level"] for q in ids], dtype=np.int64)
    return Pool(
        ids=ids,
        answers=[np.asarray(rows[q]["answer"] + [None], dtype=object)[:-1] for q in ids],
        correct=[np.asarray(rows[q]["correct"], dtype=bool) for q in ids],
        scores=[np.asarray(rows[q]["score"], dtype=np.float64) for q in ids],
        levels=levels,
        source=str(path),
    )


def _row(path, line: int, obj: dict, rows: dict) -> None:
    for key in ("id", "answer", "correct"):
        if key not in obj:
            raise InputError(f"{where(path, line)}: missing field '{key}'")
    q, answer, correct = obj["id"], obj["answer"], obj["correct"]
    if not isinstance(q, (str, int)) or isinstance(q, bool):
        raise InputError(f"{where(path, line, 'id')}: expected a string or integer, got {q!r}")
    if isinstance(answer, (list, dict)):
        raise InputError(f"{where(path, line, 'answer')}: expected a string, number or null")
    if isinstance(answer, float) and not math.isfinite(answer):
        raise InputError(f"{where(path, line, 'answer')}: not a finite number")
    if not isinstance(correct, bool):
        raise InputError(f"{where(path, line, 'correct')}: expected true or false, got {correct!r}")
    score = obj.get("score")
    if score is None:
        score = math.nan
    elif isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise InputError(f"{where(path, line, 'score')}: expected a finite number, got {score!r}")
    level = obj.get("level", -1)
    if isinstance(level, bool) or not isinstance(level, int):
        raise InputError(f"{where(path, line, 'level')}: expected an integer, got {level!r}")
    r = rows.setdefault(q, {"answer": [], "correct": [], "score": [], "level": level})
    if r["level"] != level:
        raise InputError(
            f"{where(path, line, 'level')}: question {q!r} was level {r['level']} on an earlier line"
        )
    r["answer"].append(answer)
    r["correct"].append(correct)
    r["score"].append(float(score))


@dataclass
class ReplayResult:
    """One replay of a planner over a pool.

    Attributes:
        samples: samples drawn per question, int64 (Q,).
        solved: per question, whether the outcome is right, bool (Q,): the chosen answer is
            correct (majority, best_of_n) or any sample was (coverage).
        planner_seconds: time spent inside the planner's calls.
        correct: correct samples drawn per question, int64 (Q,).
    """

    samples: np.ndarray
    solved: np.ndarray
    planner_seconds: float
    correct: np.ndarray | None = None

    @property
    def accuracy(self) -> float:
        """Share of questions solved (accuracy, or coverage under ``coverage``)."""
        return float(self.solved.mean())

    @property
    def per_question(self) -> float:
        """Mean samples per question."""
        return float(self.samples.mean())


def replay(planner, pool: Pool, budget: int, seed: int = 0) -> ReplayResult:
    """Run ``planner`` (a :class:`~knapsack_rl.testtime.TestTimePlanner`) over ``pool`` with
    ``budget`` samples, drawing each question's samples in a seeded random order."""
    pool.check(planner.max_samples)
    if planner.objective == "best_of_n":
        no_score = [i for i, s in enumerate(pool.scores) if np.isnan(s).any()]
        if no_score:
            raise ValueError(
                f"{pool.source or 'cache'}: question {pool.ids[no_score[0]]!r} has samples "
                "without a score, which best_of_n needs"
            )
    rng = np.random.default_rng(seed)
    order = [rng.permutation(n) for n in pool.sizes.tolist()]
    drawn = np.zeros(len(pool.ids), dtype=np.int64)
    right = np.zeros(len(pool.ids), dtype=np.int64)
    has_score = planner.objective == "best_of_n"
    t = time.perf_counter()
    queue = deque(planner.start(pool.ids, budget).tolist())
    spent = time.perf_counter() - t
    while queue:
        i = queue.popleft()
        k = order[i][drawn[i]]
        drawn[i] += 1
        right[i] += bool(pool.correct[i][k])
        score = float(pool.scores[i][k]) if has_score else None
        t = time.perf_counter()
        more = planner.record(i, pool.answers[i][k], bool(pool.correct[i][k]), score)
        spent += time.perf_counter() - t
        queue.extend(more.tolist())
    chosen = planner.finish()
    if planner.objective == "coverage":
        solved = np.asarray(chosen, dtype=bool)
    else:
        solved = np.asarray([pool.is_correct(i, a) for i, a in enumerate(chosen)], dtype=bool)
    return ReplayResult(drawn, solved, spent, right)
