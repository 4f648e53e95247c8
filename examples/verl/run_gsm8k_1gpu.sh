#!/usr/bin/env bash
# GRPO on GSM8K-style data with per-prompt rollout budgets, one GPU.
#
# You provide:
#   MODEL_PATH  a Hugging Face model folder or hub id (small: Qwen2.5-0.5B-Instruct)
#   DATA_DIR    train.parquet and test.parquet (examples/verl/prepare_gsm8k.py builds them)
# Extra arguments are verl/knapsack overrides, e.g. knapsack.method=knapsack (one-shot).
# Add --check to only check the settings (no Ray, no GPU).
set -euo pipefail
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-0.5B-Instruct}
DATA_DIR=${DATA_DIR:-$HOME/data/gsm8k}
source "$(dirname "$0")/common.sh"

python -m knapsack_rl.integrations.verl "${COMMON[@]}" \
    data.train_batch_size=64 \
    data.max_response_length=512 \
    actor_rollout_ref.actor.ppo_mini_batch_size=32 \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16 \
    actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.5 \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16 \
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=16 \
    trainer.logger='["console"]' \
    trainer.experiment_name=gsm8k_1gpu \
    trainer.n_gpus_per_node=1 \
    trainer.nnodes=1 \
    trainer.total_epochs=1 \
    "$@"
