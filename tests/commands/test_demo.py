"""Tests of ``disparate demo`` on a reduced setting (the full demo takes about a minute)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disparate import report as report_module
from disparate.cli import COMMANDS, main
from disparate.commands import demo as demo_command
from disparate.config import load_experiment


def test_demo_is_registered() -> None:
    assert demo_command in COMMANDS


def test_demo_pipeline_on_a_reduced_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(report_module, "write_report",
                        lambda out: calls.append(Path(out)) or {})
    assert main(["demo", "--out", str(tmp_path), "--seeds", "2", "--quiet",
                 "--set", "training.epochs=2"]) == 0
    out = capsys.readouterr().out
    assert calls == [tmp_path]
    c = json.loads((tmp_path / "comparison.json").read_text(encoding="utf-8"))
    assert c["experiment"] == "digits-underrep" and c["seeds"] == [0, 1]
    groups = {g["group"]: g for g in c["groups"]}
    assert groups["8"]["train_size"] == 10 and groups["2"]["train_size"] > 100
    lines = out.splitlines()
    assert any(line.startswith("8*") for line in lines)
    assert any(line.startswith("2*") for line in lines)
    assert "1e-05)-DP for" in out  # the stated epsilon
    assert "report: " in out and "wall time: " in out
    assert "class 8 (10 training examples) loses" in out
    assert "The drop on class 8 exceeds the drop on class 2 in " in out


def test_demo_preset_states_its_privacy() -> None:
    cfg = load_experiment(demo_command.PRESET)
    assert cfg.privacy.is_private and cfg.privacy.noise_multiplier == 2.65
    assert cfg.data.reduce == {"8": 10} and cfg.evaluation.highlight == ("8", "2")
    assert cfg.privacy.delta < 1 / 1145  # delta below 1/N
    assert not cfg.privacy.reproducible_noise  # the demo's DP runs draw secret noise
    assert "-DP" not in cfg.description and "4.96" not in cfg.description


def test_demo_preset_epsilon_matches_the_readme() -> None:
    from disparate.privacy.accounting import compute_epsilon, total_steps

    cfg = load_experiment(demo_command.PRESET)
    n = 1145  # digits training split with class 8 reduced to 10
    report = compute_epsilon(
        dataset_size=n, batch_size=cfg.training.batch_size,
        noise_multiplier=cfg.privacy.noise_multiplier, delta=cfg.privacy.delta,
        steps=total_steps(n, cfg.training.batch_size, cfg.training.epochs))
    assert report.steps == 540 and round(report.epsilon, 2) == 4.96


def test_demo_on_a_non_terminal_prints_a_line_per_epoch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(report_module, "write_report", lambda out: {})
    assert main(["demo", "--out", str(tmp_path), "--seeds", "1", "--no-report",
                 "--set", "training.epochs=1", "--set", "data.subsample=200"]) == 0
    out = capsys.readouterr().out  # captured: not a terminal, so no bar
    assert "[digits-underrep non-private seed 0] epoch 1/1" in out
    assert "[digits-underrep dp seed 0] epoch 1/1" in out
