"""Tests of ``disparate check-model``: it passes on a shipped experiment and exits 2 naming the
module of a model that mixes examples."""

from __future__ import annotations

import pytest
from torch import nn

from disparate import training
from disparate.cli import COMMANDS, main
from disparate.commands import check_model

TINY = ["--set", "data.subsample=120", "--set", "training.batch_size=30",
        "--set", "training.num_threads=1"]


def test_check_model_is_registered() -> None:
    assert check_model in COMMANDS


def test_check_model_passes_on_a_shipped_experiment(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-model", "digits-underrep", *TINY]) == 0
    out = capsys.readouterr().out
    assert "digits-underrep: self-check passed on " in out
    assert "tolerance 0.005" in out and "examples independent: checked" in out


class Centering(nn.Module):
    def forward(self, x):
        return x - x.mean(0, keepdim=True)


def test_check_model_refuses_a_model_that_mixes_examples(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    build = training.build_model_for
    monkeypatch.setattr(training, "build_model_for",
                        lambda config, dataset: nn.Sequential(Centering(), build(config, dataset)))
    assert main(["check-model", "digits-underrep", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("disparate: error: self-check failed: 0 (Centering) mixes the examples")
