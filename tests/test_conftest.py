"""tests/conftest.py: under CI=true a skip fails the run (except allowed reasons and verl)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

CASES = """
import pytest
pytestmark = []

def test_allowed():
    pytest.skip("tensorboard is installed")

def test_missing_dependency():
    pytest.importorskip("no_such_module_for_knapsack_rl")

@pytest.mark.verl
def test_verl():
    pytest.skip("runs in .venv-verl")
"""


def _run(tmp_path, ci):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_cases.py").write_text(CASES)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    verl: verl\n")
    env = {**os.environ, "CI": ci}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )


def test_skips_fail_under_ci(tmp_path):
    r = _run(tmp_path, "true")
    assert r.returncode == 1, r.stdout
    assert "FAILED test_cases.py::test_missing_dependency" in r.stdout
    assert "1 failed, 2 skipped" in r.stdout, r.stdout


def test_skips_stay_skips_locally(tmp_path):
    r = _run(tmp_path, "")
    assert r.returncode == 0 and "3 skipped" in r.stdout, r.stdout
