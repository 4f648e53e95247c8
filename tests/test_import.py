"""The core must import without torch (and quickly)."""

from __future__ import annotations

import subprocess
import sys

import knapsack_rl


def test_core_does_not_import_torch():
    code = (
        "import sys, knapsack_rl, knapsack_rl.tracking, knapsack_rl.metrics, "
        "knapsack_rl.allocation.solvers, knapsack_rl.allocation.values, knapsack_rl.atomic\n"
        "knapsack_rl.allocate([0.2, 0.5], budget=8)\n"
        "bad = sorted(m for m in ('torch', 'transformers', 'trl', 'matplotlib') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_import_leaves_scipy_for_first_use():
    """scipy (Beta functions) is imported when a method needs it, not by ``import knapsack_rl``."""
    code = "import sys, knapsack_rl, knapsack_rl.tracking\nprint('scipy.special' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_api():
    assert set(knapsack_rl.__all__) >= {
        "allocate",
        "allocate_round",
        "Allocator",
        "Allocation",
        "METHODS",
        "VALUES",
        "RoundPlanner",
    }
    assert knapsack_rl.METHODS == ("knapsack", "paper", "bayes", "uniform")
