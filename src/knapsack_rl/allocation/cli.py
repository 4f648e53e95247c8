"""``knapsack-rl allocate``: rollouts per prompt for a file of statistics.

    knapsack-rl allocate STATS (--budget B | --per-prompt N) [--min 2] [--max 128]
        [--method knapsack|paper|bayes|uniform] [--cost-column COL --token-budget T]
        [--prior A B] [-o OUT] [--plot PNG]

STATS is .csv or .jsonl with ``id`` and ``p``, or ``successes`` and ``attempts``
(optional ``valid`` for ``paper``; with counts and no ``valid`` column a row is
valid when attempts >= 8, the paper tracker's rule). OUT (.csv/.jsonl) gets
``id, rollouts, p, value``; without ``-o`` the CSV goes to stdout. A summary goes
to stderr. Bad input or a bad output path: one line naming file, line and field,
exit code 2, and no output file written (every output path is checked before
any is written; an output may not be the input). Ctrl-C: one line, exit 130.
``--example`` allocates a built-in batch of 256 prompts instead of a file.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from knapsack_rl import defaults
from knapsack_rl.allocation import METHODS, Allocator
from knapsack_rl.allocation.stats import FORMATS, PromptStats, StatsError, read_stats, write_table
from knapsack_rl.cliutil import Parser, check_output, number_arg, same_file, write_stdout
from knapsack_rl.cliutil import fail as _fail

__all__ = ["main", "build_parser", "example_batch"]

PROG = "knapsack-rl allocate"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``knapsack-rl allocate``."""
    p = Parser(
        prog=PROG,
        description=__doc__.split("\n\n")[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Methods: knapsack (exact optimum of the paper's value), paper (the reference "
        "procedure), bayes (posterior expected value, needs counts), uniform.",
    )
    p.add_argument("stats", nargs="?", help="statistics file (.csv or .jsonl)")
    b = p.add_mutually_exclusive_group()
    b.add_argument(
        "--budget", type=number_arg(int, "--budget"), help="total rollouts for the batch"
    )
    b.add_argument(
        "--per-prompt",
        type=number_arg(int, "--per-prompt"),
        help="rollouts per prompt on average (budget = N * prompts); "
        "in paper mode also the uniform n of prompts that are not valid",
    )
    for flag, dest, default, what in (
        ("--min", "min_rollouts", defaults.MIN_ROLLOUTS, "fewest"),
        ("--max", "max_rollouts", defaults.MAX_ROLLOUTS, "most"),
    ):
        p.add_argument(
            flag,
            dest=dest,
            type=number_arg(int, flag),
            default=default,
            help=f"{what} rollouts per prompt (default {default})",
        )
    p.add_argument("--method", choices=METHODS, default=defaults.METHOD, help="allocation method")
    p.add_argument("--cost-column", help="column with each prompt's per-rollout cost (e.g. tokens)")
    p.add_argument(
        "--token-budget",
        type=number_arg(float, "--token-budget", positive=True),
        help="total cost budget (with --cost-column)",
    )
    p.add_argument(
        "--prior",
        nargs=2,
        type=number_arg(float, "--prior", positive=True),
        metavar=("A0", "B0"),
        help="Beta prior for bayes (default: fitted to the file)",
    )
    p.add_argument("-o", "--output", help="output file (.csv or .jsonl); default: CSV on stdout")
    p.add_argument("--plot", help="also write a PNG of rollouts against success rate")
    p.add_argument(
        "--example",
        action="store_true",
        help="allocate a built-in batch of 256 prompts instead of a file",
    )
    return p


def example_batch(m: int = 256, seed: int = 0) -> PromptStats:
    """A built-in batch shaped like a late-training RL batch: ~35% solved (p = 1),
    ~15% unsolved (p = 0), the rest spread over (0, 1), observed with 16 rollouts."""
    rng = np.random.default_rng(seed)
    u = rng.random(m)
    p = np.where(u < 0.35, 1.0, np.where(u < 0.5, 0.0, rng.beta(0.8, 0.8, m)))
    attempts = np.full(m, 16.0)
    successes = np.round(p * attempts)
    return PromptStats(
        ids=[f"q{k:03d}" for k in range(m)],
        successes=successes,
        attempts=attempts,
        valid=attempts >= defaults.MIN_OBSERVATIONS,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``knapsack-rl allocate``; returns the exit code (0, 2 on bad input, 130 on Ctrl-C)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no output written", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def fail(msg: str) -> int:
        return _fail(PROG, msg)

    problem = _option_problem(args) or _output_problem(args)
    if problem:
        return fail(problem)
    try:
        stats = example_batch() if args.example else read_stats(args.stats, args.cost_column)
    except StatsError as e:
        return fail(str(e))
    source = "built-in example" if args.example else args.stats
    m = len(stats)
    if stats.p is not None and args.method == "bayes":
        return fail(f"{source}: method bayes needs columns 'successes' and 'attempts', not 'p'")
    if args.token_budget is None:
        budget = {"budget": args.budget, "rollouts_per_prompt": args.per_prompt}
    else:
        budget = {"token_budget": args.token_budget}
    try:
        allocator = Allocator(
            method=args.method,
            min_rollouts=args.min_rollouts,
            max_rollouts=args.max_rollouts,
        )
        if args.prior is not None:
            stats = stats.replace(prior=tuple(args.prior))
        result = allocator.allocate(stats, **budget)
    except ValueError as e:
        return fail(f"{source}: {e}")

    columns = {
        "id": stats.ids,
        "rollouts": result.rollouts.tolist(),
        "p": result.p.tolist(),
        "value": result.value.tolist(),
    }
    if stats.cost is not None:
        columns["cost"] = stats.cost.tolist()
    try:
        text = write_table(columns, args.output)
    except OSError as e:
        return fail(f"cannot write {args.output}: {e.strerror or e}")
    if args.output is None:
        problem = write_stdout(text)
        if problem:
            return fail(problem)
    if args.plot:
        from knapsack_rl.reports.html import plot_allocation

        try:
            plot_allocation(
                result.p,
                result.rollouts,
                args.plot,
                label=args.method,
                uniform=float(result.rollouts.mean()),
                title=f"{args.method}: {int(result.rollouts.sum())} rollouts over {m} prompts",
            )
        except OSError as e:
            return fail(f"cannot write {args.plot}: {e.strerror or e}")
    print(_summary(args, result, m), file=sys.stderr)
    return 0


def _option_problem(args) -> str | None:
    """What is wrong with the options themselves (None: nothing)."""
    if (args.stats is None) == (not args.example):
        return "give a STATS file or --example (not both)"
    if (args.cost_column is None) != (args.token_budget is None):
        return "--cost-column and --token-budget go together"
    if args.token_budget is None and args.budget is None and args.per_prompt is None:
        return "one of --budget or --per-prompt (or --cost-column with --token-budget) is required"
    if args.token_budget is not None and (args.budget is not None or args.per_prompt is not None):
        return "give --token-budget or --budget/--per-prompt, not both"
    if args.min_rollouts > args.max_rollouts:
        return f"--min ({args.min_rollouts}) > --max ({args.max_rollouts})"
    if args.min_rollouts < 1:
        return f"--min must be >= 1, got {args.min_rollouts}"
    return None


def _output_problem(args) -> str | None:
    """What is wrong with ``-o`` and ``--plot`` (None: nothing)."""
    outputs = [(args.output, FORMATS), (args.plot, (".png",))]
    for out, kinds in outputs:
        if out is None:
            continue
        if Path(out).suffix.lower() not in kinds:
            return f"{out}: unsupported output type; use {' or '.join(kinds)}"
        if args.stats is not None and same_file(out, args.stats):
            return f"{out}: is the input file; choose another output"
        problem = check_output(out)
        if problem:
            return problem
    if args.output and args.plot and same_file(args.output, args.plot):
        return f"{args.plot}: -o and --plot name the same file"
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        return "--plot needs matplotlib (pip install knapsack-rl[plot])"
    return None


def _summary(args, result, m: int) -> str:
    """The one line printed to stderr after an allocation."""
    r = result.rollouts
    spent = f"{int(r.sum())} rollouts" + (f" (budget {result.budget})" if result.budget else "")
    if result.token_cost is not None:
        spent += f", cost {result.token_cost:g} of {args.token_budget:g}"
    bound = ""
    if result.upper_bound is not None and result.gap:
        bound = f", upper bound {result.upper_bound:.6g} (gap {100 * result.gap:.3g}%)"
    return (
        f"{PROG}: {m} prompts, {spent}, method {args.method}, objective {result.objective:.6g}"
        f"{bound}, rollouts min/mean/max {r.min()}/{r.mean():.2f}/{r.max()}, "
        f"{1000 * result.seconds:.2f} ms"
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
