"""Planners: what to generate next in a step, from the evidence so far.

Every planner has one shape (:class:`Planner`): ``start``, ``record``, ``finish`` and
a state dict. :mod:`knapsack_rl.planning.session` puts one of them behind one
allocation config for the reference trainer, TRL and verl.
"""

from knapsack_rl.planning.base import Planner, positions, run_batched, run_pipelined
from knapsack_rl.planning.oneshot import OneShotPlanner
from knapsack_rl.planning.rounds import RoundPlanner
from knapsack_rl.planning.stream import StreamPlanner

__all__ = [
    "OneShotPlanner",
    "Planner",
    "RoundPlanner",
    "StreamPlanner",
    "positions",
    "run_batched",
    "run_pipelined",
]
