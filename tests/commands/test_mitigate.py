"""Tests of ``disparate mitigate``: every method at the same epsilon on identical data,
mitigation.json, the report and the printed table, bad input first. The library's own tests
(tables by hand, tuning, the old file format) are in ``tests/test_mitigation.py``."""

from __future__ import annotations

import contextlib
import io
import json
from html import escape
from pathlib import Path

import pytest
import torch

from disparate import mitigation as mit
from disparate import results as res
from disparate.cli import COMMANDS, main
from disparate.commands import mitigate

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--set", "data.subsample=120", "--set", "training.batch_size=30",
        "--set", "training.epochs=1", "--set", "evaluation.min_group_test_size=20"]


def test_mitigate_is_registered() -> None:
    assert mitigate in COMMANDS


@pytest.mark.parametrize(("argv", "message"), [
    (["--methods", "dpsgd,fair"], "--methods='fair': expected a comma-separated list of "
     "'dpsgd', 'dpsgd-f', 'dpsgd-global', 'dpsgd-global-adapt', 'adaptive-clip'"),
    (["--methods", "dpsgd,dpsgd"], "--methods='dpsgd,dpsgd': 'dpsgd' is given twice"),
    (["--target-epsilon", "-1"], "--target-epsilon=-1.0: expected a finite number > 0"),
    (["--tune", "-2"], "--tune=-2: expected an integer >= 0"),
    (["--tune-objective", "best"], "--tune-objective: invalid choice: 'best' (choose from "
     "'overall', 'worst-group')"),
    (["--set", "mitigation.method=dpsgd-f", "--set", "mitigation.options.count_noise_std=0.01",
      "--methods", "dpsgd,dpsgd-f", "--target-epsilon", "0.5"],
     "target_epsilon=0.5 cannot be reached"),
    (["--set", "mitigation.method=dpsgd-global", "--set", "mitigation.options.upper_bound=0.1",
      "--methods", "dpsgd-global"],
     "mitigation.options.upper_bound=0.1: expected >= privacy.max_grad_norm=1"),
])
def test_bad_input_fails_before_training(argv, message, tmp_path, capsys) -> None:
    args = ["mitigate", "digits-underrep", *TINY, "--out", str(tmp_path / "m"), "--quiet"]
    if "--target-epsilon" not in argv:
        argv = [*argv, "--target-epsilon", "5"]
    assert main([*args, *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m").exists()  # nothing trained, nothing written


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory) -> tuple[Path, dict, str]:
    """One CLI run shared by the tests below: dpsgd and dpsgd-f, 2 seeds, epsilon 4."""
    out = tmp_path_factory.mktemp("mitigate") / "m"
    argv = ["mitigate", "digits-underrep", *TINY, "--methods", "dpsgd,dpsgd-f",
            "--target-epsilon", "4", "--seeds", "2", "--out", str(out), "--quiet"]
    threads, printed = torch.get_num_threads(), io.StringIO()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(printed):
            assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    return out, json.loads((out / mit.MITIGATION_FILE).read_text()), printed.getvalue()


def test_every_method_at_the_same_epsilon_on_identical_data(two_seeds) -> None:
    out, m, _ = two_seeds
    assert m["methods"] == ["dpsgd", "dpsgd-f"] and m["seeds"] == [0, 1]
    assert m["schema_version"] == mit.MITIGATION_SCHEMA_VERSION
    for method in m["methods"]:
        s = m["summary"][method]
        assert 4 * 0.99 <= s["epsilon"] <= 4
        runs = m["comparisons"][method]["runs"]
        assert [r["seed"] for r in runs] == ["0", "1"]
        for k, seed_runs in enumerate(runs):
            run = res.load_results(out / seed_runs["dp"])
            ref = res.load_results(out / seed_runs["non_private"])
            assert run["seed"] == ref["seed"] == m["seeds"][k]
            assert run["privacy"]["mechanism"]["method"] == method
            assert ref["privacy"]["is_private"] is False
            assert run["privacy"]["epsilon"]["rdp"]["epsilon"] == s["epsilon"]
            for g in m["comparisons"][method]["groups"]:
                acc = {x["group"]: x for x in run["groups"]}[g["group"]]
                acc_np = {x["group"]: x for x in ref["groups"]}[g["group"]]
                assert acc["train_size"] == acc_np["train_size"] == g["train_size"]
                assert g["dp_accuracy"]["values"][k] == acc["accuracy"]
                if acc["accuracy"] is not None:
                    assert g["drop"]["values"][k] == pytest.approx(
                        acc_np["accuracy"] - acc["accuracy"])
        accs = {g["group"]: g["dp_accuracy"]["mean"] for g in m["comparisons"][method]["groups"]
                if g["dp_accuracy"]["mean"] is not None}
        assert s["worst_group_accuracy"] == min(accs.values())
        assert s["gap"] == pytest.approx(max(accs.values()) - min(accs.values()))
    # both methods share the reference's runs: one per seed in the run store
    assert (m["comparisons"]["dpsgd"]["runs"][0]["non_private"]
            == m["comparisons"]["dpsgd-f"]["runs"][0]["non_private"])
    assert len(list((out / mit.RUNS_SUBDIR).iterdir())) == 2 * 3
    # the aux statistics cost budget: DPSGD-F's gradient gets more noise for the same epsilon
    assert m["summary"]["dpsgd-f"]["noise_multiplier"] > m["summary"]["dpsgd"]["noise_multiplier"]
    assert m["summary"]["dpsgd-f"]["aux_noise_multipliers"] == [pytest.approx(30 / 20)]


def test_the_report_and_the_printed_table(two_seeds) -> None:
    out, m, printed = two_seeds
    report = (out / mit.REPORT_FILE).read_text()
    assert mit.NO_TUNING_NOTE in report and "## dpsgd-f" in report
    assert mit.format_summary_table(m) in report and mit.format_summary_table(m) in printed
    html = (out / mit.REPORT_HTML_FILE).read_text()
    assert escape(m["summary"]["dpsgd-f"]["statement"]) in html
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html
    assert (out / mit.FIGURE_FILE).read_bytes()[:4] == b"\x89PNG"
    assert "| dpsgd-f | " in printed


def test_a_second_run_needs_resume_and_resume_trains_nothing(two_seeds, capsys) -> None:
    out, m, _ = two_seeds
    argv = ["mitigate", "digits-underrep", *TINY, "--methods", "dpsgd,dpsgd-f",
            "--target-epsilon", "4", "--seeds", "2", "--out", str(out), "--quiet"]
    assert main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0
    again = json.loads((out / mit.MITIGATION_FILE).read_text())
    assert again["summary"] == m["summary"]


def test_tuning_trains_every_method_with_its_best_trial_and_says_so(tmp_path) -> None:
    out = tmp_path / "m"
    argv = ["mitigate", "digits-underrep", *TINY, "--methods", "dpsgd", "--target-epsilon",
            "4", "--tune", "2", "--tune-objective", "worst-group", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    m = json.loads((out / mit.MITIGATION_FILE).read_text())
    tuning = m["tuning"]
    assert tuning["trials"] == 2 and tuning["objective"] == "worst-group"
    assert m["tuning_note"] == mit.TUNING_NOTE
    pick = tuning["chosen"]["dpsgd"]
    scores = [t["score"] for t in pick["trials"]]
    assert len(scores) == 2 and pick["lr"] == pick["trials"][scores.index(max(scores))]["lr"]
    for k in range(2):  # the trials trained on the validation split, kept apart from the runs
        assert (out / mit.TUNING_SUBDIR / "dpsgd" / f"trial-{k}" / "results.json").exists()
    (runs,) = m["comparisons"]["dpsgd"]["runs"]
    dp = res.load_results(out / runs["dp"])
    reference = res.load_results(out / runs["non_private"])
    assert dp["settings"]["lr"] == pick["lr"]  # the method trained with the chosen lr
    assert reference["settings"]["lr"] == 0.3  # the reference with the experiment's
    assert mit.TUNING_NOTE in (out / mit.REPORT_FILE).read_text()
