"""Run strategies on copies of one simulated population and collect metrics.

Every strategy starts from the same initial skills and the same prompt stream,
and runs until it has spent ``steps * budget`` rollouts (``steps`` steps for
the fixed-budget strategies; fewer, larger steps for dynamic sampling), so the
final numbers compare strategies at equal rollouts spent.

Per-step metrics (arrays in :attr:`Trace.metrics`):

- ``rollouts``: rollouts spent in the step; ``cum_rollouts``: running total.
- ``effective_gradient_ratio``: share of the step's rollouts that lie in
  trained groups with a success and a failure (rollouts dropped by dynamic
  sampling count as spent, not effective).
- ``frac_reward_zero_std``: share of generated groups whose rewards are all equal.
- ``reward``: mean reward of the step's rollouts.
- ``mean_p``: mean true success rate over the dataset after the step.
- ``solved``: fraction of the dataset with true p > 0.5 after the step.
- ``all_correct`` / ``all_wrong``: expected fraction of the dataset whose
  ``rollouts_per_prompt`` rollouts would all be correct / all wrong (mean of p^N, (1-p)^N).
- ``max_rollouts``: most rollouts one prompt got in the step.
- ``groups``: groups trained in the step; ``informative_groups``: those with
  a success and a failure (the ones that move the model);
  ``generated_groups``: all groups rolled out, dropped ones included.
- ``gen_seconds``: the step's modelled GPU generation time (simulation/gentime.py):
  the sum over its generation barriers of each call's makespan on an engine of
  ``capacity`` slots, or a streaming strategy's own makespan.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from knapsack_rl.simulation.model import InitRates, ModelConfig, Population
from knapsack_rl.simulation.strategies import (
    DEFAULT_STRATEGIES,
    Env,
    Strategy,
    make_strategy,
)

__all__ = [
    "Trace",
    "SimResult",
    "run",
    "run_strategy",
    "resolve_strategies",
    "paired_differences",
    "rates_from_allocations",
    "METRICS",
]

METRICS = (
    "step",
    "rollouts",
    "cum_rollouts",
    "effective_gradient_ratio",
    "frac_reward_zero_std",
    "reward",
    "mean_p",
    "solved",
    "all_correct",
    "all_wrong",
    "max_rollouts",
    "groups",
    "informative_groups",
    "generated_groups",
    "gen_seconds",
)


@dataclass
class Trace:
    """One strategy's run.

    Attributes:
        name: strategy name.
        metrics: metric name -> array (steps,), see the module docstring.
        alloc_p: true p (before the step) of the groups of the last
            ``snapshot_steps`` steps; ``alloc_n``: their rollouts (for plots).
        seconds: wall time of the run.
        config: the strategy's settings.
    """

    name: str
    metrics: dict[str, np.ndarray]
    alloc_p: np.ndarray
    alloc_n: np.ndarray
    seconds: float
    config: dict = field(default_factory=dict)

    def summary(self, late: float = 0.1) -> dict:
        """One row: totals, and averages over the last ``late`` share of rollouts spent.

        ``effective_gradient_ratio``: effective-gradient ratio over the whole run (rollouts in
        trained informative groups / rollouts spent); ``effective_gradient_ratio_late``: the same
        over the last ``late`` share of rollouts; ``eff_groups``: informative
        trained groups / groups generated; ``mean_p``, ``solved``,
        ``all_correct``, ``all_wrong``: dataset metrics after the last step;
        ``max_rollouts``: most rollouts one prompt got in one step;
        ``gen_seconds``: mean modelled GPU generation seconds per step.
        """
        m = self.metrics
        spent = m["rollouts"].astype(np.float64)
        total = float(spent.sum())
        eff = float((m["effective_gradient_ratio"] * spent).sum() / total) if total else 0.0
        cut = m["cum_rollouts"] > (1.0 - late) * (m["cum_rollouts"][-1] if total else 0)
        cut[-1] = True
        late_eff = float(
            (m["effective_gradient_ratio"][cut] * spent[cut]).sum() / max(spent[cut].sum(), 1.0)
        )
        gen = float(m["generated_groups"].sum())
        return {
            "strategy": self.name,
            "steps": int(m["step"].size),
            "rollouts": int(total),
            "effective_gradient_ratio": eff,
            "effective_gradient_ratio_late": late_eff,
            "eff_groups": float(m["informative_groups"].sum()) / gen if gen else 0.0,
            "mean_p": float(m["mean_p"][-1]),
            "solved": float(m["solved"][-1]),
            "all_correct": float(m["all_correct"][-1]),
            "all_wrong": float(m["all_wrong"][-1]),
            "max_rollouts": int(m["max_rollouts"].max()),
            "gen_seconds": float(m["gen_seconds"].mean()),
            "seconds": self.seconds,
        }


@dataclass
class SimResult:
    """All strategies' traces for one configuration and seed.

    Attributes:
        config: the model configuration.
        seed: the seed.
        steps: steps of the fixed-budget strategies (total rollouts = steps * budget).
        traces: strategy name -> :class:`Trace`, in run order.
        initial: dataset metrics before any step (``mean_p``, ``solved``, ...).
    """

    config: ModelConfig
    seed: int
    steps: int
    traces: dict[str, Trace]
    initial: dict

    def summary_rows(self, late: float = 0.1) -> list[dict]:
        """One row per strategy, plus ``eff_vs_uniform`` (relative to uniform's
        overall effective-gradient ratio) when uniform was run."""
        rows = [t.summary(late) for t in self.traces.values()]
        base = next(
            (r["effective_gradient_ratio"] for r in rows if r["strategy"] == "uniform"), None
        )
        for r in rows:
            r["eff_vs_uniform"] = (
                (r["effective_gradient_ratio"] / base - 1.0) if base else float("nan")
            )
        return rows


def _dataset_metrics(pop: Population) -> dict:
    p = pop.p()
    n = pop.config.rollouts_per_prompt
    return {
        "mean_p": float(p.mean()),
        "solved": float((p > 0.5).mean()),
        "all_correct": float(np.power(p, n).mean()),
        "all_wrong": float(np.power(1.0 - p, n).mean()),
    }


def resolve_strategies(strategies: Sequence[str | Strategy] | str | None) -> list[Strategy]:
    """Names (or a comma list, or ``all``) and instances -> strategy instances."""
    if strategies is None or strategies == "all":
        strategies = list(DEFAULT_STRATEGIES)
    elif isinstance(strategies, str):
        strategies = [s.strip() for s in strategies.split(",") if s.strip()]
    out: list[Strategy] = []
    for s in strategies:
        if isinstance(s, Strategy):
            out.append(s)
        elif s == "all":
            out.extend(make_strategy(n) for n in DEFAULT_STRATEGIES)
        else:
            out.append(make_strategy(s))
    names = [s.name for s in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ValueError(f"strategy {dup!r} given twice")
    if not out:
        raise ValueError("no strategies to run")
    return out


def run_strategy(
    strategy: Strategy,
    population: Population,
    steps: int,
    seed: int = 0,
    snapshot_steps: int = 5,
) -> Trace:
    """Run one strategy on ``population`` (modified in place) until it has spent
    ``steps * budget`` rollouts. Returns its :class:`Trace`."""
    t0 = time.perf_counter()
    cfg = population.config
    env = Env(population, seed, strategy.name)
    strategy.reset(env)
    target = steps * cfg.budget
    rows = {k: [] for k in METRICS}
    snaps: list[tuple[np.ndarray, np.ndarray]] = []
    cum = 0
    step = 0
    while cum < target and step < steps:
        env.spent = 0
        env.gen_seconds = 0.0
        env.step_index = step
        out = strategy.step(env)
        n = np.asarray(out.n, dtype=np.int64)
        k = np.asarray(out.k, dtype=np.float64)
        dn = np.asarray(out.dropped_n, dtype=np.int64)
        dk = np.asarray(out.dropped_k, dtype=np.float64)
        accounted = int(n.sum() + dn.sum())
        if accounted != env.spent:
            raise RuntimeError(
                f"strategy {strategy.name!r}: step {step} spent {env.spent} rollouts but "
                f"returned groups holding {accounted}"
            )
        if strategy.fixed_budget and env.spent != cfg.budget:
            raise RuntimeError(
                f"strategy {strategy.name!r}: step {step} spent {env.spent} rollouts, "
                f"not the budget {cfg.budget}"
            )
        p_before = population.p(out.idx)
        informative = (k > 0) & (k < n)
        population.learn(out.idx, n, k)
        cum += env.spent
        all_n = np.concatenate([n, dn])
        all_k = np.concatenate([k, dk])
        flat = (all_k == 0) | (all_k == all_n)
        rows["step"].append(step)
        rows["rollouts"].append(env.spent)
        rows["cum_rollouts"].append(cum)
        rows["effective_gradient_ratio"].append(
            float(n[informative].sum()) / env.spent if env.spent else 0.0
        )
        rows["frac_reward_zero_std"].append(float(flat.mean()) if flat.size else 0.0)
        rows["reward"].append(float(all_k.sum()) / env.spent if env.spent else 0.0)
        for key, v in _dataset_metrics(population).items():
            rows[key].append(v)
        rows["max_rollouts"].append(int(all_n.max()) if all_n.size else 0)
        rows["groups"].append(int(n.size))
        rows["informative_groups"].append(int(informative.sum()))
        rows["generated_groups"].append(int(all_n.size))
        rows["gen_seconds"].append(env.gen_seconds)
        if steps - step <= snapshot_steps or target - cum < snapshot_steps * cfg.budget:
            snaps.append((p_before, n))
            snaps = snaps[-snapshot_steps:]
        step += 1
    metrics = {
        k: np.asarray(
            v,
            dtype=np.float64
            if k
            not in (
                "step",
                "rollouts",
                "cum_rollouts",
                "max_rollouts",
                "groups",
                "informative_groups",
                "generated_groups",
            )
            else np.int64,
        )
        for k, v in rows.items()
    }
    ap = np.concatenate([s[0] for s in snaps]) if snaps else np.empty(0)
    an = np.concatenate([s[1] for s in snaps]) if snaps else np.empty(0, dtype=np.int64)
    return Trace(strategy.name, metrics, ap, an, time.perf_counter() - t0, strategy.config())


def run(
    config: ModelConfig,
    strategies: Sequence[str | Strategy] | str | None = None,
    steps: int = 1000,
    seed: int = 0,
    init_p: np.ndarray | None = None,
    snapshot_steps: int = 5,
    progress=None,
) -> SimResult:
    """Simulate every strategy from the same initial population.

    Args:
        config: model parameters (see :class:`ModelConfig`, :func:`preset`).
        strategies: names, instances, a comma list or ``"all"`` (default: all).
        steps: steps at the fixed budget; every strategy spends ``steps * budget`` rollouts.
        seed: seeds the initial population, the prompt stream and each
            strategy's reward noise; the same seed gives identical results.
        init_p: optional initial success rates, one per prompt (replaces the
            drawn skills; the dataset size becomes ``len(init_p)``).
        snapshot_steps: how many final steps' allocations to keep for plots.
        progress: optional callable ``progress(trace)`` called after each strategy.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if init_p is not None:
        init_p = np.asarray(init_p, dtype=np.float64).reshape(-1)
        config = dataclasses.replace(config, prompts=int(init_p.size))
    config.validate()
    strats = resolve_strategies(strategies)
    base = Population.create(config, seed=seed, init_p=init_p)
    initial = _dataset_metrics(base)
    traces: dict[str, Trace] = {}
    for s in strats:
        trace = run_strategy(s, base.copy(), int(steps), seed=seed, snapshot_steps=snapshot_steps)
        traces[s.name] = trace
        if progress is not None:
            progress(trace)
    return SimResult(
        config=config, seed=int(seed), steps=int(steps), traces=traces, initial=initial
    )


def paired_differences(
    results: Sequence[SimResult],
    base: str = "uniform",
    keys: Sequence[str] = ("mean_p", "all_wrong", "effective_gradient_ratio"),
    strategies: Sequence[str] | None = None,
) -> list[dict]:
    """Each strategy minus ``base`` on the same seed, over several seeds.

    ``results`` are :class:`SimResult` of different seeds (same configuration),
    each holding ``base``. Per strategy and key: ``<key>`` (mean over seeds),
    ``<key>_diff`` (mean paired difference), ``<key>_se`` (its standard error,
    sd / sqrt(seeds); NaN with one seed) and ``<key>_diffs`` (per seed).
    ``strategies``: which ones and in what order (default: all, in run order).
    """
    if not results:
        raise ValueError("no results")
    rows = [{r["strategy"]: r for r in res.summary_rows()} for res in results]
    if any(base not in r for r in rows):
        raise ValueError(f"every result must hold the base strategy {base!r}")
    out = []
    for name in rows[0] if strategies is None else strategies:
        if any(name not in r for r in rows):
            raise ValueError(f"strategy {name!r} is missing from a result")
        row: dict = {"strategy": name, "seeds": len(rows)}
        for key in keys:
            vals = np.array([float(r[name][key]) for r in rows])
            diffs = vals - np.array([float(r[base][key]) for r in rows])
            row[key] = float(vals.mean())
            row[f"{key}_diff"] = float(diffs.mean())
            row[f"{key}_se"] = (
                float(diffs.std(ddof=1) / np.sqrt(diffs.size)) if diffs.size > 1 else float("nan")
            )
            row[f"{key}_diffs"] = diffs.tolist()
        out.append(row)
    return out


def rates_from_allocations(path, steps: int | None = None) -> InitRates:
    """Per-prompt success rates measured by a training run, for ``run(init_p=...)``.

    ``path`` is a run's ``allocations.jsonl`` (one record per step with ``step``,
    ``ids``, ``rollouts`` and ``successes``, as the reference trainer writes it).
    Successes and rollouts are summed per prompt over the records with
    ``step < steps`` (all when None); use the early steps, where the policy is
    closest to the one the simulation starts from. Prompts never rolled out are
    left out. Raises ValueError naming the file and line on a bad record.
    """
    import json

    succ: dict = {}
    att: dict = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if steps is not None and int(rec["step"]) >= steps:
                    continue
                rows = zip(rec["ids"], rec["rollouts"], rec["successes"], strict=True)
                for pid, n, k in rows:
                    key = tuple(pid) if isinstance(pid, list) else pid
                    att[key] = att.get(key, 0) + int(n)
                    succ[key] = succ.get(key, 0) + int(k)
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(
                    f"{path}, line {line_no}: not an allocation record ({e})"
                ) from None
    ids = [pid for pid, n in att.items() if n > 0]
    if not ids:
        raise ValueError(f"{path}: no rollouts recorded")
    p = np.array([succ[pid] / att[pid] for pid in ids], dtype=np.float64)
    return InitRates(ids=ids, p=p, path=str(path))
