"""Tests of :mod:`disparate.sweep`: run directories keyed by config, skip / resume / failure
handling, the local process pool and the Ray backend.

Points are tiny runs on scikit-learn's bundled digits (non-private, so no accounting time):
a fraction of a second each in-process. The spawn pool and Ray tests pay for starting
workers (each imports torch) and are kept to one sweep each.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from disparate import fileio, training
from disparate import results as res
from disparate.config import load_experiment, to_dict
from disparate.sweep import (
    BUSY,
    DONE,
    FAILED,
    FINISHED,
    PARTIAL,
    PENDING,
    RESUMED,
    SKIPPED,
    make_point,
    point_status,
    read_error,
    run_point,
    run_sweep,
    threads_per_point,
)

TINY = ["training.epochs=1", "data.subsample=200", "training.batch_size=32",
        "privacy.clipping=false", "privacy.noise=false", "privacy.noise_multiplier=null"]


def tiny_point(runs_dir: Path, *extra: str, **labels):
    config = load_experiment("digits-underrep", [*TINY, *extra])
    return make_point(config, runs_dir, labels)


def mtimes(points) -> dict[str, int]:
    return {p.key: (p.run_dir / res.RESULTS_FILE).stat().st_mtime_ns for p in points}


def test_threads_per_point_keeps_jobs_times_threads_within_cores():
    assert threads_per_point(1, cores=2) == 2
    assert threads_per_point(2, cores=2) == 1
    assert threads_per_point(4, cores=2) == 1
    assert threads_per_point(3, cores=16) == 5


def test_run_directory_is_keyed_by_config_hash(tmp_path):
    a = tiny_point(tmp_path, "training.seed=0")
    b = tiny_point(tmp_path, "training.seed=1")
    same = tiny_point(tmp_path, "training.seed=0", "data.data_dir=/elsewhere")
    assert a.run_dir == tmp_path / a.key and a.key != b.key
    assert same.key == a.key  # the data location is not part of what is trained
    with pytest.raises(ValueError, match="same resolved config"):
        run_sweep([a, same])
    with pytest.raises(ValueError, match="backend='slurm'"):
        run_sweep([a], backend="slurm")
    with pytest.raises(ValueError, match="jobs=0"):
        run_sweep([a], jobs=0)


def test_finished_points_are_skipped_and_never_rewritten(tmp_path):
    points = [tiny_point(tmp_path, f"training.seed={s}", seed=s) for s in range(3)]
    assert [point_status(p) for p in points] == [PENDING] * 3
    report = run_sweep(points, jobs=1, threads=1)
    assert [o.outcome for o in report.outcomes] == [DONE] * 3 and report.ok
    assert [point_status(p) for p in points] == [FINISHED] * 3
    for p in points:
        assert {"config.yaml", "metrics.jsonl", "results.json", "checkpoint.pt",
                "train.log"} <= {f.name for f in p.run_dir.iterdir()}
        assert res.load_results(p.run_dir)["config_hash"] == p.key
    before = mtimes(points)
    again = run_sweep(points, jobs=1, threads=1)
    assert [o.outcome for o in again.outcomes] == [SKIPPED] * 3
    assert mtimes(points) == before
    assert "3 skipped" in again.summary()


def test_failed_point_is_recorded_and_the_others_go_on(tmp_path):
    good = [tiny_point(tmp_path, f"training.seed={s}", seed=s) for s in (0, 1)]
    bad = tiny_point(tmp_path, "training.batch_size=5000", seed=9)  # > training-set size
    lines: list[str] = []
    report = run_sweep([good[0], bad, good[1]], threads=1, log=lines.append)
    assert [o.outcome for o in report.outcomes] == [DONE, FAILED, DONE]
    assert not report.ok and report.failed[0].point is bad
    assert "batch_size=5000" in report.failed[0].error
    assert point_status(bad) == FAILED
    error = read_error(bad)
    assert error["type"] == "ValueError" and "Traceback" in error["traceback"]
    assert any("failed" in line and "batch_size=5000" in line for line in lines)
    # Not retried when asked not to; retried (and failing again) by default.
    kept = run_sweep([good[0], bad], retry_failed=False, threads=1)
    assert [o.outcome for o in kept.outcomes] == [SKIPPED, FAILED]
    retried = run_sweep([good[0], bad], threads=1)
    assert [o.outcome for o in retried.outcomes] == [SKIPPED, FAILED]


class _Killed(BaseException):
    """Stands for SIGKILL in-process: not an Exception, so nothing records it."""


def test_interrupted_point_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    finished = tiny_point(tmp_path / "runs", "training.seed=0")
    victim = tiny_point(tmp_path / "runs", "training.seed=1", "training.epochs=3")
    run_sweep([finished], threads=1)
    real_train = training.train

    def train_killed_after_epoch_2(config, out_dir, **kwargs):
        user_log = kwargs["log"]

        def log(line: str) -> None:
            user_log(line)
            if "epoch 2/3" in line:
                raise _Killed
        return real_train(config, out_dir, **{**kwargs, "log": log})

    monkeypatch.setattr(training, "train", train_killed_after_epoch_2)
    with pytest.raises(_Killed):
        run_sweep([finished, victim], threads=1)
    monkeypatch.setattr(training, "train", real_train)
    assert point_status(victim) == PARTIAL
    assert len(res.read_metrics(victim.run_dir)) == 2

    before = mtimes([finished])
    report = run_sweep([finished, victim], threads=1)
    assert [o.outcome for o in report.outcomes] == [SKIPPED, RESUMED]
    assert mtimes([finished]) == before
    assert "resuming" in (victim.run_dir / "train.log").read_text()
    resumed = res.load_results(victim.run_dir)

    reference = make_point(victim.config, tmp_path / "reference")
    run_sweep([reference], threads=1)
    expected = res.load_results(reference.run_dir)
    assert resumed["overall_accuracy"] == expected["overall_accuracy"]
    assert resumed["groups"] == expected["groups"]
    assert res.read_metrics(victim.run_dir)[-1]["train_loss"] == pytest.approx(
        res.read_metrics(reference.run_dir)[-1]["train_loss"], rel=1e-9)


HOLD_LOCK = """
import sys
from disparate import fileio
with fileio.run_dir_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_point_running_elsewhere_is_left_alone(tmp_path):
    point = tiny_point(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(Path(fileio.__file__).parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(point.run_dir)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        out = run_point(to_dict(point.config), point.run_dir)
        assert out["outcome"] == BUSY
        assert not (point.run_dir / res.RESULTS_FILE).exists()
    finally:
        holder.communicate("", timeout=60)
    assert run_point(to_dict(point.config), point.run_dir)["outcome"] == DONE


def test_local_process_pool(tmp_path):
    points = [tiny_point(tmp_path, f"training.seed={s}", seed=s) for s in (0, 1)]
    bad = tiny_point(tmp_path, "training.batch_size=5000", seed=9)
    report = run_sweep([points[0], bad, points[1]], jobs=2)
    assert [o.outcome for o in report.outcomes] == [DONE, FAILED, DONE]
    assert report.backend == "local" and report.jobs == 2
    # the workers ran with cores // jobs threads and wrote their logs
    assert "threads" in (points[0].run_dir / "train.log").read_text()
    assert json.loads((bad.run_dir / "error.json").read_text())["type"] == "ValueError"


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="ray is not installed (pip install 'disparate[ray]')")
def test_ray_backend_on_a_local_instance(tmp_path):
    points = [tiny_point(tmp_path, f"training.seed={s}", seed=s) for s in (0, 1)]
    bad = tiny_point(tmp_path, "training.batch_size=5000", seed=9)
    report = run_sweep([points[0], bad, points[1]], backend="ray", jobs=2)
    assert [o.outcome for o in report.outcomes] == [DONE, FAILED, DONE]
    assert "batch_size=5000" in read_error(bad)["error"]
    import ray

    assert not ray.is_initialized()  # the instance it started is shut down
    # The same run directories through the other backend: nothing is recomputed.
    before = mtimes(points)
    again = run_sweep(points, backend="local", threads=1)
    assert [o.outcome for o in again.outcomes] == [SKIPPED, SKIPPED]
    assert mtimes(points) == before
