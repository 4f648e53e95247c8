"""Held-out evaluation: greedy pass@1, sampled avg@k and unbiased pass@k, per difficulty level."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import comb

import numpy as np
import torch

from knapsack_rl.training.sampler import generate
from knapsack_rl.training.tasks import Example, check_rewards

__all__ = ["pass_at_k", "evaluate"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct: ``1 - C(n-c, k) / C(n, k)``."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def _summarise(prefix: str, levels: np.ndarray, values: np.ndarray, out: dict) -> None:
    out[prefix] = float(values.mean()) if values.size else 0.0
    for lv in np.unique(levels):
        out[f"{prefix}/level{int(lv)}"] = float(values[levels == lv].mean())


def evaluate(
    model,
    tokenizer,
    examples: Sequence[Example],
    reward_fn: Callable,
    *,
    samples: int = 8,
    temperature: float = 1.0,
    pass_k: Sequence[int] = (1, 4),
    max_new_tokens: int = 8,
    seed: int = 0,
    max_batch_tokens: int = 32768,
    device="cpu",
    threshold: float = 0.5,
) -> dict[str, float]:
    """Evaluate on ``examples``.

    Keys: ``greedy`` (pass@1 of greedy decoding), ``avg@{samples}`` (mean
    reward of ``samples`` sampled completions), ``pass@{k}`` (unbiased, success
    = reward >= ``threshold``), each also per level as ``KEY/level{L}``; and
    ``eval_seconds``. Sampling uses its own generator seeded with ``seed``, so
    evaluation does not disturb the training random streams.
    """
    import time

    t0 = time.perf_counter()
    prompts = [tokenizer.prompt_ids(e.prompt) for e in examples]
    texts = [e.prompt for e in examples]
    answers = [e.answer for e in examples]
    levels = np.array([e.level for e in examples])
    out: dict[str, float] = {}
    g = generate(
        model,
        prompts,
        None,
        max_new_tokens=max_new_tokens,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        temperature=0.0,
        max_batch_tokens=max_batch_tokens,
        device=device,
    )
    comp = [tokenizer.decode(c) for c in g.completions]
    r = np.array(check_rewards(reward_fn(texts, comp, answer=answers), len(comp)))
    _summarise("greedy", levels, (r >= threshold).astype(float), out)
    if samples > 0:
        gen = torch.Generator().manual_seed(int(seed))
        g = generate(
            model,
            prompts,
            [samples] * len(prompts),
            max_new_tokens=max_new_tokens,
            eos_id=tokenizer.eos_token_id,
            pad_id=tokenizer.pad_token_id,
            temperature=temperature,
            generator=gen,
            max_batch_tokens=max_batch_tokens,
            device=device,
        )
        comp = [tokenizer.decode(c) for c in g.completions]
        idx = g.prompt_index
        rr = np.array(
            check_rewards(
                reward_fn([texts[i] for i in idx], comp, answer=[answers[i] for i in idx]),
                len(comp),
            )
        ).reshape(len(examples), samples)
        _summarise(f"avg@{samples}", levels, rr.mean(axis=1), out)
        correct = (rr >= threshold).sum(axis=1)
        for k in pass_k:
            vals = np.array([pass_at_k(samples, int(c), k) for c in correct])
            _summarise(f"pass@{k}", levels, vals, out)
    out["eval_seconds"] = time.perf_counter() - t0
    return out
