import csv
import json

import pytest

from knapsack_rl.cli import main


def run(capsys, *argv):
    code = main(["testtime", *argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_replays_a_cache_and_writes_the_report(tmp_path, capsys, write_pool):
    cache = write_pool(tmp_path / "c.jsonl", per=24)
    out = tmp_path / "report"
    code, stdout, err = run(
        capsys,
        "--cache",
        str(cache),
        "--budgets",
        "2,4",
        "--reference",
        "4",
        "--replays",
        "2",
        "--max-samples",
        "24",
        "-o",
        str(out),
        "-q",
    )
    assert code == 0, err
    assert "adaptive-consistency" in stdout and "knapsack" in stdout
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {r["method"] for r in rows} == {"uniform", "adaptive-consistency", "esc", "knapsack"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["questions"] == 30 and summary["uniform_reference"]["samples"] == 4
    page = (out / "index.html").read_text()
    assert "accuracy.png" in page and (out / "accuracy.png").stat().st_size > 1000
    assert not [p for p in out.iterdir() if ".tmp." in p.name]  # atomic writes cleaned up


@pytest.mark.parametrize(
    "make, argv, match",
    [
        (
            lambda p, w: p.write_text('{"id": "a", "answer": "1", "correct": tr'),
            [],
            "line 1: torn last line",
        ),
        (lambda p, w: w(p, per=8), [], "question 'q0' has 8 samples"),
        (lambda p, w: w(p), ["--methods", "uniform,vote"], "unknown rule 'vote'"),
        (lambda p, w: w(p), ["--budgets", "128"], "must be <= --max-samples"),
        (lambda p, w: w(p), ["--replays", "0"], "--replays must be >= 1"),
        (lambda p, w: None, [], "no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, write_pool, make, argv, match):
    cache = tmp_path / "c.jsonl"
    make(cache, write_pool)
    code, _, err = run(capsys, "--cache", str(cache), "-o", str(tmp_path / "r"), *argv)
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("knapsack-rl testtime: error:") and "Traceback" not in err
    assert match in last


def test_bad_budgets_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["testtime", "--budgets", "two"])
    assert e.value.code == 2
    assert "comma list of numbers" in capsys.readouterr().err


def test_samples_the_builtin_model_then_resumes(tmp_path, capsys):
    out = tmp_path / "r"
    argv = [
        "--model",
        "builtin",
        "--sft-steps",
        "20",
        "--questions",
        "6",
        "--pool",
        "8",
        "--max-samples",
        "8",
        "--budgets",
        "2,4",
        "--reference",
        "4",
        "--replays",
        "2",
        "--methods",
        "uniform,knapsack",
        "-o",
        str(out),
        "-q",
    ]
    code, stdout, err = run(capsys, *argv)
    assert code == 0, err
    lines = (out / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 6 * 8
    assert {"id", "answer", "correct", "score"} <= set(json.loads(lines[0]))
    before = (out / "samples.jsonl").stat().st_mtime_ns
    code, _, err = run(capsys, *argv[:-1])  # a rerun reuses the cache
    assert code == 0 and (out / "samples.jsonl").stat().st_mtime_ns == before
    code, _, err = run(capsys, *[a if a != "6" else "7" for a in argv])
    assert code == 2 and "sampled with other settings" in err


@pytest.mark.parametrize("selector", ["best", "bom"])
def test_best_of_n_needs_scores(tmp_path, capsys, write_pool, selector):
    cache = write_pool(tmp_path / "c.jsonl")
    argv = ["--cache", str(cache), "--objective", "best_of_n", "--selector", selector]
    argv += ["--budgets", "2", "--reference", "4", "--replays", "2", "--max-samples", "24"]
    code, stdout, err = run(capsys, *argv, "-o", str(tmp_path / "r"), "-q")
    assert code == 0, err
    assert "knapsack" in stdout and "adaptive-consistency" not in stdout
    bare = tmp_path / "bare.jsonl"
    bare.write_text(
        "".join(line.split(', "score"')[0] + "}\n" for line in cache.read_text().splitlines())
    )
    code, _, err = run(capsys, *["--cache", str(bare)] + argv[2:], "-o", str(tmp_path / "s"))
    assert code == 2 and "without a score, which best_of_n needs" in err
