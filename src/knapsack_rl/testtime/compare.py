"""Sampling rules side by side on one pool, at equal samples, over seeded replays.

:func:`compare` runs every rule over the same replay orders and reports, per rule and
setting, the accuracy (or coverage) and the samples it used. Rules without a budget
(Adaptive-Consistency, ESC) are swept over their setting; ``knapsack`` is then run at exactly
the samples each of their runs used, on the same order, so the difference is paired.
Standard errors are over questions (the paired per-question differences, averaged over
replays), which is the larger and honest source of noise for a fixed question set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from knapsack_rl.testtime.baselines import (
    AdaptiveConsistency,
    EarlyStoppingConsistency,
    UniformPlanner,
)
from knapsack_rl.testtime.estimators import fit_prior, pooled_pass_at_1, posterior_pass_at_k
from knapsack_rl.testtime.planner import TestTimePlanner
from knapsack_rl.testtime.replay import Pool, replay

__all__ = ["METHODS", "compare", "summarise"]

#: rules :func:`compare` knows (Adaptive-Consistency and ESC only for ``majority``)
METHODS = ("uniform", "adaptive-consistency", "esc", "knapsack")
#: Adaptive-Consistency thresholds and ESC windows swept by default
AC_THRESHOLDS = (0.8, 0.9, 0.95, 0.99)
ESC_WINDOWS = (2, 3, 4, 5)


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    """Mean over questions of ``x`` (replays x questions, averaged over replays first)."""
    per_q = x.mean(axis=0)
    se = float(per_q.std(ddof=1) / np.sqrt(per_q.size)) if per_q.size > 1 else 0.0
    return float(per_q.mean()), se


def compare(
    pool: Pool,
    objective: str = "majority",
    budgets: Sequence[float] = (1, 2, 4, 8, 16),
    replays: int = 20,
    methods: Sequence[str] = METHODS,
    max_samples: int = 64,
    seed: int = 0,
    reference: float = 16,
    progress=None,
    selector: str = "best",
) -> list[dict]:
    """Rows of results (see the module docstring).

    Args:
        pool: the cached samples.
        objective: ``majority``, ``coverage`` or ``best_of_n``.
        budgets: samples per question for ``uniform`` and ``knapsack`` (may be fractional).
        replays: seeded orders (seed, seed + 1, ...).
        methods: a subset of :data:`METHODS`.
        max_samples: the most samples per question for every rule.
        reference: the uniform budget that the ``vs uniform`` columns compare with.
        progress: called with a short message per finished rule, or None.
        selector: ``best_of_n``'s answer selector (``best`` or ``bom``), for every rule.

    Each row has ``method``, ``setting``, ``samples`` (mean per question), ``accuracy`` and
    ``se``; rows at equal samples to another rule also have ``vs``, ``diff`` and ``diff_se``.
    """
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown method {bad[0]!r}; expected some of {', '.join(METHODS)}")
    runs = _Runs(pool, [seed + r for r in range(replays)], progress)
    kw = {"max_samples": max_samples}
    pick = {"selector": selector} if objective == "best_of_n" else {}
    q = len(pool.ids)
    rows: list[dict] = []
    budgets = sorted({float(b) for b in budgets} | {float(reference)})
    uniform: dict = {}
    for b in budgets:  # uniform at every budget (at least at the reference)
        if "uniform" in methods or b == reference:
            res = runs.at(lambda: UniformPlanner(objective, **kw, **pick), [round(b * q)] * replays)
            uniform[b] = res[0]
            if "uniform" in methods:
                rows.append(runs.row("uniform", f"{b:g}/question", res))
    ours = lambda: TestTimePlanner(objective, **kw, **pick)  # noqa: E731
    if "knapsack" in methods:
        vs = f"uniform {reference:g}/question"
        for b in budgets:
            res = runs.at(ours, [round(b * q)] * replays)
            rows.append(runs.row("knapsack", f"{b:g}/question", res, vs, uniform[reference]))
    if objective != "majority":
        return rows
    sweeps = []
    if "adaptive-consistency" in methods:
        sweeps += [
            ("adaptive-consistency", f"threshold {t:g}", AdaptiveConsistency, t)
            for t in AC_THRESHOLDS
        ]
    if "esc" in methods:
        sweeps += [("esc", f"window {w}", EarlyStoppingConsistency, w) for w in ESC_WINDOWS]
    for name, setting, rule, arg in sweeps:
        theirs = runs.at(lambda rule=rule, arg=arg: rule(arg, **kw), [max_samples * q] * replays)
        rows.append(runs.row(name, setting, theirs))
        if "knapsack" in methods:  # ours at exactly the samples of each of their runs
            mine = runs.at(ours, [max(int(n.sum()), q) for n in theirs[1]])
            rows.append(runs.row("knapsack", f"= {name} {setting}", mine, name, theirs[0]))
    return rows


class _Runs:
    """Replays of one pool over fixed seeds, and the result rows they make."""

    def __init__(self, pool: Pool, seeds: list[int], progress) -> None:
        self.pool, self.seeds, self.progress = pool, seeds, progress

    def at(self, make, budgets: list[int]):
        """``make()``'s planner replayed once per seed, with that seed's budget: ``(solved
        (R, Q) float, samples (R, Q) int, planner seconds, correct samples (R, Q) int)``."""
        res = [
            replay(make(), self.pool, int(b), s) for b, s in zip(budgets, self.seeds, strict=True)
        ]
        solved = np.stack([r.solved for r in res]).astype(np.float64)
        samples = np.stack([r.samples for r in res])
        right = np.stack([r.correct for r in res])
        return solved, samples, sum(r.planner_seconds for r in res), right

    def row(self, method: str, setting: str, res, vs: str | None = None, base=None) -> dict:
        """A result row; with ``base`` (solved, (R, Q)) also the paired difference from it.
        Every row also estimates the mean pass@1 from the samples its rule drew: pooled
        (``sum c / sum n``) and by the Beta posterior under a fitted prior."""
        solved, samples, secs, right = res
        acc, se = _mean_se(solved)
        out = {
            "method": method,
            "setting": setting,
            "samples": float(samples.sum(axis=1).mean() / samples.shape[1]),
            "accuracy": acc,
            "se": se,
            "planner_ms_per_sample": 1e3 * secs / max(1, int(samples.sum())),
        }
        if base is not None:
            d, dse = _mean_se(solved - base)
            out.update(vs=vs, diff=d, diff_se=dse)
        pooled = [pooled_pass_at_1(c, n) for c, n in zip(right, samples, strict=True)]
        post = [
            float(posterior_pass_at_k(c, n, 1, fit_prior(c, n)).mean())
            for c, n in zip(right, samples, strict=True)
        ]
        out["pass@1_pooled"], out["pass@1_posterior"] = float(np.mean(pooled)), float(np.mean(post))
        if self.progress:
            self.progress(f"{method} {setting}: {out['samples']:.2f} samples, accuracy {acc:.4f}")
        return out


def summarise(rows: list[dict], reference: float = 16) -> dict:
    """The headline figures: uniform at ``reference``, and the fewest samples at which
    ``knapsack`` is within one standard error of it."""
    ref = next(
        (r for r in rows if r["method"] == "uniform" and r["setting"] == f"{reference:g}/question"),
        None,
    )
    out: dict = {}
    if ref is None:
        return out
    out["uniform_reference"] = {
        "samples": ref["samples"],
        "accuracy": ref["accuracy"],
        "se": ref["se"],
    }
    ok = [
        r
        for r in rows
        if r["method"] == "knapsack"
        and r["setting"].endswith("/question")
        and r["accuracy"] >= ref["accuracy"] - ref["se"]
    ]
    if ok:
        best = min(ok, key=lambda r: r["samples"])
        out["knapsack_matches_at"] = {
            "samples": best["samples"],
            "share_of_reference": best["samples"] / ref["samples"],
            "accuracy": best["accuracy"],
        }
    return out
