"""`knapsack-rl allocate` end to end: outputs, summaries and every bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from knapsack_rl import allocate
from knapsack_rl.allocation.cli import main
from knapsack_rl.cli import main as top_main


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def p_csv(tmp_path):
    return write(tmp_path / "stats.csv", "id,p\na,0.1\nb,0.5\nc,1.0\nd,0\ne,0.3\n")


@pytest.fixture
def counts_jsonl(tmp_path):
    rows = [
        {"id": 1, "successes": 1, "attempts": 10},
        {"id": 2, "successes": 5, "attempts": 10},
        {"id": 3, "successes": 10, "attempts": 10},
        {"id": "x", "successes": 0, "attempts": 4},
    ]
    return write(tmp_path / "stats.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def read_csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_csv_to_stdout_matches_api(p_csv, capsys):
    assert main([str(p_csv), "--budget", "40"]) == 0
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(out.splitlines()))
    assert [r["id"] for r in rows] == ["a", "b", "c", "d", "e"]
    got = np.array([int(r["rollouts"]) for r in rows])
    np.testing.assert_array_equal(got, allocate([0.1, 0.5, 1.0, 0.0, 0.3], budget=40))
    assert got.sum() == 40
    assert "5 prompts" in err and "40 rollouts" in err and "objective" in err and "ms" in err


def test_jsonl_counts_output_jsonl(counts_jsonl, tmp_path, capsys):
    out = tmp_path / "alloc.jsonl"
    assert main([str(counts_jsonl), "--per-prompt", "8", "--method", "bayes", "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3, "x"]  # id types preserved
    assert sum(r["rollouts"] for r in rows) == 32
    assert set(rows[0]) >= {"id", "rollouts", "p", "value"}
    assert capsys.readouterr().out == ""


def test_paper_mode_counts_validity(counts_jsonl, tmp_path):
    out = tmp_path / "alloc.csv"
    assert main([str(counts_jsonl), "--per-prompt", "8", "--method", "paper", "-o", str(out)]) == 0
    rows = read_csv(out)
    # id "x" has 4 attempts < 8: not valid, so it gets the uniform n = 8 in the base allocation
    # and is counted among the p_hat = 0 prompts afterwards (gets >= 8).
    assert int(rows[3]["rollouts"]) >= 8
    assert sum(int(r["rollouts"]) for r in rows) == 32


def test_token_budget(tmp_path, capsys):
    f = write(tmp_path / "s.csv", "id,p,tokens\na,0.2,100\nb,0.5,400\nc,0.7,50\n")
    assert main([str(f), "--cost-column", "tokens", "--token-budget", "5000"]) == 0
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(out.splitlines()))
    cost = sum(int(r["rollouts"]) * float(r["cost"]) for r in rows)
    assert cost <= 5000
    assert "cost" in err


def test_example_and_plot(tmp_path, capsys):
    png = tmp_path / "alloc.png"
    assert main(["--example", "--per-prompt", "8", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert len(rows) == 256 and sum(int(r["rollouts"]) for r in rows) == 2048


def test_top_level_dispatch(p_csv, capsys):
    assert top_main(["allocate", str(p_csv), "--budget", "20"]) == 0
    assert top_main(["nope"]) == 2
    assert top_main(["--version"]) == 0


BAD_FILES = [
    ("missing.csv", None, "no such file"),
    ("s.txt", "id,p\na,0.5\n", "unsupported file type"),
    ("s.csv", "", "empty file"),
    ("s.csv", "id,p\n", "empty file"),
    ("s.jsonl", "\n", "empty file"),
    ("s.csv", "id,q\na,0.5\n", "missing column 'p'"),
    ("s.csv", "name,p\na,0.5\n", "missing column 'id'"),
    ("s.csv", "id,successes\na,1\n", "missing column 'attempts'"),
    ("s.csv", "id,p\na,0.5\nb,nan\n", "line 3, field 'p'"),
    ("s.csv", "id,p\na,inf\n", "line 2, field 'p'"),
    ("s.csv", "id,p\na,1.5\n", "outside [0, 1]"),
    ("s.csv", "id,p\na,-0.1\n", "outside [0, 1]"),
    ("s.csv", "id,p\na,abc\n", "is not a number"),
    ("s.csv", "id,p\na,\n", "missing value"),
    ("s.csv", "id,successes,attempts\na,5,4\n", "field 'successes': 5 > attempts 4"),
    ("s.csv", "id,successes,attempts\na,-1,4\n", "field 'successes': -1 is negative"),
    ("s.csv", "id,successes,attempts\na,1,-4\n", "field 'attempts': -4 is negative"),
    (
        "s.csv",
        "id,p\na,0.5\nb,0.2\na,0.3\n",
        "line 4, field 'id': duplicate id 'a' (first on line 2)",
    ),
    ("s.jsonl", '{"id": 1, "p": 0.5}\n{"id": 1, "p": 0.2}\n', "line 2, field 'id': duplicate"),
    ("s.jsonl", '{"id": 1, "p": 0.5}\nnot json\n', "line 2: not valid JSON"),
    ("s.jsonl", '{"id": 1, "p": 0.5}\n[1, 2]\n', "line 2: expected a JSON object"),
    ("s.jsonl", '{"id": 1, "p": 0.5}\n{"p": 0.2}\n', "line 2: missing column 'id'"),
    ("s.jsonl", '{"id": 1, "p": 0.5}\n{"id": 2}\n', "line 2: missing column 'p'"),
    ("s.csv", "id,p,valid\na,0.5,maybe\n", "field 'valid'"),
]


@pytest.mark.parametrize("name,text,needle", BAD_FILES)
def test_bad_files_exit_2_without_output(tmp_path, capsys, name, text, needle):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    out = tmp_path / "out.csv"
    code = main([str(path), "--budget", "8", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err, err
    assert name in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--budget", "4"], "cannot be met"),  # < prompts * min
        (["--budget", "100000"], "cannot be met"),  # > prompts * max
        (["--budget", "20", "--min", "5", "--max", "3"], "--min (5) > --max (3)"),
        (["--per-prompt", "4", "--method", "bayes"], "needs columns 'successes' and 'attempts'"),
        (["--cost-column", "p"], "go together"),
        ([], "one of --budget or --per-prompt"),
        (["--budget", "20", "--cost-column", "nope", "--token-budget", "10"], "not both"),
        (["--cost-column", "nope", "--token-budget", "10"], "missing column 'nope'"),
        (["--budget", "20", "-o", "out.txt"], "unsupported output type"),
    ],
)
def test_bad_settings_exit_2(p_csv, tmp_path, capsys, args, needle):
    assert main([str(p_csv), *args]) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--budget", "--per-prompt", "--min", "--max"])
def test_non_integer_numbers_exit_2(p_csv, capsys, flag):
    with pytest.raises(SystemExit) as e:
        main([str(p_csv), flag, "2.5"])
    assert e.value.code == 2
    assert "must be an integer" in capsys.readouterr().err


def test_existing_output_untouched_on_error(tmp_path, capsys):
    out = tmp_path / "out.csv"
    out.write_text("previous\n")
    bad = write(tmp_path / "s.csv", "id,p\na,2\n")
    assert main([str(bad), "--budget", "4", "-o", str(out)]) == 2
    assert out.read_text() == "previous\n"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_console_script_subprocess(p_csv):
    res = subprocess.run(
        [sys.executable, "-m", "knapsack_rl.cli", "allocate", str(p_csv), "--budget", "4"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert "cannot be met" in res.stderr
