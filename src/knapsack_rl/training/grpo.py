"""GRPO pieces: sequence batches with loss masks, token log-probs, group
advantages for groups of any size, and the PPO-style clipped loss.

Shapes: ``B`` sequences, ``T`` tokens (prompt + completion, right-padded).
Target ``t`` (token ``t + 1``) is predicted from position ``t``, so per-token
tensors over targets have ``T - 1`` columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from knapsack_rl.metrics import group_advantages

__all__ = ["SequenceBatch", "build_sequences", "token_logprobs", "compute_advantages", "grpo_loss"]


@dataclass
class SequenceBatch:
    """Right-padded ``prompt + completion`` sequences.

    Attributes:
        input_ids: long (B, T).
        attention_mask: long (B, T), 1 on real tokens.
        position_ids: long (B, T), 0.. along real tokens (0 on padding).
        loss_mask: float (B, T), 1 on completion tokens (incl. eos), 0 on prompt and padding.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    loss_mask: torch.Tensor

    def target_mask(self) -> torch.Tensor:
        """float (B, T - 1): loss mask aligned with targets ``input_ids[:, 1:]``."""
        return self.loss_mask[:, 1:]


def build_sequences(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int
) -> SequenceBatch:
    """Concatenate each prompt with its completion and right-pad to the longest."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    lens = [len(p) + len(c) for p, c in zip(prompts, completions)]
    B, T = len(lens), max(lens) if lens else 0
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    att = torch.zeros((B, T), dtype=torch.long)
    lm = torch.zeros((B, T), dtype=torch.float32)
    for b, (p, c) in enumerate(zip(prompts, completions)):
        n, k = len(p), len(c)
        ids[b, :n] = torch.as_tensor(list(p), dtype=torch.long)
        if k:
            ids[b, n : n + k] = torch.as_tensor(list(c), dtype=torch.long)
            lm[b, n : n + k] = 1.0
        att[b, : n + k] = 1
    pos = (att.cumsum(1) - 1).clamp(min=0) * att
    return SequenceBatch(ids, att, pos, lm)


def token_logprobs(
    model, batch: SequenceBatch, device="cpu", temperature: float = 1.0
) -> torch.Tensor:
    """float (B, T - 1): log-prob of each target token under ``model`` (logits / temperature)."""
    out = model(
        input_ids=batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
        position_ids=batch.position_ids.to(device),
        use_cache=False,
    )
    logits = out.logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / temperature
    tgt = batch.input_ids[:, 1:].to(device)
    return torch.log_softmax(logits, dim=-1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)


def compute_advantages(
    group_ids: Sequence, rewards, scale: bool = True, clip: float | None = 5.0
) -> np.ndarray:
    """Per-rollout GRPO advantages for groups of any size (see :func:`knapsack_rl.metrics.group_advantages`).

    Size-1 and all-equal groups get 0. ``clip`` <= 0 or None disables clipping.
    """
    c = clip if clip is not None and clip > 0 else None
    return group_advantages(group_ids, rewards, scale=scale, clip=c)


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    denom: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate with separate low/high clip, token-mean.

    ``loss_t = max(-A r_t, -A clip(r_t, 1 - eps_low, 1 + eps_high)) [+ kl_coef * k3_t]``
    with ``r_t = exp(logp_t - old_logp_t)`` and the k3 estimator
    ``k3 = exp(ref - logp) - (ref - logp) - 1``; the loss is
    ``sum_t mask_t loss_t / denom`` where ``denom`` defaults to ``mask.sum()``
    (give the whole batch's token count when accumulating micro-batches).

    Args:
        logp, old_logp, mask: (B, T') per-token tensors (T' = T - 1).
        advantages: (B,) per-sequence advantages.
    Returns:
        (scalar loss, stats: clip_frac, ratio_mean, kl).
    """
    adv = advantages.to(logp.dtype).unsqueeze(-1)
    ratio = torch.exp(logp - old_logp)
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    tok = torch.maximum(pg1, pg2)
    kl = None
    if ref_logp is not None and kl_coef > 0:
        d = ref_logp - logp
        kl = torch.exp(d) - d - 1.0
        tok = tok + kl_coef * kl
    n = mask.sum()
    d = torch.as_tensor(denom if denom is not None else n.clamp(min=1.0), dtype=tok.dtype)
    loss = (tok * mask).sum() / d
    with torch.no_grad():
        m = mask > 0
        clipped = (pg2 > pg1) & m
        stats = {
            "clip_frac": float(clipped.sum() / m.sum().clamp(min=1)),
            "ratio_mean": float(ratio[m].mean()) if m.any() else 1.0,
            "kl": float(kl[m].mean()) if kl is not None and m.any() else 0.0,
        }
    return loss, stats
