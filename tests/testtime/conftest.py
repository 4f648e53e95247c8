"""Shared test data for the test-time planner: a small cache of samples."""

import json

import numpy as np
import pytest


def _write_pool(path, m=30, per=24, seed=0):
    """A JSONL cache: ``m`` questions x ``per`` samples over 3 answers; a third of the
    questions have a wrong modal answer."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as fh:
        for q in range(m):
            p = rng.dirichlet(np.full(3, 0.7))
            right = int(np.argmax(p)) if q % 3 else 2  # some questions' mode is wrong
            for _ in range(per):
                a = int(rng.choice(3, p=p))
                row = {"id": f"q{q}", "answer": str(a), "correct": a == right}
                row.update(score=float(rng.normal(a == right)), level=q % 2)
                fh.write(json.dumps(row) + "\n")
    return path


@pytest.fixture
def write_pool():
    """``write_pool(path, m=30, per=24, seed=0) -> path``."""
    return _write_pool
