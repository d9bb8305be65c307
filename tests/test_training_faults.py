"""Faults in the training loop (issue #18): the accountant cannot lose a trained run, a run
directory is locked for the life of a run, divergence is recorded as such."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disparate import results as res
from disparate import training
from disparate.config import load_experiment

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
