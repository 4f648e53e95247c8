"""`knapsack-rl simulate` end to end: table, report folder, errors (exit 2), atomic writes."""

from __future__ import annotations

import csv
import json
import re

import pytest

from knapsack_rl.cli import main as top_main
from knapsack_rl.simulation.cli import main

FAST = ["--preset", "small", "--steps", "12", "-q"]


def test_simulate_prints_table_and_writes_report(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main([*FAST, "--strategies", "uniform,knapsack,dapo", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    lines = text.strip().splitlines()
    assert lines[0].split()[:4] == ["strategy", "steps", "rollouts", "effective_gradient_ratio"]
    assert [ln.split()[0] for ln in lines[2:]] == ["uniform", "knapsack", "dapo"]
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "allocation.png",
        "config.json",
        "curves.png",
        "index.html",
        "metrics.csv",
        "summary.json",
    ]
    page = (out / "index.html").read_text()
    assert "curves.png" in page and "allocation.png" in page and "knapsack-rl simulate" in page
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert [r["strategy"] for r in summary["strategies"]] == ["uniform", "knapsack", "dapo"]
    assert summary["strategies"][0]["rollouts"] == 12 * 256
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["seed"] == 0 and cfg["steps"] == 12 and cfg["model"]["prompts_per_step"] == 32
    assert "command" in cfg
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sum(r["strategy"] == "uniform" for r in rows) == 12
    assert {"effective_gradient_ratio", "mean_p", "solved", "max_rollouts"} <= set(rows[0])


def test_simulate_is_reproducible(tmp_path, capsys):
    args = [*FAST, "--strategies", "uniform,paper,greso", "--no-report", "--seed", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    second = capsys.readouterr().out
    strip = [ln.rsplit(None, 1)[0] for ln in first.splitlines()[2:]]  # drop seconds
    assert strip == [ln.rsplit(None, 1)[0] for ln in second.splitlines()[2:]]


def test_dispatcher_and_overrides(tmp_path, capsys):
    rc = top_main(
        ["simulate", *FAST, "--strategies", "uniform", "--prompts-per-step", "16", "--no-report"]
    )
    assert rc == 0
    row = capsys.readouterr().out.splitlines()[2].split()
    assert row[0] == "uniform" and row[2] == str(12 * 16 * 8)


def test_init_file_sets_the_population(tmp_path, capsys):
    f = tmp_path / "rates.csv"
    f.write_text("id,successes,attempts\n" + "".join(f"q{i},{i % 9},8\n" for i in range(50)))
    out = tmp_path / "rep"
    rc = main([*FAST, "--strategies", "uniform", "--init", str(f), "-o", str(out), "--no-plots"])
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["prompts"] == 50 and cfg["init"] == str(f)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["initial"]["mean_p"] == pytest.approx(
        sum(min(max((i % 9) / 8, 1e-3), 1 - 1e-3) for i in range(50)) / 50
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["--prompts-per-step", "0"], "prompts_per_step must be >= 1"),
        (["--transfer", "2"], r"transfer must be in \[0, 1\]"),
        (["--rollouts-per-prompt", "1"], "rollouts_per_prompt must be in"),
        (["--strategies", "uniform,greedy"], "unknown strategy 'greedy'"),
        (["--steps", "0"], "--steps must be >= 1"),
        (["--seed", "-1"], "--seed must be >= 0"),
        (["--lr", "nan"], "lr must be finite"),
    ],
)
def test_bad_values_exit_2_with_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "rep"
    assert main([*FAST, *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("knapsack-rl simulate: error: ")
    assert re.search(message, err[0])
    assert not out.exists()


@pytest.mark.parametrize("args", [["--steps", "1.5"], ["--preset", "huge"], ["--lr", "x"]])
def test_argparse_errors_exit_2(capsys, args):
    with pytest.raises(SystemExit) as e:
        main([*FAST, *args])
    assert e.value.code == 2
    assert "knapsack-rl simulate: error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name,text,pattern",
    [
        ("bad.csv", "id,p\na,0.5\nb,2\n", r"bad\.csv, line 3, field 'p'"),
        (
            "bad.jsonl",
            '{"id": 1, "p": 0.5}\n{"id": 1, "p": 0.2}\n',
            r"bad\.jsonl, line 2, field 'id': duplicate",
        ),
        (
            "zero.jsonl",
            '{"id": 1, "successes": 0, "attempts": 0}\n',
            r"zero\.jsonl, row 1 \(id 1\), field 'attempts'",
        ),
        ("few.csv", "id,p\na,0.5\n", r"prompts_per_step \(32\) > prompts in the dataset \(1\)"),
    ],
)
def test_bad_init_files_exit_2_naming_the_file(tmp_path, capsys, name, text, pattern):
    f = tmp_path / name
    f.write_text(text)
    out = tmp_path / "rep"
    assert main([*FAST, "--init", str(f), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("knapsack-rl simulate: error: ") and "\n" not in err
    assert re.search(pattern, err)
    assert not out.exists()
    assert main([*FAST, "--init", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv: no such file" in capsys.readouterr().err


def test_report_is_written_atomically(tmp_path, capsys, monkeypatch):
    out = tmp_path / "rep"
    assert main([*FAST, "--strategies", "uniform", "-o", str(out), "--no-plots"]) == 0
    old = (out / "index.html").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    import knapsack_rl.reports.simulation as rep

    monkeypatch.setattr(rep, "save_figure", boom)
    capsys.readouterr()
    assert main([*FAST, "--strategies", "uniform", "-o", str(out)]) == 2
    assert "cannot write the report" in capsys.readouterr().err
    assert (out / "index.html").read_bytes() == old  # the previous page is intact
    assert not [p for p in out.iterdir() if ".tmp." in p.name]  # no half-written files


def test_steps_are_bounded(capsys):
    from knapsack_rl.simulation.cli import main as sim_main

    assert sim_main(["--steps", "1e18", "--no-report", "-q"]) == 2
    assert "--steps must be <= 100000" in capsys.readouterr().err
