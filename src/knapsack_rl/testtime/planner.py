"""``TestTimePlanner``: an evaluation's sampling budget spent where it can still change
the outcome, one sample at a time.

    planner = TestTimePlanner(objective="majority")
    sends = planner.start(question_ids, budget)      # the first sample of every question
    for i, answer in engine.samples():               # in any order
        engine.submit(planner.record(i, answer))     # more positions, possibly none
    chosen = planner.finish()                        # the majority answer per question

The shape is the training planners' (:class:`knapsack_rl.Planner`): positions index
``question_ids``, one entry of ``sends`` is one sample, and no more than ``budget`` samples are
ever requested.

**Objectives.**

- ``majority`` (self-consistency): the answer most samples gave. A question's value of
  more samples is the posterior probability that they change its winner
  (:func:`~knapsack_rl.testtime.values.change_probability`). That value is not concave:
  a lead of one is undone by one vote against, a lead of two needs two or three, so a
  one-sample greedy would starve every question whose gain comes in pairs. Each
  question is ranked by the best value per sample of a block of up to ``lookahead``
  samples (the slope of the value's concave envelope; a block of 2 covers the parity
  case), and the top question gets one sample of its block. The ranking is redone from
  the answers back after every sample, so a block is never committed in advance.
- ``coverage`` (pass@k with a verifier): a question is solved once a sample is correct
  and then leaves. The value of a sample is the Beta posterior probability that it is the
  question's first correct one; it falls with every failure, the objective is concave,
  and the greedy is exact. With one prior for all questions it gives the next sample to
  the unsolved question with the fewest samples so far.
- ``best_of_n`` (a reward model's ``score`` per sample): samples are spent as under
  ``majority`` (they go where the answers still disagree), and a question whose best score
  reaches ``accept`` (if given) leaves, as under coverage. The answer is the best-scored
  sample's (``selector="best"``) or Best-of-Majority's (``selector="bom"``: among answers
  with at least ``min_share`` of the votes, the one with the highest mean score).

**When it plans.** ``start`` requests ``min_samples`` per question (round robin). After
that at most ``concurrency`` samples are in flight (default: as many as the first
requests), and every sample that comes back frees a slot for the question ranked first
at that moment; in-flight samples count as pending, not as evidence. The whole budget is
requested unless no question can gain any more (coverage: every question solved or at
``max_samples``), and then :attr:`unused` says how much was left.
"""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Hashable, Sequence

import numpy as np

from knapsack_rl.testtime.values import block_gain, change_probability, coverage_gain

__all__ = ["OBJECTIVES", "SELECTORS", "TestTimePlanner", "check_question_ids"]

OBJECTIVES = ("majority", "coverage", "best_of_n")
SELECTORS = ("best", "bom")


def _int(v, name: str, low: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    return int(v)


def _positive(v, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not v > 0:
        raise ValueError(f"{name} must be a number > 0, got {v!r}")
    if not math.isfinite(float(v)):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return float(v)


def _sample_problem(answer, correct, score, coverage: bool, best: bool) -> str | None:
    """What is wrong with one sample's answer, ``correct`` and ``score`` (None: nothing)."""
    if isinstance(answer, float) and math.isnan(answer):
        return "answer is NaN (use None for no answer)"
    if correct is None:
        if coverage:
            return "objective 'coverage' needs correct= for every sample"
    elif not isinstance(correct, (bool, np.bool_)) and correct not in (0, 1):
        return f"correct must be a bool, got {correct!r}"
    if best:
        if score is None:
            return "objective 'best_of_n' needs score= for every sample"
        if isinstance(score, bool) or not isinstance(score, (int, float, np.number)):
            return f"score must be a number, got {score!r}"
        if not math.isfinite(float(score)):
            return f"score must be finite, got {score!r}"
    return None


def _scalar(index) -> bool:
    return isinstance(index, (int, np.integer)) and not isinstance(index, bool)


def check_question_ids(question_ids: Sequence[Hashable]) -> list:
    """The ids as a list; raises ``ValueError`` on an empty list, an unhashable id or a repeat."""
    ids = list(question_ids)
    if not ids:
        raise ValueError("question_ids is empty")
    seen: dict = {}
    for k, q in enumerate(ids):
        try:
            j = seen.setdefault(q, k)
        except TypeError:
            raise ValueError(f"question id at position {k} is not hashable: {q!r}") from None
        if j != k:
            raise ValueError(f"question id {q!r} appears twice (positions {j} and {k})")
    return ids


@functools.lru_cache(maxsize=1 << 16)
def _majority_gain(lead: float, second: float, rest: float, pending: int, block: int) -> float:
    # a run revisits the same small counts many times: cache the value
    return block_gain(change_probability(lead, second, rest, pending + block), pending, block)


class TestTimePlanner:
    """Per-question sample counts for evaluation and inference (see the module docstring).

    Args:
        objective: ``majority``, ``coverage`` or ``best_of_n``.
        min_samples, max_samples: bounds on every question's samples.
        concurrency: most samples in flight at once; None: as many as ``start`` requests.
        prior: Beta prior ``(a, b)`` on a question's pass rate (``coverage``).
        alpha: Dirichlet mass of answers not seen yet (``majority``, ``best_of_n``).
        lookahead: longest block of samples a question is ranked by (``majority``).
        accept: a score at or above which a question is done (``best_of_n``; None: never).
        selector: ``best`` or ``bom`` (Best-of-Majority), for ``best_of_n``.
        min_share: Best-of-Majority's least share of the votes for an answer to be chosen.
    """

    __test__ = False  # not a pytest class

    def __init__(
        self,
        objective: str = "majority",
        *,
        min_samples: int = 1,
        max_samples: int = 64,
        concurrency: int | None = None,
        prior: tuple[float, float] = (1.0, 1.0),
        alpha: float = 1.0,
        lookahead: int = 8,
        accept: float | None = None,
        selector: str = "best",
        min_share: float = 0.2,
    ) -> None:
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        self.objective = objective
        self.min_samples = _int(min_samples, "min_samples")
        self.max_samples = _int(max_samples, "max_samples")
        if self.min_samples > self.max_samples:
            raise ValueError(
                f"need min_samples <= max_samples, got {min_samples} and {max_samples}"
            )
        self.concurrency = None if concurrency is None else _int(concurrency, "concurrency")
        try:
            a, b = prior
        except (TypeError, ValueError):
            raise ValueError(f"prior must be a pair (a, b), got {prior!r}") from None
        self.prior = (_positive(a, "prior a"), _positive(b, "prior b"))
        self.alpha = _positive(alpha, "alpha")
        self.lookahead = _int(lookahead, "lookahead")
        if accept is not None and not (
            isinstance(accept, (int, float, np.number)) and math.isfinite(float(accept))
        ):
            raise ValueError(f"accept must be a finite number or None, got {accept!r}")
        self.accept = None if accept is None else float(accept)
        if selector not in SELECTORS:
            raise ValueError(f"selector must be one of {', '.join(SELECTORS)}, got {selector!r}")
        self.selector = selector
        if not 0 <= min_share <= 1:
            raise ValueError(f"min_share must be in [0, 1], got {min_share!r}")
        self.min_share = float(min_share)
        self._open = False
        self._finished = False
        self.ids: list = []

    # ------------------------------------------------------------------ a run
    def start(self, question_ids: Sequence[Hashable], budget: int) -> np.ndarray:
        """Begin over ``question_ids`` with ``budget`` samples; returns the positions to
        sample now (``min_samples`` per question, round robin; int64)."""
        ids = check_question_ids(question_ids)
        m = len(ids)
        budget = _int(budget, "budget", low=0)
        if budget < self.min_samples * m:
            raise ValueError(
                f"budget {budget} is below min_samples * questions = {self.min_samples} * {m}"
            )
        if budget > self.max_samples * m:
            raise ValueError(
                f"budget {budget} cannot be met: it is above max_samples * questions = "
                f"{self.max_samples} * {m}"
            )
        self.ids, self.budget = ids, budget
        self._n = [0] * m  # recorded per question (lists: the per-sample path stays cheap)
        self._q = [0] * m  # requested, not yet back
        self.requested = 0
        self.answers: list[list] = [[] for _ in range(m)]
        self.correct: list[list[bool]] = [[] for _ in range(m)]
        self.scores: list[list[float]] = [[] for _ in range(m)]
        self._votes: list[dict] = [{} for _ in range(m)]
        self._done = [False] * m  # solved (coverage) or accepted (best_of_n)
        self._pilot = self._first(m, budget)
        self._window = self.concurrency or self._pilot.size
        self._heap: list = []
        self._inflight = 0
        self._ver = [0] * m
        self._open, self._finished = True, False
        return self._release()

    def record(self, index, answer, correct=None, score=None) -> np.ndarray:
        """One sample of question position ``index`` (or sequences of them), with its
        ``answer`` (hashable; None: no answer), ``correct`` (bool; needed for ``coverage``)
        and ``score`` (float; needed for ``best_of_n``); returns the positions to sample now."""
        self._check_open()
        idx, ans, cor, sco = self._check(index, answer, correct, score)
        for i, a, c, s in zip(idx, ans, cor, sco, strict=True):
            self._q[i] -= 1
            self._inflight -= 1
            self._add(i, a, c, s)
            self._rank(i)
        return self._release()

    def drop(self, index) -> np.ndarray:
        """Requested samples that came back unusable (failed, cancelled): no longer pending,
        not evidence, and their share of the budget is spent again. Returns what
        :meth:`record` would."""
        self._check_open()
        idx = self._positions(index)
        for i in idx:
            self._q[i] -= 1
            self._inflight -= 1
            self.requested -= 1
            self._rank(i)
        return self._release()

    def finish(self):
        """End the run. Returns, per question, the chosen answer (``majority``, ``best_of_n``;
        a list, None where no sample answered) or whether any sample was correct
        (``coverage``; bool array). Samples still in flight are ignored."""
        self._check_open()
        self._open, self._finished = False, True
        if self.objective == "coverage":
            return self.done
        return [self.choose(i) for i in range(len(self.ids))]

    @property
    def samples(self) -> np.ndarray:
        """Samples recorded per question, int64 (Q,)."""
        return np.asarray(self._n, dtype=np.int64)

    @property
    def pending(self) -> np.ndarray:
        """Samples requested and not yet back per question, int64 (Q,)."""
        return np.asarray(self._q, dtype=np.int64)

    @property
    def done(self) -> np.ndarray:
        """Per question, solved (``coverage``) or accepted (``best_of_n``), bool (Q,)."""
        return np.asarray(self._done, dtype=bool)

    @property
    def unused(self) -> int:
        """Budget not requested (non-zero only when no question could gain more)."""
        return self.budget - self.requested

    def choose(self, i: int):
        """Question ``i``'s answer now: the majority (ties: the first seen), or under
        ``best_of_n`` the selector's."""
        votes = self._votes[i]
        if not votes:
            return None
        if self.objective == "best_of_n":
            answers, scores = self.answers[i], self.scores[i]
            if self.selector == "best":
                k = max(range(len(answers)), key=lambda j: (answers[j] is not None, scores[j]))
                return answers[k]
            total = sum(votes.values())
            mean: dict = {}
            for a, s in zip(answers, scores, strict=True):
                if a is not None:
                    mean[a] = mean.get(a, 0.0) + s / votes[a]
            keep = [a for a in votes if votes[a] >= self.min_share * total]
            if keep:
                return max(keep, key=lambda a: mean[a])
        return max(votes, key=votes.__getitem__)  # dicts keep first-seen order: ties go first

    # ------------------------------------------------------------------ planning
    def _first(self, m: int, budget: int) -> np.ndarray:
        """The positions :meth:`start` queues: ``min_samples`` per question, round robin."""
        return np.tile(np.arange(m, dtype=np.int64), self.min_samples)

    def _add(self, i: int, answer, correct, score) -> None:
        self._n[i] += 1
        self.answers[i].append(answer)
        self.correct[i].append(correct)
        self.scores[i].append(score)
        if answer is not None:
            self._votes[i][answer] = self._votes[i].get(answer, 0) + 1
        if self.objective == "coverage" and correct:
            self._done[i] = True
        if self.objective == "best_of_n" and self.accept is not None and score >= self.accept:
            self._done[i] = True

    def _gain(self, i: int) -> float:
        """Question ``i``'s value per sample of its next samples (-inf: it can take none)."""
        n, q = self._n[i], self._q[i]
        room = self.max_samples - n - q
        if room <= 0 or self._done[i]:
            return -math.inf
        if n + q < self.min_samples:  # a dropped first sample: owed before anything else
            return math.inf
        if self.objective == "coverage":
            a, b = self.prior
            return float(coverage_gain(n, q, a, b))
        votes = self._votes[i]
        if not votes:
            # no answer yet: the chance that the next sample gives one (unseen: wait)
            return self.alpha / (n + self.alpha) if n else 0.0
        top = sorted(votes.values(), reverse=True)[:2]
        lead = float(top[0])
        if len(top) > 1:
            second, rest = float(top[1]), n - top[0] - top[1] + self.alpha
        else:
            second, rest = self.alpha, float(n - top[0])
        h = min(self.lookahead, room)
        return _majority_gain(lead, second, rest, q, h)

    def _rank(self, i: int) -> None:
        self._ver[i] += 1
        g = self._gain(i)
        if g > -math.inf:
            heapq.heappush(self._heap, (-g, self._n[i] + self._q[i], i, self._ver[i]))

    def _release(self) -> np.ndarray:
        out = []
        free = min(self._window - self._inflight, self.budget - self.requested)
        if free > 0 and self._pilot.size:
            take, self._pilot = self._pilot[:free], self._pilot[free:]
            out.extend(take.tolist())
            for i in take.tolist():
                self._q[i] += 1
            self._inflight += take.size
            self.requested += take.size
            free -= take.size
            for i in np.unique(take).tolist():
                self._rank(i)
        while free > 0 and self._heap:
            _, _, i, v = heapq.heappop(self._heap)
            if v != self._ver[i]:
                continue  # stale entry
            out.append(i)
            self._q[i] += 1
            self._inflight += 1
            self.requested += 1
            free -= 1
            self._rank(i)
        return np.asarray(out, dtype=np.int64)

    # ------------------------------------------------------------------ checks
    def _check_open(self) -> None:
        if self._finished:
            raise ValueError("the run is finished; call start() to begin another")
        if not self._open:
            raise ValueError("no run in progress; call start() first")

    def _positions(self, index) -> list[int]:
        """The positions as ints, checked: in range, and requested but not back yet."""
        if _scalar(index):
            i = int(index)  # one sample: the common case, without array work
            if not 0 <= i < len(self.ids):
                raise ValueError(f"question position {i} is out of range (0..{len(self.ids) - 1})")
            if self._q[i] < 1:
                raise ValueError(
                    f"question {self.ids[i]!r} (position {i}): 1 samples recorded "
                    f"but {self._q[i]} requested and not yet back"
                )
            return [i]
        raw = np.asarray(index)
        if raw.dtype == bool or not np.issubdtype(raw.dtype, np.integer):
            raise ValueError(f"question positions must be integers, got {index!r}")
        idx = raw.astype(np.int64).reshape(-1)
        m = len(self.ids)
        bad = idx[(idx < 0) | (idx >= m)]
        if bad.size:
            raise ValueError(f"question position {int(bad[0])} is out of range (0..{m - 1})")
        asked = np.bincount(idx, minlength=m)
        pending = np.asarray(self._q, dtype=np.int64)
        over = np.flatnonzero(asked > pending)
        if over.size:
            i = int(over[0])
            raise ValueError(
                f"question {self.ids[i]!r} (position {i}): {int(asked[i])} samples recorded "
                f"but {int(pending[i])} requested and not yet back"
            )
        return idx.tolist()

    def _check(self, index, answer, correct, score):
        idx = self._positions(index)
        k = len(idx)
        many = not _scalar(index)

        def column(v, name):
            if not many:
                return [v]
            if v is None:
                return [None] * k
            vals = list(v)
            if len(vals) != k:
                raise ValueError(f"{k} positions but {len(vals)} values of {name}")
            return vals

        ans, cor, sco = column(answer, "answer"), column(correct, "correct"), column(score, "score")
        coverage, best = self.objective == "coverage", self.objective == "best_of_n"
        for i, a, c, s in zip(idx, ans, cor, sco):
            problem = None
            try:
                hash(a)
            except TypeError:
                problem = f"answer {a!r} is not hashable"
            if problem is None:
                problem = _sample_problem(a, c, s, coverage, best)
            if problem is not None:
                raise ValueError(f"question {self.ids[i]!r} (position {i}): {problem}")
        cor = [None if c is None else bool(c) for c in cor]
        sco = [None if s is None else float(s) for s in sco]
        return idx, ans, cor, sco

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """The run so far as plain data (answers as given; JSON-safe if they are)."""
        cfg = {
            "objective": self.objective,
            "min_samples": self.min_samples,
            "max_samples": self.max_samples,
            "concurrency": self.concurrency,
            "prior": list(self.prior),
            "alpha": self.alpha,
            "lookahead": self.lookahead,
            "accept": self.accept,
            "selector": self.selector,
            "min_share": self.min_share,
        }
        if not (self._open or self._finished):
            return {"config": cfg, "open": False}
        return {
            "config": cfg,
            "open": self._open,
            "ids": list(self.ids),
            "budget": self.budget,
            "requested": self.requested,
            "pending": list(self._q),
            "pilot": self._pilot.tolist(),
            "answers": [list(a) for a in self.answers],
            "correct": [list(c) for c in self.correct],
            "scores": [list(s) for s in self.scores],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (the configuration must match)."""
        if state.get("config") != self.state_dict()["config"]:
            raise ValueError("state was saved by a planner with another configuration")
        if "ids" not in state:
            self._open = self._finished = False
            return
        ids = state["ids"]
        self.start(ids, state["budget"])  # fresh counts, then replay the record
        self._heap.clear()
        for i, (a_i, c_i, s_i) in enumerate(
            zip(state["answers"], state["correct"], state["scores"], strict=True)
        ):
            for a, c, s in zip(a_i, c_i, s_i, strict=True):
                self._add(i, tuple(a) if isinstance(a, list) else a, c, s)  # JSON: tuple -> list
        self._q = [int(x) for x in state["pending"]]
        self._inflight = sum(self._q)
        self.requested = int(state["requested"])
        self._pilot = np.asarray(state["pilot"], dtype=np.int64)
        for i in range(len(ids)):
            self._rank(i)
        self._open, self._finished = bool(state["open"]), not state["open"]
