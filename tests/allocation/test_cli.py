"""`knapsack-rl allocate` end to end: outputs, summaries and every bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

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
    capsys.readouterr()
    assert top_main(["--version"]) == 0
    import knapsack_rl

    assert capsys.readouterr().out.strip() == f"knapsack-rl {knapsack_rl.__version__}"


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
    # probing, issue 22: a lone surrogate in an id, and numbers float() takes but files must not
    ("s.jsonl", '{"id": "\\ud800", "p": 0.5}\n', "line 1, field 'id': holds a lone UTF-16"),
    ("s.csv", "id,p\na,0.5_0\n", "line 2, field 'p': '0.5_0' is not a number"),
    ("s.jsonl", '{"id": "a", "p": "0.5_0"}\n', "field 'p': '0.5_0' is not a number"),
    ("s.csv", "id,p\na,\u0663\n", "is not a number"),
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


# --------------------------------------------------------- issue 10, items 1-4
@pytest.mark.parametrize("form", ["{}", "./sub/../{}", "{}.lnk"])
def test_output_may_not_be_the_input(tmp_path, monkeypatch, capsys, form):
    monkeypatch.chdir(tmp_path)
    for name, text in (("in.csv", "id,p\na,0.5\n"), ("in.jsonl", '{"id": "a", "p": 0.5}\n')):
        (tmp_path / name).write_text(text)
        target = form.format(name)
        if target.endswith(".lnk"):
            target = "link" + name[2:]
            (tmp_path / target).symlink_to(tmp_path / name)
        assert main([name, "--budget", "8", "-o", target]) == 2
        assert "is the input file" in capsys.readouterr().err
        assert (tmp_path / name).read_text() == text


def _bad_text(kind):
    if kind == "long-field":
        return "s.csv", "id,p\n" + "a" * 200_000 + ",0.5\n", "line 2: a field is longer than"
    if kind == "int-400":
        return "s.jsonl", '{"id": "a", "p": ' + "9" * 400 + "}\n", "line 1, field 'p'"
    if kind == "int-5000":
        return "s.jsonl", '{"id": "a", "p": ' + "9" * 5000 + "}\n", "line 1: not valid JSON"
    if kind == "nested":
        return "s.jsonl", "[" * 100_000 + "\n", "line 1: JSON nested too deeply"
    if kind == "dup-header":
        return "s.csv", "id,p,p\na,0.3,0.4\n", "line 1: column 'p' appears twice"
    if kind == "dup-key":
        return "s.jsonl", '{"id": "a", "p": 0.3, "p": 0.4}\n', "line 1: key 'p' appears twice"
    if kind == "int-and-str-id":
        return "s.jsonl", '{"id": 7, "p": 0.3}\n{"id": "7", "p": 0.5}\n', "duplicate id '7'"
    if kind == "blank-id-jsonl":
        return "s.jsonl", '{"id": "  ", "p": 0.3}\n', "field 'id': '  ' is not a valid id"
    if kind == "blank-id-csv":
        return "s.csv", "id,p\n   ,0.3\n", "field 'id': '   ' is not a valid id"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "long-field",
        "int-400",
        "int-5000",
        "nested",
        "dup-header",
        "dup-key",
        "int-and-str-id",
        "blank-id-jsonl",
        "blank-id-csv",
    ],
)
def test_hostile_inputs_one_line_exit_2(tmp_path, capsys, kind):
    name, text, needle = _bad_text(kind)
    path = write(tmp_path / name, text)
    out = tmp_path / "out.csv"
    assert main([str(path), "--budget", "8", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert needle in err and name in err, err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_dev_zero_link_does_not_hang(tmp_path, capsys):
    link = tmp_path / "z.csv"
    link.symlink_to("/dev/zero")
    assert main([str(link), "--budget", "8"]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_bom_csv_is_accepted(tmp_path, capsys):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffid,p\na,0.3\nb,0.5\n".encode())
    assert main([str(path), "--budget", "8"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("a,")


def test_csv_ids_are_kept_verbatim(tmp_path, capsys):
    path = write(tmp_path / "s.csv", "id,p\n 08 ,0.3\n a,0.5\na,0.2\n")
    assert main([str(path), "--budget", "12"]) == 0
    ids = [r["id"] for r in csv.DictReader(capsys.readouterr().out.splitlines())]
    assert ids == [" 08 ", " a", "a"]


def test_budget_parsed_as_integer(p_csv, capsys):
    # paper mode takes any budget (as the reference): the sum is exact, not 2**53
    assert main([str(p_csv), "--budget", "9007199254740993", "--method", "paper"]) == 0
    out, err = capsys.readouterr()
    assert "9007199254740993 rollouts" in err
    assert sum(int(r["rollouts"]) for r in csv.DictReader(out.splitlines())) == 2**53 + 1
    assert main([str(p_csv), "--budget", "9007199254740993"]) == 2
    assert "budget 9007199254740993 cannot be met" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--max", "1e20"], "below 2**62"),
        (["--max", "1e18"], "max_rollouts must be <= 2**31"),
    ],
)
def test_huge_numbers_exit_2(p_csv, capsys, args, needle):
    try:
        code = main([str(p_csv), "--budget", "8", *args])
    except SystemExit as e:
        code = e.code
    assert code == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, prior",
    [
        ("id,successes,attempts\na,3,8\nb,5,8\n", ["1e308", "1e308"]),
        ("id,successes,attempts\na,3e15,8e15\nb,5e15,8e15\n", None),
    ],
)
def test_bayes_extreme_priors_rejected(tmp_path, capsys, text, prior):
    path = write(tmp_path / "c.csv", text)
    args = [str(path), "--budget", "16", "--method", "bayes"]
    if prior:
        args += ["--prior", *prior]
    assert main(args) == 2
    assert "cannot be computed stably" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["parent-is-file", "directory", "plot-parent-is-file"])
def test_bad_output_paths_checked_before_writing(p_csv, tmp_path, capsys, where):
    (tmp_path / "afile").write_text("")
    (tmp_path / "adir.csv").mkdir()
    out = tmp_path / "good.csv"
    args = {
        "parent-is-file": ["-o", str(tmp_path / "afile" / "o.csv")],
        "directory": ["-o", str(tmp_path / "adir.csv")],
        "plot-parent-is-file": ["-o", str(out), "--plot", str(tmp_path / "afile" / "x.png")],
    }[where]
    assert main([str(p_csv), "--budget", "8", *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and ("directory" in err), err
    assert not out.exists()  # nothing written when a later output is bad


def test_read_only_output_dir(p_csv, tmp_path, capsys):
    import os
    import sys

    # a place nobody may create files in, root included (this suite runs as root in CI)
    places = [Path("/proc/self")] if sys.platform.startswith("linux") else []
    if os.geteuid() != 0:  # a read-only folder stops everyone but root
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        places.append(ro)
    assert places, "no unwritable place to test on this platform"
    try:
        for place in places:
            assert main([str(p_csv), "--budget", "8", "-o", str(place / "o.csv")]) == 2
            err = capsys.readouterr().err
            assert "permission denied" in err and err.count("\n") == 1, err
    finally:
        if os.geteuid() != 0:
            (tmp_path / "ro").chmod(0o755)


def test_interrupt_during_write_is_one_line(p_csv, tmp_path, capsys, monkeypatch):
    from knapsack_rl import atomic

    out = tmp_path / "out.csv"

    def interrupted(self, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.Path, "write_bytes", interrupted)
    assert main([str(p_csv), "--budget", "20", "-o", str(out)]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "knapsack-rl allocate: interrupted; no output written"
    assert list(tmp_path.iterdir()) == [p_csv]  # no output, no temporary file


# ----------------------------------------------- atomic writes: signals, stale temps
SIGTERM_WRITER = """
import os, signal, sys
from knapsack_rl.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half")
    print(tmp, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    import time; time.sleep(5)
"""


def test_sigterm_during_atomic_write_leaves_nothing(tmp_path):
    import signal

    out = tmp_path / "out.csv"
    out.write_text("previous\n")
    res = subprocess.run(
        [sys.executable, "-c", SIGTERM_WRITER, str(out)], capture_output=True, text=True
    )
    assert res.returncode == -signal.SIGTERM  # still dies of SIGTERM
    assert ".tmp." in res.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    assert out.read_text() == "previous\n"


def test_stale_temp_of_a_killed_writer_is_removed(tmp_path):
    from knapsack_rl.atomic import atomic_write_text, remove_stale_temps

    out = tmp_path / "out.csv"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    pid = int(dead.stdout)
    stale = tmp_path / f".out.csv.tmp.{pid}.abc.csv"
    stale.write_text("x" * 100)
    live = tmp_path / f".out.csv.tmp.{os.getppid()}.abc.csv"  # a live process: kept
    live.write_text("y")
    atomic_write_text(out, "new\n")
    assert not stale.exists() and live.exists()
    assert out.read_text() == "new\n"
    assert remove_stale_temps(out) == []


# ------------------------------------------------------------ probing, issue 22
def _run(args):
    return subprocess.run(
        [sys.executable, "-m", "knapsack_rl.cli", "allocate", *args],
        capture_output=True,
        text=True,
    )


def _one_line_exit_2(res, needle):
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "Traceback" not in res.stderr


def test_lone_surrogate_id_with_output_file(tmp_path):
    src = write(tmp_path / "s.jsonl", '{"id": "\\ud800", "p": 0.5}\n')
    res = _run([str(src), "--per-prompt", "4", "-o", str(tmp_path / "o.csv")])
    _one_line_exit_2(res, "lone UTF-16 surrogate")
    assert not (tmp_path / "o.csv").exists()
    _one_line_exit_2(_run([str(src), "--per-prompt", "4"]), "lone UTF-16 surrogate")


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85"])
def test_jsonl_splits_records_on_newline_only(tmp_path, capsys, sep):
    src = tmp_path / "s.jsonl"
    src.write_text(json.dumps({"id": f"a{sep}b", "p": 0.5}, ensure_ascii=False) + "\n")
    out = tmp_path / "o.jsonl"
    assert main([str(src), "--per-prompt", "4", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["id"] == f"a{sep}b"


@pytest.mark.parametrize("kind", ["fifo", "socket", "device"])
def test_output_that_is_not_a_regular_file_is_refused(p_csv, tmp_path, capsys, kind):
    if kind == "fifo":
        target = tmp_path / "f.csv"
        os.mkfifo(target)
    elif kind == "socket":
        import socket

        target = tmp_path / "s.csv"
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(target))
    else:
        target = tmp_path / "d.csv"
        target.symlink_to("/dev/null")
    code = main([str(p_csv), "--per-prompt", "4", "-o", str(target)])
    err = capsys.readouterr().err
    assert code == 2 and "not a regular file" in err, err
    assert not target.is_file()  # still the FIFO, socket or device
    if kind == "socket":
        sock.close()


def test_stdout_full_or_closed_is_one_line(p_csv):
    with open("/dev/full", "w") as full:
        res = subprocess.run(
            [sys.executable, "-m", "knapsack_rl.cli", "allocate", str(p_csv), "--per-prompt", "4"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert res.returncode == 2 and "cannot write to stdout" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr
    closed = subprocess.run(
        f"{sys.executable} -m knapsack_rl.cli allocate {p_csv} --per-prompt 4 >&-",
        shell=True,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert closed.returncode == 2 and "stdout is closed" in closed.stderr, closed.stderr


@pytest.mark.parametrize("length", [240, 300, 5000])
def test_output_name_too_long_is_one_line(p_csv, tmp_path, capsys, length):
    out = tmp_path / ("x" * length + ".csv")
    code = main([str(p_csv), "--per-prompt", "4", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "too long" in err.lower(), err
    assert len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.tmp.*"))
