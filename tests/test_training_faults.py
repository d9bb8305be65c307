"""Faults in the training loop (issue #18): the accountant cannot lose a trained run, a run
directory is locked for the life of a run, divergence is recorded as such."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from disparate import results as res
from disparate import training
from disparate.config import config_hash, load_experiment

TINY = ["data.subsample=150", "training.batch_size=30", "training.epochs=2",
        "training.num_threads=1", "evaluation.min_group_test_size=20"]


def tiny(*extra: str):
    return load_experiment("digits-underrep", [*TINY, *extra])


# ------------------------------------------------------------------ point 1: the accountant


def test_a_tiny_noise_multiplier_keeps_its_results_and_falls_back_to_rdp(
        tmp_path: Path, one_thread: None) -> None:
    # z = 0.01: the PLD of this run would need ~1e8 points (GBs); it is refused at once.
    cfg = tiny("privacy.noise_multiplier=0.01", "privacy.accountant=pld")
    run = training.train(cfg, tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / res.RESULTS_FILE).read_text())
    privacy = saved["privacy"]
    assert privacy["accountant"] == "rdp" and set(privacy["epsilon"]) == {"rdp", "rdp_classic"}
    assert "MAX_PLD_POINTS" in privacy["skipped_methods"]["pld"]
    assert "fell back to 'rdp'" in privacy["statement"]
    assert run.results["overall_accuracy"] == saved["overall_accuracy"]
    # --resume of the finished run rewrites the same results without the accountant blowing up
    again = training.train(cfg, tmp_path / "run", resume=True, progress=False)
    assert again.results["privacy"] == privacy


# ------------------------------------------------------------------ point 6: divergence


@pytest.mark.parametrize("overrides", [["training.lr=1e30"],
                                       ["privacy.noise_multiplier=1e12"]])
def test_a_diverging_run_stops_with_its_epoch_and_step_and_writes_no_results(
        tmp_path: Path, one_thread: None, overrides: list[str]) -> None:
    cfg = tiny(*overrides)
    with pytest.raises(training.TrainingDivergedError,
                       match=r"training diverged at epoch 1, step \d+: non-finite") as info:
        training.train(cfg, tmp_path / "run", progress=False)
    assert info.value.epoch == 1
    assert not (tmp_path / "run" / res.RESULTS_FILE).exists()
    status = json.loads((tmp_path / "run" / training.DIVERGED_FILE).read_text())
    assert status["status"] == "diverged" and status["epoch"] == 1
    assert status["step"] == info.value.step
    assert "null" not in (tmp_path / "run" / res.METRICS_FILE).read_text()


def test_the_cli_reports_divergence_in_one_line_with_its_own_exit_status(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from disparate.cli import EXIT_DIVERGED, main
    argv = ["run", "digits-underrep", "--out", str(tmp_path), "--quiet"]
    for item in [*TINY, "training.lr=1e30"]:
        argv += ["--set", item]
    assert main(argv) == EXIT_DIVERGED
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("disparate: error: training diverged at epoch 1, step ")


def test_a_diverged_study_point_is_recorded_as_failed_not_as_an_accuracy(
        tmp_path: Path, one_thread: None) -> None:
    from disparate import sweep
    point = sweep.make_point(tiny("training.lr=1e30"), tmp_path)
    outcome = sweep.run_point(sweep._portable(point.config), point.run_dir)
    assert outcome["outcome"] == sweep.FAILED and "diverged at epoch 1" in outcome["error"]
    assert sweep.point_status(point) == sweep.FAILED
    assert sweep.read_error(point)["type"] == "TrainingDivergedError"


# ------------------------------------------------------------------ point 3: one run per dir


def test_two_runs_on_one_directory_one_is_refused_and_nothing_is_mixed(tmp_path: Path) -> None:
    from disparate.cli import EXIT_BUSY
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(training.__file__).parents[1]),
           "OMP_NUM_THREADS": "1"}

    def argv(lr: str) -> list[str]:
        args = [sys.executable, "-m", "disparate", "run", "digits-underrep", "--out", str(out),
                "--quiet", "--overwrite"]
        for item in [*TINY, "training.epochs=12", f"training.lr={lr}"]:
            args += ["--set", item]
        return args

    # Two different configs started together: each run takes far longer than the other's start.
    runs = [subprocess.Popen(argv(lr), env=env, stderr=subprocess.PIPE, text=True)
            for lr in ("0.1", "0.2")]
    errors = [r.communicate(timeout=600)[1] for r in runs]
    codes = sorted(r.returncode for r in runs)
    assert codes == [0, EXIT_BUSY], errors
    busy = errors[[r.returncode for r in runs].index(EXIT_BUSY)].strip()
    assert len(busy.splitlines()) == 1 and f"{out} is in use by another run (pid " in busy
    winner = runs[[r.returncode for r in runs].index(0)]
    lr = 0.1 if winner is runs[0] else 0.2
    epochs = [json.loads(line)["epoch"] for line in (out / res.METRICS_FILE).read_text()
              .splitlines()]
    assert epochs == list(range(1, 13))
    results = json.loads((out / res.RESULTS_FILE).read_text())
    saved = load_experiment(str(out / res.CONFIG_FILE))
    assert saved.training.lr == lr and results["config_hash"] == config_hash(saved)


TRY_LOCK = """
import sys
from disparate import fileio
try:
    with fileio.run_dir_lock(sys.argv[1]):
        print("locked")
except fileio.RunDirBusyError as exc:
    print(exc)
"""


def test_the_lock_is_reentrant_in_one_process_and_refuses_another(tmp_path: Path) -> None:
    from disparate import fileio
    env = {**os.environ, "PYTHONPATH": str(Path(fileio.__file__).parents[1])}

    def other() -> str:
        return subprocess.run([sys.executable, "-c", TRY_LOCK, str(tmp_path / "d")], env=env,
                              capture_output=True, text=True, timeout=120).stdout.strip()

    with fileio.run_dir_lock(tmp_path / "d"), fileio.run_dir_lock(tmp_path / "d"):
        assert other().startswith(f"{tmp_path / 'd'} is in use by another run (pid "
                                  f"{os.getpid()} on ")
    assert other() == "locked"


# ------------------------------------------------------------------ point 7: resume, no ckpt


def test_resume_without_a_checkpoint_keeps_finished_results_and_refuses_another_config(
        tmp_path: Path, one_thread: None) -> None:
    out = tmp_path / "run"
    first = training.train(tiny(), out, progress=False)
    (out / res.CHECKPOINT_FILE).unlink()
    again = training.train(tiny(), out, resume=True, progress=False)
    assert again.results == first.results and len(again.metrics) == 2
    with pytest.raises(ValueError, match="holds the results of another config"):
        training.train(tiny("training.lr=0.5"), out, resume=True, progress=False)
    assert json.loads((out / res.RESULTS_FILE).read_text()) == first.results


# ------------------------------------------------------------------ point 7: config hash


def test_threads_and_eval_batch_size_leave_the_hash_and_old_hashes_stay_valid(
        tmp_path: Path, one_thread: None) -> None:
    from disparate.config import config_hashes
    base = tiny("training.num_threads=1", "training.eval_batch_size=64")
    other = tiny("training.num_threads=2", "training.eval_batch_size=1000")
    assert config_hash(base) == config_hash(other)
    assert config_hash(base, legacy=True) != config_hash(base)  # as hashed before: accepted
    assert config_hash(base, legacy=True) in config_hashes(base)
    out = tmp_path / "run"
    cfg = tiny("training.epochs=1")
    training.train(cfg, out, progress=False)
    resumed = training.train(tiny("training.epochs=1", "training.num_threads=2"), out,
                             resume=True, progress=False)
    assert resumed.results["config_hash"] == config_hash(cfg)
