"""``knapsack-rl allocate``: rollouts per prompt for a file of statistics.

    knapsack-rl allocate STATS (--budget B | --per-prompt N) [--min 2] [--max 128]
        [--method knapsack|paper|bayes|uniform] [--cost-column COL --token-budget T]
        [--prior A B] [-o OUT] [--plot PNG]

STATS is .csv or .jsonl with ``id`` and ``p``, or ``successes`` and ``attempts``
(optional ``valid`` for ``paper``; with counts and no ``valid`` column a row is
valid when attempts >= 8). OUT (.csv/.jsonl) gets ``id, rollouts, p, value``;
without ``-o`` the CSV goes to stdout. A summary goes to stderr. Bad input: one
line naming file, line and field, exit code 2, and no output file written.
``--example`` allocates a built-in batch of 256 prompts instead of a file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from knapsack_rl.allocation import METHODS, Allocator
from knapsack_rl.allocation.stats import FORMATS, PromptStats, StatsError, read_stats, write_table

__all__ = ["main", "build_parser", "example_batch"]

PROG = "knapsack-rl allocate"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_arg(name: str):
    def parse(s: str) -> int:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {s!r}") from None
        if not v.is_integer():
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {s!r}")
        return int(v)

    return parse


def _pos_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {s!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``knapsack-rl allocate``."""
    p = _Parser(
        prog=PROG,
        description=__doc__.split("\n\n")[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Methods: knapsack (exact optimum of the paper's value), paper (the reference "
        "procedure), bayes (posterior expected value, needs counts), uniform.",
    )
    p.add_argument("stats", nargs="?", help="statistics file (.csv or .jsonl)")
    b = p.add_mutually_exclusive_group()
    b.add_argument("--budget", type=_int_arg("--budget"), help="total rollouts for the batch")
    b.add_argument(
        "--per-prompt",
        type=_int_arg("--per-prompt"),
        help="rollouts per prompt on average (budget = N * prompts); "
        "in paper mode also the uniform n of prompts that are not valid",
    )
    p.add_argument(
        "--min",
        dest="min_rollouts",
        type=_int_arg("--min"),
        default=2,
        help="fewest rollouts per prompt (default 2)",
    )
    p.add_argument(
        "--max",
        dest="max_rollouts",
        type=_int_arg("--max"),
        default=128,
        help="most rollouts per prompt (default 128)",
    )
    p.add_argument("--method", choices=METHODS, default="knapsack", help="allocation method")
    p.add_argument("--cost-column", help="column with each prompt's per-rollout cost (e.g. tokens)")
    p.add_argument("--token-budget", type=_pos_float, help="total cost budget (with --cost-column)")
    p.add_argument(
        "--prior",
        nargs=2,
        type=_pos_float,
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
        p=None,
        successes=successes,
        attempts=attempts,
        valid=None,
        cost=None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``knapsack-rl allocate``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)

    def fail(msg: str) -> int:
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2

    if (args.stats is None) == (not args.example):
        return fail("give a STATS file or --example (not both)")
    if (args.cost_column is None) != (args.token_budget is None):
        return fail("--cost-column and --token-budget go together")
    if args.token_budget is None and args.budget is None and args.per_prompt is None:
        return fail(
            "one of --budget or --per-prompt (or --cost-column with --token-budget) is required"
        )
    if args.token_budget is not None and (args.budget is not None or args.per_prompt is not None):
        return fail("give --token-budget or --budget/--per-prompt, not both")
    if args.min_rollouts > args.max_rollouts:
        return fail(f"--min ({args.min_rollouts}) > --max ({args.max_rollouts})")
    if args.min_rollouts < 1:
        return fail(f"--min must be >= 1, got {args.min_rollouts}")
    for out, kinds in ((args.output, FORMATS), (args.plot, (".png",))):
        if out is not None and Path(out).suffix.lower() not in kinds:
            return fail(f"{out}: unsupported output type; use {' or '.join(kinds)}")
    try:
        stats = example_batch() if args.example else read_stats(args.stats, args.cost_column)
    except StatsError as e:
        return fail(str(e))
    source = "built-in example" if args.example else args.stats
    m = len(stats)

    kwargs: dict = {}
    if stats.p is not None:
        if args.method == "bayes":
            return fail(f"{source}: method bayes needs columns 'successes' and 'attempts', not 'p'")
        kwargs["p"] = stats.p
    else:
        kwargs["successes"], kwargs["attempts"] = stats.successes, stats.attempts
    if args.method == "paper":
        if stats.valid is not None:
            kwargs["valid"] = stats.valid
        elif stats.attempts is not None:
            kwargs["valid"] = stats.attempts >= 8
        if stats.p is None:  # paper mode works on p_hat
            kwargs["p"] = np.where(
                stats.attempts > 0, stats.successes / np.maximum(stats.attempts, 1), 0.0
            )
            del kwargs["successes"], kwargs["attempts"]
    if args.token_budget is not None:
        kwargs["cost"], kwargs["token_budget"] = stats.cost, args.token_budget
    else:
        kwargs["budget"], kwargs["per_prompt"] = args.budget, args.per_prompt
    if args.prior is not None:
        kwargs["prior"] = tuple(args.prior)
    try:
        allocator = Allocator(
            method=args.method, min_rollouts=args.min_rollouts, max_rollouts=args.max_rollouts
        )
        result = allocator.allocate(**kwargs)
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
    text = write_table(columns, args.output)
    if args.output is None:
        sys.stdout.write(text)
    if args.plot:
        from knapsack_rl.reports.html import plot_allocation

        plot_allocation(
            result.p,
            result.rollouts,
            args.plot,
            label=args.method,
            uniform=float(result.rollouts.mean()),
            title=f"{args.method}: {int(result.rollouts.sum())} rollouts over {m} prompts",
        )
    r = result.rollouts
    spent = f"{int(r.sum())} rollouts" + (f" (budget {result.budget})" if result.budget else "")
    if result.token_cost is not None:
        spent += f", cost {result.token_cost:g} of {args.token_budget:g}"
    bound = ""
    if result.upper_bound is not None and result.gap:
        bound = f", upper bound {result.upper_bound:.6g} (gap {100 * result.gap:.3g}%)"
    print(
        f"{PROG}: {m} prompts, {spent}, method {args.method}, objective {result.objective:.6g}"
        f"{bound}, rollouts min/mean/max {r.min()}/{r.mean():.2f}/{r.max()}, "
        f"{1000 * result.seconds:.2f} ms",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
