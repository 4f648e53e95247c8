"""Tests of knapsack_rl.integrations.verl with verl's real classes (run in .venv-verl)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.verl


def test_verl_importable():
    import verl

    assert verl.__version__
