"""``knapsack-rl demo``: uniform vs allocation in rounds vs pipelined rounds (the
trainer's default), on the built-in task, over several seeds, with a report.

For each seed the built-in tiny model is warm-started (supervised, shared by every
method of that seed), then trained with each method at the same total rollout
budget, evaluated on held-out prompts, and summarised in ``OUT/index.html`` (PNG
plots, per-seed paired differences against uniform with their standard error) and
a terminal table. Runs live in ``OUT/seedS/runs/METHOD``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from knapsack_rl.atomic import atomic_write_text
from knapsack_rl.reports.html import format_table, save_figure, write_html
from knapsack_rl.training.config import TRAIN_METHODS, ConfigError, TrainConfig, _f

__all__ = ["DemoConfig", "run_demo", "rollouts_to_reach", "load_run"]


#: "late" accuracy: the mean of the last evaluations (less noisy than the last one alone)
LATE_EVALS = 3

# settings of each method's run that the demo fixes (its measured defaults, see docs/training.md)
_DEMO_RUN = {"save_every": 0, "resume": False}


@dataclass
class DemoConfig(TrainConfig):
    """The demo's settings: every :class:`TrainConfig` setting (shared by all methods' runs, with
    the demo's measured defaults below) plus the report folder and the methods to compare.

    ``run_dir`` and ``method`` are set per method (``OUT/runs/METHOD``).
    """

    steps: int = _f(300, "RL steps per method")
    eval_every: int = _f(25, "evaluate every K steps")
    max_rollouts: int = _f(64, "U: largest group per prompt (the demo's measured setting)")
    window: int = _f(16, "window tracker: rewards kept per prompt (the demo's measured setting)")
    discount: float | str = _f(
        0.7, "beta tracker: forgetting factor per visit, or 'auto' (the demo's measured setting)"
    )
    sft_noise: float = _f(
        0.1,
        "warm-start: share of wrong targets; 0.1 gives the paper's late-training mix under "
        "uniform (benchmarks/task_stats.py)",
    )
    out: str = _f("runs/demo", "report folder (index.html, PNG plots, one training run per method)")
    methods: tuple[str, ...] = _f(
        ("uniform", "rounds", "pipelined"), "allocation methods to compare (comma list)"
    )
    seeds: tuple[int, ...] = _f(
        (0, 1, 2), "seeds (comma list); each runs every method from its own warm-start"
    )
    json: bool = _f(False, "also print the summary as JSON")

    HIDDEN = ("run_dir", "method", "resume", "save_every", "seed")  # set per run; no demo flags

    def validate(self) -> DemoConfig:
        """Check values; raise :class:`ConfigError` naming the field."""
        for m in self.methods:
            if m not in TRAIN_METHODS:
                raise ConfigError(
                    f"methods: unknown {m!r}; expected some of {', '.join(TRAIN_METHODS)}"
                )
        if not self.methods:
            raise ConfigError("methods: give at least one method")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: give distinct seeds, got {self.seeds}")
        for m in self.methods:
            self.train_config(m, self.seeds[0]).validate()
        return self

    def train_config(self, method: str, seed: int) -> TrainConfig:
        """The :class:`TrainConfig` of one method's run with one seed."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainConfig)}
        rd = Path(self.out) / f"seed{seed}" / "runs" / method
        shared.update(_DEMO_RUN, run_dir=str(rd), method=method, seed=int(seed))
        return TrainConfig(**shared)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def load_run(run_dir: str | Path) -> dict:
    """A run folder's logs: ``metrics``, ``allocations``, ``eval`` (lists of dicts) and ``config``."""
    rd = Path(run_dir)
    return {
        "metrics": _read_jsonl(rd / "metrics.jsonl"),
        "allocations": _read_jsonl(rd / "allocations.jsonl"),
        "eval": _read_jsonl(rd / "eval.jsonl"),
        "config": json.loads((rd / "config.json").read_text())
        if (rd / "config.json").is_file()
        else {},
    }


def rollouts_to_reach(evals: list[dict], key: str, target: float) -> float | None:
    """Rollouts consumed when ``evals[key]`` first reaches ``target`` (linear interpolation
    between evaluation points); None if it never does."""
    prev = None
    for e in evals:
        x, y = float(e["rollouts_total"]), float(e[key])
        if y >= target:
            if prev is None or prev[1] >= y:
                return x
            x0, y0 = prev
            return x0 + (target - y0) / (y - y0) * (x - x0)
        prev = (x, y)
    return None


def _warmstart(cfg: DemoConfig, seed: int, out: Path, log) -> Path:
    """Train a seed's warm-start once (cached in OUT/warmstart by its settings)."""
    import torch

    from knapsack_rl.training.model import save_policy
    from knapsack_rl.training.trainer import Trainer

    base = cfg.train_config("uniform", seed)
    key = {
        k: v
        for k, v in base.to_dict().items()
        if k
        in (
            "seed",
            "n_layer",
            "n_embd",
            "n_head",
            "n_inner",
            "sft_steps",
            "sft_batch",
            "sft_lr",
            "sft_examples",
            "sft_noise",
            "sft_weights",
            "digits",
            "terms",
            "operators",
        )
    }
    folder = out / "warmstart"
    marker = folder / "warmstart.json"
    if marker.is_file() and json.loads(marker.read_text()).get("key") == key:
        log(f"seed {seed} warm-start: reusing {folder}")
        return folder
    t = time.perf_counter()
    tr = Trainer(base.replace(run_dir=str(out / ".warmstart-run"), progress=cfg.progress))
    losses = tr.warmstart()
    save_policy(tr.model, tr.tok, folder)
    ev = tr.evaluate()
    info = {
        "key": key,
        "final_loss": losses[-1] if losses else None,
        "seconds": time.perf_counter() - t,
        "eval": ev,
        "parameters": tr.n_params,
    }
    atomic_write_text(marker, json.dumps(info, indent=2))
    del tr
    torch.set_num_threads(cfg.threads)
    log(
        f"seed {seed} warm-start: {cfg.sft_steps} steps in {info['seconds']:.0f}s, held-out greedy {ev['greedy']:.3f}, "
        f"avg@8 {ev.get('avg@8', float('nan')):.3f}"
    )
    return folder


def run_demo(cfg: DemoConfig, log=print) -> dict:
    """Run the whole demo; returns ``{"summary", "table", "report", "runs"}``."""
    from knapsack_rl.training.trainer import Trainer

    cfg.validate()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    runs: dict[int, dict[str, dict]] = {}
    for seed in cfg.seeds:
        ws = _warmstart(cfg, seed, out / f"seed{seed}", log)
        runs[seed] = {}
        for m in cfg.methods:
            tc = cfg.train_config(m, seed).replace(model=str(ws))
            rd = Path(tc.run_dir)
            if (rd / "config.json").is_file():  # a previous demo run of this method
                shutil.rmtree(rd)
            t = time.perf_counter()
            Trainer(tc).run()
            runs[seed][m] = load_run(rd)
            runs[seed][m]["seconds"] = time.perf_counter() - t
            log(f"seed {seed} {m}: {cfg.steps} steps in {runs[seed][m]['seconds']:.0f}s")
    summary = summarise(runs)
    table = format_table(summary["rows"])
    write_report(out, cfg, runs, summary, table, time.perf_counter() - t_all)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return {"summary": summary, "table": table, "report": str(out / "index.html"), "runs": runs}


def _acc_key(ev: dict) -> str:
    return next((k for k in ev if k.startswith("avg@") and "/" not in k), "greedy")


def _wall(r: dict) -> np.ndarray:
    """Seconds of training (allocation, generation, scoring, update; no evaluation) at each
    evaluation point of a run."""
    t = np.cumsum([0.0] + [x["time/step"] for x in r["metrics"]])
    return np.array([t[min(int(e["step"]), t.size - 1)] for e in r["eval"]])


def _mean_se(x) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    se = float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")
    return float(x.mean()), se


def summarise(runs: dict[int, dict[str, dict]]) -> dict:
    """Per-method rows (means over seeds, paired differences against uniform with their
    standard error) and per-seed rows.

    Paired by seed: each seed's methods share the warm-start, the prompt order and the
    rollout budget, so ``method - uniform`` per seed removes the seed's own noise.
    """
    seeds = list(runs)
    methods = list(runs[seeds[0]])
    key = _acc_key(runs[seeds[0]][methods[0]]["eval"][-1])
    per_seed, by_method = [], {m: [] for m in methods}
    for seed in seeds:
        ref = runs[seed].get("uniform")
        target = ref["eval"][-1][key] if ref and ref["eval"] else None
        if target is not None and target <= ref["eval"][0][key]:
            target = None  # uniform did not improve: "rollouts to reach it" means nothing
        for m in methods:
            r = runs[seed][m]
            mt, ev = r["metrics"], r["eval"]
            rollouts = mt[-1]["rollouts_total"] if mt else 0
            reach = rollouts_to_reach(ev, key, target) if target is not None else None
            row = {
                "seed": seed,
                "method": m,
                "final": ev[-1][key] if ev else float("nan"),
                "late": float(np.mean([e[key] for e in ev[-LATE_EVALS:]])) if ev else float("nan"),
                "start": ev[0][key] if ev else float("nan"),
                "greedy": ev[-1]["greedy"] if ev else float("nan"),
                "effective_gradient_ratio": float(
                    np.mean([x["effective_gradient_ratio"] for x in mt])
                )
                if mt
                else 0.0,
                "frac_reward_zero_std": float(np.mean([x["frac_reward_zero_std"] for x in mt]))
                if mt
                else 0.0,
                "rollouts": rollouts,
                "reach_ratio": None if reach is None else reach / max(rollouts, 1),
                "sec_per_1k_rollouts": 1000 * sum(x["time/step"] for x in mt) / max(rollouts, 1),
                # modelled GPU generation seconds per step (simulation/gentime.py)
                "gpu_s_per_step": float(
                    np.mean([x.get("time/gpu_generate", np.nan) for x in mt]) if mt else np.nan
                ),
                "max_group": int(max(x["rollouts_per_prompt/max"] for x in mt)) if mt else 0,
            }
            by_method[m].append(row)
            per_seed.append(row)
    rows = []
    for m in methods:
        rs = by_method[m]
        uni = by_method.get("uniform")
        row = {
            "method": m,
            "seeds": len(rs),
            "rollouts": rs[0]["rollouts"],
            "start_" + key: float(np.mean([r["start"] for r in rs])),
            "final_" + key: float(np.mean([r["final"] for r in rs])),
            "final_greedy": float(np.mean([r["greedy"] for r in rs])),
            "effective_gradient_ratio": float(np.mean([r["effective_gradient_ratio"] for r in rs])),
        }
        if uni and m != "uniform":
            d = [a["final"] - b["final"] for a, b in zip(rs, uni)]
            mean, se = _mean_se(d)
            row["diff_vs_uniform"] = mean
            row["diff_se"] = se
            row["diff_in_se"] = mean / se if se and se > 0 else float("nan")
            row["seeds_above_uniform"] = f"{sum(x > 0 for x in d)}/{len(d)}"
            late, late_se = _mean_se([a["late"] - b["late"] for a, b in zip(rs, uni)])
            row["late_diff_vs_uniform"] = late
            row["late_diff_se"] = late_se
            reach = [r["reach_ratio"] for r in rs]
            row["rollouts_to_uniform_final"] = (
                "-"
                if any(x is None for x in reach)
                else f"{np.mean(reach):.2f}x ({min(reach):.2f}-{max(reach):.2f})"
            )
            w = [a["sec_per_1k_rollouts"] / b["sec_per_1k_rollouts"] for a, b in zip(rs, uni)]
            row["wall_per_rollout_vs_uniform"] = float(np.mean(w))
            g = [a["gpu_s_per_step"] / b["gpu_s_per_step"] for a, b in zip(rs, uni)]
            row["gpu_generate_vs_uniform"] = float(np.mean(g))
        row["sec_per_1k_rollouts"] = float(np.mean([r["sec_per_1k_rollouts"] for r in rs]))
        rows.append(row)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{k: r.get(k, "-") for k in cols} for r in rows]
    return {"accuracy_key": key, "seeds": seeds, "rows": rows, "per_seed": per_seed}


_COLORS = {
    "uniform": "tab:gray",
    "knapsack": "tab:blue",
    "rounds": "tab:red",
    "pipelined": "tab:purple",
    "stream": "tab:brown",
    "bayes": "tab:green",
    "paper": "tab:orange",
}


def _curves(ax, runs, methods, x_of, key):
    for m in methods:
        xs, ys = [], []
        for seed in runs:
            r = runs[seed][m]
            x, y = x_of(r), np.array([e[key] for e in r["eval"]])
            ax.plot(x, y, color=_COLORS.get(m), alpha=0.25, lw=1)
            xs.append(x)
            ys.append(y)
        n = min(len(y) for y in ys)
        ax.plot(
            np.mean([x[:n] for x in xs], axis=0),
            np.mean([y[:n] for y in ys], axis=0),
            "-o",
            ms=3,
            color=_COLORS.get(m),
            lw=2,
            label=f"{m} (mean of {len(ys)} seeds)",
        )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def write_report(
    out: Path, cfg: DemoConfig, runs: dict, summary: dict, table: str, seconds: float
) -> Path:
    """Plots + ``index.html`` into ``out``."""
    key = summary["accuracy_key"]
    seeds = list(runs)
    methods = list(runs[seeds[0]])
    imgs = [
        *_plot_accuracy(out, runs, methods, key),
        _plot_paired(out, runs, seeds, methods, key),
        _plot_effective_ratio(out, runs, seeds, methods),
        _plot_allocations(out, runs, seeds[0], methods),
    ]
    blocks = [
        ("p", _intro(cfg, runs, seeds[0], methods, key, seconds)),
        ("table", _compact(summary["rows"], key)),
        ("h2", "Per seed"),
        ("table", _compact(summary["per_seed"], key)),
        ("h2", "Plots"),
        ("imgs", imgs),
        ("h2", "Per-level held-out accuracy (final, first seed)"),
        ("table", _level_rows(runs[seeds[0]], key)),
        ("h2", "Settings"),
        ("pre", json.dumps(cfg.to_dict(), indent=2)),
        ("h2", "Terminal summary"),
        ("pre", table),
    ]
    return write_html(out / "index.html", "knapsack-rl demo: learning per rollout", blocks)


def _plt():
    from knapsack_rl.reports.html import _mpl

    return _mpl()


def _plot_accuracy(out: Path, runs: dict, methods: list, key: str) -> list[Path]:
    """Held-out accuracy against rollouts consumed and against training wall-clock."""
    plt = _plt()
    paths = []
    for x_of, xlabel, name in (
        (
            lambda r: np.array([e["rollouts_total"] for e in r["eval"]]),
            "rollouts consumed",
            "rollouts",
        ),
        (_wall, "training seconds (no evaluation)", "wallclock"),
    ):
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        _curves(ax, runs, methods, x_of, key)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"held-out {key}")
        ax.set_title(f"Held-out {key} against {xlabel.split(' (')[0]}")
        paths.append(save_figure(fig, out / f"accuracy_vs_{name}.png"))
    return paths


def _plot_paired(out: Path, runs: dict, seeds: list, methods: list, key: str) -> Path:
    """Each method's final accuracy minus uniform's, per seed."""
    fig, ax = _plt().subplots(figsize=(6.4, 3.6))
    others = [m for m in methods if m != "uniform"]
    if "uniform" in methods and others:
        width = 0.8 / len(others)
        for j, m in enumerate(others):
            d = [runs[s][m]["eval"][-1][key] - runs[s]["uniform"]["eval"][-1][key] for s in seeds]
            ax.bar(np.arange(len(seeds)) + j * width, d, width, color=_COLORS.get(m), label=m)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(seeds)) + 0.4 - width / 2, [f"seed {s}" for s in seeds])
        ax.set_ylabel(f"final {key} - uniform's")
        ax.set_title("Paired differences against uniform, per seed")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, out / "paired_differences.png")


def _plot_effective_ratio(out: Path, runs: dict, seeds: list, methods: list) -> Path:
    """Effective-gradient ratio per step (mean over seeds, 5-step moving mean)."""
    fig, ax = _plt().subplots(figsize=(6.4, 4.0))
    for m in methods:
        y = np.mean(
            [[x["effective_gradient_ratio"] for x in runs[s][m]["metrics"]] for s in seeds], axis=0
        )
        k = min(5, max(1, y.size))
        ax.plot(np.convolve(y, np.ones(k) / k, "valid"), color=_COLORS.get(m), lw=2, label=m)
    ax.set_xlabel("step")
    ax.set_ylabel("effective-gradient ratio")
    ax.set_title("Share of rollouts in groups with a gradient (not a measure of learning)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, out / "effective_gradient_ratio.png")


def _plot_allocations(out: Path, runs: dict, seed, methods: list) -> Path:
    """Rollouts given against the step's success rate (one seed, last step)."""
    fig, ax = _plt().subplots(figsize=(6.4, 4.0))
    rng = np.random.default_rng(0)
    for m in methods:
        rec = runs[seed][m]["allocations"][-1] if runs[seed][m]["allocations"] else None
        if rec is None:
            continue
        p = np.array(rec["successes"]) / np.maximum(1, np.array(rec["rollouts"]))
        ax.scatter(
            p + rng.uniform(-0.01, 0.01, p.size),
            rec["rollouts"],
            s=12,
            alpha=0.6,
            color=_COLORS.get(m),
            label=m,
        )
    ax.set_xlabel("success rate in the step")
    ax.set_ylabel("rollouts given")
    ax.set_title(f"Rollouts per prompt at the last step (seed {seed})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, out / "rollouts_vs_success.png")


def _intro(cfg: DemoConfig, runs: dict, seed, methods: list, key: str, seconds: float) -> str:
    """The report's opening paragraph: model, task, budget and how to read it."""
    tc = cfg.train_config("uniform", seed)
    rc = cfg.train_config("rounds", seed)
    how_rounds = (
        f" rounds draws {rc.step_prompts} prompts per step instead of {tc.step_prompts}, pilots "
        f"each with {rc.pilot} rollouts, then plans the rest ({rc.rounds} rounds, value "
        f"{rc.value})."
        if "rounds" in methods or "pipelined" in methods
        else ""
    )
    if "pipelined" in methods:
        how_rounds += (
            " pipelined plans the same way, but each step's pilot is generated in the "
            "previous step's call (one update old, with its behaviour log-probs in the PPO "
            "ratio), so a step has one generation call: see the modelled GPU time column."
        )
    params = runs[seed][methods[0]]["config"].get("resolved", {}).get("parameters", "?")
    return (
        f"Built-in tiny Llama ({params} parameters, character tokenizer) on the built-in "
        f"arithmetic task. Per seed, every method starts from the same warm-start and spends "
        f"the same rollouts ({tc.step_budget} per step, {cfg.steps} steps). Accuracy is "
        f"{key} on {cfg.eval_prompts} held-out prompts. Differences are paired by seed; "
        f"the standard error is over seeds.{how_rounds} Total time {seconds:.0f}s."
    )


_SHORT = {  # report column -> heading
    "seed": "seed",
    "method": "method",
    "final": "final",
    "late": "late",
    "start": "start",
    "greedy": "greedy",
    "diff_vs_uniform": "final - uniform",
    "diff_se": "s.e.",
    "seeds_above_uniform": "seeds above",
    "late_diff_vs_uniform": "late - uniform",
    "late_diff_se": "late s.e.",
    "rollouts_to_uniform_final": "rollouts to uniform's final",
    "reach_ratio": "rollouts to uniform's final",
    "effective_gradient_ratio": "eff. grad. ratio",
    "wall_per_rollout_vs_uniform": "CPU wall/rollout vs uniform",
    "gpu_generate_vs_uniform": "modelled GPU gen./step vs uniform",
    "sec_per_1k_rollouts": "s per 1k rollouts",
    "gpu_s_per_step": "modelled GPU s/step",
}


def _compact(rows: list[dict], key: str) -> list[dict]:
    """The report's narrow tables: fewer columns, short headings, 3 decimals."""
    out = []
    for r in rows:
        row = {}
        for k, v in r.items():
            name = _SHORT.get(k) or {"start_" + key: "start", "final_" + key: "final"}.get(k)
            if name is None:
                continue
            if v is None:
                v = "-"
            elif isinstance(v, float):
                v = f"{v:+.3f}" if k in ("diff_vs_uniform", "late_diff_vs_uniform") else f"{v:.3f}"
            row[name] = v
        out.append(row)
    return out


def _level_rows(runs: dict, key: str) -> list[dict]:
    rows = []
    for m, r in runs.items():
        if not r["eval"]:
            continue
        first, last = r["eval"][0], r["eval"][-1]
        row = {"method": m}
        for k in sorted(x for x in last if x.startswith(key + "/level")):
            row[k.split("/")[1]] = f"{first[k]:.2f} -> {last[k]:.2f}"
        rows.append(row)
    return rows
