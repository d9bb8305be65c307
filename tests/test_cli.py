"""Every expected failure of the CLI is one line naming the file or argument and the fix, with
a distinct exit status; ``--debug`` shows the traceback (issue #18)."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from disparate import cli
from disparate.fileio import CorruptFileError, RunDirBusyError
from disparate.training import TrainingDivergedError

TINY = ["--set", "data.subsample=120", "--set", "training.batch_size=30",
        "--set", "training.epochs=1", "--set", "evaluation.min_group_test_size=20"]


def _run(*extra: str) -> list[str]:
    return ["run", "digits-underrep", *TINY, "--quiet", *extra]


def _out_is_a_file(tmp: Path) -> list[str]:
    (tmp / "file").write_text("x", encoding="utf-8")
    return _run("--out", str(tmp / "file"))


def _yaml(tmp: Path, text: bytes) -> list[str]:
    (tmp / "exp.yaml").write_bytes(b"data:\n  dataset: digits\n" + text)
    return ["run", str(tmp / "exp.yaml"), "--out", str(tmp / "run"), "--quiet"]


def _truncated_checkpoint(tmp: Path) -> list[str]:
    (tmp / "run").mkdir()
    torch.save({"x": torch.zeros(1000)}, tmp / "run" / "checkpoint.pt")
    data = (tmp / "run" / "checkpoint.pt").read_bytes()
    (tmp / "run" / "checkpoint.pt").write_bytes(data[:200])
    return _run("--out", str(tmp / "run"), "--resume")


CASES: dict[str, tuple[Callable[[Path], list[str]], int, str]] = {
    "pld beyond its bound": (
        lambda tmp: ["epsilon", "--dataset-size", "60000", "--batch-size", "256", "--epochs",
                     "60", "--noise-multiplier", "1e-6", "--methods", "pld"],
        cli.EXIT_USAGE, "needs about 1e+16 points (> MAX_PLD_POINTS"),
    "--out is a file": (_out_is_a_file, cli.EXIT_IO, "file: exists and is not a directory; "
                                                     "choose another --out"),
    "duplicate YAML key": (lambda tmp: _yaml(tmp, b"training:\n  lr: 1\n  lr: 2\n"),
                           cli.EXIT_USAGE, "exp.yaml: not valid YAML: line 5, column 3: key "
                                           "'lr' is given twice"),
    "non-UTF-8 YAML": (lambda tmp: _yaml(tmp, b"name: caf\xe9\n"), cli.EXIT_USAGE,
                       "exp.yaml: not UTF-8 text"),
    "truncated checkpoint": (_truncated_checkpoint, cli.EXIT_CORRUPT,
                             "checkpoint.pt: cannot be read"),
    "--supernodes 0": (lambda tmp: ["federated", "run", "reddit-fl-small", "--out",
                                    str(tmp / "fl"), "--engine", "flower", "--supernodes", "0"],
                       cli.EXIT_USAGE, "--supernodes=0: expected an integer >= 1"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_expected_failures_are_one_line_with_their_exit_status(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build, status, text = CASES[case]
    assert cli.main(build(tmp_path)) == status
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("disparate: error: ") and text in err, err


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--debug", *_out_is_a_file(tmp_path)]) == cli.EXIT_IO
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "disparate: error: " in err


@pytest.mark.parametrize(("exc", "status", "text"), [
    (ModuleNotFoundError("No module named 'flwr'", name="flwr"), cli.EXIT_MISSING_PACKAGE,
     "the optional package 'flwr' is not installed; install it with pip install "
     "'disparate[flower]'"),
    (ModuleNotFoundError("No module named 'zstandard'", name="zstandard"),
     cli.EXIT_MISSING_PACKAGE, "pip install 'disparate[reddit]'"),
    (PermissionError(errno.EACCES, "Permission denied", "/x/results.json"), cli.EXIT_IO,
     "/x/results.json: Permission denied"),
    (RunDirBusyError("/x is in use by another run"), cli.EXIT_BUSY, "/x is in use"),
    (TrainingDivergedError("training diverged at epoch 2, step 3: non-finite training loss",
                           epoch=2, step=3, what="loss"), cli.EXIT_DIVERGED,
     "diverged at epoch 2, step 3"),
    (CorruptFileError("/d/RC.zst: truncated"), cli.EXIT_CORRUPT, "/d/RC.zst: truncated"),
    (KeyboardInterrupt(), cli.EXIT_INTERRUPTED, "interrupted"),
])
def test_each_kind_of_failure_has_its_status_and_line(exc: BaseException, status: int,
                                                      text: str) -> None:
    got_status, line = cli.describe_error(exc)
    assert got_status == status and text in line and "\n" not in line


def test_the_exit_statuses_are_distinct() -> None:
    codes = [cli.EXIT_USAGE, cli.EXIT_IO, cli.EXIT_BUSY, cli.EXIT_DIVERGED,
             cli.EXIT_MISSING_PACKAGE, cli.EXIT_CORRUPT, cli.EXIT_INTERRUPTED]
    assert len(set(codes)) == len(codes) and 0 not in codes and 1 not in codes
