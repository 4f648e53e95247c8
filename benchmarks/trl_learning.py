"""Does `rounds` learn more than uniform inside TRL's GRPOTrainer, at equal rollouts?

    python benchmarks/trl_learning.py                        # seeds 0,1,2; uniform and rounds
    python benchmarks/trl_learning.py --seeds 3,4,5 --out runs/trl_s345
    python benchmarks/trl_learning.py --summarise runs/trl runs/trl_s345

Each seed starts from the reference demo's warm-start of that seed (the tiny built-in
Llama after its supervised warm-start, reused from ``--demo-dirs`` or trained here) and
trains it with ``KnapsackGRPOTrainer`` on the demo's task (the same training pool and
held-out set), once per method, for ``--steps`` generation steps of 256 rollouts
(uniform: 32 prompts x 8; rounds: 64 prompts, a pilot of 2, the other 128 planned).
The TRL settings follow the demo's where TRL has them (learning rate, AdamW betas,
clip range, no KL, temperature, completion length); everything else is TRL's default.
Held-out avg@8 on the demo's 400 test prompts every ``--eval-every`` steps, with the
reference evaluator. Differences are paired by seed; the standard error is over seeds.
Writes ``OUT/seed{S}/{method}.json`` after each run (atomically) and ``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from knapsack_rl.atomic import atomic_write_text
from knapsack_rl.training.demo import DemoConfig, _mean_se, _warmstart, rollouts_to_reach

METHODS = ("uniform", "rounds")


def hf_tokenizer(chars: str):
    """A transformers tokenizer with the built-in CharTokenizer's ids (``<bos>`` prepended)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3}
    vocab.update({c: k + 4 for k, c in enumerate(chars)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
    )


def find_warmstart(seed: int, demo_dirs: list[str], out: Path) -> Path:
    """The demo's cached warm-start of ``seed``, or a new one trained into ``out``."""
    for d in demo_dirs:
        folder = Path(d) / f"seed{seed}" / "warmstart"
        if (folder / "warmstart.json").is_file():
            return folder
    return _warmstart(DemoConfig(progress=False), seed, out / f"seed{seed}", print)


def run_one(method: str, seed: int, warmstart: Path, a) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    from knapsack_rl.integrations.trl import KnapsackGRPOConfig, KnapsackGRPOTrainer
    from knapsack_rl.training.trainer import Trainer

    demo = DemoConfig(progress=False)
    tc = demo.train_config("uniform", seed).replace(
        model=str(warmstart), run_dir=str(a.out / f"seed{seed}" / f".ref-{method}"), threads=1
    )
    ref = Trainer(tc)  # the demo's task, pool, held-out set, reward and model (not trained here)
    torch.set_num_threads(a.threads)
    pool = ref.pool
    data = Dataset.from_dict(
        {
            "prompt": [e.prompt for e in pool],
            "answer": [e.answer for e in pool],
            "level": [int(e.level) for e in pool],
            "id": [f"p{i}" for i in range(len(pool))],
        }
    )
    budget = demo.prompts_per_step * demo.rollouts_per_prompt
    args = KnapsackGRPOConfig(
        output_dir=str(a.out / f"seed{seed}" / f".trl-{method}"),
        allocation_method=method,
        prior_group_column="level",
        prior_half_life=demo.prior_half_life,
        tracker="beta",
        tracker_kwargs={"discount": demo.discount},
        num_generations=demo.rollouts_per_prompt,
        per_device_train_batch_size=budget,
        min_rollouts=demo.min_rollouts,
        max_rollouts=demo.max_rollouts,
        max_completion_length=demo.max_new_tokens,
        temperature=demo.temperature,
        learning_rate=demo.lr,
        lr_scheduler_type="constant",
        adam_beta2=0.99,
        weight_decay=demo.weight_decay,
        max_grad_norm=demo.max_grad_norm,
        epsilon=demo.clip_eps_low,
        epsilon_high=demo.clip_eps_high,
        beta=0.0,
        remove_unused_columns=False,
        gradient_checkpointing=False,
        max_steps=a.steps,
        logging_steps=10**9,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
    )
    evals: list[dict] = []
    clock = {"train": 0.0, "t": None}

    def evaluate(step: int) -> None:
        ref.step_idx, ref.rollouts_total = step, step * budget
        ref.model.eval()
        ev = ref.evaluate()
        evals.append({k: v for k, v in ev.items() if isinstance(v, (int, float))})
        print(
            f"seed {seed} {method} step {step}: avg@8 {ev['avg@8']:.3f} greedy {ev['greedy']:.3f}",
            flush=True,
        )

    class Eval(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            clock["t"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            clock["train"] += time.perf_counter() - clock["t"]
            if state.global_step % a.eval_every == 0 or state.global_step == a.steps:
                evaluate(state.global_step)

    evaluate(0)
    trainer = KnapsackGRPOTrainer(
        model=ref.model,
        reward_funcs=ref.reward_fn,
        args=args,
        train_dataset=data,
        processing_class=hf_tokenizer(ref.tok.chars),
        callbacks=[Eval()],
    )
    trainer.train()
    hist = list(trainer.allocation_history)
    return {
        "method": method,
        "seed": seed,
        "steps": a.steps,
        "rollouts_per_step": budget,
        "train_seconds": clock["train"],
        "eval": evals,
        "prompts_per_step": float(np.mean([len(h["prompt_ids"]) for h in hist])),
    }


def summarise(out_dirs: list[Path], late: int = 3) -> dict:
    runs: dict[int, dict[str, dict]] = {}
    for d in out_dirs:
        for f in sorted(Path(d).glob("seed*/*.json")):
            r = json.loads(f.read_text())
            runs.setdefault(int(r["seed"]), {})[r["method"]] = r
    seeds = sorted(s for s, m in runs.items() if all(x in m for x in METHODS))
    rows = []
    for s in seeds:
        u, r = runs[s]["uniform"], runs[s]["rounds"]
        acc = lambda run, i: run["eval"][i]["avg@8"]  # noqa: E731
        tail = lambda run: float(np.mean([e["avg@8"] for e in run["eval"][-late:]]))  # noqa: E731
        reach = rollouts_to_reach(r["eval"], "avg@8", acc(u, -1))
        total = u["eval"][-1]["rollouts_total"]
        rows.append(
            {
                "seed": s,
                "start": acc(u, 0),
                "uniform": acc(u, -1),
                "rounds": acc(r, -1),
                "final_diff": acc(r, -1) - acc(u, -1),
                "late_diff": tail(r) - tail(u),
                "rollouts_to_uniform_final": None if reach is None else reach / total,
                "wall_per_rollout_vs_uniform": r["train_seconds"] / u["train_seconds"],
            }
        )
    out = {"seeds": seeds, "rows": rows}
    for key in ("final_diff", "late_diff", "wall_per_rollout_vs_uniform"):
        m, se = _mean_se([row[key] for row in rows])
        out[key] = {"mean": m, "se": se}
    out["seeds_above"] = sum(row["final_diff"] > 0 for row in rows)
    return out


def print_summary(s: dict) -> None:
    print(
        "| seed | start | uniform | rounds | rounds - uniform (final) | (late) | rollouts to uniform's final | wall per rollout |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in s["rows"]:
        reach = (
            "never"
            if r["rollouts_to_uniform_final"] is None
            else f"{r['rollouts_to_uniform_final']:.2f}x"
        )
        print(
            f"| {r['seed']} | {r['start']:.3f} | {r['uniform']:.3f} | {r['rounds']:.3f} | "
            f"{r['final_diff']:+.3f} | {r['late_diff']:+.3f} | {reach} | {r['wall_per_rollout_vs_uniform']:.2f}x |"
        )
    f, la, w = s["final_diff"], s["late_diff"], s["wall_per_rollout_vs_uniform"]
    print(
        f"| mean | | | | **{f['mean']:+.3f} +- {f['se']:.3f}** ({s['seeds_above']} of {len(s['rows'])} above) "
        f"| {la['mean']:+.3f} +- {la['se']:.3f} | | {w['mean']:.2f}x |"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("runs/trl"))
    ap.add_argument(
        "--demo-dirs",
        default="runs/demo,runs/demo_s345,runs/demo_s678,runs/demo_s9,runs/demo_s12",
        help="demo report folders whose seed*/warmstart to reuse (comma list)",
    )
    ap.add_argument("--summarise", nargs="*", type=Path, help="only summarise these folders")
    a = ap.parse_args(argv)
    if a.summarise is not None:
        s = summarise(a.summarise or [a.out])
        print_summary(s)
        return 0
    try:
        seeds = [int(x) for x in a.seeds.split(",")]
    except ValueError:
        print(
            f"trl_learning: error: --seeds: not a comma list of integers: {a.seeds!r}",
            file=sys.stderr,
        )
        return 2
    methods = a.methods.split(",")
    for m in methods:
        if m not in METHODS:
            print(f"trl_learning: error: --methods: unknown {m!r}", file=sys.stderr)
            return 2
    for seed in seeds:
        ws = find_warmstart(seed, a.demo_dirs.split(","), a.out)
        for m in methods:
            res = run_one(m, seed, ws, a)
            path = a.out / f"seed{seed}" / f"{m}.json"
            atomic_write_text(path, json.dumps(res, indent=1))
            print(
                f"seed {seed} {m}: {a.steps} steps, {res['train_seconds']:.0f}s training",
                flush=True,
            )
    s = summarise([a.out])
    atomic_write_text(a.out / "summary.json", json.dumps(s, indent=1))
    if s["rows"]:
        print_summary(s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
