"""Allocation simulator: a documented model of GRPO learning dynamics on a
population of prompts, and every rollout strategy run at the same budget.

    from knapsack_rl.simulation import preset, run
    result = run(preset("small"), strategies="all", steps=200, seed=0)
    for row in result.summary_rows():
        print(row)

numpy only (matplotlib for the report of ``knapsack-rl simulate``).
"""

from knapsack_rl.simulation.model import (
    PRESETS,
    InitRates,
    ModelConfig,
    Population,
    load_initial_rates,
    preset,
)
from knapsack_rl.simulation.runner import SimResult, Trace, paired_differences, run, run_strategy
from knapsack_rl.simulation.sequential import (
    SEQUENTIAL_STRATEGIES,
    PilotCommitStrategy,
    ReinforceAdaStrategy,
    RoundsStrategy,
)
from knapsack_rl.simulation.strategies import (
    DEFAULT_STRATEGIES,
    STRATEGIES,
    Env,
    StepOutcome,
    Strategy,
    make_strategy,
)

STRATEGIES.update(SEQUENTIAL_STRATEGIES)  # registered here: sequential imports strategies

__all__ = [
    "PRESETS",
    "InitRates",
    "ModelConfig",
    "Population",
    "load_initial_rates",
    "preset",
    "SimResult",
    "Trace",
    "run",
    "run_strategy",
    "paired_differences",
    "DEFAULT_STRATEGIES",
    "STRATEGIES",
    "Env",
    "StepOutcome",
    "Strategy",
    "make_strategy",
    "SEQUENTIAL_STRATEGIES",
    "PilotCommitStrategy",
    "ReinforceAdaStrategy",
    "RoundsStrategy",
]
