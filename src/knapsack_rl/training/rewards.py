"""Reward functions for training (TRL convention ``f(prompts, completions, **kwargs) -> list[float]``).

The functions live in :mod:`knapsack_rl.tasks` (pure Python, shared with the
TRL integration); this module re-exports them and resolves a reward by name.
"""

from __future__ import annotations

from collections.abc import Callable

from knapsack_rl.tasks import check_rewards, exact_match_reward, math_verify_reward

__all__ = ["REWARDS", "resolve_reward", "check_rewards", "exact_match_reward", "math_verify_reward"]

REWARDS: dict[str, Callable] = {
    "exact_match": exact_match_reward,
    "math_verify": math_verify_reward,
}


def resolve_reward(name: str, task) -> Callable:
    """``auto`` -> the task's own reward; else a function from :data:`REWARDS`."""
    if name == "auto":
        return task.reward
    if name not in REWARDS:
        raise ValueError(f"reward: unknown {name!r}; expected auto or one of {', '.join(REWARDS)}")
    return REWARDS[name]
