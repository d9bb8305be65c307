"""Federated comparisons as sweeps over the run store, on a tiny synthetic dump: the files and
their numbers, resume, ``only``, locks, the version-1 layout (``seed-<s>/<variant>``)."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from disparate import cli, fileio
from disparate import results as res
from disparate.config import config_hash, from_dict
from disparate.federated import simulation
from disparate.federated.comparison import compare_federated, comparison_points
from disparate.federated.report import read_figure3, write_federated_report
from disparate.federated.simulation import (
    InProcessExecutor,
    load_federated_data,
    train_federated,
    variant_configs,
)
from disparate.synthetic.reddit import default_population, tiny_config, write_dump

VARIANTS = {"non-private": ["privacy.clipping=false", "privacy.noise=false",
                            "privacy.noise_multiplier=null"],
            "dp": [], "dp-small-S": ["privacy.max_grad_norm=0.1"]}
# Noise from the recorded seed: runs of two layouts are compared bit for bit.
REPRODUCIBLE = {"privacy": {"reproducible_noise": True}}
# What differs between two runs of the same config: where they lie and how long they took.
UNSTABLE = ("runs", "wall_time_s", "mean_round_s")

HOLD_LOCK = """
import sys
from disparate import fileio
with fileio.run_dir_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


class Interrupt(Exception):
    pass


class Breaking(InProcessExecutor):
    def run_round(self, round_index, *args):
        if round_index == 2:
            raise Interrupt
        super().run_round(round_index, *args)


def stable(obj):
    """``obj`` without the keys of :data:`UNSTABLE`, at every depth."""
    if isinstance(obj, dict):
        return {k: stable(v) for k, v in obj.items() if k not in UNSTABLE}
    if isinstance(obj, list):
        return [stable(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fl-cmp-data")
    suffix = ".zst" if importlib.util.find_spec("zstandard") else ".bz2"
    write_dump(directory / f"RC_2017-11{suffix}", default_population(12, seed=1), seed=2)
    base = tiny_config(directory, rounds=2, extra=REPRODUCIBLE)
    config = from_dict({**base, "federated": {**base["federated"], "variants": VARIANTS}})
    return config, load_federated_data(config)


def counting(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The run directories every later call of ``train_federated`` trains (through the
    sweep's :func:`disparate.sweep.train_point`), in order."""
    calls: list[Path] = []
    real = simulation.train_federated

    def train(config, run_dir, **kwargs):
        calls.append(Path(run_dir).resolve())
        return real(config, run_dir, **kwargs)

    monkeypatch.setattr(simulation, "train_federated", train)
    return calls


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    return counting(monkeypatch)


@pytest.fixture(scope="module")
def store(setup, tmp_path_factory):
    """A comparison of the three variants, seed 0, trained in ``OUT/runs``."""
    config, _ = setup
    out = tmp_path_factory.mktemp("fl-cmp") / "cmp"
    with pytest.MonkeyPatch.context() as mp:
        trained = counting(mp)
        outcome = compare_federated(config, out)
    return out, outcome, trained


def test_compare_writes_figure3_and_report(setup, store) -> None:
    config, _ = setup
    out, outcome, trained = store
    for name in ("figure3.json", "comparison-dp.json", "comparison-dp-small-S.json",
                 "report.md", "report.html", "fig3a_output_diversity.png",
                 "fig3b_accuracy_by_vocab.png", "accuracy_over_rounds.png",
                 "update_norms_by_vocab.png"):
        assert (out / name).is_file(), name
    fig = outcome["figure3"]
    assert [v["name"] for v in fig["variants"]] == ["non-private", "dp", "dp-small-S"]
    assert all(v["complete"] for v in fig["variants"])
    # one point per variant in the run store, named as a study's or a comparison's
    points = comparison_points(variant_configs(config), [0], out / "runs")
    assert trained == [p.run_dir.resolve() for p in points]
    assert fig["schema_version"] == 2 and read_figure3(out) == fig
    assert [v["runs"] for v in fig["variants"]] == [[f"runs/{p.key}"] for p in points]
    assert all(p.config.training.seed == 0 for p in points)
    comp = json.loads((out / "comparison-dp.json").read_text())
    assert comp["schema_version"] == 2
    assert comp["baseline"] == "non-private" and comp["variant"] == "dp"
    assert len(comp["groups"]) == 3
    assert comp["runs"] == [{"non_private": f"runs/{points[0].key}",
                             "dp": f"runs/{points[1].key}"}]
    report = (out / "report.md").read_text()
    assert "Figure 3b" in report and "participant level" in report
    assert cli.main(["report", str(points[1].run_dir)]) == 0  # a run of the store
    assert (points[1].run_dir / "report.md").is_file()


def bucket_accuracy(run_dir: Path, bucket: str) -> float:
    """Mean participant accuracy (correct / test tokens) of a bucket, from participants.csv."""
    rows = [r for r in csv.DictReader((run_dir / "participants.csv").open())
            if r["bucket"] == bucket and int(r["test_tokens"]) > 0]
    return sum(int(r["correct"]) / int(r["test_tokens"]) for r in rows) / len(rows)


def test_figure3_and_comparison_numbers_are_those_of_the_runs(store) -> None:
    out, outcome, _ = store
    fig = outcome["figure3"]
    non_private, dp = fig["variants"][0], fig["variants"][1]
    assert fig["buckets"][1] == "10-39"
    np_acc = bucket_accuracy(out / non_private["runs"][0], "10-39")
    dp_acc = bucket_accuracy(out / dp["runs"][0], "10-39")
    assert dp["groups"][1]["group"] == "10-39"
    assert dp["groups"][1]["accuracy"]["mean"] == pytest.approx(dp_acc, rel=1e-12)
    assert non_private["groups"][1]["accuracy"]["values"] == [pytest.approx(np_acc,
                                                                            rel=1e-12)]
    comp = json.loads((out / "comparison-dp.json").read_text())
    group = next(g for g in comp["groups"] if g["group"] == "10-39")
    assert group["drop"]["mean"] == pytest.approx(np_acc - dp_acc, rel=1e-9, abs=1e-12)


def test_resume_reuses_finished_runs_and_overwrite_trains_again(
        setup, store, calls, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config, _ = setup
    out, outcome, _ = store
    again = compare_federated(config, out)
    assert calls == []  # nothing retrained
    assert stable(again["figure3"]) == stable(outcome["figure3"])
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({**tiny_config(config.data.data_dir, rounds=2,
                                                  extra=REPRODUCIBLE),
                                    "federated": {**tiny_config(".", rounds=2)["federated"],
                                                  "variants": VARIANTS}}))
    assert cli.main(["federated", "compare", str(path), "--out", str(out), "--quiet",
                     "--jobs", "1", "--backend", "local"]) == 0
    assert calls == [] and "dp-small-S: test acc" in capsys.readouterr().out
    with pytest.raises(ValueError, match="already holds a run"):
        compare_federated(config, out, resume=False)
    dp = comparison_points(variant_configs(config), [0], out / "runs")[1]
    stamp = (out / fig_run(outcome, "non-private") / res.RESULTS_FILE).stat().st_mtime_ns
    redone = compare_federated(config, out, overwrite=True, only=["dp"])
    assert calls == [dp.run_dir.resolve()]  # only that variant, trained again
    assert (out / fig_run(outcome, "non-private") / res.RESULTS_FILE).stat(
        ).st_mtime_ns == stamp
    assert stable(redone["figure3"]) == stable(outcome["figure3"])


def fig_run(outcome, name: str) -> str:
    return next(v for v in outcome["figure3"]["variants"] if v["name"] == name)["runs"][0]


def test_only_trains_those_and_a_busy_run_is_refused(setup, calls, tmp_path: Path) -> None:
    config, _ = setup
    out = tmp_path / "cmp"
    with pytest.raises(ValueError, match=r"'dp-S8' is not a variant; expected names among "
                                         r"\['non-private', 'dp', 'dp-small-S'\]"):
        compare_federated(config, out, only=["dp-S8"])
    dp = comparison_points(variant_configs(config), [0], out / "runs")[1]
    env = {**os.environ, "PYTHONPATH": str(Path(fileio.__file__).parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(dp.run_dir)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(fileio.RunDirBusyError, match=r"variant=dp seed=0: busy"):
            compare_federated(config, out, only=["dp"])
    finally:
        holder.communicate("", timeout=60)
    assert calls == [] and not (dp.run_dir / res.RESULTS_FILE).exists()
    assert not (out / "figure3.json").exists()
    outcome = compare_federated(config, out, only=["dp"])
    assert calls == [dp.run_dir.resolve()]
    assert [v.get("complete") for v in outcome["figure3"]["variants"]] == [False, True, False]
    assert "groups" not in outcome["figure3"]["variants"][0]
    assert outcome["comparisons"] == {} and not list(out.glob("comparison-*.json"))
    assert sorted(p.name for p in (out / "runs").iterdir()) == [dp.key]


def test_old_layout_runs_are_reused_and_resumed_where_they_lie(
        setup, store, calls, tmp_path: Path) -> None:
    config, data = setup
    out, outcome, _ = store
    old = tmp_path / "old"  # what compare wrote before the run store: seed-<s>/<variant>
    non_private, dp, _ = comparison_points(variant_configs(config), [0], old / "runs")
    train_federated(non_private.config, old / "seed-0" / "non-private", data=data)
    with pytest.raises(Interrupt):
        train_federated(dp.config, old / "seed-0" / "dp", data=data,
                        executor=lambda c, d, s, device="cpu": Breaking(c, d, s))
    calls.clear()
    lines: list[str] = []
    reused = compare_federated(config, old, only=["non-private", "dp"], log=lines.append)
    assert calls == [(old / "seed-0" / "dp").resolve()]  # resumed in place, nothing else
    assert f"1 finished run(s) of the version-1 layout ({old}/seed-<s>/...) reused" in lines
    assert any(line.startswith("1 interrupted run(s) of the version-1 layout") for line in lines)
    assert not (old / "runs").exists()
    fig = reused["figure3"]
    assert [v["runs"] for v in fig["variants"][:2]] == [["seed-0/non-private"], ["seed-0/dp"]]
    assert [v["complete"] for v in fig["variants"]] == [True, True, False]
    # the same numbers as the comparison trained in the store, the resumed model included
    assert stable(fig["variants"][:2]) == stable(outcome["figure3"]["variants"][:2])
    cmp_old, cmp_new = (json.loads((d / "comparison-dp.json").read_text()) for d in (old, out))
    assert stable(cmp_old) == stable(cmp_new)
    a = torch.load(old / "seed-0" / "dp" / "checkpoint.pt", weights_only=True)["global"]
    b = torch.load(out / fig_run(outcome, "dp") / "checkpoint.pt", weights_only=True)["global"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    # version-1 files (no schema_version) are read by the report as they were
    report = (old / "report.md").read_text()
    for name in ("figure3.json", "comparison-dp.json"):
        data_v1 = json.loads((old / name).read_text())
        del data_v1["schema_version"]
        (old / name).write_text(json.dumps(data_v1))
    assert read_figure3(old)["schema_version"] == 1
    assert cli.main(["federated", "report", str(old)]) == 0
    assert (old / "report.md").read_text() == report
    (old / "figure3.json").write_text(json.dumps({**data_v1, "schema_version": 3}))
    with pytest.raises(ValueError, match=r"figure3.json: schema_version=3: this version of "
                                         r"disparate reads figure3.json of versions 1 to 2"):
        write_federated_report(old)


def test_an_old_layout_run_of_another_config_is_never_reported(
        setup, store, calls, tmp_path: Path) -> None:
    """Issue #18, point 2: the results of another config never stand in for this one's."""
    config, data = setup
    out, outcome, _ = store
    old = tmp_path / "old"
    other = from_dict({**tiny_config(config.data.data_dir, rounds=1, extra=REPRODUCIBLE),
                       "federated": {**tiny_config(".", rounds=1)["federated"],
                                     "variants": VARIANTS}})
    other_np = variant_configs(other, ["training.seed=0"])["non-private"]
    train_federated(other_np, old / "seed-0" / "non-private", data=data)
    calls.clear()
    fig = compare_federated(config, old, runs_dir=out / "runs")["figure3"]
    assert calls == []  # every run of this config is in the shared store
    assert (old / fig_run({"figure3": fig}, "non-private")).resolve() == (
        out / fig_run(outcome, "non-private")).resolve()
    assert stable(fig["variants"]) == stable(outcome["figure3"]["variants"])
    kept = res.load_results(old / "seed-0" / "non-private")
    assert kept["config_hash"] == config_hash(other_np) != fig["variants"][0]["config_hash"]
    # in its own store: trained there, the old run neither resumed nor reported
    non_private = comparison_points(variant_configs(config), [0], old / "runs")[0]
    own = compare_federated(config, old, only=["non-private"])["figure3"]
    assert calls == [non_private.run_dir.resolve()]
    assert fig_run({"figure3": own}, "non-private") == f"runs/{non_private.key}"
    assert stable(own["variants"][0]) == stable(outcome["figure3"]["variants"][0])
    assert res.load_results(old / "seed-0" / "non-private") == kept
