"""The demo on a tiny budget: report folder, plots, paired summary rows, warm-start reuse."""

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
        methods=("uniform", "knapsack", "rounds"),
        seeds=(0, 1),
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
        "accuracy_vs_wallclock.png",
        "paired_differences.png",
        "rollouts_vs_success.png",
        "summary.json",
    ):
        assert (out / name).is_file(), name
    rows = res["summary"]["rows"]
    assert [r["method"] for r in rows] == ["uniform", "knapsack", "rounds"]
    assert rows[0]["rollouts"] == rows[1]["rollouts"] == rows[2]["rollouts"] == 3 * 4 * 8
    assert "rounds" in res["table"] and "diff_vs_uniform" in res["table"]
    # the summary reports what the runs logged: means over seeds, differences paired by seed
    final, late, gpu = {}, {}, {}
    for seed in (0, 1):
        for m in ("uniform", "knapsack", "rounds"):
            run = out / f"seed{seed}" / "runs" / m
            ev = [json.loads(x) for x in (run / "eval.jsonl").read_text().splitlines()]
            final[seed, m] = ev[-1]["avg@8"]
            late[seed, m] = sum(e["avg@8"] for e in ev[-3:]) / len(ev[-3:])
            mt = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            gpu[seed, m] = sum(x["time/gpu_generate"] for x in mt) / len(mt)
            assert sum(x["rollouts"] for x in mt) == 3 * 4 * 8
            if m == "rounds":
                assert all(x["rounds"] == 2 for x in mt)
    for row in rows:
        m = row["method"]
        assert row["final_avg@8"] == pytest.approx((final[0, m] + final[1, m]) / 2)
        if m != "uniform":
            d = [final[s, m] - final[s, "uniform"] for s in (0, 1)]
            assert row["diff_vs_uniform"] == pytest.approx(sum(d) / 2)
            assert row["diff_se"] == pytest.approx(abs(d[0] - d[1]) / 2)
            dl = [late[s, m] - late[s, "uniform"] for s in (0, 1)]
            assert row["late_diff_vs_uniform"] == pytest.approx(sum(dl) / 2)
            g = [gpu[s, m] / gpu[s, "uniform"] for s in (0, 1)]
            assert row["gpu_generate_vs_uniform"] == pytest.approx(sum(g) / 2)
    assert len(res["summary"]["per_seed"]) == 6
    html = (out / "index.html").read_text()
    assert "paired_differences.png" in html and "Per seed" in html
    # second run reuses the shared warm-start
    rc = demo_main(
        [
            "--out",
            str(out),
            "--methods",
            "uniform",
            "--seeds",
            "0",
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
