"""``knapsack-rl demo``: uniform vs knapsack (and bayes) GRPO on the built-in task, with a report.

The built-in tiny model is warm-started once (supervised, shared by every
method), then trained with each allocation method at the same total rollout
budget and seed, evaluated on held-out prompts, and summarised in
``OUT/index.html`` with PNG plots and a terminal table.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from knapsack_rl.allocation import METHODS
from knapsack_rl.atomic import atomic_write_text
from knapsack_rl.reports.html import format_table, save_figure, write_html
from knapsack_rl.training.config import ConfigError, TrainConfig, _ConfigMixin, _f

__all__ = ["DemoConfig", "run_demo", "rollouts_to_reach", "load_run"]


@dataclass
class DemoConfig(_ConfigMixin):
    """Settings of the demo (the rest of each run uses :class:`TrainConfig` defaults)."""

    out: str = _f("runs/demo", "report folder (index.html, PNG plots, one training run per method)")
    methods: tuple[str, ...] = _f(
        ("uniform", "knapsack", "bayes"), "allocation methods to compare (comma list)"
    )
    seed: int = _f(0, "seed shared by every method (task, prompt order, sampling)")
    steps: int = _f(300, "RL steps per method")
    prompts_per_step: int = _f(32, "prompts per step")
    rollouts_per_prompt: int = _f(8, "mean rollouts per prompt (step budget = prompts * this)")
    max_rollouts: int = _f(64, "largest group per prompt")
    train_prompts: int = _f(2048, "training prompt pool")
    eval_prompts: int = _f(400, "held-out prompts")
    eval_every: int = _f(25, "evaluate every K steps")
    sft_steps: int = _f(1000, "supervised warm-start steps (shared by all methods)")
    lr: float = _f(3e-4, "RL learning rate")
    threads: int = _f(1, "torch CPU threads (1 is fastest for the tiny model)")
    progress: bool = _f(True, "progress bars")
    json: bool = _f(False, "also print the summary as JSON")

    def validate(self) -> DemoConfig:
        """Check values; raise :class:`ConfigError` naming the field."""
        for m in self.methods:
            if m not in METHODS:
                raise ConfigError(f"methods: unknown {m!r}; expected some of {', '.join(METHODS)}")
        if not self.methods:
            raise ConfigError("methods: give at least one method")
        self.train_config("uniform").validate()
        return self

    def train_config(self, method: str) -> TrainConfig:
        """The :class:`TrainConfig` of one method's run."""
        return TrainConfig(
            run_dir=str(Path(self.out) / "runs" / method),
            seed=self.seed,
            steps=self.steps,
            threads=self.threads,
            progress=self.progress,
            method=method,
            prompts_per_step=self.prompts_per_step,
            rollouts_per_prompt=self.rollouts_per_prompt,
            max_rollouts=self.max_rollouts,
            train_prompts=self.train_prompts,
            eval_prompts=self.eval_prompts,
            eval_every=self.eval_every,
            sft_steps=self.sft_steps,
            lr=self.lr,
            save_every=0,
        )


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


def _warmstart(cfg: DemoConfig, out: Path, log) -> Path:
    """Train the shared warm-start once (cached in OUT/warmstart by its settings)."""
    import torch

    from knapsack_rl.training.model import save_policy
    from knapsack_rl.training.trainer import Trainer

    base = cfg.train_config("uniform")
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
            "digits",
            "terms",
            "operators",
        )
    }
    folder = out / "warmstart"
    marker = folder / "warmstart.json"
    if marker.is_file() and json.loads(marker.read_text()).get("key") == key:
        log(f"warm-start: reusing {folder}")
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
        f"warm-start: {cfg.sft_steps} steps in {info['seconds']:.0f}s, held-out greedy {ev['greedy']:.3f}, "
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
    ws = _warmstart(cfg, out, log)
    runs = {}
    for m in cfg.methods:
        tc = cfg.train_config(m).replace(model=str(ws))
        rd = Path(tc.run_dir)
        if (rd / "config.json").is_file():  # a previous demo run of this method
            shutil.rmtree(rd)
        t = time.perf_counter()
        Trainer(tc).run()
        runs[m] = load_run(rd)
        runs[m]["seconds"] = time.perf_counter() - t
        log(f"{m}: {cfg.steps} steps in {runs[m]['seconds']:.0f}s")
    summary = summarise(runs)
    table = format_table(summary["rows"])
    write_report(out, cfg, runs, summary, table, time.perf_counter() - t_all)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return {"summary": summary, "table": table, "report": str(out / "index.html"), "runs": runs}


def _acc_key(ev: dict) -> str:
    return next((k for k in ev if k.startswith("avg@") and "/" not in k), "greedy")


def summarise(runs: dict[str, dict]) -> dict:
    """Per-method summary rows (final accuracy, mean effective-gradient ratio, rollouts to
    reach uniform's final accuracy, time split) and the comparison figures."""
    rows = []
    key = _acc_key(next(iter(runs.values()))["eval"][-1])
    ref = runs.get("uniform")
    target = ref["eval"][-1][key] if ref and ref["eval"] else None
    if target is not None and target <= ref["eval"][0][key]:
        target = None  # uniform ended at or below its start: "rollouts to reach it" means nothing
    for m, r in runs.items():
        mt, ev = r["metrics"], r["eval"]
        egr = float(np.mean([x["effective_gradient_ratio"] for x in mt])) if mt else 0.0
        t_alloc = sum(x["time/allocate"] for x in mt)
        t_step = sum(x["time/step"] for x in mt)
        reach = rollouts_to_reach(ev, key, target) if target is not None else None
        rows.append(
            {
                "method": m,
                "rollouts": mt[-1]["rollouts_total"] if mt else 0,
                "eff_grad_ratio": egr,
                "zero_std_frac": float(np.mean([x["frac_reward_zero_std"] for x in mt]))
                if mt
                else 0.0,
                "max_group": int(max(x["rollouts_per_prompt/max"] for x in mt)) if mt else 0,
                "start_" + key: ev[0][key] if ev else float("nan"),
                "final_" + key: ev[-1][key] if ev else float("nan"),
                "final_greedy": ev[-1]["greedy"] if ev else float("nan"),
                "rollouts_to_uniform_final": "-" if reach is None else int(round(reach)),
                "alloc_time_%": 100.0 * t_alloc / max(t_step, 1e-9),
                "gen_tok_per_s": float(np.mean([x["gen/tokens_per_s"] for x in mt])) if mt else 0.0,
                "seconds": r.get("seconds", 0.0),
            }
        )
    return {"accuracy_key": key, "uniform_final": target, "rows": rows}


def _colors():
    return {
        "uniform": "tab:gray",
        "knapsack": "tab:blue",
        "bayes": "tab:green",
        "paper": "tab:orange",
    }


def write_report(
    out: Path, cfg: DemoConfig, runs: dict, summary: dict, table: str, seconds: float
) -> Path:
    """Plots + ``index.html`` into ``out``."""
    from knapsack_rl.reports.html import _mpl

    plt = _mpl()
    col = _colors()
    key = summary["accuracy_key"]
    imgs = []
    # 1. effective-gradient ratio per step
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for m, r in runs.items():
        y = np.array([x["effective_gradient_ratio"] for x in r["metrics"]])
        ax.plot(y, color=col.get(m), alpha=0.3, lw=1)
        if y.size >= 5:
            k = 5
            ax.plot(
                np.arange(k - 1, y.size),
                np.convolve(y, np.ones(k) / k, "valid"),
                color=col.get(m),
                lw=2,
                label=m,
            )
        else:
            ax.plot(y, color=col.get(m), lw=2, label=m)
    ax.set_xlabel("step")
    ax.set_ylabel("effective-gradient ratio")
    ax.set_title("Share of rollouts in groups with a gradient (5-step mean)")
    ax.grid(alpha=0.3)
    ax.legend()
    imgs.append(save_figure(fig, out / "effective_gradient_ratio.png"))
    # 2. held-out accuracy against rollouts
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for m, r in runs.items():
        x = [e["rollouts_total"] for e in r["eval"]]
        ax.plot(x, [e[key] for e in r["eval"]], "-o", ms=3, color=col.get(m), label=f"{m} {key}")
        ax.plot(
            x,
            [e["greedy"] for e in r["eval"]],
            "--",
            color=col.get(m),
            alpha=0.6,
            label=f"{m} greedy",
        )
    if summary["uniform_final"] is not None:
        ax.axhline(summary["uniform_final"], color="gray", ls=":", lw=1)
    ax.set_xlabel("rollouts consumed")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("Held-out accuracy against rollouts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    imgs.append(save_figure(fig, out / "accuracy_vs_rollouts.png"))
    # 3. rollouts given against success rate at a few steps
    steps = sorted({0, cfg.steps // 2, max(0, cfg.steps - 1)})
    fig, axes = plt.subplots(
        1, len(steps), figsize=(4.2 * len(steps), 3.6), sharey=True, squeeze=False
    )
    rng = np.random.default_rng(0)
    for ax, s in zip(axes[0], steps):
        for m, r in runs.items():
            rec = next((a for a in r["allocations"] if a["step"] == s), None)
            if rec is None:
                continue
            p = np.array(rec["successes"]) / np.maximum(1, np.array(rec["rollouts"]))
            jitter = rng.uniform(-0.01, 0.01, p.size)
            ax.scatter(p + jitter, rec["rollouts"], s=12, alpha=0.6, color=col.get(m), label=m)
        ax.set_title(f"step {s}")
        ax.set_xlabel("success rate in the step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("rollouts given")
    axes[0][0].legend(fontsize=7)
    imgs.append(save_figure(fig, out / "rollouts_vs_success.png"))
    # 4. histogram of rollouts per prompt
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    allr = [
        np.concatenate([a["rollouts"] for a in r["allocations"]])
        for r in runs.values()
        if r["allocations"]
    ]
    hi = int(max(a.max() for a in allr)) if allr else 1
    bins = np.arange(0.5, hi + 1.5, 1 if hi <= 40 else max(1, hi // 40))
    for m, r in runs.items():
        if r["allocations"]:
            ax.hist(
                np.concatenate([a["rollouts"] for a in r["allocations"]]),
                bins=bins,
                alpha=0.5,
                color=col.get(m),
                label=m,
            )
    ax.set_xlabel("rollouts per prompt")
    ax.set_ylabel("prompt visits")
    ax.set_yscale("log")
    ax.set_title("Rollouts per prompt (all steps)")
    ax.legend()
    ax.grid(alpha=0.3)
    imgs.append(save_figure(fig, out / "rollouts_histogram.png"))
    tc = cfg.train_config("uniform")
    blocks = [
        (
            "p",
            f"Built-in tiny Llama ({next(iter(runs.values()))['config'].get('resolved', {}).get('parameters', '?')} "
            f"parameters, character tokenizer) on the built-in arithmetic task; same warm-start, seed and total "
            f"rollout budget ({tc.step_budget} rollouts per step, {cfg.steps} steps) for every method. "
            f"Accuracy is {key} on {cfg.eval_prompts} held-out prompts (and greedy pass@1). Total time {seconds:.0f}s.",
        ),
        ("table", summary["rows"]),
        ("h2", "Plots"),
        ("imgs", imgs),
        ("h2", "Per-level held-out accuracy (final)"),
        ("table", _level_rows(runs, key)),
        ("h2", "Settings"),
        ("pre", json.dumps(cfg.to_dict(), indent=2)),
        ("h2", "Terminal summary"),
        ("pre", table),
    ]
    return write_html(
        out / "index.html", "knapsack-rl demo: uniform vs knapsack allocation", blocks
    )


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
