"""Expected GRPO signal per rollout against group size: why halving groups can cost.

    python benchmarks/group_signal.py

A prompt's policy puts probability ``p = sigmoid(z)`` on a correct answer. A group of
N rollouts with k successes gets GRPO advantages ``A_j = (r_j - k/N) / std`` (the
group's sample std, as TRL and this package compute them), and its policy-gradient
step along z is ``sum_j A_j d log pi(y_j) / dz = sum_j A_j (r_j - p) = sum_j A_j r_j``,
which is ``sqrt((N - 1) k (N - k) / N)``: it depends on the draws, not on p. The
table gives its expectation over k ~ Binomial(N, p), per rollout, computed with this
package's own ``group_advantages``. The last column is a step in two rounds: a
pilot of 2, then 0, 2 or 4 more rollouts after 0, 1 or 2 successes in the pilot.

This is a one-parameter model, not a trainer; it shows the mechanism, and the
learning runs in BENCHMARKS.md are the evidence.
"""

from __future__ import annotations

from math import comb

import numpy as np

from knapsack_rl.metrics import group_advantages

SIZES = (2, 4, 8, 16)
RATES = (0.03, 0.1, 0.3, 0.5, 0.7, 0.9, 0.97)
#: extras after a pilot of 2 with 0, 1 or 2 successes
PLANS = {"pilot 2, then 0 / 2 / 4 after 0 / 1 / 2 successes": (0, 2, 4)}


def signal(k: int, n: int) -> float:
    """``sum_j A_j r_j`` for a group of n rollouts with k successes (0 if tied)."""
    r = np.array([1.0] * k + [0.0] * (n - k))
    return float(group_advantages(np.zeros(n, dtype=int), r) @ r)


def expected(n: int, p: float) -> float:
    return sum(comb(n, k) * p**k * (1 - p) ** (n - k) * signal(k, n) for k in range(n + 1))


def two_rounds(p: float, extra: tuple[int, int, int]) -> float:
    """Expected signal per rollout of a pilot of 2 plus ``extra[s]`` after s successes."""
    total = rollouts = 0.0
    for s in range(3):
        q = comb(2, s) * p**s * (1 - p) ** (2 - s)
        m = extra[s]
        rollouts += q * (2 + m)
        for k in range(m + 1):
            total += q * comb(m, k) * p**k * (1 - p) ** (m - k) * signal(s + k, 2 + m)
    return total / rollouts


def main() -> int:
    head = [f"N = {n}" for n in SIZES] + list(PLANS)
    print("| p | " + " | ".join(head) + " |")
    print("|---|" + "---|" * len(head))
    for p in RATES:
        row = [expected(n, p) / n for n in SIZES] + [two_rounds(p, e) for e in PLANS.values()]
        print(f"| {p} | " + " | ".join(f"{x:.3f}" for x in row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
