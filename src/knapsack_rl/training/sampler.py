"""Batched sampling with a KV cache for heterogeneous per-prompt rollout counts.

Prompt ``i`` is repeated ``counts[i]`` times and all rollouts go through one
flattened generation: rollouts are sorted by prompt length (less padding),
cut into chunks that respect a memory cap (``sequences * (prompt + new
tokens) <= max_batch_tokens``), left-padded, and decoded token by token with
the model's cache. Randomness comes from one explicit ``torch.Generator``
(on the CPU), so a run is reproducible and resumable.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["Generation", "generate"]


@dataclass
class Generation:
    """Output of :func:`generate`.

    Attributes:
        completions: token ids per rollout (ending with eos when the model stopped).
        prompt_index: int per rollout, the index of its prompt in the input list.
        tokens: generated tokens in total (eos included).
        seconds: wall time.
        chunks: number of generation chunks.
        logprobs: with ``return_logprobs=True``, per rollout the log-probability of each
            generated token (one float per entry of its completion, eos included) under the
            model's own distribution (softmax of the logits, before the temperature); else None.
    """

    completions: list[list[int]]
    prompt_index: list[int]
    tokens: int
    seconds: float
    chunks: int
    logprobs: list[list[float]] | None = None


@torch.no_grad()
def generate(
    model,
    prompts: Sequence[Sequence[int]],
    counts: Sequence[int] | None = None,
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    max_batch_tokens: int = 32768,
    device="cpu",
    return_logprobs: bool = False,
    share_prompts: bool = False,
) -> Generation:
    """Sample ``counts[i]`` completions of ``prompts[i]`` (token ids) for every ``i``.

    ``temperature == 0`` decodes greedily. Rollouts come back grouped in input
    order (all rollouts of prompt 0, then prompt 1, ...), whatever the chunking.
    ``return_logprobs`` also returns each generated token's log-probability
    (:attr:`Generation.logprobs`); the samples drawn are the same either way.
    ``share_prompts`` runs the prompt forward pass once per distinct prompt of a chunk
    and copies its KV cache to the prompt's rollouts (much faster when prompts are long
    and repeated many times; the same distribution, though not always bit-identical
    samples, since the prompt pass then runs at another batch size).
    """
    t0 = time.perf_counter()
    counts = [1] * len(prompts) if counts is None else [int(c) for c in counts]
    if len(counts) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(counts)} counts")
    flat = [i for i, c in enumerate(counts) for _ in range(c)]
    order = sorted(range(len(flat)), key=lambda k: len(prompts[flat[k]]))
    out: list[list[int] | None] = [None] * len(flat)
    lps: list[list[float] | None] = [None] * len(flat)
    was_training = model.training
    model.eval()
    tokens = chunks = 0
    start = 0
    while start < len(order):
        longest = len(prompts[flat[order[min(len(order) - 1, start)]]])
        # sequences per chunk under the cap; prompts grow along the sorted order
        size = max(1, max_batch_tokens // (longest + max_new_tokens))
        end = min(len(order), start + size)
        longest = len(prompts[flat[order[end - 1]]])
        while end - start > 1 and (end - start) * (longest + max_new_tokens) > max_batch_tokens:
            end -= 1
            longest = len(prompts[flat[order[end - 1]]])
        idx = order[start:end]
        res = _generate_chunk(
            model,
            [prompts[flat[k]] for k in idx],
            max_new_tokens,
            eos_id,
            pad_id,
            temperature,
            generator,
            device,
            return_logprobs,
            share_prompts,
        )
        for j, (k, comp) in enumerate(zip(idx, res[0])):
            out[k] = comp
            tokens += len(comp)
            if return_logprobs:
                lps[k] = res[1][j]
        chunks += 1
        start = end
    if was_training:
        model.train()
    return Generation(
        completions=[c if c is not None else [] for c in out],
        prompt_index=flat,
        tokens=tokens,
        seconds=time.perf_counter() - t0,
        chunks=chunks,
        logprobs=[x if x is not None else [] for x in lps] if return_logprobs else None,
    )


def _cache_name(model) -> str:
    """The forward argument that takes the KV cache: ``cache`` (transformers >= 5.2x, which
    deprecates ``past_key_values``) or ``past_key_values`` (older releases)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _select_rows(past, rows):
    """The KV cache with its batch rows picked (and repeated) by ``rows``."""
    if hasattr(past, "reorder_cache"):  # transformers Cache objects
        past.reorder_cache(rows)
        return past
    return tuple(tuple(t.index_select(0, rows) for t in layer) for layer in past)  # legacy tuples


def _generate_chunk(
    model,
    prompts,
    max_new_tokens,
    eos_id,
    pad_id,
    temperature,
    generator,
    device,
    return_logprobs=False,
    share_prompts=False,
):
    """``(completions, logprobs)`` of one left-padded chunk; ``logprobs`` is None unless asked."""
    B = len(prompts)
    P = max(len(p) for p in prompts)
    ids = torch.full((B, P), pad_id, dtype=torch.long)
    att = torch.zeros((B, P), dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, P - len(p) :] = torch.as_tensor(list(p), dtype=torch.long)
        att[b, P - len(p) :] = 1
    pos = (att.cumsum(1) - 1).clamp(min=0)
    ids, att, pos = ids.to(device), att.to(device), pos.to(device)
    cache = _cache_name(model)
    rows = None
    if share_prompts:
        first: dict[tuple, int] = {}
        inv = [first.setdefault(tuple(p), len(first)) for p in prompts]
        if len(first) < B:
            rows = torch.as_tensor(inv, dtype=torch.long, device=ids.device)
            uniq = torch.as_tensor(
                [inv.index(u) for u in range(len(first))], dtype=torch.long, device=ids.device
            )
    if rows is None:
        out = model(input_ids=ids, attention_mask=att, position_ids=pos, use_cache=True)
        past = out[cache]
        logits = out.logits[:, -1, :]
    else:  # one prompt pass per distinct prompt, its cache copied to every rollout of it
        out = model(
            input_ids=ids[uniq], attention_mask=att[uniq], position_ids=pos[uniq], use_cache=True
        )
        past = _select_rows(out[cache], rows)
        logits = out.logits[:, -1, :][rows]
    next_pos = pos[:, -1:] + 1
    done = torch.zeros(B, dtype=torch.bool)
    gen = torch.empty((B, max_new_tokens), dtype=torch.long)
    glp = torch.zeros((B, max_new_tokens), dtype=torch.float32) if return_logprobs else None
    n = 0
    for t in range(max_new_tokens):
        lg = logits.float().cpu()
        if temperature == 0:
            nxt = lg.argmax(-1)
        else:
            probs = torch.softmax(lg / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        gen[:, t] = nxt
        if glp is not None:
            glp[:, t] = torch.log_softmax(lg, dim=-1).gather(1, nxt.unsqueeze(-1)).squeeze(-1)
        n = t + 1
        done |= nxt == eos_id
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        att = torch.cat([att, torch.ones((B, 1), dtype=att.dtype, device=att.device)], dim=1)
        out = model(
            input_ids=nxt.unsqueeze(-1).to(device),
            attention_mask=att,
            position_ids=next_pos,
            use_cache=True,
            **{cache: past},
        )
        past = out[cache]
        logits = out.logits[:, -1, :]
        next_pos = next_pos + 1
    res = []
    lps = [] if glp is not None else None
    for b in range(B):
        row = gen[b, :n].tolist()
        if eos_id in row:
            row = row[: row.index(eos_id) + 1]
        res.append(row)
        if lps is not None:
            lps.append(glp[b, : len(row)].tolist())
    return res, lps
