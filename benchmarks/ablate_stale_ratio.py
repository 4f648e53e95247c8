"""Ablation: ``pipelined`` without the behaviour log-probs of its stale pilots.

    python benchmarks/ablate_stale_ratio.py --seeds 0,1,2 --out runs/ablate_a [demo flags]

Runs ``knapsack-rl demo --methods pipelined`` with one change: the stale pilot rollouts'
PPO ratio is taken against their current log-probs (ratio 1, as for fresh rollouts)
instead of the behaviour policy's, so the clip never acts on them. Pair the result
with uniform runs of the same warm-starts (``benchmarks/paired_runs.py``) to see how
much of ``pipelined``'s gain comes from that ratio. Not a method: a measurement.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from knapsack_rl.training import trainer  # noqa: E402
from knapsack_rl.training.cli import demo_main  # noqa: E402


def main() -> int:
    trainer._stale_logprobs = lambda *args, **kwargs: None  # every ratio against itself: 1
    return demo_main(["--methods", "pipelined", "--threads", "1", *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
