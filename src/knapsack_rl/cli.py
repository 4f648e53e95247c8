"""The ``knapsack-rl`` command: ``allocate``, ``simulate``, ``train``, ``testtime``, ``demo``.

Each subcommand lives with its module and is imported only when used, so
``knapsack-rl allocate`` never imports torch. Errors the user can fix print one
line ``knapsack-rl: error: ...`` to stderr and exit with code 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

_SUBCOMMANDS = {
    "allocate": (
        "knapsack_rl.allocation.cli",
        "main",
        "allocate rollouts for a file of prompt statistics",
    ),
    "simulate": (
        "knapsack_rl.simulation.cli",
        "main",
        "compare allocation strategies in a simulator",
    ),
    "train": (
        "knapsack_rl.training.cli",
        "train_main",
        "GRPO training with per-prompt rollout budgets",
    ),
    "testtime": (
        "knapsack_rl.testtime.cli",
        "main",
        "spend an evaluation's samples across questions (majority, coverage)",
    ),
    "demo": (
        "knapsack_rl.training.cli",
        "demo_main",
        "uniform vs knapsack on the built-in task, with a report",
    ),
}

_USAGE = """usage: knapsack-rl [-h] [--version] {%s} ...

Per-prompt rollout budgets for GRPO-style RL.

subcommands:
%s

Run 'knapsack-rl SUBCOMMAND --help' for a subcommand's options."""


def _usage() -> str:
    lines = "\n".join(f"  {name:<10} {doc}" for name, (_, _, doc) in _SUBCOMMANDS.items())
    return _USAGE % (",".join(_SUBCOMMANDS), lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        from knapsack_rl import __version__

        print(f"knapsack-rl {__version__}")
        return 0
    name = args[0]
    if name not in _SUBCOMMANDS:
        print(_usage(), file=sys.stderr)
        print(f"knapsack-rl: error: unknown subcommand {name!r}", file=sys.stderr)
        return 2
    import importlib

    module, func, _ = _SUBCOMMANDS[name]
    try:
        entry = getattr(importlib.import_module(module), func)
    except ImportError as e:
        print(
            f"knapsack-rl: error: '{name}' needs optional dependencies that are not installed "
            f"({e}); install with: pip install 'knapsack-rl[train]'",
            file=sys.stderr,
        )
        return 2
    try:
        return int(entry(args[1:]) or 0)
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
