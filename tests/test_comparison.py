"""Tests of :mod:`disparate.comparison`: a comparison is a sweep of (non-private, DP) x seeds
over a run store, so it resumes, reuses finished runs, lends them to studies and runs on Ray.

Tiny runs of scikit-learn's digits with reproducible noise, so that two runs of one config
are bit-identical and a resumed comparison can be compared with an uninterrupted one.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from disparate import fileio, training
from disparate import results as res
from disparate.cli import main
from disparate.comparison import comparison_points, explain, run_comparison, seeded, summary
from disparate.config import config_hash, load_experiment
from disparate.reporting.comparison_table import format_comparison_table

TINY = ["data.subsample=120", "training.batch_size=30", "training.epochs=3",
        "evaluation.min_group_test_size=20", "privacy.reproducible_noise=true"]


class _Killed(BaseException):
    """Stands for SIGKILL in-process: not an Exception, so nothing records it."""


def tiny(*extra: str):
    return load_experiment("digits-underrep", [*TINY, *extra])


def stamps(out: Path, comparison: dict) -> dict[str, int]:
    return {d: (out / d / res.RESULTS_FILE).stat().st_mtime_ns
            for entry in comparison["runs"] for d in (entry["non_private"], entry["dp"])}


def test_points_are_the_seeded_non_private_and_dp_runs(tmp_path):
    config = tiny()
    points = comparison_points(config, [0, 4], tmp_path)
    assert [(p.labels["variant"], p.labels["seed"]) for p in points] == [
        ("non-private", 0), ("dp", 0), ("non-private", 4), ("dp", 4)]
    assert points[2].config == seeded(config, 4).non_private()
    assert points[3].config.data.seed == points[3].config.training.seed == 4
    assert [p.run_dir for p in points] == [tmp_path / config_hash(p.config) for p in points]
    with pytest.raises(ValueError, match="expected mode 'dp'"):
        comparison_points(config.non_private(), [0], tmp_path)


def test_an_interrupted_comparison_resumes_and_reuses_its_finished_runs(tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    real_train = training.train

    def killed_in_epoch_2_of_the_last_run(config, out_dir, **kwargs):
        user_log = kwargs["log"]

        def log(line: str) -> None:
            user_log(line)
            if (config.privacy.mode, config.training.seed) == ("dp", 1) and "epoch 2/3" in line:
                raise _Killed
        return real_train(config, out_dir, **{**kwargs, "log": log})

    monkeypatch.setattr(training, "train", killed_in_epoch_2_of_the_last_run)
    with pytest.raises(_Killed):
        run_comparison(tiny(), out, seeds=[0, 1])
    monkeypatch.setattr(training, "train", real_train)
    points = comparison_points(tiny(), [0, 1], out / "runs")
    finished = {p.key: (p.run_dir / res.RESULTS_FILE).stat().st_mtime_ns for p in points[:3]}
    assert len(res.read_metrics(points[3].run_dir)) == 2
    assert not (out / res.COMPARISON_FILE).exists()

    with pytest.raises(ValueError, match="already holds a run"):
        run_comparison(tiny(), out, seeds=[0, 1])  # neither resume nor overwrite
    lines: list[str] = []
    resumed = run_comparison(tiny(), out, seeds=[0, 1], resume=True, log=lines.append)
    assert "3 of 4 points need no run (3 finished before)" in lines
    assert any(line.startswith("[1/1] resumed  variant=dp seed=1") for line in lines)
    assert {p.key: (p.run_dir / res.RESULTS_FILE).stat().st_mtime_ns
            for p in points[:3]} == finished
    reference = run_comparison(tiny(), tmp_path / "reference", seeds=[0, 1])
    assert resumed["groups"] == reference["groups"]
    assert resumed["overall"] == reference["overall"]
    assert [r["dp"] for r in resumed["runs"]] == [f"runs/{points[1].key}",
                                                  f"runs/{points[3].key}"]

    before = stamps(out, resumed)
    again = run_comparison(tiny(), out, seeds=[0, 1], overwrite=True)
    assert all(b < a for b, a in zip(before.values(), stamps(out, again).values(),
                                     strict=True))
    assert again["groups"] == reference["groups"]


def test_an_interrupted_version_1_run_is_resumed_where_it_lies(tmp_path, monkeypatch):
    first = run_comparison(tiny(), tmp_path / "v2", seeds=[0])
    out = tmp_path / "v1"  # version-1 layout: the non-private run finished, the DP one cut
    shutil.copytree(tmp_path / "v2" / first["runs"][0]["non_private"],
                    out / "seed-0" / "non-private")
    res.write_json(out / res.COMPARISON_FILE,
                   {k: v for k, v in first.items() if k not in ("schema_version", "runs")})
    dp = comparison_points(tiny(), [0], out / "runs")[1]

    def killed_after_epoch_2(line: str) -> None:
        if "epoch 2/3" in line:
            raise _Killed
    with pytest.raises(_Killed):
        training.train(dp.config, out / "seed-0" / "dp", progress=False,
                       log=killed_after_epoch_2)
    metrics = out / "seed-0" / "dp" / res.METRICS_FILE
    cut = metrics.read_text(encoding="utf-8")
    assert [m["epoch"] for m in res.read_metrics(out / "seed-0" / "dp")] == [1, 2]

    with pytest.raises(ValueError, match="already holds a run"):
        run_comparison(tiny(), out, seeds=[0])  # neither resume nor overwrite
    trained: list[tuple[Path, bool, list[str]]] = []
    real_train = training.train

    def recording(config, out_dir, **kwargs):
        epochs: list[str] = []
        user_log = kwargs["log"]

        def log(line: str) -> None:
            epoch = re.search(r"\] (epoch \d/3) ", line)  # an epoch's line, or the resume
            if epoch or line.startswith("resuming "):
                epochs.append(epoch[1] if epoch else line.replace(str(out_dir), "DIR"))
            user_log(line)
        trained.append((Path(out_dir), kwargs.get("resume"), epochs))
        return real_train(config, out_dir, **{**kwargs, "log": log})

    monkeypatch.setattr(training, "train", recording)
    lines: list[str] = []
    resumed = run_comparison(tiny(), out, seeds=[0], resume=True, log=lines.append)
    assert trained == [(out / "seed-0" / "dp", True,  # epochs 1 and 2 not trained again
                        ["resuming DIR after epoch 2/3", "epoch 3/3"])]
    assert f"1 finished run(s) of the version-1 layout ({out}/seed-<s>/...) reused" in lines
    assert (f"1 interrupted run(s) of the version-1 layout ({out}/seed-<s>/...) resumed where "
            "they lie") in lines
    text = metrics.read_text(encoding="utf-8")
    assert text.startswith(cut)
    assert [m["epoch"] for m in res.read_metrics(out / "seed-0" / "dp")] == [1, 2, 3]
    assert resumed["runs"] == [{"seed": "0", "non_private": "seed-0/non-private",
                                "dp": "seed-0/dp"}]
    assert res.load_comparison(out)["runs"] == resumed["runs"]
    assert not (out / "runs" / dp.key).exists()
    assert resumed["groups"] == first["groups"] and resumed["overall"] == first["overall"]


def test_a_study_reuses_the_runs_of_a_comparison(tmp_path, capsys):
    out = tmp_path / "cmp"
    comparison = run_comparison(tiny(), out, seeds=[0])
    before = stamps(out, comparison)
    spec = tmp_path / "pair.yaml"
    spec.write_text(
        "name: pair\nbase: digits-underrep\nseeds: 1\n"
        f"set: [{', '.join(TINY)}]\n"
        "variants:\n"
        "  - name: non-private\n"
        "    set: [privacy.clipping=false, privacy.noise=false, privacy.noise_multiplier=null]\n"
        "  - name: dp\n"
        "figure: {kind: sweep, x: epoch}\nscales: {tiny: {}}\n")
    assert main(["study", str(spec), "--scale", "tiny", "--out", str(tmp_path / "study"),
                 "--runs-dir", str(out / "runs")]) == 0
    assert "2 points: 2 skipped (finished before)" in capsys.readouterr().out
    assert stamps(out, comparison) == before


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="ray is not installed (pip install 'disparate[ray]')")
def test_compare_through_the_ray_backend(tmp_path):
    import ray

    out = tmp_path / "cmp"
    through_ray = run_comparison(tiny(), out, seeds=[0], backend="ray", jobs=2, threads=1)
    assert not ray.is_initialized()  # the instance it started is shut down
    before = stamps(out, through_ray)
    lines: list[str] = []
    local = run_comparison(tiny(), out, seeds=[0], resume=True, log=lines.append)
    assert "2 of 2 points need no run (2 finished before)" in lines
    assert stamps(out, local) == before and local["groups"] == through_ray["groups"]
    reference = run_comparison(tiny(), tmp_path / "reference", seeds=[0], threads=1)
    assert through_ray["groups"] == reference["groups"]


def test_failed_runs_make_the_comparison_fail_naming_them(tmp_path):
    with pytest.raises(ValueError, match=r"2 of 2 runs of the comparison failed: "
                                         r"variant=non-private seed=0: failed \(ValueError: "
                                         r"training.batch_size=5000"):
        run_comparison(tiny("training.batch_size=5000"), tmp_path, seeds=[0])
    assert not (tmp_path / res.COMPARISON_FILE).exists()


DOCS_V1 = Path(__file__).resolve().parents[1] / "docs" / "results" / "mnist-underrep-60ep" \
    / "comparison"


def test_the_report_reads_the_runs_of_both_layouts(tmp_path):
    from disparate.report import load_report_data

    out = tmp_path / "cmp"
    run_comparison(tiny(), out, seeds=[0])
    data = load_report_data(out)  # schema 2: the runs of the store
    assert [r.results["mode"] for r in data.runs["non-private"]] == ["non-private"]
    assert [r.results["mode"] for r in data.runs["dp"]] == ["dp"]
    assert [len(m) for m in data.panels["DP"]] == [3] and data.seeds == [0]

    old = tmp_path / "v1"  # schema 1: seed-<s>/{non-private,dp}, with and without "runs"
    shutil.copytree(DOCS_V1, old)
    for strip_runs in (False, True):
        if strip_runs:
            c = res.load_comparison(old)
            del c["runs"]
            res.write_json(old / res.COMPARISON_FILE, c)
        data = load_report_data(old)
        assert [r.results["mode"] for r in data.runs["dp"]] == ["dp"]
        assert [r.results["mode"] for r in data.runs["non-private"]] == ["non-private"]
        assert [len(m) for m in data.panels["non-private"]] == [60] and data.seeds == [0]


HOLD_LOCKS = """
import contextlib, sys
from disparate import fileio
with contextlib.ExitStack() as stack:
    for path in sys.argv[1:]:
        stack.enter_context(fileio.run_dir_lock(path))
    print("held", flush=True)
    sys.stdin.read()
"""


def test_runs_held_by_another_process_make_the_comparison_busy(tmp_path):
    points = comparison_points(tiny(), [0], tmp_path / "runs")
    env = {**os.environ, "PYTHONPATH": str(Path(fileio.__file__).parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCKS,
                               *(str(p.run_dir) for p in points)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(fileio.RunDirBusyError,
                           match="2 of 2 runs of the comparison failed: variant=non-private "
                                 "seed=0: busy"):
            run_comparison(tiny(), tmp_path, seeds=[0])
    finally:
        holder.communicate("", timeout=60)
    assert not (tmp_path / res.COMPARISON_FILE).exists()


def _toy_run(accs: dict[str, float], mode: str) -> dict:
    sizes = {"8": 10, "2": 120}
    return {"experiment": "toy", "mode": mode, "config_hash": mode, "overall_accuracy": 0.9,
            "wall_time_s": 1.0, "privacy": {"is_private": mode == "dp", "statement": "eps"},
            "groups": [{"group": g, "train_size": sizes[g], "test_size": 50, "accuracy": a,
                        "grad_norm": 1.0, "small_test": False} for g, a in accs.items()]}


def test_summary_and_explain_of_a_hand_made_comparison(tmp_path):
    # drops: class 8 0.4, 0.1, 0.3 (mean 26.7 points), class 2 0.01, 0.17, 0.01 (mean 6.3):
    # 8 drops more than 2 in seeds 0 and 2, not in seed 1.
    c = res.compare_runs([_toy_run({"8": 0.9, "2": 0.99}, "np"),
                          _toy_run({"8": 0.8, "2": 0.97}, "np"),
                          _toy_run({"8": 0.9, "2": 0.99}, "np")],
                         [_toy_run({"8": 0.5, "2": 0.98}, "dp"),
                          _toy_run({"8": 0.7, "2": 0.80}, "dp"),
                          _toy_run({"8": 0.6, "2": 0.98}, "dp")],
                         seeds=[0, 1, 2], highlight=["8", "2"], experiment="toy")
    assert explain(c).splitlines() == [
        "With DP, class 8 (10 training examples) loses 26.7 points; class 2 (120 training "
        "examples) loses 6.3 points (means over seeds).",
        "The drop on class 8 exceeds the drop on class 2 in 2 of 3 seeds (paired: same data, "
        "same seed)."]
    lines = summary(c, tmp_path, None, 1.26).splitlines()
    assert lines[:2] == ["", "toy: non-private vs DP, accuracy per group"]
    assert lines[-2:] == [f"comparison: {tmp_path / 'comparison.json'}", "wall time: 1.3 s"]
    assert "\n".join(lines[2:-3]) == format_comparison_table(c)
    # class 8 non-DP 0.9, 0.8, 0.9: 86.7 +- 4.303 * 0.0577 / sqrt(3) = 14.3 points reaches
    # 101.0%, printed up to 100.0; the header says what the interval is
    assert "non-DP acc % [95% CI]" in lines[2]
    assert "mean over 3 seeds (0, 1, 2); [lo, hi]: 95% Student-t interval" in "\n".join(lines)
    row8 = next(line for line in lines if line.startswith("8*"))
    assert row8.split()[3:6] == ["86.7", "[72.3,", "100.0]"]
    assert f"report: {tmp_path}\n" in summary(c, tmp_path, {}, 0.0)
    (tmp_path / "report.md").write_text("x", encoding="utf-8")
    assert f"report: {tmp_path / 'report.md'}\n" in summary(c, tmp_path, {}, 0.0)


def test_a_version_1_directory_is_resumed_reusing_its_finished_runs_where_they_lie(
        tmp_path, monkeypatch):
    first = run_comparison(tiny(), tmp_path / "v2", seeds=[0, 1])
    out = tmp_path / "v1"  # the version-1 layout: seed-<s>/{non-private,dp}, no schema_version
    for entry in first["runs"]:
        for key, label in (("non_private", "non-private"), ("dp", "dp")):
            shutil.copytree(tmp_path / "v2" / entry[key], out / f"seed-{entry['seed']}" / label)
    v1 = {k: v for k, v in first.items() if k not in ("schema_version", "runs")}
    res.write_json(out / res.COMPARISON_FILE, v1)
    shutil.rmtree(out / "seed-1" / "dp")  # one run never finished: trained in the store
    stamp = (out / "seed-0" / "dp" / res.RESULTS_FILE).stat().st_mtime_ns

    with pytest.raises(ValueError, match=r"seed-0/non-private already holds a run"):
        run_comparison(tiny(), out, seeds=[0, 1])  # neither resume nor overwrite
    trained: list[int] = []
    real_train = training.train

    def counting(config, out_dir, **kwargs):
        trained.append(config.training.seed)
        return real_train(config, out_dir, **kwargs)

    monkeypatch.setattr(training, "train", counting)
    lines: list[str] = []
    resumed = run_comparison(tiny(), out, seeds=[0, 1], resume=True, log=lines.append)
    assert trained == [1]
    assert f"3 finished run(s) of the version-1 layout ({out}/seed-<s>/...) reused" in lines
    dp1 = comparison_points(tiny(), [1], out / "runs")[1]
    assert resumed["schema_version"] == 2 and resumed["runs"] == [
        {"seed": "0", "non_private": "seed-0/non-private", "dp": "seed-0/dp"},
        {"seed": "1", "non_private": "seed-1/non-private", "dp": f"runs/{dp1.key}"}]
    assert (out / "seed-0" / "dp" / res.RESULTS_FILE).stat().st_mtime_ns == stamp
    assert resumed["groups"] == first["groups"] and resumed["overall"] == first["overall"]
    assert res.load_comparison(out) == resumed
