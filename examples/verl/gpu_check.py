"""Does knapsack-rl's verl trainer train? A GPU check that runs in under 8 minutes.

Needs one GPU and a Python environment with ``knapsack-rl[verl]``, vLLM and Ray,
and a small chat model (``MODEL_PATH``, e.g. a local Qwen2.5-0.5B-Instruct folder).
It writes synthetic GSM8K-style arithmetic data (no download), then:

1. trains 3 GRPO steps with per-prompt budgets, saving a checkpoint at step 3;
2. resumes from it for steps 4 and 5 (the tracker must be restored);
3. reads verl's file logger and checks, step by step: the knapsack metrics are
   logged, the mean group size is ``rollout.n`` (the per-step total held), groups
   differ in size once the tracker has data, the actor was updated (finite,
   non-zero gradient norm), rewards were scored, and the tracker file exists.

    MODEL_PATH=/models/Qwen2.5-0.5B-Instruct python examples/verl/gpu_check.py --out /tmp/kcheck

Exit status 0 means every check passed; the last line says which failed otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
M, N = 32, 8  # prompts per step, rollouts per prompt on average


def write_data(out: str, n_train: int = 512, n_test: int = 32, seed: int = 0) -> str:
    sys.path.insert(0, HERE)
    import prepare_gsm8k as pg

    rng = random.Random(seed)

    def rec():
        a, b, c = rng.randint(2, 60), rng.randint(2, 60), rng.randint(2, 9)
        kind = rng.random()
        if kind < 0.4:
            return {"question": f"What is {a} + {b}?", "answer": f"#### {a + b}"}
        if kind < 0.8:
            return {"question": f"What is {a} * {c} - {b}?", "answer": f"#### {a * c - b}"}
        return {
            "question": f"What is ({a} + {b}) * {c} * {c}?",
            "answer": f"#### {(a + b) * c * c}",
        }

    data = os.path.join(out, "data")
    os.makedirs(data, exist_ok=True)
    pg.write_parquet(
        pg.make_rows([rec() for _ in range(n_train)], "train"), f"{data}/train.parquet"
    )
    pg.write_parquet(pg.make_rows([rec() for _ in range(n_test)], "test"), f"{data}/test.parquet")
    return data


def overrides(model: str, data: str, out: str, steps: int, method: str = "rounds") -> list[str]:
    """verl + knapsack overrides of the check run (also composed by the CPU tests)."""
    return [
        "algorithm.adv_estimator=grpo",
        "algorithm.use_kl_in_reward=False",
        f"data.train_files={data}/train.parquet",
        f"data.val_files={data}/test.parquet",
        f"data.train_batch_size={M}",
        "data.max_prompt_length=256",
        "data.max_response_length=256",
        "data.filter_overlong_prompts=True",
        "data.dataloader_num_workers=0",
        f"actor_rollout_ref.model.path={model}",
        "actor_rollout_ref.model.use_remove_padding=True",
        "actor_rollout_ref.model.enable_gradient_checkpointing=True",
        "actor_rollout_ref.actor.optim.lr=1e-6",
        "actor_rollout_ref.actor.ppo_mini_batch_size=16",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=32",
        "actor_rollout_ref.actor.use_kl_loss=False",
        "actor_rollout_ref.actor.entropy_coeff=0",
        "actor_rollout_ref.rollout.name=vllm",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.4",
        f"actor_rollout_ref.rollout.n={N}",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=32",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=32",
        "trainer.critic_warmup=0",
        "trainer.logger=[console,file]",
        "trainer.project_name=knapsack_gpu_check",
        "trainer.experiment_name=check",
        f"trainer.default_local_dir={out}/ckpt",
        "trainer.n_gpus_per_node=1",
        "trainer.nnodes=1",
        "trainer.val_before_train=False",
        "trainer.test_freq=-1",
        "trainer.save_freq=3",
        f"trainer.total_training_steps={steps}",
        "trainer.resume_mode=auto",
        f"knapsack.method={method}",
        "knapsack.tracker=beta",
        "knapsack.min_rollouts=2",
        "knapsack.max_rollouts=32",
    ]


def run(args: list[str], out: str, tag: str, budget_s: float) -> str:
    # verl's file logger truncates its file, so each run gets its own
    env = dict(os.environ, VERL_FILE_LOGGER_PATH=os.path.join(out, f"{tag}.jsonl"))
    env.setdefault("VERL_USE_EXTERNAL_MODULES", "knapsack_rl.integrations.verl")
    log = os.path.join(out, f"{tag}.log")
    with open(log, "w") as f:
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "knapsack_rl.integrations.verl",
                *args,
                "++ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH="
                + env["VERL_FILE_LOGGER_PATH"],
            ],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=budget_s,
        )
    text = open(log).read()
    if p.returncode != 0:
        print(text[-4000:])
        raise SystemExit(f"FAIL: {tag} run exited {p.returncode} (log: {log})")
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description="knapsack-rl verl GPU check")
    ap.add_argument("--model", default=os.environ.get("MODEL_PATH"))
    ap.add_argument("--out", default="/tmp/knapsack_verl_check")
    ap.add_argument("--budget-s", type=float, default=450.0, help="wall-clock limit for both runs")
    ap.add_argument(
        "--method", default="rounds", help="knapsack.method (rounds: pilot, then the rest)"
    )
    a = ap.parse_args()
    if not a.model:
        raise SystemExit("set MODEL_PATH or --model to a small chat model")
    t0 = time.time()
    os.makedirs(a.out, exist_ok=True)
    for stale in ("first.jsonl", "resume.jsonl"):
        if os.path.exists(os.path.join(a.out, stale)):
            os.remove(os.path.join(a.out, stale))
    data = write_data(a.out)
    run(overrides(a.model, data, a.out, 3, a.method), a.out, "first", a.budget_s)
    first = {int(json.loads(x)["step"]) for x in open(os.path.join(a.out, "first.jsonl"))}
    left = a.budget_s - (time.time() - t0)
    text = run(overrides(a.model, data, a.out, 5, a.method), a.out, "resume", max(left, 30))
    rows = [
        json.loads(x) for t in ("first", "resume") for x in open(os.path.join(a.out, f"{t}.jsonl"))
    ]
    steps = {
        int(r["step"]): r["data"] for r in rows if "knapsack/rollouts_per_prompt/mean" in r["data"]
    }

    failures = []

    def check(ok: bool, what: str) -> None:
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    check(first == {1, 2, 3}, f"first run logged steps 1-3 (got {sorted(first)})")
    check(sorted(steps) == [1, 2, 3, 4, 5], f"knapsack metrics at steps 1-5 (got {sorted(steps)})")
    for k, m in sorted(steps.items()):
        check(
            m["knapsack/rollouts"] == M * N,
            f"step {k}: rollouts = train_batch_size x rollout.n = {M * N}",
        )
        if a.method == "rounds":
            check("knapsack/pilot_seconds" in m, f"step {k}: generated in two rounds")
        g = m.get("actor/grad_norm", float("nan"))
        check(math.isfinite(g) and g > 0, f"step {k}: actor updated (grad_norm {g})")
        check(
            "critic/score/mean" in m,
            f"step {k}: rewards scored (score {m.get('critic/score/mean')})",
        )
        check(
            0.0 <= m["knapsack/effective_gradient_ratio"] <= 1.0,
            f"step {k}: effective_gradient_ratio logged",
        )
    later = [m for k, m in steps.items() if k >= 2]
    check(
        any(
            m["knapsack/rollouts_per_prompt/max"] > m["knapsack/rollouts_per_prompt/min"]
            for m in later
        ),
        "groups differ in size once the tracker has data",
    )
    check(
        os.path.exists(os.path.join(a.out, "ckpt", "global_step_3", "knapsack_tracker.npz")),
        "tracker saved",
    )
    check("tracker starts empty" not in text, "tracker restored on resume")
    print(f"{time.time() - t0:.0f} s")
    if failures:
        raise SystemExit(f"FAIL: {len(failures)} check(s): {failures[0]}")
    print(
        "PASS: knapsack-rl's verl trainer trains, keeps the per-step total and resumes its tracker"
    )


if __name__ == "__main__":
    main()
