"""knapsack_rl.testtime.sampling: ModelSampler and the resumable JSONL sample cache."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from knapsack_rl.testtime.sampling import (
    ModelSampler,
    SamplerConfig,
    cache_rows,
    cache_stats,
    extract_answer,
    write_cache,
)
from knapsack_rl.training.sampler import generate

KEYS = {"id", "answer", "correct", "score", "level"}


def _cfg(**kw) -> SamplerConfig:
    return SamplerConfig(**{"sft_steps": 20, "questions": 6, "seed": 0, **kw})


@pytest.fixture(scope="module")
def sampler() -> ModelSampler:
    torch.set_num_threads(1)
    return ModelSampler(_cfg())


@pytest.fixture(scope="module")
def greedy(sampler) -> ModelSampler:
    return ModelSampler(_cfg(temperature=0.0), policy=(sampler.model, sampler.tok, sampler.kind))


def test_questions(sampler):
    qs = sampler.questions
    assert len(qs) == 6
    assert len({q.id for q in qs}) == 6
    assert {q.level for q in qs} == {0, 1, 2, 3}  # levels interleaved
    assert all(isinstance(q.prompt, str) and q.prompt.endswith("=") for q in qs)
    assert sampler.extract == "line" and sampler.kind == "builtin"


def test_sample_types_and_order(sampler, greedy):
    pos = np.array([3, 0, 3, 5, 1, 0])
    out = sampler.sample(pos)
    assert len(out) == len(pos)
    for (a, c, s), p in zip(out, pos):
        assert a is None or (isinstance(a, str) and a and "\n" not in a)
        assert isinstance(c, bool) and isinstance(s, float)
        assert math.isfinite(s) and s <= 0.0
        assert c == (a == sampler.questions[p].reference)  # exact match, on the answer
    # greedy: a position's result does not depend on its batch, so order is checkable
    single = {p: greedy.sample([p])[0] for p in set(pos.tolist())}
    for (a, c, s), p in zip(greedy.sample(pos), pos.tolist()):
        assert (a, c) == single[p][:2]
        assert s == pytest.approx(single[p][2], abs=1e-4)
    assert len({round(single[p][2], 4) for p in single}) > 1  # scores differ by question
    assert sampler.sample([]) == []
    with pytest.raises(ValueError, match="positions"):
        sampler.sample([6])


def test_reproducible(sampler):
    pos = [0, 1, 2, 2, 2, 5, 4, 4]
    sampler.generator.manual_seed(0)
    a = sampler.sample(pos)
    sampler.generator.manual_seed(0)
    assert sampler.sample(pos) == a
    fresh = ModelSampler(_cfg())  # the warm-start and the sampling generator are seeded
    assert fresh.sample(pos) == a


def test_errors():
    with pytest.raises(ValueError, match="task: unknown 'nope'"):
        ModelSampler(_cfg(task="nope"))
    with pytest.raises(ValueError, match="does not exist"):
        ModelSampler(_cfg(model="/no/such/model"))
    with pytest.raises(ValueError, match="GGUF file"):
        ModelSampler(_cfg(model="/no/such/model.gguf"))
    with pytest.raises(ValueError, match="temperature"):
        ModelSampler(_cfg(temperature=-1.0))
    with pytest.raises(ValueError, match="extract"):
        ModelSampler(_cfg(extract="regex"))


def test_extract_answer():
    assert extract_answer(" 12 \nfoo") == "12"
    assert extract_answer("  the   answer  is 7.\n8") == "the answer is 7."
    assert extract_answer("") is None and extract_answer("\n\n") is None
    assert extract_answer("5 - 3 = 2.", "number") == "2"
    assert extract_answer("It is 2.50", "number") == "2.5"
    assert extract_answer("1,200 apples", "number") == "1200"
    assert extract_answer("-4.0\n3", "number") == "-4"
    assert extract_answer("no digits here\n3", "number") is None


def _check_file(path, sampler, per_question):
    rows = cache_rows(path)
    for r in rows:
        assert set(r) == KEYS
        assert r["answer"] is None or isinstance(r["answer"], str)
        assert isinstance(r["correct"], bool) and isinstance(r["score"], float)
        assert isinstance(r["level"], int)
    counts = {}
    for r in rows:
        counts[r["id"]] = counts.get(r["id"], 0) + 1
    assert counts == {q.id: per_question for q in sampler.questions}
    levels = {q.id: q.level for q in sampler.questions}
    assert all(r["level"] == levels[r["id"]] for r in rows)
    return rows


def test_write_cache_and_overwrite(sampler, tmp_path):
    path = tmp_path / "cache.jsonl"
    stats = write_cache(path, sampler, per_question=5, batch_questions=4)
    rows = _check_file(path, sampler, 5)
    assert not (tmp_path / "cache.jsonl.partial").exists()
    assert stats["questions"] == 6 and stats["samples"] == 30 and stats["resumed"] == 0
    assert stats == {
        **cache_stats(rows),
        **{k: stats[k] for k in ("seconds", "resumed", "samples_per_second")},
    }
    assert 0.0 <= stats["mean_pass_rate"] <= 1.0
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        write_cache(path, sampler, per_question=5)
    assert path.read_bytes() == before
    write_cache(path, sampler, per_question=3, overwrite=True)
    _check_file(path, sampler, 3)


def test_write_cache_resumes(sampler, tmp_path, monkeypatch):
    ref = tmp_path / "ref.jsonl"
    write_cache(ref, sampler, per_question=4, batch_questions=2)

    path = tmp_path / "cache.jsonl"
    partial = tmp_path / "cache.jsonl.partial"
    real = ModelSampler.sample
    calls = []

    def interrupted(self, positions):
        calls.append(np.asarray(positions).copy())
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed during the second batch
        return real(self, positions)

    monkeypatch.setattr(ModelSampler, "sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_cache(path, sampler, per_question=4, batch_questions=2)
    assert not path.exists()
    lines = partial.read_text().splitlines()
    assert len(lines) == 2 * 4  # the first batch: 2 questions x 4 samples
    with open(partial, "a") as fh:  # a torn line of a batch being written
        fh.write(lines[0][:20])

    calls.clear()
    monkeypatch.setattr(
        ModelSampler, "sample", lambda self, p: (calls.append(np.asarray(p)), real(self, p))[1]
    )
    stats = write_cache(path, sampler, per_question=4, batch_questions=2)
    sampled = np.concatenate(calls)
    assert set(sampled.tolist()) == {2, 3, 4, 5}  # the first batch was not sampled again
    assert sampled.size == 4 * 4
    assert stats["resumed"] == 2
    _check_file(path, sampler, 4)
    assert not partial.exists()
    # per-batch seeds: the resumed cache equals an uninterrupted one
    assert path.read_text() == ref.read_text()


def test_generate_logprobs_and_shared_prompts(sampler):
    ids = [sampler.prompt_ids(0), sampler.prompt_ids(3)]
    kw = {"max_new_tokens": 6, "eos_id": 2, "pad_id": 0}
    plain = generate(sampler.model, ids, [3, 2], generator=torch.Generator().manual_seed(1), **kw)
    assert plain.logprobs is None
    both = generate(
        sampler.model,
        ids,
        [3, 2],
        generator=torch.Generator().manual_seed(1),
        return_logprobs=True,
        share_prompts=True,
        **kw,
    )
    assert both.completions == plain.completions  # same draws
    assert [len(x) for x in both.logprobs] == [len(c) for c in both.completions]
    assert all(v <= 0.0 for x in both.logprobs for v in x)
    # the log-probabilities are the model's: check one rollout with a forward pass
    seq = ids[0] + both.completions[0]
    with torch.no_grad():
        lp = torch.log_softmax(sampler.model(torch.tensor([seq])).logits[0].float(), -1)
    want = [float(lp[len(ids[0]) - 1 + t, tok]) for t, tok in enumerate(both.completions[0])]
    assert both.logprobs[0] == pytest.approx(want, abs=1e-4)


def test_cache_line_format(sampler, tmp_path):
    path = tmp_path / "c.jsonl"
    write_cache(path, sampler, per_question=2)
    for line in path.read_text().splitlines():
        obj = json.loads(line)
        assert list(obj) == ["id", "answer", "correct", "score", "level"]


def test_reasoning_gym_questions(sampler):
    cfg = SamplerConfig(
        task="reasoning_gym",
        rg_name="chain_sum",
        rg_config={"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 1},
        rg_level="num_terms",
        questions=12,
        distinct=True,
        max_new_tokens=4,
    )
    # the built-in model's weights, posing as a pretrained one: numeric answers, instruction
    s = ModelSampler(cfg, policy=(sampler.model, sampler.tok, "hf"))
    assert s.extract == "number"
    assert len({q.prompt for q in s.questions}) == 12
    assert all(q.prompt.endswith(" Give only the final answer.") for q in s.questions)
    assert {q.level for q in s.questions} == {0, 1}  # 2 and 3 terms
    out = s.sample([0, 0, 11])
    assert len(out) == 3
    for (a, c, _), p in zip(out, [0, 0, 11]):
        assert a is None or a.lstrip("-").isdigit()
        if c:
            assert a == s.questions[p].reference
    with pytest.raises(ValueError, match="nope_task"):
        ModelSampler(SamplerConfig(task="reasoning_gym", rg_name="nope_task", questions=2))
    with pytest.raises(ValueError, match="distinct"):
        ModelSampler(
            SamplerConfig(
                task="reasoning_gym",
                rg_name="chain_sum",
                rg_config={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
                questions=201,  # 200 distinct questions exist
                distinct=True,
            ),
            policy=(sampler.model, sampler.tok, "hf"),
        )
    with pytest.raises(ValueError, match="rg_level"):
        ModelSampler(_cfg(rg_level="num_terms"))
