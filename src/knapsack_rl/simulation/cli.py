"""``knapsack-rl simulate``: compare rollout strategies in the simulator.

    knapsack-rl simulate [--preset paper|small] [--steps N] [--strategies all|a,b,...]
        [--init FILE] [--seed S] [-o DIR | --no-report] [model options]

Runs every strategy from the same initial population at the same rollout
budget, prints a comparison table, and writes a report folder (``index.html``
with PNG plots, ``metrics.csv``, ``summary.json``, ``config.json``), every
file atomically. Bad options or a bad ``--init`` file: one line naming the
problem on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence

from knapsack_rl.cliutil import Parser, fail, number_arg
from knapsack_rl.simulation.model import PRESETS, load_initial_rates, preset
from knapsack_rl.simulation.runner import run
from knapsack_rl.simulation.strategies import DEFAULT_STRATEGIES, STRATEGIES

__all__ = ["main", "build_parser", "PRESET_STEPS"]

PROG = "knapsack-rl simulate"

#: Most steps one run may take (the paper preset runs ~1000 steps a minute).
MAX_STEPS = 100_000

#: Default number of steps per preset.
PRESET_STEPS = {"paper": 1000, "small": 200}

# flags renamed to the project's one vocabulary: new -> old spellings still accepted
_OLD_FLAGS = {
    "--prompts-per-step": ("--batch-prompts",),
    "--rollouts-per-prompt": ("--per-prompt",),
}

# (flag, ModelConfig field, type, help)
_MODEL_OPTIONS = (
    ("--prompts", "prompts", int, "dataset size (ignored with --init)"),
    ("--prompts-per-step", "prompts_per_step", int, "prompts per step, M"),
    (
        "--rollouts-per-prompt",
        "rollouts_per_prompt",
        int,
        "rollouts per prompt on average (budget B = M x N)",
    ),
    ("--min-rollouts", "min_rollouts", int, "fewest rollouts per prompt for allocators (L)"),
    ("--max-rollouts", "max_rollouts", int, "most rollouts per prompt for allocators (U)"),
    ("--init-mean", "init_mean", float, "mean initial skill (logits)"),
    ("--init-std", "init_std", float, "std of the initial skills (logits)"),
    ("--lr", "lr", float, "skill gain of an informative group at p = 0 (logits)"),
    ("--size-exponent", "size_exponent", float, "gain scales with (n / N)^this (0: paper)"),
    ("--transfer", "transfer", float, "share of each gain spread over the prompt's cluster"),
    ("--clusters", "clusters", int, "number of clusters for --transfer"),
    ("--p-clip", "p_clip", float, "clip --init rates to [c, 1 - c]"),
    ("--capacity", "capacity", int, "GPU engine slots for gen_seconds (default: the whole step)"),
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``knapsack-rl simulate``."""
    p = Parser(
        prog=PROG,
        description="Compare rollout-allocation strategies at equal rollout budgets in a\n"
        "simulated GRPO run; prints a table and writes an HTML report.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Strategies: "
        + ", ".join(STRATEGIES)
        + f". 'all' = {','.join(DEFAULT_STRATEGIES)} (oracle, which knows the true rates, "
        "runs only by name). See docs/simulation.md for the model.",
    )
    p.add_argument("--preset", choices=list(PRESETS), default="paper", help="parameter set")
    p.add_argument(
        "--steps",
        type=number_arg(int, "--steps"),
        metavar="N",
        help="steps at the fixed budget; every strategy spends steps x B rollouts "
        "(default: 1000 for paper, 200 for small)",
    )
    p.add_argument(
        "--strategies", default="all", metavar="LIST", help="comma list of strategies, or 'all'"
    )
    p.add_argument(
        "--init",
        metavar="FILE",
        help="initial success rates (.csv/.jsonl with id and p, or successes and attempts)",
    )
    p.add_argument(
        "--seed", type=number_arg(int, "--seed"), default=0, metavar="S", help="random seed (0)"
    )
    p.add_argument(
        "-o",
        "--out",
        default="simulation-report",
        metavar="DIR",
        help="report folder (simulation-report)",
    )
    p.add_argument("--no-report", action="store_true", help="print the table only")
    p.add_argument("--no-plots", action="store_true", help="report without PNG plots")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    g = p.add_argument_group("model (override the preset)")
    for flag, dest, kind, help_ in _MODEL_OPTIONS:
        metavar = "N" if kind is int else "X"
        names = [flag, *_OLD_FLAGS.get(flag, ())]  # old spellings keep working, unlisted
        g.add_argument(*names, dest=dest, type=number_arg(kind, flag), metavar=metavar, help=help_)
    return p


def _fail(message: str) -> int:
    return fail(PROG, message)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``knapsack-rl simulate``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    overrides = {
        dest: getattr(args, dest)
        for _, dest, _, _ in _MODEL_OPTIONS
        if getattr(args, dest) is not None
    }
    steps = args.steps if args.steps is not None else PRESET_STEPS[args.preset]
    init_p = None
    try:
        if args.init is not None:
            init = load_initial_rates(args.init)
            init_p = init.p
            overrides.pop("prompts", None)
        if init_p is not None:
            overrides["prompts"] = len(init_p)
        config = preset(args.preset, **overrides)
        if steps < 1:
            raise ValueError(f"--steps must be >= 1, got {steps}")
        if steps > MAX_STEPS:
            raise ValueError(f"--steps must be <= {MAX_STEPS}, got {steps}")
        if args.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {args.seed}")

        def progress(trace) -> None:
            if not args.quiet:
                print(f"  {trace.name:<10} {trace.seconds:6.2f} s", file=sys.stderr, flush=True)

        if not args.quiet:
            print(
                f"simulating {config.prompts} prompts, {steps} steps of "
                f"{config.prompts_per_step} x {config.rollouts_per_prompt} rollouts (preset {args.preset}, "
                f"seed {args.seed})",
                file=sys.stderr,
            )
        t0 = time.perf_counter()
        result = run(
            config, args.strategies, steps=steps, seed=args.seed, init_p=init_p, progress=progress
        )
        elapsed = time.perf_counter() - t0
    except ValueError as e:  # includes StatsError (file, line, field)
        return _fail(str(e))
    from knapsack_rl.reports.simulation import summary_table, write_report

    print(summary_table(result))
    if not args.quiet:
        print(f"total {elapsed:.2f} s", file=sys.stderr)
    if not args.no_report:
        command = "knapsack-rl simulate " + " ".join(shlex.quote(a) for a in argv)
        try:
            page = write_report(
                result,
                args.out,
                command=command,
                extra_config={"preset": args.preset, "init": args.init},
                plots=not args.no_plots,
            )
        except OSError as e:
            return _fail(f"cannot write the report to {args.out}: {e}")
        print(f"report: {page}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
