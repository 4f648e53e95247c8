"""What one more sample is worth to a question, under each objective.

Majority vote: the answers seen so far (counts ``c_1 >= c_2 >= ...``) and an "other"
mass ``alpha`` for answers not yet seen have a Dirichlet posterior, the Dirichlet
process's: the next sample repeats answer ``j`` with probability ``c_j / (n + alpha)``
and is new with probability ``alpha / (n + alpha)``. :func:`change_probability` is
the posterior probability that ``m`` more samples change the winner. It keeps the
three groups that decide that (the leader, the runner-up and everything else, which
the Dirichlet aggregates exactly) and counts a final tie as half a change. A third
answer overtaking both is left out, so it is a slight underestimate; with one answer
seen, the runner-up is the "other" mass as a single answer, an overestimate for
questions seen once.

Coverage: a question's pass rate has a Beta posterior; :func:`coverage_gain` is the
probability that one more sample is the question's first correct one.
"""

from __future__ import annotations

import numpy as np
from scipy.special import betaln, gammaln

__all__ = ["change_probability", "block_gain", "coverage_gain"]


def _bb_logpmf(k: np.ndarray, t: np.ndarray, a: float, b: float) -> np.ndarray:
    """log Beta-binomial pmf of ``k`` successes in ``t`` draws with Beta(a, b)."""
    return (
        gammaln(t + 1)
        - gammaln(k + 1)
        - gammaln(t - k + 1)
        + betaln(k + a, t - k + b)
        - betaln(a, b)
    )


def change_probability(lead: float, second: float, rest: float, m_max: int) -> np.ndarray:
    """P(the winner changes after m more samples), for m = 0..m_max; float64 (m_max + 1,).

    Args:
        lead: the leader's count (> 0).
        second: the runner-up's count, or the "other" mass when one answer is seen (> 0).
        rest: the mass of everything else (other answers seen, "other", unparsed; >= 0).
        m_max: the most new samples to look at.
    """
    d = lead - second  # >= 0
    t = np.arange(m_max + 1, dtype=np.float64)
    k = t[None, :]  # runner-up's share of the t samples that land on the top two
    tt = t[:, None]
    with np.errstate(invalid="ignore"):
        logp = _bb_logpmf(k, tt, second, lead)
    p = np.where(k <= tt, np.exp(np.where(k <= tt, logp, -np.inf)), 0.0)
    swing = 2.0 * k - tt - d  # runner-up's final count minus the leader's
    g = (p * ((swing > 1e-9) + 0.5 * (np.abs(swing) <= 1e-9))).sum(axis=1)  # G(t)
    if rest <= 0:  # every new sample lands on the top two
        out = g.copy()
    else:  # t of the m new samples land on the top two: Beta-binomial(m; lead + second, rest)
        mm = t[:, None]
        with np.errstate(invalid="ignore"):
            logw = _bb_logpmf(k, mm, lead + second, rest)
        w = np.where(k <= mm, np.exp(np.where(k <= mm, logw, -np.inf)), 0.0)
        out = w @ g
    out[0] = 0.0
    return out


def block_gain(values: np.ndarray, pending: int, room: int) -> float:
    """The best value per sample of a block of up to ``room`` samples beyond ``pending``:
    ``max_h (V[pending + h] - V[pending]) / h`` (the slope of V's concave envelope there).
    ``values`` holds V(m) for m = 0..pending + room."""
    h = np.arange(1, room + 1)
    return float(np.max((values[pending + h] - values[pending]) / h))


def coverage_gain(failures, pending, a, b) -> np.ndarray:
    """P(the next sample is a question's first correct one | ``failures`` seen, ``pending``
    in flight), under a Beta(a, b) prior: ``B(a + 1, b + f + q) / B(a, b + f)``."""
    f = np.asarray(failures, dtype=np.float64)
    q = np.asarray(pending, dtype=np.float64)
    return np.exp(betaln(a + 1.0, b + f + q) - betaln(a, b + f))
