"""``knapsack-rl testtime``: sampling rules for evaluation, compared on one pool of samples.

    knapsack-rl testtime [--cache FILE | --model builtin|PATH [model options]]
        [--objective majority|coverage|best_of_n] [--budgets 1,2,4,8,16] [--replays 20]
        [--methods uniform,adaptive-consistency,esc,knapsack] [-o DIR]

With ``--cache`` it replays a JSONL file of samples (see docs/testtime.md). Otherwise it
first samples ``--pool`` answers per question from the model into ``DIR/samples.jsonl``
(resumable: a rerun with the same settings picks up where it stopped), then replays
that. Prints a table and writes ``results.csv``, ``summary.json`` and ``index.html`` to
DIR, every file atomically. Bad options or a bad cache: one line naming the problem,
exit code 2.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from knapsack_rl.cliutil import Parser, fail, number_arg
from knapsack_rl.io import InputError
from knapsack_rl.testtime.compare import METHODS, compare, summarise
from knapsack_rl.testtime.planner import OBJECTIVES, SELECTORS
from knapsack_rl.testtime.replay import read_cache

__all__ = ["build_parser", "main"]

PROG = "knapsack-rl testtime"


def _floats(text: str) -> list[float]:
    try:
        out = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a comma list of numbers, got {text!r}"
        ) from None
    if not out or any(not (0 < x < 1e6) for x in out):
        raise argparse.ArgumentTypeError(f"budgets must be numbers > 0, got {text!r}")
    return out


# (group, flag, type, default, help) of the number options
_NUMBERS = (
    ("samples", "--questions", int, 200, "test questions to sample"),
    ("samples", "--pool", int, 64, "samples cached per question"),
    ("samples", "--sft-steps", int, 1000, "built-in model: supervised warm-start steps"),
    ("samples", "--temperature", float, 1.0, "sampling temperature"),
    ("comparison", "--reference", float, 16.0, "the uniform budget the 'vs' columns compare with"),
    ("comparison", "--replays", int, 20, "seeded sample orders"),
    ("comparison", "--max-samples", int, 64, "most samples per question, every rule (<= the pool)"),
    ("comparison", "--seed", int, 0, "first replay seed; also the sampling seed"),
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``knapsack-rl testtime``."""
    p = Parser(
        prog=PROG,
        description="Spend an evaluation's sampling budget across questions: uniform,\n"
        "Adaptive-Consistency, ESC and the knapsack planner on one pool of samples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="See docs/testtime.md for the planner, the cache format and the estimators.",
    )
    src, run = p.add_argument_group("samples"), p.add_argument_group("comparison")
    groups = {"samples": src, "comparison": run}
    src.add_argument("--cache", metavar="FILE", help="replay this JSONL cache of samples")
    src.add_argument(
        "--model",
        default="builtin",
        help="sample from: 'builtin' (warm-started tiny model), a Hugging Face folder or a .gguf",
    )
    src.add_argument("--gguf-file", metavar="NAME", help="GGUF file inside --model (a folder)")
    src.add_argument(
        "--task", choices=("arithmetic", "reasoning_gym"), default="arithmetic", help="questions"
    )
    src.add_argument("--rg-name", default="basic_arithmetic", help="reasoning-gym generator")
    run.add_argument("--objective", choices=OBJECTIVES, default="majority")
    run.add_argument(
        "--selector",
        choices=SELECTORS,
        default="best",
        help="best_of_n: the best-scored sample's answer, or Best-of-Majority (bom)",
    )
    run.add_argument(
        "--budgets",
        type=_floats,
        default=[1, 2, 4, 6.4, 8, 16],
        metavar="LIST",
        help="samples per question for uniform and knapsack (1,2,4,6.4,8,16)",
    )
    run.add_argument(
        "--methods", default=",".join(METHODS), metavar="LIST", help="comma list of rules"
    )
    for group, flag, kind, default, help_ in _NUMBERS:
        groups[group].add_argument(
            flag,
            type=number_arg(kind, flag),
            default=default,
            metavar="N" if kind is int else "X",
            help=f"{help_} ({default:g})",
        )
    p.add_argument("-o", "--out", default="testtime-report", metavar="DIR", help="output folder")
    p.add_argument("--no-plots", action="store_true", help="report without the PNG plot")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return p


def _sample_pool(args, out: Path, log) -> Path:
    """Sample ``--pool`` answers per question into ``out/samples.jsonl`` (resumable)."""
    from knapsack_rl.testtime.sampling import ModelSampler, SamplerConfig, write_cache

    cfg = SamplerConfig(
        model=args.model,
        gguf_file=args.gguf_file,
        task=args.task,
        rg_name=args.rg_name,
        questions=args.questions,
        temperature=args.temperature,
        seed=args.seed,
        sft_steps=args.sft_steps,
        progress=not args.quiet,
    ).validate()
    path = out / "samples.jsonl"
    settings = out / "sampling.json"
    what = {k: v for k, v in cfg.to_dict().items() if k != "progress"}
    wanted = {"sampler": what, "pool": args.pool}
    if path.exists() or Path(str(path) + ".partial").exists():
        if settings.exists() and json.loads(settings.read_text()) != json.loads(json.dumps(wanted)):
            raise ValueError(
                f"{path} was sampled with other settings ({settings}); use another -o or remove it"
            )
    if path.exists():
        log(f"reusing {path}")
        return path
    from knapsack_rl.atomic import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(settings, json.dumps(wanted, indent=2, default=str) + "\n")
    log(f"sampling {args.pool} answers to each of {args.questions} questions from {args.model}")
    sampler = ModelSampler(cfg)
    stats = write_cache(path, sampler, per_question=args.pool, progress=not args.quiet)
    log(f"sampled in {stats.get('seconds', 0):.1f} s: {path}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``knapsack-rl testtime``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    out = Path(args.out)

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        for flag, v in (("--replays", args.replays), ("--max-samples", args.max_samples)):
            if v < 1:
                raise ValueError(f"{flag} must be >= 1, got {v}")
        if args.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {args.seed}")
        bad = [m for m in methods if m not in METHODS]
        if bad or not methods:
            raise ValueError(
                f"--methods: unknown rule {bad[0] if bad else ''!r}; "
                f"expected some of {','.join(METHODS)}"
            )
        if max(args.budgets + [args.reference]) > args.max_samples:
            raise ValueError(
                f"--budgets and --reference must be <= --max-samples ({args.max_samples})"
            )
        if args.cache is None:
            if args.pool < args.max_samples:
                raise ValueError(
                    f"--pool ({args.pool}) must be >= --max-samples ({args.max_samples})"
                )
            cache = _sample_pool(args, out, log)
        else:
            cache = Path(args.cache)
        pool = read_cache(cache)
        pool.check(args.max_samples)
        log(f"{len(pool.ids)} questions, {int(pool.sizes.sum())} samples in {cache}")
        t0 = time.perf_counter()
        rows = compare(
            pool,
            args.objective,
            budgets=args.budgets,
            replays=args.replays,
            methods=methods,
            max_samples=args.max_samples,
            seed=args.seed,
            reference=args.reference,
            progress=log,
            selector=args.selector,
        )
    except (InputError, ValueError) as e:
        return fail(PROG, str(e))
    except ImportError as e:
        return fail(
            PROG, f"sampling from a model needs torch ({e}); pip install 'knapsack-rl[train]'"
        )
    except KeyboardInterrupt:
        return fail(PROG, "interrupted (the samples cached so far are kept; rerun to resume)")
    from knapsack_rl.reports.testtime import summary_table, write_report

    summary = {
        "objective": args.objective,
        "cache": str(cache),
        "questions": len(pool.ids),
        "replays": args.replays,
        "pool_pass@1": float(pool.pass_rates().mean()),  # what the rows' estimates aim at
        "seconds": time.perf_counter() - t0,
        **summarise(rows, args.reference),
    }
    print(summary_table(rows))
    match = summary.get("knapsack_matches_at")
    if match:
        print(
            f"knapsack is within one standard error of uniform@{args.reference:g} at "
            f"{match['samples']:.2f} samples per question ({match['share_of_reference']:.2f}x)"
        )
    command = "knapsack-rl testtime " + " ".join(shlex.quote(a) for a in argv)
    try:
        page = write_report(
            rows,
            summary,
            out,
            title=f"Test-time allocation: {args.objective}",
            command=command,
            notes=[f"{len(pool.ids)} questions from {cache}; {args.replays} replays."],
            plots=not args.no_plots,
        )
    except OSError as e:
        return fail(PROG, f"cannot write the report to {out}: {e}")
    log(f"report: {page}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
