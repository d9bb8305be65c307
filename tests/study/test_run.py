"""Tests of :mod:`disparate.studies` and ``disparate study``: the shipped study definitions,
every study end to end at the ``smoke`` scale (scikit-learn's digits, one or two epochs),
seeds with intervals, a user's own study file, resume after a killed sweep, and Ray.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from disparate import results as res
from disparate.cli import COMMANDS, main
from disparate.commands import study as study_command
from disparate.config import ConfigError
from disparate.study import expand, list_studies, load_study, parse_grid_option, run_study
from disparate.sweep import FINISHED, point_status

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STUDIES = ["fig4", "fig5a", "fig5b", "fig5c", "fig5d"]
#: points per study and scale (variants x grid x 1 seed)
POINTS = {
    "fig4": {"paper": 4, "quick": 4, "smoke": 4},
    "fig5a": {"paper": 6 * 4 + 1, "quick": 3 * 3 + 1, "smoke": 2 * 2 + 1},
    "fig5b": {"paper": 10, "quick": 6, "smoke": 4},
    "fig5c": {"paper": 2, "quick": 2, "smoke": 2},
    "fig5d": {"paper": 14, "quick": 10, "smoke": 4},
}
FIGURES = {"fig4": ["fig4.png", "fig4_accuracy.png"], "fig5a": ["fig5a.png",
                                                                  "fig5a_all_runs.png"],
           "fig5b": ["fig5b.png"], "fig5c": ["fig5c.png"], "fig5d": ["fig5d.png"]}
N_GROUPS = 10  # digits and MNIST: classes "0" .. "9"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_study_command_is_registered():
    assert study_command in COMMANDS
    # fig2a (tweets) needs a corpus on disk: tests/presets/test_tweets.py runs it.
    assert list_studies() == ["fig2a", *STUDIES, "mitigation-digits"]  # tests/study/: its own


@pytest.mark.parametrize("scale", ["paper", "quick", "smoke"])
@pytest.mark.parametrize("name", STUDIES)
def test_shipped_studies_expand_to_valid_points(name, scale, tmp_path):
    study = load_study(name, scale=scale)
    points = expand(study, tmp_path)
    assert len(points) == POINTS[name][scale]
    assert len({p.key for p in points}) == len(points)
    for p in points:
        assert p.run_dir == tmp_path / p.key
        assert p.config.evaluation.highlight == ("8", "2")
        assert p.labels["seed"] == p.config.training.seed == 0
    modes = {p.labels["variant"]: p.config.privacy for p in points}
    if scale != "smoke":
        assert all(p.config.data.dataset == "mnist" for p in points)
        assert all(p.config.training.epochs == (60 if scale == "paper" else 10)
                   for p in points)
    if name == "fig4":
        assert {v: m.mode for v, m in modes.items()} == {
            "non-private": "non-private", "clip-only": "clip-only",
            "noise-only": "noise-only", "dp": "dp"}
        assert modes["dp"].noise_multiplier == 0.8 and modes["dp"].max_grad_norm == 1.0
        assert modes["noise-only"].noise_std == 0.8  # sigma = z * S of the DP run
        assert modes["clip-only"].max_grad_norm == 1.0
    if name == "fig5a":
        dp = [p for p in points if p.labels["variant"] == "dp"]
        assert all(p.config.privacy.target_epsilon == p.labels["privacy.target_epsilon"]
                   and p.config.privacy.noise_multiplier is None for p in dp)
        assert {p.config.privacy.max_grad_norm for p in dp} == set(
            dict(study.variants[0].grid)["privacy.max_grad_norm"])
    if name == "fig5d":
        assert {p.config.data.reduce["8"] for p in points} == set(
            dict(study.grid)["data.reduce.8"])


def test_seeds_and_grid_overrides(tmp_path):
    study = load_study("fig5b", scale="quick", seeds=3,
                       grid={"training.batch_size": [128, 512]},
                       overrides=["training.lr=0.1"])
    points = expand(study, tmp_path)
    assert len(points) == 2 * 2 * 3
    assert {p.config.training.batch_size for p in points} == {128, 512}
    assert {p.config.training.seed for p in points} == {0, 1, 2}
    assert {p.config.training.lr for p in points} == {0.1}


def test_override_order_study_then_scale_then_caller_then_variant(tmp_path):
    spec = tmp_path / "order.yaml"
    spec.write_text(
        "name: order\nbase: digits-underrep\nset: [training.epochs=20, training.lr=0.3]\n"
        "variants: [{name: a}, {name: b, set: [training.lr=0.01]}]\n"
        "figure: {kind: clip-noise}\n"
        "scales: {quick: {set: [training.epochs=5, training.batch_size=16]}, paper: {}}\n")
    quick = expand(load_study(str(spec), scale="quick", overrides=["training.batch_size=8"]),
                   tmp_path)
    assert [(p.config.training.epochs, p.config.training.batch_size, p.config.training.lr)
            for p in quick] == [(5, 8, 0.3), (5, 8, 0.01)]
    paper = expand(load_study(str(spec), scale="paper"), tmp_path)
    assert [p.config.training.epochs for p in paper] == [20, 20]


def test_study_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown study 'fig5e' \(did you mean"):
        load_study("fig5e")
    with pytest.raises(ConfigError, match="scale='huge'"):
        load_study("fig4", scale="huge")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nbase: digits-underrep\ngird: {training.lr: [0.1]}\n"
                   "scales: {s: {}}\n")
    with pytest.raises(ConfigError, match="unknown key 'gird' \\(did you mean 'grid'\\?\\)"):
        load_study(str(bad), scale="s")
    bad.write_text("name: bad\nbase: digits-underrep\ngrid: {training.lr: [0.1]}\n"
                   "figure: {kind: sweep, x: training.epochs}\nscales: {s: {}}\n")
    with pytest.raises(ConfigError, match="figure.x='training.epochs'"):
        load_study(str(bad), scale="s")
    bad.write_text("name: bad\nbase: digits-underrep\ngrid: {training.lr: [-1]}\n"
                   "figure: {kind: sweep, x: training.lr}\nscales: {s: {}}\n")
    with pytest.raises(ConfigError, match="training.lr=-1.0"):
        expand(load_study(str(bad), scale="s"), tmp_path)


def test_study_files_and_grid_options_read_yaml_as_configs_do(tmp_path):
    # YAML 1.2 numbers (PyYAML's 1.1 reader would make 1e-3 the string '1e-3'); a duplicate
    # key is refused instead of the last one silently winning
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nbase: digits-underrep\ngrid: {training.lr: [1e-3, 2e-2]}\n"
                    "figure: {kind: sweep, x: training.lr}\nscales: {s: {}}\n")
    assert [p.config.training.lr for p in expand(load_study(str(spec), scale="s"),
                                                   tmp_path)] == [0.001, 0.02]
    assert parse_grid_option("training.lr=1e-3,5e-1") == ("training.lr", (0.001, 0.5))
    spec.write_text("name: s\nbase: digits-underrep\ngrid: {training.lr: [0.1]}\n"
                    "grid: {training.lr: [0.2]}\nscales: {s: {}}\n")
    with pytest.raises(ConfigError, match=r"s.yaml: not valid YAML: line \d+, column \d+: .*grid"):
        load_study(str(spec), scale="s")


def check_outputs(name: str, out: Path, points) -> list[dict[str, str]]:
    """The CSVs, figures and report of a finished smoke study."""
    assert all(point_status(p) == FINISHED for p in points)
    rows = read_csv(out / "results.csv")
    final_acc = [r for r in rows if r["stage"] == "final" and r["metric"] == "accuracy"]
    assert len(final_acc) == len(points) * (N_GROUPS + 1)  # every class and "all"
    assert {r["point"] for r in rows} == {p.key for p in points}
    for p in points:
        metrics = res.read_metrics(p.run_dir)
        per_epoch = [r for r in rows if r["point"] == p.key and r["stage"] == "epoch"
                     and r["metric"] in ("accuracy", "grad_norm")]
        # Every class's accuracy and "all", and the gradient norm of every class that had
        # examples in the epoch's batches (a secret DP run's batches are random: class 8 of
        # fig5d's smoke scale, 4 examples, may be missed by an epoch).
        norms = sum(v is not None for m in metrics for v in m["group_grad_norm"].values())
        assert len(per_epoch) == len(metrics) * (N_GROUPS + 1) + norms
        eps = [r for r in rows if r["point"] == p.key and r["metric"] == "epsilon"
               and r["stage"] == "final"]
        assert len(eps) == (1 if p.config.privacy.is_private else 0)
    summary = read_csv(out / "summary.csv")
    assert {"mean", "ci95_low", "ci95_high", "n"} <= set(summary[0])
    for figure in FIGURES[name]:
        assert (out / figure).read_bytes()[:8] == PNG_MAGIC, figure
    report = (out / "report.md").read_text(encoding="utf-8")
    assert f"{len(points)} of {len(points)} points finished" in report
    for figure in FIGURES[name]:
        assert f"]({figure})" in report
    for p in points:  # every point's epsilon, with its accountant
        assert p.key in report
        if p.config.privacy.is_private:
            eps = res.load_results(p.run_dir)["privacy"]["epsilon"]["rdp"]["epsilon"]
            assert f"| {eps:.2f} |" in report
    assert "rdp (dp_accounting.rdp.RdpAccountant)" in report
    page = (out / "report.html").read_text(encoding="utf-8")  # self-contained: PNGs embedded
    assert page.startswith("<!DOCTYPE html>") and ".png\"" not in page
    assert page.count('src="data:image/png;base64,iVBORw0KGgo') == len(FIGURES[name])
    manifest = json.loads((out / "study.json").read_text())
    assert [pt["status"] for pt in manifest["points"]] == ["finished"] * len(points)
    return rows


@pytest.mark.parametrize("name", [s for s in STUDIES if s != "fig5c"])  # fig5c: below
def test_every_study_at_smoke_scale_local(name, tmp_path):
    study = load_study(name, scale="smoke")
    outcome = run_study(study, tmp_path / name, jobs=1, threads=1)
    assert outcome["ok"]
    check_outputs(name, tmp_path / name, outcome["points"])
    # Running it again trains nothing.
    again = run_study(study, tmp_path / name, jobs=1, threads=1)
    assert again["sweep"].count("skipped") == len(outcome["points"])


def test_cli_fig5c_with_seeds_writes_intervals(tmp_path, capsys):
    out = tmp_path / "fig5c"
    assert main(["study", "fig5c", "--scale", "smoke", "--seeds", "2", "--out", str(out),
                 "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "4 points: 4 done" in printed and "report:" in printed
    check_outputs("fig5c", out, expand(load_study("fig5c", scale="smoke", seeds=2),
                                       out / "runs"))
    summary = read_csv(out / "summary.csv")
    final = [r for r in summary if r["stage"] == "final" and r["metric"] == "accuracy"
             and r["group"] == "8"]
    assert len(final) == 2 and all(r["n"] == "2" and r["ci95_low"] != "" for r in final)
    report = (out / "report.md").read_text()
    assert "2 seeds" in report
    intervals = re.findall(r"(-?\d+\.\d) \[(-?\d+\.\d), (-?\d+\.\d)\]", report)
    assert intervals  # accuracies with their 95% interval over the 2 seeds
    for mean, lo, hi in intervals:
        assert 0.0 <= float(lo) <= float(mean) <= float(hi) <= 100.0
    # --dry-run lists the points and their status without training
    assert main(["study", "fig5c", "--scale", "smoke", "--seeds", "2", "--out", str(out),
                 "--dry-run"]) == 0
    assert capsys.readouterr().out.count("finished") == 4
    assert main(["study", "--list"]) == 0
    assert "fig5d" in capsys.readouterr().out


def test_failed_points_make_the_command_fail_and_are_reported(tmp_path, capsys):
    out = tmp_path / "fig5c"
    code = main(["study", "fig5c", "--scale", "smoke", "--out", str(out),
                 "--set", "training.batch_size=5000"])
    assert code == 1
    report = (out / "report.md").read_text()
    assert "0 of 2 points finished, 2 failed" in report
    assert "batch_size=5000" in report and "error.json" in report


def test_user_study_file(tmp_path):
    experiment = tmp_path / "tiny.yaml"
    experiment.write_text(
        "name: tiny\ndata: {dataset: digits, subsample: 200}\nmodel: {name: digits-cnn}\n"
        "privacy: {clipping: false, noise: false}\n"
        "training: {lr: 0.1, batch_size: 32, epochs: 1}\nevaluation: {highlight: ['8']}\n")
    spec = tmp_path / "lr.yaml"
    spec.write_text(
        "name: lr-study\ntitle: learning rate\nbase: tiny.yaml\n"
        "grid: {training.lr: [0.05, 0.2]}\n"
        "figure: {kind: sweep, x: training.lr, x_label: learning rate, log_x: true}\n"
        "scales: {tiny: {}, longer: {set: [training.epochs=2]}}\n")
    study = load_study(str(spec), scale="tiny")
    outcome = run_study(study, tmp_path / "out", jobs=1, threads=1)
    assert outcome["ok"] and len(outcome["points"]) == 2
    rows = read_csv(tmp_path / "out" / "results.csv")
    assert {r["training.lr"] for r in rows} == {"0.05", "0.2"}
    assert (tmp_path / "out" / "lr-study.png").read_bytes()[:8] == PNG_MAGIC


def test_killed_study_resumes_and_skips_finished_points(tmp_path):
    """SIGKILL a real ``disparate study`` process, then run it again."""
    spec = tmp_path / "kill.yaml"
    spec.write_text(
        "name: kill\nbase: digits-underrep\n"
        "set: [training.epochs=2, data.subsample=300, training.batch_size=32,"
        " privacy.clipping=false, privacy.noise=false, privacy.noise_multiplier=null]\n"
        "grid: {training.lr: [0.05, 0.1, 0.2]}\n"
        "figure: {kind: sweep, x: training.lr}\nscales: {tiny: {}}\n")
    out = tmp_path / "out"
    study = load_study(str(spec), scale="tiny")
    points = expand(study, out / "runs")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    stderr = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "disparate", "study", str(spec), "--scale", "tiny",
         "--out", str(out), "--threads", "1"],
        stdout=subprocess.DEVNULL, stderr=stderr, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(point_status(p) == FINISHED for p in points):
                break
            if proc.poll() is not None:
                break
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        stderr.close()
    finished = {p.key: (p.run_dir / "results.json").stat().st_mtime_ns for p in points
                if point_status(p) == FINISHED}
    assert finished, "no point finished before the kill: " + (
        tmp_path / "stderr.txt").read_text()[-2000:]
    partial = [p.key for p in points if point_status(p) == "partial"]

    outcome = run_study(study, out, jobs=1, threads=1)
    assert outcome["ok"]
    by_key = {o.point.key: o.outcome for o in outcome["sweep"].outcomes}
    for key in finished:
        assert by_key[key] == "skipped"
    for key in partial:
        assert by_key[key] == "resumed"
    for p in points:
        if p.key in finished:
            assert (p.run_dir / "results.json").stat().st_mtime_ns == finished[p.key]
    check = read_csv(out / "results.csv")
    assert {r["point"] for r in check} == {p.key for p in points}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for all the studies run through the Ray backend."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install 'disparate[ray]')")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("name", STUDIES)
def test_every_study_through_ray_then_local_skips(name, tmp_path, local_ray):
    study = load_study(name, scale="smoke")
    outcome = run_study(study, tmp_path / name, backend="ray", jobs=2)
    assert outcome["ok"] and outcome["sweep"].backend == "ray"
    check_outputs(name, tmp_path / name, outcome["points"])
    again = run_study(study, tmp_path / name, backend="local", jobs=1, threads=1)
    assert again["sweep"].count("skipped") == len(outcome["points"])
