"""``knapsack-rl train`` and ``knapsack-rl demo``.

Both return an exit code; errors the user can fix print one line
``knapsack-rl <sub>: error: ...`` on stderr and return 2, before anything in
the run folder is overwritten.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence

__all__ = ["train_main", "demo_main", "train_parser", "demo_parser"]


def _quiet() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


def _parser(prog: str, description: str, cls, config_help: str) -> argparse.ArgumentParser:
    """``--config FILE`` plus one flag per field of the config dataclass ``cls``."""
    from knapsack_rl.training.config import add_config_arguments

    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", metavar="FILE", default=None, help=config_help)
    add_config_arguments(p, cls)
    return p


def train_parser() -> argparse.ArgumentParser:
    """The ``train`` argument parser: ``--config FILE`` plus one flag per :class:`TrainConfig` field."""
    from knapsack_rl.training.config import TrainConfig

    return _parser(
        "knapsack-rl train",
        "GRPO training with per-prompt rollout budgets. Each step draws PROMPTS_PER_STEP prompts "
        "(times OVERSAMPLE for the planned methods), spends the step budget as METHOD plans it "
        "(in one shot from the tracker's estimates, in rounds, as completions return, or in "
        "rounds whose pilot came in the previous step's call: pipelined, the default), "
        "scores the rollouts, and takes a PPO-clipped GRPO step. Settings come from defaults, "
        "then --config FILE (YAML or TOML), then flags.",
        TrainConfig,
        "YAML (.yaml/.yml) or TOML (.toml) file of settings (same names as the flags)",
    )


def _fail(sub: str, msg: str) -> int:
    print(f"knapsack-rl {sub}: error: {msg}", file=sys.stderr)
    return 2


def train_main(argv: Sequence[str] | None = None) -> int:
    """``knapsack-rl train``: parse flags/config, train, print the final evaluation."""
    args = list(sys.argv[1:] if argv is None else argv)
    ns = train_parser().parse_args(args)
    from knapsack_rl.training.config import ConfigError, config_from_args
    from knapsack_rl.training.tasks import DatasetError

    try:
        cfg = config_from_args(ns, ns.config)
    except (ConfigError, DatasetError) as e:
        return _fail("train", str(e))
    _quiet()
    from knapsack_rl.training.trainer import Trainer, TrainError

    try:
        summary = Trainer(cfg).run()
    except (TrainError, ConfigError, DatasetError) as e:
        return _fail("train", str(e))
    ev = summary["final_eval"]
    keys = [k for k in ev if "/" not in k and k not in ("step", "eval_seconds")]
    print(
        f"run: {summary['run_dir']}  steps: {summary['steps']}  rollouts: {summary['rollouts_total']}  "
        f"tokens: {summary['tokens_total']}"
    )
    print("held-out: " + "  ".join(f"{k} {ev[k]:.3f}" for k in keys if isinstance(ev[k], float)))
    return 0


def demo_parser() -> argparse.ArgumentParser:
    """The ``demo`` argument parser (see :class:`knapsack_rl.training.demo.DemoConfig`)."""
    from knapsack_rl.training.demo import DemoConfig

    return _parser(
        "knapsack-rl demo",
        "Train the built-in tiny model on the built-in arithmetic task with each of METHODS "
        "at the same total rollout budget and seed, evaluate, and write a report folder "
        "(index.html + PNG plots) plus a summary table. Runs on 2 CPU cores, offline.",
        DemoConfig,
        "YAML or TOML file of demo settings",
    )


def demo_main(argv: Sequence[str] | None = None) -> int:
    """``knapsack-rl demo``: the README's main job."""
    args = list(sys.argv[1:] if argv is None else argv)
    ns = demo_parser().parse_args(args)
    from knapsack_rl.training.config import ConfigError, config_from_args
    from knapsack_rl.training.demo import DemoConfig, run_demo

    try:
        cfg = config_from_args(ns, ns.config, cls=DemoConfig)
    except ConfigError as e:
        return _fail("demo", str(e))
    _quiet()
    from knapsack_rl.training.trainer import TrainError

    try:
        res = run_demo(cfg)
    except (TrainError, ConfigError) as e:
        return _fail("demo", str(e))
    print(res["table"])
    print(f"report: {res['report']}")
    if cfg.json:
        print(json.dumps(res["summary"], indent=2))
    return 0
