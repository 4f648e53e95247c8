"""How many of a step's drawn prompts to screen with a pilot.

A step in rounds draws ``oversample * M`` prompts for the budget of ``M`` uniform
groups. Screening all of them halves the average group; that pays where many prompts
would tie anyway (p near 0 or 1: their pilot frees the rest of their rollouts) and
costs where they would not (p in the middle, or near 1 but below it, where a group of 8
shows a failure that a pilot of 2 misses). :func:`choose_screen` decides per step from
the priors: for each candidate count ``k`` (pilot the first ``k`` prompts) it draws
``p_i`` from each prompt's prior, the pilot from ``p_i``, plans the rest with
:func:`knapsack_rl.allocate_round` exactly as the step would, draws the rest, and
scores the final groups by :func:`group_rise`. It keeps the ``k`` with the highest
mean score, drawn with the same ``p_i`` and pilot variates for every ``k``.

``group_rise`` is the first-order rise of a prompt's success rate after one GRPO step
with std-scaled advantages. A group of ``N`` rollouts with ``K`` successes moves the
logit of a correct answer by ``sum_j A_j (r_j - p) = sqrt((N - 1) K (N - K) / N)``
(per rollout of the batch), and ``dp/dz = p (1 - p)``; tied groups score 0. It is
linear in ``N`` for large groups (no diminishing returns), so it is used to choose how
many prompts to screen, not to split rollouts among them (that stays with the value
model of ``allocate_round``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from knapsack_rl.allocation.rounds import allocate_round

__all__ = ["group_rise", "choose_screen"]

#: Monte Carlo draws per step of :func:`choose_screen`
SCREEN_SAMPLES = 32


def group_rise(n, k, p) -> np.ndarray:
    """``p (1 - p) sqrt((n - 1) k (n - k) / n)``: a group's first-order rise of ``p``.

    Args:
        n, k, p: rollouts, successes and success rate per group (broadcast); 0 where ``n < 2``.
    """
    n = np.asarray(n, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    safe = np.maximum(n, 1.0)
    sig = np.sqrt(np.maximum((safe - 1.0) * k * (safe - k) / safe, 0.0))
    return np.where(n >= 2, p * (1.0 - p) * sig, 0.0)


def choose_screen(
    prior_a,
    prior_b,
    *,
    budget: int,
    options: Sequence[int],
    pilot: int = 2,
    min_rollouts: int = 2,
    max_rollouts: int = 128,
    value: str = "grpo",
    samples: int = SCREEN_SAMPLES,
    seed: int | Sequence[int] = 0,
) -> tuple[int, dict[int, float]]:
    """The number of prompts to pilot, the first ``k`` of them, for a two-round step.

    Args:
        prior_a, prior_b: (C,) Beta prior of each drawn prompt.
        budget: the step's rollouts (pilot and rest).
        options: candidate ``k`` (1 <= k <= C); those the budget cannot serve (``k`` times
            ``max(pilot, min_rollouts)`` above it, or ``k * max_rollouts`` below it) are
            skipped.
        pilot: pilot rollouts per screened prompt; min_rollouts, max_rollouts, value: as
            the step's :func:`knapsack_rl.allocate_round`.
        samples: Monte Carlo draws; seed: their random seed (the same seed gives the same
            choice).

    Returns:
        ``(k, scores)``: the chosen count, and the mean :func:`group_rise` summed over the
        step for each feasible option. Ties go to the larger ``k``.
    """
    a = np.asarray(prior_a, dtype=np.float64).reshape(-1)
    b = np.asarray(prior_b, dtype=np.float64).reshape(-1)
    c = a.size
    if b.size != c or c == 0:
        raise ValueError(f"prior_a and prior_b: need equal non-zero lengths, got {c} and {b.size}")
    budget, pilot = int(budget), int(pilot)
    first = max(pilot, min_rollouts)
    feasible = sorted(
        {
            int(k)
            for k in options
            if 1 <= int(k) <= c and int(k) * first <= budget <= int(k) * max_rollouts
        }
    )
    if not feasible:
        raise ValueError(f"no screening option in {list(options)} fits budget {budget}")
    if len(feasible) == 1:
        return feasible[0], {}
    rng = np.random.default_rng(seed)
    p = rng.beta(a, b, size=(samples, c))
    u_pilot = rng.random((samples, c, pilot))
    s_pilot = (u_pilot < p[:, :, None]).sum(axis=2)
    rest_seed = int(rng.integers(2**32))
    scores: dict[int, float] = {}
    for k in feasible:
        draw = np.random.default_rng(rest_seed)  # the same stream for every option
        n1 = np.full(k, pilot, dtype=np.int64)
        total = 0.0
        for s in range(samples):
            extra = allocate_round(
                s_pilot[s, :k],
                n1,
                budget=budget - pilot * k,
                prior_a=a[:k],
                prior_b=b[:k],
                min_rollouts=min_rollouts,
                max_rollouts=max_rollouts,
                value=value,
            )
            won = s_pilot[s, :k] + draw.binomial(extra, p[s, :k])
            total += float(group_rise(n1 + extra, won, p[s, :k]).sum())
        scores[k] = total / samples
    best = max(scores.values())
    return max(k for k, v in scores.items() if v >= best), scores
