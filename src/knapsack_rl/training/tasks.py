"""Tasks (prompts with reference answers) and reward functions, pure Python.

- :class:`ArithmeticTask`: a built-in family of arithmetic prompts such as
  ``"12+7="`` with answer ``"19"``, in graded difficulty levels (operand digits,
  number of terms, operators), generated deterministically from a seed, with
  disjoint train and test splits. Small character set (``0-9 + - * =``), so a
  character tokenizer works.
- :class:`JsonlTask`: a JSONL file of ``{"prompt": ..., "answer": ...}`` rows
  (optional ``"id"``, ``"level"``); bad rows raise :class:`DatasetError` naming
  the file, row and field.
- :class:`ReasoningGymTask`: any `reasoning-gym` generator, scored by its own
  checker.

Reward functions follow TRL's convention ``f(prompts, completions, **kwargs) ->
list[float]`` where dataset columns (here ``answer``) arrive as keyword lists of
the same length as ``completions``: :func:`exact_match_reward`,
:func:`math_verify_reward`; :func:`resolve_reward` finds one by name. This module
never imports torch.
"""

from __future__ import annotations

import json
import math
import os
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Example",
    "ArithmeticTask",
    "JsonlTask",
    "ReasoningGymTask",
    "DatasetError",
    "TASKS",
    "make_task",
    "load_jsonl",
    "exact_match_reward",
    "math_verify_reward",
    "completion_text",
    "check_rewards",
    "REWARDS",
    "resolve_reward",
]


@dataclass(frozen=True)
class Example:
    """One prompt with its reference answer.

    Attributes:
        id: stable identifier (trackers key their per-prompt state on it).
        prompt: the text given to the model.
        answer: the reference answer (string).
        level: difficulty level (0 = easiest), for per-level evaluation and as the
            group key of pooled priors.
        pass_rate: an offline success rate in [0, 1] (e.g. a previous run's), the
            prompt's prior under ``method="rounds"``; None if unknown.
    """

    id: str
    prompt: str
    answer: str
    level: int = 0
    pass_rate: float | None = None


class DatasetError(ValueError):
    """A dataset file or row the user must fix (message names file, row, field)."""


def _split_of(key: str, test_fraction: float) -> str:
    """Deterministic train/test bucket of a prompt (crc32 of its text)."""
    h = zlib.crc32(key.encode("utf-8")) / 2**32
    return "test" if h < test_fraction else "train"


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


# --------------------------------------------------------------------- arithmetic
@dataclass
class ArithmeticTask:
    """Arithmetic prompts in graded difficulty levels.

    Level ``i`` has ``terms[i]`` operands of 1 to ``digits[i]`` digits (the
    first operand always has exactly ``digits[i]`` digits when > 1) joined by
    operators drawn from ``operators[i]`` (characters among ``+ - *``), written
    without spaces and ending in ``=``: ``"47+8="`` -> ``"55"``. Answers may be
    negative. ``examples(n, split)`` is deterministic in ``seed``; a prompt's
    split is fixed by a hash of its text, so train and test never share a
    prompt. Levels are mixed in proportion to ``weights`` (default equal).

    Attributes:
        digits, terms, operators: one entry per level (same lengths).
        weights: relative share of each level (None = equal).
        test_fraction: share of all prompts reserved for the test split.
        seed: generation seed.
    """

    digits: tuple[int, ...] = (1, 2, 2, 2)
    terms: tuple[int, ...] = (2, 2, 2, 3)
    operators: tuple[str, ...] = ("+", "+", "+-", "+-")
    weights: tuple[float, ...] | None = None
    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        self.digits = tuple(int(d) for d in self.digits)
        self.terms = tuple(int(t) for t in self.terms)
        self.operators = tuple(str(o) for o in self.operators)
        n = len(self.digits)
        if n == 0 or len(self.terms) != n or len(self.operators) != n:
            raise ValueError(
                f"digits, terms and operators need one entry per level (got lengths "
                f"{len(self.digits)}, {len(self.terms)}, {len(self.operators)})"
            )
        for i in range(n):
            if not 1 <= self.digits[i] <= 9:
                raise ValueError(f"digits[{i}] = {self.digits[i]} must be in 1..9")
            if self.terms[i] < 2:
                raise ValueError(f"terms[{i}] = {self.terms[i]} must be >= 2")
            if not self.operators[i] or set(self.operators[i]) - set("+-*"):
                raise ValueError(f"operators[{i}] = {self.operators[i]!r}: use characters of '+-*'")
        if self.weights is not None:
            self.weights = tuple(float(w) for w in self.weights)
            if len(self.weights) != n or min(self.weights) < 0 or sum(self.weights) <= 0:
                raise ValueError(f"weights must be {n} non-negative numbers with a positive sum")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")

    @property
    def levels(self) -> list[int]:
        """The difficulty levels, ``[0, 1, ...]``."""
        return list(range(len(self.digits)))

    @property
    def charset(self) -> str:
        """Every character a prompt or answer can contain."""
        return "0123456789+-*="

    def describe(self, level: int) -> str:
        """Human-readable description of a level, e.g. ``'2 terms, 2 digits, +-'``."""
        return f"{self.terms[level]} terms, {self.digits[level]} digits, {self.operators[level]}"

    def _capacity(self, level: int) -> float:
        d, t, ops = self.digits[level], self.terms[level], self.operators[level]
        first = 9 * 10 ** (d - 1) if d > 1 else 10
        return first * (10**d) ** (t - 1) * len(ops) ** (t - 1)

    def _one(self, rng: random.Random, level: int) -> tuple[str, str]:
        d, t, ops = self.digits[level], self.terms[level], self.operators[level]
        lo = 10 ** (d - 1) if d > 1 else 0
        nums = [rng.randint(lo, 10**d - 1)] + [rng.randint(0, 10**d - 1) for _ in range(t - 1)]
        expr = str(nums[0])
        for x in nums[1:]:
            expr += rng.choice(ops) + str(x)
        value = eval(expr, {"__builtins__": {}}, {})  # only digits and + - *
        return expr + "=", str(value)

    def _counts(self, n: int) -> list[int]:
        w = self.weights or tuple(1.0 for _ in self.digits)
        tot = sum(w)
        raw = [n * x / tot for x in w]
        counts = [math.floor(r) for r in raw]
        order = sorted(range(len(w)), key=lambda i: (counts[i] - raw[i], i))
        for i in order[: n - sum(counts)]:
            counts[i] += 1
        return counts

    def examples(self, n: int, split: str = "train") -> list[Example]:
        """``n`` examples of the split, levels interleaved, deterministic in ``seed``.

        Prompts are distinct while a level has enough distinct prompts; beyond
        that a level repeats prompts (ids get a ``#k`` suffix).
        """
        _check_split(split)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        per_level: list[list[Example]] = []
        for level, count in enumerate(self._counts(n)):
            rng = random.Random(f"{self.seed}:{split}:{level}")
            cap = self._capacity(level) * (
                self.test_fraction if split == "test" else 1 - self.test_fraction
            )
            seen: dict[str, int] = {}
            out: list[Example] = []
            tries = 0
            while len(out) < count:
                prompt, answer = self._one(rng, level)
                tries += 1
                if _split_of(prompt, self.test_fraction) != split:
                    continue
                k = seen.get(prompt, 0)
                if k and (len(seen) < 0.8 * cap and tries < 1000 * (count + 10)):
                    continue  # prefer distinct prompts while they are easy to find
                seen[prompt] = k + 1
                pid = f"L{level}:{prompt}" + (f"#{k}" if k else "")
                out.append(Example(pid, prompt, answer, level))
            per_level.append(out)
        # interleave levels so any prefix is a balanced mix
        merged: list[Example] = []
        idx = [0] * len(per_level)
        total = sum(len(x) for x in per_level)
        while len(merged) < total:
            for lv, xs in enumerate(per_level):
                if idx[lv] < len(xs):
                    merged.append(xs[idx[lv]])
                    idx[lv] += 1
        return merged

    def reward(
        self, prompts: Sequence, completions: Sequence, answer: Sequence, **kwargs
    ) -> list[float]:
        """Exact-match reward (see :func:`exact_match_reward`)."""
        return exact_match_reward(prompts, completions, answer, **kwargs)


# ------------------------------------------------------------------ rewards
def completion_text(completion) -> str:
    """The text of a completion: a string, or TRL's conversational form (a
    list of ``{"role", "content"}`` messages; the last message's content)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    return str(completion)


def _first_line(text: str) -> str:
    text = text.strip()
    return text.split("\n", 1)[0].strip()


def exact_match_reward(
    prompts: Sequence, completions: Sequence, answer: Sequence, **kwargs
) -> list[float]:
    """1.0 where the completion's first line, stripped, equals the answer, else 0.0.

    TRL convention: ``answer`` is the dataset column, one reference per
    completion. Returns a list of ``len(completions)`` floats.
    """
    if len(answer) != len(completions):
        raise ValueError(f"{len(completions)} completions but {len(answer)} answers")
    return [
        1.0 if _first_line(completion_text(c)) == str(a).strip() else 0.0
        for c, a in zip(completions, answer)
    ]


def math_verify_reward(
    prompts: Sequence, completions: Sequence, answer: Sequence, **kwargs
) -> list[float]:
    """1.0 where `math-verify` judges the completion equal to the answer, else 0.0.

    The answer is parsed as given (``$...$`` added when it parses to nothing);
    the completion is parsed in full, so ``\\boxed{}`` answers and plain numbers
    both work. Needs the ``math-verify`` package (extra ``train``).
    """
    from math_verify import parse, verify

    if len(answer) != len(completions):
        raise ValueError(f"{len(completions)} completions but {len(answer)} answers")
    out = []
    for c, a in zip(completions, answer):
        gold = parse(str(a)) or parse(f"${a}$")
        pred = parse(completion_text(c))
        try:
            ok = bool(gold) and bool(pred) and verify(gold, pred)
        except Exception:  # math-verify may raise on odd input; treat as wrong
            ok = False
        out.append(1.0 if ok else 0.0)
    return out


def check_rewards(rewards, n: int, name: str = "reward function") -> list[float]:
    """Validate a reward function's output: ``n`` finite floats, else ValueError."""
    try:
        values = [float(r) for r in rewards]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} returned non-numeric rewards ({e})") from None
    if len(values) != n:
        raise ValueError(f"{name} returned {len(values)} rewards for {n} completions")
    for k, v in enumerate(values):
        if not math.isfinite(v):
            raise ValueError(f"{name} returned reward[{k}] = {v} (not finite)")
    return values


REWARDS: dict[str, Callable] = {
    "exact_match": exact_match_reward,
    "math_verify": math_verify_reward,
}


def resolve_reward(name: str, task) -> Callable:
    """``auto`` -> the task's own reward; else a function from :data:`REWARDS`."""
    if name == "auto":
        return task.reward
    if name not in REWARDS:
        raise ValueError(f"reward: unknown {name!r}; expected auto or one of {', '.join(REWARDS)}")
    return REWARDS[name]


# --------------------------------------------------------------------- JSONL
def load_jsonl(
    path: str | os.PathLike, prompt_field: str = "prompt", answer_field: str = "answer"
) -> list[Example]:
    """Read ``{prompt, answer}`` rows (optional ``id``, ``level``, ``pass_rate``) from a JSONL file.

    Blank lines are skipped. Raises :class:`DatasetError` ``"FILE:ROW: ..."``
    (1-based line number) for invalid JSON, a missing or non-string field, or a
    duplicate id; FileNotFoundError-style DatasetError if the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: dataset file not found")
    out: list[Example] = []
    ids: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for row, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path}:{row}: invalid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DatasetError(f"{path}:{row}: expected a JSON object")
            for fld in (prompt_field, answer_field):
                if fld not in obj:
                    raise DatasetError(f"{path}:{row}: missing field {fld!r}")
            prompt, answer = obj[prompt_field], obj[answer_field]
            if not isinstance(prompt, str) or not prompt:
                raise DatasetError(
                    f"{path}:{row}: field {prompt_field!r} must be a non-empty string"
                )
            if isinstance(answer, (int, float)) and not isinstance(answer, bool):
                answer = str(answer)
            if not isinstance(answer, str):
                raise DatasetError(
                    f"{path}:{row}: field {answer_field!r} must be a string or number"
                )
            level = obj.get("level", 0)
            if not isinstance(level, int) or isinstance(level, bool) or level < 0:
                raise DatasetError(f"{path}:{row}: field 'level' must be a non-negative integer")
            rate = obj.get("pass_rate")
            if rate is not None and (
                isinstance(rate, bool)
                or not isinstance(rate, (int, float))
                or not 0.0 <= float(rate) <= 1.0
            ):
                raise DatasetError(f"{path}:{row}: field 'pass_rate' must be a number in [0, 1]")
            pid = str(obj.get("id", f"{path.stem}:{row}"))
            if pid in ids:
                raise DatasetError(f"{path}:{row}: duplicate id {pid!r}")
            ids.add(pid)
            out.append(Example(pid, prompt, answer, level, None if rate is None else float(rate)))
    if not out:
        raise DatasetError(f"{path}: no rows")
    return out


@dataclass
class JsonlTask:
    """Prompts from JSONL files, scored with :func:`math_verify_reward` (default)
    or :func:`exact_match_reward` (``reward_name="exact_match"``).

    With ``test_path`` the test split is that file; otherwise rows are split by
    a hash of the prompt (``test_fraction`` to test). ``examples(n, split)``
    returns the first ``n`` rows of the split in a seed-fixed order (all rows
    when ``n`` is None or larger).
    """

    path: str
    test_path: str | None = None
    test_fraction: float = 0.1
    reward_name: str = "math_verify"
    seed: int = 0
    _rows: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.reward_name not in ("math_verify", "exact_match"):
            raise ValueError(f"reward_name: unknown {self.reward_name!r}")
        rows = load_jsonl(self.path)
        if self.test_path:
            self._rows = {"train": rows, "test": load_jsonl(self.test_path)}
        else:
            self._rows = {
                s: [e for e in rows if _split_of(e.prompt, self.test_fraction) == s]
                for s in ("train", "test")
            }
        for s in ("train", "test"):
            random.Random(f"{self.seed}:{s}").shuffle(self._rows[s])

    @property
    def levels(self) -> list[int]:
        """Distinct ``level`` values in the data."""
        return sorted({e.level for s in self._rows.values() for e in s})

    def examples(self, n: int | None = None, split: str = "train") -> list[Example]:
        """The first ``n`` examples of ``split`` (seed-fixed order)."""
        _check_split(split)
        rows = self._rows[split]
        return list(rows if n is None else rows[:n])

    def reward(
        self, prompts: Sequence, completions: Sequence, answer: Sequence, **kwargs
    ) -> list[float]:
        """The configured reward (math-verify or exact match)."""
        fn = math_verify_reward if self.reward_name == "math_verify" else exact_match_reward
        return fn(prompts, completions, answer, **kwargs)


# ------------------------------------------------------------- reasoning-gym
@dataclass
class ReasoningGymTask:
    """A `reasoning-gym` generator (``name``, e.g. ``"basic_arithmetic"``) as a task.

    Train and test use different generator seeds (``seed`` and ``seed + 1``);
    the reward is the generator's own ``score_answer`` (a float in [0, 1]),
    looked up by prompt text. Needs the ``reasoning-gym`` package.
    """

    name: str = "basic_arithmetic"
    seed: int = 0
    size: int = 1000
    config: dict = field(default_factory=dict)
    _entries: dict = field(default_factory=dict, repr=False)
    _datasets: dict = field(default_factory=dict, repr=False)

    def _dataset(self, split: str, n: int):
        import reasoning_gym

        key = (split, n)
        if key not in self._datasets:
            seed = self.seed if split == "train" else self.seed + 1
            try:
                ds = reasoning_gym.create_dataset(self.name, size=n, seed=seed, **self.config)
            except Exception as e:  # unknown generator names raise various errors
                raise ValueError(f"reasoning-gym task {self.name!r}: {e}") from None
            self._datasets[key] = ds
        return self._datasets[key]

    @property
    def levels(self) -> list[int]:
        """A single level (reasoning-gym difficulty is set through ``config``)."""
        return [0]

    def examples(self, n: int | None = None, split: str = "train") -> list[Example]:
        """``n`` (default ``size``) generated examples of ``split``."""
        _check_split(split)
        n = self.size if n is None else n
        ds = self._dataset(split, n)
        out = []
        for k in range(n):
            entry = ds[k]
            self._entries[entry["question"]] = (ds, entry)
            out.append(
                Example(f"{self.name}:{split}:{k}", entry["question"], str(entry["answer"]), 0)
            )
        return out

    def reward(
        self, prompts: Sequence, completions: Sequence, answer: Sequence, **kwargs
    ) -> list[float]:
        """The generator's checker; unknown prompts fall back to exact match."""
        out = []
        for p, c, a in zip(prompts, completions, answer):
            text = _first_line(completion_text(c))
            hit = self._entries.get(completion_text(p) if not isinstance(p, str) else p)
            if hit is None:
                out.append(1.0 if text == str(a).strip() else 0.0)
            else:
                ds, entry = hit
                out.append(float(ds.score_answer(answer=text, entry=entry)))
        return out


TASKS: dict[str, Callable] = {
    "arithmetic": ArithmeticTask,
    "jsonl": JsonlTask,
    "reasoning_gym": ReasoningGymTask,
}


def make_task(name: str, /, **kwargs):
    """Build a task by name (``arithmetic``, ``jsonl``, ``reasoning_gym``)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}")
    return TASKS[name](**kwargs)
