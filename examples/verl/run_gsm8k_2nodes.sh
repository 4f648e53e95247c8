#!/usr/bin/env bash
# The same GRPO run on 2 nodes x 8 GPUs. Run it on the head node of a Ray cluster
# (docs/verl.md, "Ray cluster"): every node needs the same Python environment with
# knapsack-rl[verl] and vLLM, and the model, data and checkpoint folder at the same paths.
#
# The launcher passes VERL_USE_EXTERNAL_MODULES=knapsack_rl.integrations.verl to every
# Ray worker through ray_kwargs.ray_init.runtime_env, so no node needs it exported.
set -euo pipefail
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-7B-Instruct}
DATA_DIR=${DATA_DIR:-$HOME/data/gsm8k}
CKPT_DIR=${CKPT_DIR:-/shared/checkpoints/knapsack_gsm8k_2nodes}  # storage every node sees
source "$(dirname "$0")/common.sh"

python -m knapsack_rl.integrations.verl "${COMMON[@]}" \
    data.train_batch_size=512 \
    data.max_response_length=1024 \
    actor_rollout_ref.actor.ppo_mini_batch_size=128 \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16 \
    actor_rollout_ref.rollout.tensor_model_parallel_size=2 \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.6 \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=32 \
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=32 \
    actor_rollout_ref.ref.fsdp_config.param_offload=True \
    trainer.logger='["console","wandb"]' \
    trainer.experiment_name=gsm8k_2nodes \
    trainer.default_local_dir="$CKPT_DIR" \
    trainer.n_gpus_per_node=8 \
    trainer.nnodes=2 \
    trainer.total_epochs=15 \
    "$@"
