#!/usr/bin/env bash
# One-GPU check that knapsack-rl's verl trainer trains (about 5-8 minutes).
# Needs: knapsack-rl[verl], vllm and ray installed; MODEL_PATH set to a small chat model.
set -euo pipefail
cd "$(dirname "$0")/../.."
timeout 480 python examples/verl/gpu_check.py --out "${OUT:-/tmp/knapsack_verl_check}" "$@"
