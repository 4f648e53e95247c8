"""Step metrics and GRPO group advantages for groups of any size (numpy only).

A *group* is the set of rollouts of one prompt in one step; rollouts are given
flat, with ``group_ids[k]`` naming the group of ``rewards[k]`` (any hashable,
or ints). Metric names follow TRL where TRL has one (``reward``,
``reward_std``, ``frac_reward_zero_std``) and ours otherwise
(``effective_gradient_ratio``, ``rollouts_per_prompt/min|mean|max``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "group_index",
    "group_advantages",
    "effective_gradient_ratio",
    "frac_reward_zero_std",
    "allocation_stats",
    "pilot_stats",
    "tie_break_stats",
    "tie_break_terms",
    "step_metrics",
]


def group_index(group_ids: Sequence) -> tuple[np.ndarray, int]:
    """Dense group index per rollout (first-seen order) and the number of groups."""
    arr = np.asarray(group_ids)
    if arr.dtype.kind in "iu":
        _, first, inv = np.unique(arr, return_index=True, return_inverse=True)
        order = np.argsort(np.argsort(first))  # rank groups by first appearance
        return order[inv.reshape(-1)].astype(np.int64), int(first.size)
    seen: dict = {}
    out = np.empty(len(group_ids), dtype=np.int64)
    for k, g in enumerate(group_ids):
        out[k] = seen.setdefault(g, len(seen))
    return out, len(seen)


def _group_moments(gidx: np.ndarray, n_groups: int, r: np.ndarray):
    size = np.bincount(gidx, minlength=n_groups).astype(np.float64)
    mean = np.bincount(gidx, weights=r, minlength=n_groups) / np.maximum(size, 1)
    dev = r - mean[gidx]
    ss = np.bincount(gidx, weights=dev * dev, minlength=n_groups)
    # max - min per group, from the rewards themselves (not from r - mean, whose
    # rounding is non-zero for e.g. [0.7, 0.7, 0.7]): exactly 0 iff all equal
    hi = np.full(n_groups, -np.inf)
    lo = np.full(n_groups, np.inf)
    np.maximum.at(hi, gidx, r)
    np.minimum.at(lo, gidx, r)
    return size, mean, ss, hi - lo


def group_advantages(
    group_ids: Sequence,
    rewards,
    *,
    scale: bool = True,
    clip: float | None = 5.0,
    eps: float = 1e-4,
) -> np.ndarray:
    """GRPO advantages per rollout, normalised within each group.

    ``A = (r - mean_g) / (std_g + eps)`` with the unbiased std (as TRL and verl
    compute it), or ``r - mean_g`` when ``scale`` is False; clipped to
    ``[-clip, clip]`` (None: no clipping). Groups whose rewards are all equal,
    including groups of size 1, get exactly 0.

    Args:
        group_ids: (K,) group of each rollout.
        rewards: (K,) float rewards.
    Returns:
        float64 array (K,).
    """
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    gidx, n = group_index(group_ids)
    if gidx.size != r.size:
        raise ValueError(f"{gidx.size} group ids but {r.size} rewards")
    if r.size == 0:
        return np.zeros(0)
    size, mean, ss, spread = _group_moments(gidx, n, r)
    adv = r - mean[gidx]
    if scale:
        std = np.sqrt(ss / np.maximum(size - 1, 1))
        adv = adv / (std[gidx] + eps)
    adv = np.where(spread[gidx] > 0, adv, 0.0)
    if clip is not None:
        adv = np.clip(adv, -clip, clip)
    return adv


def _nonconstant(group_ids, rewards):
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    gidx, n = group_index(group_ids)
    if gidx.size != r.size:
        raise ValueError(f"{gidx.size} group ids but {r.size} rewards")
    size, _, _, spread = _group_moments(gidx, n, r)
    return size, spread > 0


def effective_gradient_ratio(group_ids: Sequence, rewards) -> float:
    """Share of rollouts that lie in groups whose rewards are not all equal."""
    size, ok = _nonconstant(group_ids, rewards)
    total = size.sum()
    return float(size[ok].sum() / total) if total else 0.0


def frac_reward_zero_std(group_ids: Sequence, rewards) -> float:
    """Share of groups whose rewards are all equal (TRL's ``frac_reward_zero_std``)."""
    size, ok = _nonconstant(group_ids, rewards)
    return float(1.0 - ok.mean()) if size.size else 0.0


def allocation_stats(rollouts) -> dict[str, float]:
    """``rollouts_per_prompt/min|mean|max``, ``prompts`` and ``prompts_covered`` (> 0 rollouts)."""
    r = np.asarray(rollouts).reshape(-1)
    if r.size == 0:
        return {
            "rollouts_per_prompt/min": 0.0,
            "rollouts_per_prompt/mean": 0.0,
            "rollouts_per_prompt/max": 0.0,
            "prompts": 0,
            "prompts_covered": 0,
            "rollouts": 0,
        }
    return {
        "rollouts_per_prompt/min": float(r.min()),
        "rollouts_per_prompt/mean": float(r.mean()),
        "rollouts_per_prompt/max": float(r.max()),
        "prompts": int(r.size),
        "prompts_covered": int((r > 0).sum()),
        "rollouts": int(r.sum()),
    }


def pilot_stats(pilot, pilot_successes, rollouts) -> dict[str, float]:
    """Where a step in rounds found ties, and where it spent the rest.

    Args:
        pilot: (M,) first-round rollouts per prompt.
        pilot_successes: (M,) successes among them.
        rollouts: (M,) rollouts per prompt over all rounds.
    Returns:
        ``rounds/pilot_all_correct`` and ``rounds/pilot_all_wrong``: shares of the piloted
        prompts whose pilot rewards were all successes, or all failures;
        ``rounds/rest_to_tied``: share of the later rounds' rollouts that went to those
        tied prompts (they stay uninformative unless a later rollout breaks the tie).
    """
    n = np.asarray(pilot, dtype=np.float64).reshape(-1)
    s = np.asarray(pilot_successes, dtype=np.float64).reshape(-1)
    rest = np.asarray(rollouts, dtype=np.float64).reshape(-1) - n
    drawn = n > 0
    correct, wrong = drawn & (s >= n), drawn & (s <= 0)
    k = max(int(drawn.sum()), 1)
    return {
        "rounds/pilot_all_correct": float(correct.sum() / k),
        "rounds/pilot_all_wrong": float(wrong.sum() / k),
        "rounds/rest_to_tied": float(rest[correct | wrong].sum() / rest.sum())
        if rest.sum()
        else 0.0,
    }


def tie_break_terms(prior_a, prior_b, pilot, pilot_successes, rollouts, successes):
    """Per prompt: ``(pick, correct, predicted, realized)`` for :func:`tie_break_stats`.

    ``pick`` marks the prompts whose pilot tied and that got more rollouts, ``correct``
    those whose pilot was all successes; ``predicted`` is the posterior probability that
    the later rollouts break the tie, ``realized`` whether they did (arrays of shape (M,)).
    """
    from scipy.special import betaln

    a0 = np.asarray(prior_a, dtype=np.float64).reshape(-1)
    b0 = np.asarray(prior_b, dtype=np.float64).reshape(-1)
    n = np.asarray(pilot, dtype=np.float64).reshape(-1)
    s = np.asarray(pilot_successes, dtype=np.float64).reshape(-1)
    total = np.asarray(rollouts, dtype=np.float64).reshape(-1)
    won = np.asarray(successes, dtype=np.float64).reshape(-1)
    m = total - n
    correct, wrong = (n > 0) & (s >= n), (n > 0) & (s <= 0)
    pick = (correct | wrong) & (m > 0)
    a, b = a0 + s, b0 + n - s
    stay = np.where(correct, betaln(a + m, b), betaln(a, b + m)) - betaln(a, b)
    predicted = np.where(pick, 1.0 - np.exp(stay), 0.0)
    realized = pick & (won > 0) & (won < total)
    return pick, correct, predicted, realized


def tie_break_stats(
    prior_a, prior_b, pilot, pilot_successes, rollouts, successes
) -> dict[str, float]:
    """How well the plan foresaw which tied pilots its later rollouts would break.

    Args:
        prior_a, prior_b: (M,) the Beta prior each prompt's plan started from.
        pilot, pilot_successes: (M,) first-round rollouts and their successes.
        rollouts, successes: (M,) over all rounds.
    Returns:
        Over the prompts whose pilot tied (all successes or all failures) and that got
        more rollouts: ``rounds/tie_break_predicted``, the mean posterior probability
        that those rollouts break the tie (``1 - E[p^m]`` after an all-correct pilot,
        ``1 - E[(1-p)^m]`` after an all-wrong one, ``p ~ Beta(a + s, b + n - s)``), and
        ``rounds/tie_break_realized``, the share that did. Empty when no such prompt.
        Predicted well above realized means the priors overrate tied prompts: the
        later rounds go to ties that hold (docs/method.md, "When screening costs").
    """
    pick, _, predicted, realized = tie_break_terms(
        prior_a, prior_b, pilot, pilot_successes, rollouts, successes
    )
    if not pick.any():
        return {}
    return {
        "rounds/tie_break_predicted": float(predicted[pick].mean()),
        "rounds/tie_break_realized": float(realized[pick].mean()),
    }


def step_metrics(group_ids: Sequence, rewards) -> dict[str, float]:
    """All per-step metrics from a step's flat rollouts.

    Keys: ``reward``, ``reward_std``, ``effective_gradient_ratio``,
    ``frac_reward_zero_std``, plus :func:`allocation_stats` of the group sizes.
    """
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    size, ok = _nonconstant(group_ids, r)
    out = {
        "reward": float(r.mean()) if r.size else 0.0,
        "reward_std": float(r.std(ddof=1)) if r.size > 1 else 0.0,
        "effective_gradient_ratio": float(size[ok].sum() / size.sum()) if size.sum() else 0.0,
        "frac_reward_zero_std": float(1.0 - ok.mean()) if size.size else 0.0,
    }
    out.update(allocation_stats(size.astype(np.int64)))
    return out
