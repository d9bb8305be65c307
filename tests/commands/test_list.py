"""Tests of ``disparate list``."""

from __future__ import annotations

import pytest

from disparate.cli import COMMANDS, main
from disparate.commands import list as list_command
from disparate.config import list_presets, load_experiment
from disparate.data import list_datasets


def test_list_is_registered() -> None:
    assert list_command in COMMANDS


def test_list_shows_presets_with_their_description_datasets_and_models(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    experiments, datasets, models = out.split("\n\n")
    for name in list_presets():
        line = next(x for x in experiments.splitlines() if x.strip().startswith(name + " "))
        first_words = load_experiment(name).description.split()[:3]
        assert " ".join(first_words) in line
    assert "Paper Section 5: MNIST with class 8 reduced" in experiments
    assert [x.strip() for x in datasets.splitlines()[1:]] == list_datasets()
    assert "digits-cnn" in models and "mnist-cnn" in models and "channels=" in models


def test_summary_cuts_at_the_first_sentence_and_width() -> None:
    assert list_command.summary("One. Two.") == "One."
    assert list_command.summary("x" * 200, width=20) == "x" * 17 + "..."
    assert list_command.summary("") == ""
