"""Sampling answers to test questions from a model, and cached sample pools for replay.

:class:`ModelSampler` loads a policy (the built-in tiny Llama, warm-started with the demo's
recipe; a Hugging Face folder; or a GGUF file), builds the test questions of a task
(the built-in arithmetic levels or a reasoning-gym generator) and samples answers for any
batch of question positions: ``sample(positions) -> [(answer, correct, score), ...]``.

:func:`write_cache` samples a fixed number of answers per question and writes them as
JSONL, one line per sample::

    {"id": "<question id>", "answer": "<string>" or null, "correct": true, "score": -0.31, "level": 0}

It is resumable: finished questions are appended to ``PATH.partial`` as it goes (flushed and
fsynced per batch) and skipped on a restart; the final file is written atomically at the end.

Answers are normalised so that equal answers compare equal (majority vote) and correctness
is a function of the answer string alone: ``extract="line"`` keeps the completion's first
line (whitespace collapsed); ``extract="number"`` keeps the last number on that line in a
canonical form (``"5 - 3 = 2."`` -> ``"2"``, ``"2.50"`` -> ``"2.5"``, ``"1,200"`` ->
``"1200"``), for tasks with numeric answers; ``"auto"`` picks ``number`` when every
reference answer is a number and the model is not the built-in one, else ``line``. The
score is the mean log-probability per generated token (eos included) under the model's own
distribution (softmax of its logits, before the temperature).

This module imports torch; ``import knapsack_rl`` never imports it.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from knapsack_rl.atomic import atomic_write_text

__all__ = [
    "Question",
    "SamplerConfig",
    "ModelSampler",
    "extract_answer",
    "write_cache",
    "cache_rows",
    "cache_stats",
]

TASKS = ("arithmetic", "reasoning_gym")
EXTRACT = ("auto", "line", "number")
#: default longest completion per task (tokens): arithmetic answers are <= 4 characters
#: plus eos for the built-in character model; reasoning-gym answers need a few words
MAX_NEW_TOKENS = {"arithmetic": 6, "reasoning_gym": 16}
#: appended to reasoning-gym questions for a pretrained (non built-in) model
RG_INSTRUCTION = " Give only the final answer."


@dataclass
class Question:
    """One test question.

    Attributes:
        id: stable identifier (the cache's ``id``).
        prompt: the text given to the model (instruction included; the chat template,
            when used, is applied on top).
        reference: the reference answer.
        level: difficulty level (0 = easiest).
    """

    id: str
    prompt: str
    reference: str
    level: int


@dataclass
class SamplerConfig:
    """Settings of a :class:`ModelSampler`; names follow the trainer's ``TrainConfig``.

    Attributes:
        model: ``'builtin'`` (tiny Llama with a character tokenizer, warm-started with the
            demo's recipe), a local Hugging Face folder, or a ``.gguf`` file (or a folder with
            ``gguf_file``).
        gguf_file: GGUF file name inside ``model`` (a folder).
        chat_template: wrap prompts with the tokenizer's chat template (None: when it has one).
        task: ``'arithmetic'`` (built-in levels) or ``'reasoning_gym'`` (``rg_name``).
        rg_name: reasoning-gym generator name.
        rg_config: keyword settings of the reasoning-gym generator (e.g. ``min_terms``).
        rg_level: a metadata key of the reasoning-gym entries (integer values, e.g.
            ``'num_terms'``) whose distinct values, in increasing order, become levels 0, 1, ...;
            None: every question is level 0.
        digits, terms, operators: arithmetic levels (the trainer's and demo's defaults).
        instruction: text appended to every question (None: ``RG_INSTRUCTION`` for
            reasoning-gym with a pretrained model, nothing otherwise).
        extract: answer normalisation, ``'auto'``, ``'line'`` or ``'number'`` (module docstring).
        questions: number of test-split questions.
        distinct: drop questions whose prompt repeats an earlier one (small arithmetic levels
            and reasoning-gym generators with few distinct prompts repeat them), drawing
            further test questions instead; ValueError if the task has too few.
        temperature: sampling temperature (0: greedy).
        max_new_tokens: longest completion in tokens (None: ``MAX_NEW_TOKENS[task]``).
        seed: seeds the questions (task seed), the warm-start and the sampling generator.
        sft_steps: built-in model only: supervised warm-start steps (the demo's recipe).
        warmstart_dir: built-in model on arithmetic: folder caching the warm-started model
            (the demo's ``_warmstart``, reused when its settings match); None: train it afresh.
        threads: torch CPU threads.
        max_batch_tokens: generation memory cap (sequences per chunk * (prompt + new tokens)).
        device: ``'cpu'``, ``'cuda'`` or ``'auto'``.
        progress: show progress (warm-start bar, log lines on stderr).
    """

    model: str = "builtin"
    gguf_file: str | None = None
    chat_template: bool | None = None
    task: str = "arithmetic"
    rg_name: str = "basic_arithmetic"
    rg_config: dict = field(default_factory=dict)
    rg_level: str | None = None
    digits: tuple[int, ...] = (1, 1, 1, 2)
    terms: tuple[int, ...] = (2, 2, 3, 2)
    operators: tuple[str, ...] = ("+", "-", "+", "+")
    instruction: str | None = None
    extract: str = "auto"
    questions: int = 200
    distinct: bool = False
    temperature: float = 1.0
    max_new_tokens: int | None = None
    seed: int = 0
    sft_steps: int = 1000
    warmstart_dir: str | None = None
    threads: int = 1
    max_batch_tokens: int = 32768
    device: str = "cpu"
    progress: bool = False

    def validate(self) -> SamplerConfig:
        """Check values; raise ValueError with one line naming the setting."""
        if self.task not in TASKS:
            raise ValueError(f"task: unknown {self.task!r}; expected one of {', '.join(TASKS)}")
        if self.extract not in EXTRACT:
            raise ValueError(
                f"extract: unknown {self.extract!r}; expected one of {', '.join(EXTRACT)}"
            )
        if self.rg_level is not None and self.task != "reasoning_gym":
            raise ValueError("rg_level: only for task 'reasoning_gym'")
        for name in ("questions", "threads", "max_batch_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: must be a positive integer, got {v!r}")
        if self.max_new_tokens is not None and (
            isinstance(self.max_new_tokens, bool)
            or not isinstance(self.max_new_tokens, int)
            or self.max_new_tokens < 1
        ):
            raise ValueError(
                f"max_new_tokens: must be a positive integer, got {self.max_new_tokens!r}"
            )
        if (
            isinstance(self.sft_steps, bool)
            or not isinstance(self.sft_steps, int)
            or self.sft_steps < 0
        ):
            raise ValueError(f"sft_steps: must be a non-negative integer, got {self.sft_steps!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise ValueError(f"temperature: must be a finite number >= 0, got {t!r}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device: expected cpu, cuda or auto, got {self.device!r}")
        if not isinstance(self.rg_config, dict):
            raise ValueError(
                f"rg_config: must be a dict of generator settings, got {self.rg_config!r}"
            )
        return self

    @property
    def new_tokens(self) -> int:
        """``max_new_tokens``, or the task's default."""
        return self.max_new_tokens or MAX_NEW_TOKENS[self.task]

    def to_dict(self) -> dict:
        """The settings as a JSON-ready dict."""
        d = asdict(self)
        for k in ("digits", "terms", "operators"):
            d[k] = list(d[k])
        return d


# ------------------------------------------------------------------ answers
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")


def _canonical_number(text: str) -> str:
    try:
        d = Decimal(text.replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the pattern only matches numbers
        return text
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def extract_answer(text: str, mode: str = "line") -> str | None:
    """The normalised answer of a completion: its first non-blank line with whitespace
    collapsed (``mode="line"``), or the last number on that line in canonical form
    (``mode="number"``); None when there is none."""
    line = " ".join(text.strip().split("\n", 1)[0].split())
    if mode == "number":
        nums = _NUMBER.findall(line)
        return _canonical_number(nums[-1]) if nums else None
    return line or None


def _is_number(text: str) -> bool:
    m = _NUMBER.fullmatch(str(text).strip())
    return m is not None


# ------------------------------------------------------------------ sampler
class ModelSampler:
    """Samples answers to test questions from a model, one call per batch of question positions.

    Attributes:
        cfg: the (validated) settings.
        questions: the test questions (``cfg.questions`` of them).
        model, tok, kind: the policy (``kind`` as in ``load_policy``, plus ``builtin``).
        extract: the answer normalisation in use (``line`` or ``number``).
        generator: the sampling ``torch.Generator`` (seeded from ``cfg.seed``).
        warmstart: the built-in warm-start's summary (None for other models).

    ``policy``: an already loaded ``(model, tokenizer, kind)`` to sample from instead of
    loading ``cfg.model`` (e.g. to try several tasks with one model; no warm-start then).

    Raises ValueError (one line) for settings or paths the user can fix.
    """

    def __init__(self, cfg: SamplerConfig, policy: tuple | None = None) -> None:
        self.cfg = cfg.validate()
        torch.set_num_threads(cfg.threads)
        dev = cfg.device
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if dev == "auto" else dev
        self.task = self._build_task()
        self._examples, levels = self._test_examples()  # before the (slow) model load
        self.warmstart: dict | None = None
        self.model, self.tok, self.kind = self._load_model() if policy is None else policy
        self.model.eval()
        torch.set_num_threads(cfg.threads)
        if cfg.extract != "auto":
            self.extract = cfg.extract
        elif self.kind.startswith("builtin") or not all(
            _is_number(e.answer) for e in self._examples
        ):
            self.extract = "line"
        else:
            self.extract = "number"
        if cfg.instruction is not None:
            suffix = cfg.instruction
        elif cfg.task == "reasoning_gym" and not self.kind.startswith("builtin"):
            suffix = RG_INSTRUCTION
        else:
            suffix = ""
        self.questions: list[Question] = [
            Question(e.id, e.prompt + suffix, e.answer, lv) for e, lv in zip(self._examples, levels)
        ]
        self._prompt_ids = [self.tok.prompt_ids(q.prompt) for q in self.questions]
        self.generator = torch.Generator().manual_seed(cfg.seed)

    # ------------------------------------------------------------ set-up
    def _build_task(self):
        from knapsack_rl.training.tasks import ArithmeticTask, ReasoningGymTask

        cfg = self.cfg
        if cfg.task == "arithmetic":
            try:
                return ArithmeticTask(
                    digits=cfg.digits, terms=cfg.terms, operators=cfg.operators, seed=cfg.seed
                )
            except ValueError as e:
                raise ValueError(f"task 'arithmetic': {e}") from None
        try:
            import reasoning_gym  # noqa: F401
        except ImportError:
            raise ValueError(
                "task 'reasoning_gym': package reasoning-gym is not installed (pip install reasoning-gym)"
            ) from None
        return ReasoningGymTask(
            name=cfg.rg_name, seed=cfg.seed, size=cfg.questions, config=dict(cfg.rg_config)
        )

    def _test_examples(self):
        cfg = self.cfg
        n = cfg.questions
        for factor in (1, 2, 4, 8, 16, 32) if cfg.distinct else (1,):
            try:
                examples = self.task.examples(n * factor, "test")
            except TypeError as e:  # reasoning-gym: an unknown generator setting
                raise ValueError(f"rg_config: {e}") from None
            if cfg.distinct:
                seen: set[str] = set()
                examples = [e for e in examples if not (e.prompt in seen or seen.add(e.prompt))]
            if len(examples) >= n:
                examples = examples[:n]
                break
        else:
            raise ValueError(
                f"distinct: found only {len(examples)} distinct test questions in "
                f"{n * factor} draws, fewer than questions={n}"
            )
        if cfg.rg_level is None:
            return examples, [e.level for e in examples]
        values = []
        for e in examples:
            meta = self.task._entries[e.prompt][1].get("metadata", {})
            v = meta.get(cfg.rg_level)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(
                    f"rg_level: metadata key {cfg.rg_level!r} of {cfg.rg_name!r} is not an "
                    f"integer (got {v!r})"
                )
            values.append(v)
        rank = {v: k for k, v in enumerate(sorted(set(values)))}
        return examples, [rank[v] for v in values]

    def _load_model(self):
        from knapsack_rl.training.model import load_policy

        cfg = self.cfg
        if cfg.model == "builtin":
            return self._builtin()
        try:
            return load_policy(
                _policy_settings(cfg.model, cfg.gguf_file, cfg.chat_template), self.device
            )
        except FileNotFoundError as e:  # ModelPathError
            raise ValueError(str(e)) from None
        except OSError as e:  # a folder transformers cannot read
            raise ValueError(f"model: {cfg.model}: {e}".split("\n", 1)[0]) from None

    def _builtin(self):
        """The built-in model warm-started with the demo's recipe (its ``DemoConfig`` defaults)."""
        from knapsack_rl.training.demo import DemoConfig, _warmstart
        from knapsack_rl.training.model import load_policy
        from knapsack_rl.training.trainer import Trainer

        cfg = self.cfg
        demo = DemoConfig(
            sft_steps=cfg.sft_steps,
            digits=tuple(cfg.digits),
            terms=tuple(cfg.terms),
            operators=tuple(cfg.operators),
            threads=cfg.threads,
            device=cfg.device,
            progress=cfg.progress,
            seeds=(cfg.seed,),
        )
        log = (lambda s: print(s, file=sys.stderr)) if cfg.progress else (lambda s: None)
        if cfg.task == "arithmetic" and cfg.warmstart_dir is not None:
            folder = _warmstart(demo, cfg.seed, Path(cfg.warmstart_dir), log)
            self.warmstart = json.loads((folder / "warmstart.json").read_text())
            self.warmstart["folder"] = str(folder)
            model, tok, _ = load_policy(_policy_settings(str(folder)), self.device)
            return model, tok, "builtin"
        with tempfile.TemporaryDirectory(prefix="knapsack-warmstart-") as tmp:
            tc = demo.train_config("uniform", cfg.seed).replace(run_dir=str(Path(tmp) / "run"))
            if cfg.task != "arithmetic":
                tc = tc.replace(task=cfg.task, rg_name=cfg.rg_name)
            t0 = time.perf_counter()
            tr = Trainer(tc, task=None if cfg.task == "arithmetic" else self.task)
            losses = tr.warmstart()
        self.warmstart = {
            "final_loss": losses[-1] if losses else None,
            "seconds": time.perf_counter() - t0,
        }
        return tr.model, tr.tok, "builtin"

    # ------------------------------------------------------------ sampling
    def prompt_ids(self, position: int) -> list[int]:
        """Token ids fed to the model for question ``position``."""
        return self._prompt_ids[position]

    @torch.no_grad()
    def sample(self, positions) -> list[tuple[str | None, bool, float]]:
        """One sample per entry of positions (int array of indices into self.questions),
        returned in the same order: ``(answer, correct, score)``.

        answer: the normalised first line of the completion (None if empty; see
        :func:`extract_answer` and ``self.extract``); correct: the task's reward == 1.0
        (arithmetic: exact match; reasoning_gym: its score_answer), computed on the answer,
        so equal answers are equally correct; score: mean log-probability per generated
        token (eos included) under the sampling model (a self-confidence score, float).
        Draws from ``self.generator``.
        """
        from knapsack_rl.training.sampler import generate

        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        if pos.size == 0:
            return []
        if pos.min() < 0 or pos.max() >= len(self.questions):
            raise ValueError(
                f"positions must be in 0..{len(self.questions) - 1}, got {int(pos.min())}..{int(pos.max())}"
            )
        uniq, inv = np.unique(pos, return_inverse=True)
        counts = np.bincount(inv, minlength=uniq.size)
        gen = generate(
            self.model,
            [self._prompt_ids[q] for q in uniq.tolist()],
            counts.tolist(),
            max_new_tokens=self.cfg.new_tokens,
            eos_id=self.tok.eos_token_id,
            pad_id=self.tok.pad_token_id,
            temperature=float(self.cfg.temperature),
            generator=self.generator,
            max_batch_tokens=self.cfg.max_batch_tokens,
            device=self.device,
            return_logprobs=True,
            share_prompts=True,
        )
        # rollouts come back grouped by distinct position in increasing order, which is the
        # order of the entries of ``pos`` sorted stably by question
        where = np.argsort(inv, kind="stable")
        answers = [extract_answer(self.tok.decode(c), self.extract) for c in gen.completions]
        ex = [self._examples[int(uniq[g])] for g in gen.prompt_index]
        rewards = self.task.reward(
            [e.prompt for e in ex], [a or "" for a in answers], answer=[e.answer for e in ex]
        )
        out: list = [None] * pos.size
        for k, (a, r, lp) in enumerate(zip(answers, rewards, gen.logprobs)):
            score = float(np.mean(lp)) if lp else 0.0
            out[int(where[k])] = (a, float(r) == 1.0, score)
        return out


def _policy_settings(model: str, gguf_file: str | None = None, chat_template=None):
    """The settings ``load_policy`` reads, for a model that is not the built-in one."""
    return SimpleNamespace(model=model, gguf_file=gguf_file, chat_template=chat_template)


# ------------------------------------------------------------------ cache
def _batch_seed(seed: int, start: int) -> int:
    return zlib.crc32(f"{seed}:testtime-cache:{start}".encode())


def _read_partial(path: Path, ids: set[str], per_question: int) -> dict[str, list[str]]:
    """Complete questions' lines of a ``.partial`` file (a torn last line is dropped)."""
    done: dict[str, list[str]] = {}
    if not path.is_file():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line being written when the run stopped
        if isinstance(obj, dict) and obj.get("id") in ids:
            done.setdefault(obj["id"], []).append(line)
    return {q: ls for q, ls in done.items() if len(ls) == per_question}


def write_cache(
    path,
    sampler: ModelSampler,
    per_question: int = 64,
    batch_questions: int = 4,
    progress: bool = False,
    overwrite: bool = False,
) -> dict:
    """Sample ``per_question`` answers for every question of ``sampler`` and write them to
    ``path`` as JSONL (one line per sample: ``id, answer, correct, score, level``).

    Questions go in batches of ``batch_questions``; each finished batch is appended to
    ``path + ".partial"`` (flushed and fsynced). A restart skips the questions already
    complete there, and the final file is written atomically at the end, after which the
    ``.partial`` file is removed. Each batch's samples are drawn from a generator seeded by
    ``(cfg.seed, batch start)``, so a resumed run samples what an uninterrupted one would.

    Raises FileExistsError if ``path`` exists and ``overwrite`` is False. Returns
    :func:`cache_stats` of the file plus ``seconds`` (this call), ``resumed`` (questions
    taken from the ``.partial`` file) and ``samples_per_second``.
    """
    path = Path(path)
    if per_question < 1 or batch_questions < 1:
        raise ValueError("per_question and batch_questions must be positive")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    partial = Path(str(path) + ".partial")
    qs = sampler.questions
    done = _read_partial(partial, {q.id for q in qs}, per_question)
    path.parent.mkdir(parents=True, exist_ok=True)
    # rewrite the partial file with only complete questions (drops a torn batch)
    lines_done = [ln for q in qs if q.id in done for ln in done[q.id]]
    atomic_write_text(partial, "".join(ln + "\n" for ln in lines_done))
    t0 = time.perf_counter()
    sampled = 0
    todo = [i for i, q in enumerate(qs) if q.id not in done]
    with open(partial, "a", encoding="utf-8") as fh:
        for b in range(0, len(qs), batch_questions):
            batch = [i for i in range(b, min(b + batch_questions, len(qs))) if qs[i].id not in done]
            if not batch:
                continue
            sampler.generator.manual_seed(_batch_seed(sampler.cfg.seed, b))
            pos = np.repeat(np.asarray(batch, dtype=np.int64), per_question)
            res = sampler.sample(pos)
            text = "".join(
                json.dumps(
                    {
                        "id": qs[i].id,
                        "answer": a,
                        "correct": bool(c),
                        "score": round(float(s), 6),
                        "level": int(qs[i].level),
                    }
                )
                + "\n"
                for i, (a, c, s) in zip(pos.tolist(), res)
            )
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
            for i in batch:
                done[qs[i].id] = []  # marks it complete; lines are re-read below
            sampled += len(batch)
            if progress:
                el = time.perf_counter() - t0
                left = len(todo) - sampled
                print(
                    f"{path.name}: {len(qs) - left}/{len(qs)} questions, {el:.0f}s, "
                    f"~{el / sampled * left:.0f}s left",
                    file=sys.stderr,
                    flush=True,
                )
    seconds = time.perf_counter() - t0
    final = _read_partial(partial, {q.id for q in qs}, per_question)
    missing = [q.id for q in qs if q.id not in final]
    if missing:  # pragma: no cover - the loop above completes every question
        raise RuntimeError(f"{partial}: questions missing after sampling: {missing[:3]}")
    atomic_write_text(path, "".join(ln + "\n" for q in qs for ln in final[q.id]))
    partial.unlink()
    stats = cache_stats(cache_rows(path))
    stats.update(
        seconds=seconds,
        resumed=len(qs) - len(todo),
        samples_per_second=(len(todo) * per_question / seconds) if seconds > 0 else None,
    )
    return stats


def cache_rows(path) -> list[dict]:
    """The lines of a cache file as dicts (the replay's reader is
    :func:`knapsack_rl.testtime.replay.read_cache`)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(ln) for ln in fh if ln.strip()]


def cache_stats(rows: list[dict]) -> dict:
    """Summary of cache rows: questions, samples, mean pass rate, the share of questions with
    a pass rate strictly between 0 and 1, pass-rate quantiles, mean distinct answers per
    question, majority-vote accuracy (ties: the first answer to reach the top count, null
    answers never win unless all are null), mean pass rate per level."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["id"], []).append(r)
    if not by:
        return {"questions": 0, "samples": 0}
    rates = np.array([np.mean([x["correct"] for x in v]) for v in by.values()])
    distinct = np.array(
        [len({x["answer"] for x in v if x["answer"] is not None}) for v in by.values()]
    )
    maj = []
    for v in by.values():
        count: dict = {}
        for x in v:
            if x["answer"] is not None:
                count[x["answer"]] = count.get(x["answer"], 0) + 1
        if not count:
            maj.append(False)
            continue
        top = max(count.values())
        best = next(a for a in count if count[a] == top)
        maj.append(any(x["correct"] for x in v if x["answer"] == best))
    levels: dict[int, list[float]] = {}
    for v, p in zip(by.values(), rates):
        levels.setdefault(int(v[0]["level"]), []).append(float(p))
    per = [len(v) for v in by.values()]
    return {
        "questions": len(by),
        "samples": len(rows),
        "per_question": min(per) if min(per) == max(per) else [min(per), max(per)],
        "mean_pass_rate": float(rates.mean()),
        "frac_between": float(np.mean((rates > 0) & (rates < 1))),
        "frac_zero": float(np.mean(rates == 0)),
        "frac_one": float(np.mean(rates == 1)),
        "pass_rate_quantiles": [float(x) for x in np.quantile(rates, [0.1, 0.25, 0.5, 0.75, 0.9])],
        "mean_distinct_answers": float(distinct.mean()),
        "null_answer_rate": float(np.mean([r["answer"] is None for r in rows])),
        "majority_vote_accuracy": float(np.mean(maj)),
        "pass_rate_by_level": {lv: float(np.mean(v)) for lv, v in sorted(levels.items())},
    }
