"""Tests of ``disparate compare``: paired runs on identical data, comparison.json, table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from disparate import comparison
from disparate import report as report_module
from disparate import results as res
from disparate.cli import COMMANDS, main
from disparate.commands import compare as compare_command
from disparate.config import config_hash, load_experiment

TINY = ["--set", "data.subsample=120", "--set", "training.batch_size=30",
        "--set", "training.epochs=1", "--set", "evaluation.min_group_test_size=20"]
GROUP_KEYS = {"group", "train_size", "test_size", "train_sizes", "test_sizes", "small_test",
              "highlight", "non_private_accuracy", "dp_accuracy", "drop",
              "non_private_grad_norm", "dp_grad_norm"}
SUMMARY_KEYS = {"mean", "ci95", "values", "n"}


@pytest.fixture
def no_report(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []

    def fake(out_dir: Path) -> dict:
        calls.append(Path(out_dir))
        return {}

    monkeypatch.setattr(report_module, "write_report", fake)
    return calls


def test_compare_is_registered() -> None:
    assert compare_command in COMMANDS


def test_compare_two_seeds_writes_comparison_json(tmp_path: Path, no_report: list[Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # Reproducible noise: only then do the DP runs share the baselines' batches (checked below).
    assert main(["compare", "digits-underrep", *TINY, "--seeds", "2", "--out", str(tmp_path),
                 "--set", "privacy.reproducible_noise=true", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert no_report == [tmp_path]  # the report renderer was called on the directory
    c = json.loads((tmp_path / "comparison.json").read_text(encoding="utf-8"))
    assert {"experiment", "seeds", "highlight", "groups", "overall", "poor_get_poorer", "gap",
            "privacy"} <= set(c)
    assert c["experiment"] == "digits-underrep" and c["seeds"] == [0, 1]
    assert c["highlight"] == ["8", "2"]
    assert [g["group"] for g in c["groups"]] == [str(i) for i in range(10)]
    for g in c["groups"]:
        assert set(g) == GROUP_KEYS
        for key in ("non_private_accuracy", "dp_accuracy", "drop"):
            assert set(g[key]) == SUMMARY_KEYS and len(g[key]["values"]) == 2
    assert set(c["overall"]) == {"non_private_accuracy", "dp_accuracy", "drop"}
    assert {"spearman", "description"} <= set(c["poor_get_poorer"])
    assert set(c["gap"]) == {"non_private", "dp"}
    assert c["privacy"]["is_private"] and c["privacy"]["epsilon"]["rdp"]["epsilon"] > 0

    for seed in (0, 1):
        np_r = res.load_results(tmp_path / c["runs"][seed]["non_private"])
        dp_r = res.load_results(tmp_path / c["runs"][seed]["dp"])
        assert np_r["mode"] == "non-private" and dp_r["mode"] == "dp"
        assert np_r["seed"] == dp_r["seed"] == np_r["data_seed"] == seed
        assert [(g["train_size"], g["test_size"]) for g in np_r["groups"]] == \
            [(g["train_size"], g["test_size"]) for g in dp_r["groups"]]
        assert res.read_metrics(tmp_path / c["runs"][seed]["dp"])[0]["examples"] == \
            res.read_metrics(tmp_path / c["runs"][seed]["non_private"])[0]["examples"]
        # The drop in comparison.json is exactly non-private minus DP accuracy.
        for g, a, b in zip(c["groups"], np_r["groups"], dp_r["groups"], strict=True):
            assert g["drop"]["values"][seed] == pytest.approx(a["accuracy"] - b["accuracy"])
    # schema 2: the runs are sweep points of the run store OUT/runs, keyed by config hash
    dp1 = comparison.seeded(load_experiment("digits-underrep", [
        *TINY[1::2], "privacy.reproducible_noise=true"]), 1)
    assert c["schema_version"] == 2
    assert c["runs"][1] == {"seed": "1", "non_private": f"runs/{config_hash(dp1.non_private())}",
                            "dp": f"runs/{config_hash(dp1)}"}
    # The resolved config and the settings actually used, overrides included.
    assert c["config"]["dp"]["training"]["epochs"] == 1
    assert c["config"]["dp"]["privacy"]["reproducible_noise"] is True
    assert c["config"]["non_private"]["privacy"]["clipping"] is False
    assert c["config"]["dp"]["training"]["seed"] == 0  # the first seed's
    assert c["settings"]["dp"]["epochs"] == 1 and c["settings"]["dp"]["batch_size"] == 30
    assert c["settings"]["dp"]["lr"] == 0.3 and c["settings"]["dp"]["optimizer"] == "sgd"
    assert {"training.epochs=1", "data.subsample=120",
            "privacy.reproducible_noise=true"} <= set(c["settings"]["dp"]["overrides"])
    assert c["settings"]["dp"]["noise_seeding"] == "reproducible"

    # group_metrics.csv: tidy rows of every run; its accuracies are those of comparison.json
    with (tmp_path / "group_metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["seed", "mode", "group", "metric", "class", "value", "size"]
    acc8 = {(r["seed"], r["mode"]): float(r["value"]) for r in rows
            if (r["group"], r["metric"]) == ("8", "accuracy")}
    g8 = next(g for g in c["groups"] if g["group"] == "8")
    assert [acc8[(str(s), "dp")] for s in (0, 1)] == pytest.approx(g8["dp_accuracy"]["values"])

    lines = out.splitlines()
    assert any(line.startswith("8*") for line in lines)
    assert any(line.startswith("2*") for line in lines)
    assert any(line.startswith("all ") for line in lines)
    assert "Spearman" in out and "comparison: " in out and "-DP for" in out


def test_compare_renders_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "digits-underrep", *TINY, "--out", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "report.md").is_file() and (tmp_path / "report.html").is_file()
    assert f"report: {tmp_path / 'report.md'}" in capsys.readouterr().out


def test_compare_resume_reuses_finished_runs(tmp_path: Path, no_report: list[Path]) -> None:
    argv = ["compare", "digits-underrep", *TINY, "--out", str(tmp_path), "--quiet",
            "--no-report"]
    assert main(argv) == 0
    dp_dir = tmp_path / res.load_comparison(tmp_path)["runs"][0]["dp"]
    stamp = (dp_dir / "results.json").stat().st_mtime_ns
    first = res.load_comparison(tmp_path)
    assert main(argv) == 2  # the runs exist: neither --resume nor --overwrite
    assert main([*argv, "--resume"]) == 0
    assert (dp_dir / "results.json").stat().st_mtime_ns == stamp
    again = res.load_comparison(tmp_path)
    assert again["groups"] == first["groups"]
    assert no_report == []


def test_compare_needs_a_dp_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "digits-underrep", "--set", "privacy.noise=false",
                 "--set", "privacy.noise_multiplier=null", "--out", str(tmp_path)]) == 2
    assert "expected mode 'dp'" in capsys.readouterr().err
    assert main(["compare", "digits-underrep", "--seeds", "0"]) == 2
    assert main(["compare", "nope"]) == 2


def test_seeded_sets_data_and_training_seed() -> None:
    cfg = comparison.seeded(load_experiment("digits-underrep"), 7)
    assert cfg.data.seed == cfg.training.seed == 7
    assert comparison.seed_list(cfg, 3) == [7, 8, 9]


def test_mnist_benchmark_script_on_tiny_idx_files(tmp_path: Path, no_report: list[Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/mnist_underrep.py runs compare on MNIST files and writes its table."""
    import importlib.util

    import numpy as np

    from disparate.data import write_idx

    data = tmp_path / "mnist"
    data.mkdir()
    rng = np.random.default_rng(0)
    for prefix, per_class in (("train", 5), ("t10k", 2)):
        labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)
        write_idx(data / f"{prefix}-labels-idx1-ubyte", labels)
        write_idx(data / f"{prefix}-images-idx3-ubyte",
                  rng.integers(0, 256, size=(labels.size, 28, 28), dtype=np.uint8))
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "mnist_underrep.py"
    spec = importlib.util.spec_from_file_location("mnist_underrep_benchmark", script)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench"
    assert bench.main(["--data-dir", str(data), "--epochs", "1", "--out", str(out), "--quiet",
                       "--set", "data.reduce={8: 2}", "--set", "training.batch_size=16"]) == 0
    md = (out / "benchmark.md").read_text(encoding="utf-8")
    assert "| **8**! | 2 | 2 |" in md and "wall time:" in md and "1e-06)-DP for" in md
    assert (out / "comparison.json").is_file() and no_report == [out]
    assert md in capsys.readouterr().out
