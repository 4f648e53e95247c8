"""The demo on a tiny budget: report folder, plots, summary rows, warm-start reuse."""

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from knapsack_rl.training.cli import demo_main  # noqa: E402
from knapsack_rl.training.demo import DemoConfig, rollouts_to_reach, run_demo  # noqa: E402


def test_rollouts_to_reach():
    ev = [
        {"rollouts_total": 0, "a": 0.1},
        {"rollouts_total": 100, "a": 0.3},
        {"rollouts_total": 200, "a": 0.5},
    ]
    assert rollouts_to_reach(ev, "a", 0.4) == pytest.approx(150)
    assert rollouts_to_reach(ev, "a", 0.05) == 0
    assert rollouts_to_reach(ev, "a", 0.6) is None


def test_tiny_demo_writes_report(tmp_path, capsys):
    cfg = DemoConfig(
        out=str(tmp_path / "demo"),
        methods=("uniform", "knapsack"),
        steps=3,
        prompts_per_step=4,
        train_prompts=8,
        eval_prompts=8,
        eval_every=2,
        sft_steps=5,
        progress=False,
    )
    logs = []
    res = run_demo(cfg, log=logs.append)
    out = tmp_path / "demo"
    for name in (
        "index.html",
        "effective_gradient_ratio.png",
        "accuracy_vs_rollouts.png",
        "rollouts_vs_success.png",
        "rollouts_histogram.png",
        "summary.json",
    ):
        assert (out / name).is_file(), name
    rows = res["summary"]["rows"]
    assert [r["method"] for r in rows] == ["uniform", "knapsack"]
    assert rows[0]["rollouts"] == rows[1]["rollouts"] == 3 * 4 * 8  # same total budget
    assert "knapsack" in res["table"] and "effective_gradient_ratio" in res["table"]
    # the summary reports what the runs logged
    for row in rows:
        run = out / "runs" / row["method"]
        ev = [json.loads(x) for x in (run / "eval.jsonl").read_text().splitlines()]
        mt = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert row["final_avg@8"] == ev[-1]["avg@8"] and row["start_avg@8"] == ev[0]["avg@8"]
        egr = sum(x["effective_gradient_ratio"] for x in mt) / len(mt)
        assert row["effective_gradient_ratio"] == pytest.approx(egr)
    html = (out / "index.html").read_text()
    assert "rollouts_histogram.png" in html
    # second run reuses the shared warm-start
    rc = demo_main(
        [
            "--out",
            str(out),
            "--methods",
            "uniform",
            "--steps",
            "2",
            "--prompts-per-step",
            "4",
            "--train-prompts",
            "8",
            "--eval-prompts",
            "8",
            "--sft-steps",
            "5",
            "--no-progress",
        ]
    )
    assert rc == 0
    assert "reusing" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["rows"][0]["method"] == "uniform"
    assert demo_main(["--methods", "uniform,greedy"]) == 2
