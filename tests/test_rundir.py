"""Tests of :mod:`disparate.rundir`: the one run-directory lifecycle (open, resume, overwrite,
lock, stale files, metrics, checkpoint, finish) and its one "finished" rule, on hand-made
files (no training), and of the one ``metrics.jsonl`` reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from disparate import fileio, report, rundir
from disparate import records as rec
from disparate import results as res
from disparate.config import config_hash, load_experiment
from disparate.rundir import FAILED, FINISHED, PARTIAL, PENDING, RunDir, run_status

TINY = ["training.epochs=1", "data.subsample=200", "training.batch_size=32"]


@pytest.fixture
def config():
    return load_experiment("digits-underrep", TINY)


@pytest.fixture
def other():
    return load_experiment("digits-underrep", [*TINY, "training.lr=0.01"])


def write_results(run_dir: Path, digest: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    res.write_json(run_dir / res.RESULTS_FILE, {"config_hash": digest, "overall_accuracy": 0.5})


def test_status_is_the_one_finished_rule(tmp_path, config, other):
    run_dir = tmp_path / "r"
    assert run_status(run_dir, config) == PENDING  # not even there
    run_dir.mkdir()
    (run_dir / res.CHECKPOINT_FILE).write_bytes(b"x")
    assert run_status(run_dir, config) == PARTIAL
    (run_dir / rundir.ERROR_FILE).write_text("{}")
    assert run_status(run_dir, config) == FAILED  # failed wins over a checkpoint
    write_results(run_dir, config_hash(other))
    assert run_status(run_dir, config) == FAILED  # results of another config: not finished
    assert run_status(run_dir, other) == FINISHED
    assert rundir.finished_results(run_dir, config) is None
    write_results(run_dir, config_hash(config))
    assert run_status(run_dir, config) == FINISHED  # whatever else lies there
    assert rundir.finished_results(run_dir, config)["overall_accuracy"] == 0.5
    text = (run_dir / res.RESULTS_FILE).read_text()
    (run_dir / res.RESULTS_FILE).write_text(text[: len(text) // 2])  # cut short
    assert rundir.finished_results(run_dir, config) is None
    assert run_status(run_dir, config) == FAILED


def test_a_directory_that_holds_a_run_needs_resume_or_overwrite(tmp_path, config, other):
    run_dir = tmp_path / "r"
    with RunDir.open(run_dir, config) as run:  # new: fine, and created
        assert run.path == run_dir and run_dir.is_dir() and not run.resume
    write_results(run_dir, config_hash(config))
    with pytest.raises(ValueError, match=f"{run_dir} already holds a run .*--resume"):
        with RunDir.open(run_dir, config):
            pass
    with RunDir.open(run_dir, config, resume=True) as run:
        assert run.finished()["config_hash"] == config_hash(config)  # nothing to train
    with pytest.raises(ValueError, match=f"results of another config \\(config_hash "
                                         f"{config_hash(config)}; this config hashes to "
                                         f"{config_hash(other)}"):
        with RunDir.open(run_dir, other, resume=True):
            pass
    with RunDir.open(run_dir, other, overwrite=True) as run:  # overwrite wins over resume
        assert run.finished() is None and run.resume_state() is None
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        with RunDir.open(tmp_path / "file", config):
            pass


def test_resume_state_refuses_a_checkpoint_of_another_config(tmp_path, config, other):
    lines: list[str] = []
    with RunDir.open(tmp_path / "r", config, resume=True, log=lines.append) as run:
        assert run.resume_state() is None  # resuming without a checkpoint: from the start
        assert lines == [f"no checkpoint in {tmp_path / 'r'}; starting from the beginning"]
        run.save_checkpoint({"epoch": 3, "metrics": []})
        state = run.resume_state()
    assert state == {"version": rundir.CHECKPOINT_VERSION, "config_hash": config_hash(config),
                     "epoch": 3, "metrics": []}
    with RunDir.open(tmp_path / "r", other, resume=True) as run:
        with pytest.raises(ValueError, match=f"checkpoint is of config_hash "
                                             f"{config_hash(config)} but this config hashes "
                                             f"to {config_hash(other)}"):
            run.resume_state()
    with RunDir.open(tmp_path / "r", other, overwrite=True) as run:
        assert run.resume_state() is None  # overwriting: the checkpoint is not used


def _lines(*epochs: int) -> list[rec.EpochMetrics]:
    return [rec.EpochMetrics.from_json({"epoch": e}) for e in epochs]


def test_a_fresh_start_removes_what_an_earlier_run_left(tmp_path, config):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    for name in (res.RESULTS_FILE, res.CHECKPOINT_FILE, rundir.DIVERGED_FILE, "own.csv",
                 "keep.txt"):
        (run_dir / name).write_text("old")
    with RunDir.open(run_dir, config, overwrite=True) as run:
        run.start(fresh=True, stale=("own.csv",), metrics=_lines(1))
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".lock", res.CONFIG_FILE, "keep.txt", res.METRICS_FILE]
    assert load_experiment(str(run_dir / res.CONFIG_FILE)) == config
    assert res.read_metrics(run_dir) == [{"epoch": 1}]
    # resuming keeps results and checkpoint; diverged.json of the earlier try goes
    for name in (res.RESULTS_FILE, res.CHECKPOINT_FILE, rundir.DIVERGED_FILE):
        (run_dir / name).write_text("old")
    with RunDir.open(run_dir, config, overwrite=True) as run:
        run.start(fresh=False, metrics=_lines(1, 2))
    assert (run_dir / res.CHECKPOINT_FILE).read_text() == "old"
    assert not (run_dir / rundir.DIVERGED_FILE).exists()
    assert [m["epoch"] for m in res.read_metrics(run_dir)] == [1, 2]


def test_metrics_checkpoint_and_finish(tmp_path, config):
    run_dir = tmp_path / "r"
    (run_dir).mkdir()
    (run_dir / rundir.ERROR_FILE).write_text("{}")
    with RunDir.open(run_dir, config, resume=True) as run:
        run.start(fresh=True)
        for epoch in (1, 2):
            run.append_metrics(rec.EpochMetrics.from_json(
                {"epoch": epoch, "loss": float("inf"), "acc": float("nan")}))
        assert run.read_metrics() == [{"epoch": 1, "loss": None, "acc": "nan"},
                                      {"epoch": 2, "loss": None, "acc": "nan"}]
        run.save_checkpoint({"epoch": 2, "w": torch.arange(3)})
        saved = fileio.load_torch(run_dir / res.CHECKPOINT_FILE)
        assert saved["config_hash"] == config_hash(config) and saved["epoch"] == 2
        assert saved["w"].tolist() == [0, 1, 2]
        assert run_status(run_dir, config) == FAILED
        written = run.finish(rec.RunResult.from_json({
            "experiment": config.name, "mode": "dp", "groups": [], "config_hash":
            config_hash(config), "privacy": {"is_private": False, "mode": "dp",
                                             "statement": "none"}}))
    assert written == res.load_results(run_dir)
    assert (written["schema_version"], written["config_hash"]) == (1, config_hash(config))
    assert run_status(run_dir, config) == FINISHED  # and the failure record is gone
    assert not (run_dir / rundir.ERROR_FILE).exists()


def test_reset_makes_a_finished_run_pending(tmp_path, config):
    write_results(tmp_path / "r", config_hash(config))
    (tmp_path / "r" / res.CHECKPOINT_FILE).write_bytes(b"x")
    rundir.reset(tmp_path / "r", config)
    assert run_status(tmp_path / "r", config) == PENDING


HOLD_LOCK = """
import sys
from disparate import fileio
with fileio.run_dir_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_the_lock_refuses_another_process_and_is_reentrant_here(tmp_path, config):
    env = {**os.environ, "PYTHONPATH": str(Path(fileio.__file__).parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "r")],
                              env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(fileio.RunDirBusyError, match="in use by another run"):
            with RunDir.open(tmp_path / "r", config):
                pass
    finally:
        holder.communicate("", timeout=60)
    with RunDir.open(tmp_path / "r", config), RunDir.open(tmp_path / "r", config):
        pass


def test_one_rule_for_a_truncated_last_metrics_line(tmp_path):
    path = tmp_path / res.METRICS_FILE
    path.write_text('{"epoch": 1}\n\n{"epoch": 2}\n{"epoch": 3, "group_acc', encoding="utf-8")
    # the reader of results and the reader of reports are one: both skip the cut line
    assert res.read_metrics(tmp_path) == [{"epoch": 1}, {"epoch": 2}]
    assert report.read_metrics(path) == [{"epoch": 1}, {"epoch": 2}]
    path.write_text('{"epoch": 1}\n{"epoch": 2\n{"epoch": 3}\n\n', encoding="utf-8")
    with pytest.raises(fileio.CorruptFileError, match="metrics.jsonl: line 2 is not a JSON"):
        res.read_metrics(tmp_path)
    path.write_text('{"epoch": 1}\n[2]\n', encoding="utf-8")  # the last line, complete
    assert fileio.read_jsonl(path) == [{"epoch": 1}]
    path.write_bytes(b'{"epoch": 1}\n\xff\n')
    with pytest.raises(fileio.CorruptFileError, match="metrics.jsonl"):
        fileio.read_jsonl(path)
    assert fileio.read_jsonl(tmp_path / "missing.jsonl") == []


def test_a_resumed_run_rewrites_a_cut_metrics_file_from_its_checkpoint(tmp_path, config):
    with RunDir.open(tmp_path / "r", config) as run:
        run.start(fresh=True)
        run.append_metrics(rec.EpochMetrics.from_json({"epoch": 1}))
        run.save_checkpoint({"epoch": 1, "metrics": [{"epoch": 1}]})
    with (tmp_path / "r" / res.METRICS_FILE).open("a") as f:
        f.write('{"epoch": 2, "te')  # killed while writing epoch 2
    with RunDir.open(tmp_path / "r", config, resume=True) as run:
        state = run.resume_state()
        run.start(fresh=state is None,
                  metrics=[rec.EpochMetrics.from_json(m) for m in state["metrics"]])
    assert json.loads((tmp_path / "r" / res.METRICS_FILE).read_text()) == {"epoch": 1}
