"""Tests of ``disparate mitigate``: every method at the same epsilon on identical data,
mitigation.json, the report's tables, tuning on a validation split, bad input first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disparate import results as res
from disparate.cli import COMMANDS, main
from disparate.commands import mitigate
from disparate.commands.compare import seeded
from disparate.config import load_experiment
from disparate.training import prepare_data

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


def test_every_method_at_the_same_epsilon_on_identical_data(tmp_path: Path, capsys) -> None:
    out = tmp_path / "m"
    argv = ["mitigate", "digits-underrep", *TINY, "--methods", "dpsgd,dpsgd-f",
            "--target-epsilon", "4", "--seeds", "2", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    m = json.loads((out / mitigate.MITIGATION_FILE).read_text())
    assert m["methods"] == ["dpsgd", "dpsgd-f"] and m["seeds"] == [0, 1]
    for method in m["methods"]:
        s = m["summary"][method]
        assert 4 * 0.99 <= s["epsilon"] <= 4
        for k, seed in enumerate(m["seeds"]):
            run = res.load_results(out / f"seed-{seed}" / method)
            ref = res.load_results(out / f"seed-{seed}" / "non-private")
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
    # the aux statistics cost budget: DPSGD-F's gradient gets more noise for the same epsilon
    assert m["summary"]["dpsgd-f"]["noise_multiplier"] > m["summary"]["dpsgd"]["noise_multiplier"]
    assert m["summary"]["dpsgd-f"]["aux_noise_multipliers"] == [pytest.approx(30 / 20)]
    report = (out / mitigate.REPORT_FILE).read_text()
    assert mitigate.NO_TUNING_NOTE in report and "## dpsgd-f" in report
    assert m["summary"]["dpsgd-f"]["statement"] in report
    assert (out / mitigate.FIGURE_FILE).read_bytes()[:4] == b"\x89PNG"
    assert "| dpsgd-f | " in capsys.readouterr().out


def test_summary_table_by_hand() -> None:
    def stat(mean, ci=None):
        return {"mean": mean, "ci95": ci, "values": [mean], "n": 1}

    comparison = {
        "overall": {"non_private_accuracy": stat(0.9), "dp_accuracy": stat(0.8),
                    "drop": stat(0.1)},
        "groups": [{"group": "8", "non_private_accuracy": stat(0.7),
                    "dp_accuracy": stat(0.25, [-0.05, 0.55]), "drop": stat(0.45)}],
    }
    mitigation = {"highlight": ["8"], "comparisons": {"dpsgd-f": comparison},
                  "summary": {"dpsgd-f": {"epsilon": 4.99912, "overall_accuracy": stat(0.8),
                                          "overall_drop": stat(0.1), "worst_group": "8",
                                          "worst_group_accuracy": 0.25, "gap": 0.6}}}
    lines = mitigate.format_summary_table(mitigation).splitlines()
    assert lines[0] == ("| method | epsilon | overall % | overall drop | 8 % | 8 drop | "
                        "worst group | gap (points) |")
    assert lines[2] == "| non-private | - | 90.0 | - | 70.0 | - | - | - |"
    assert lines[3] == ("| dpsgd-f | 4.999 | 80.0 | +10.0 | 25.0 [0.0, 55.0] | +45.0 | 8 (25.0) "
                        "| 60.0 |")
    # the interval of an accuracy is cut to [0, 100]%


def test_validation_split_is_stratified_and_disjoint() -> None:
    cfg = seeded(load_experiment("digits-underrep"), 0)
    splits = prepare_data(cfg)
    keep, held = mitigate.validation_splits(splits, 0)
    sizes, kept, val = splits.train.group_sizes(), keep.group_sizes(), held.group_sizes()
    for g, n in sizes.items():
        assert kept[g] + val[g] == n
        assert abs(val[g] - 0.2 * n) <= 1  # stratified: 20% of every group, class 8 too
    assert len(keep) + len(held) == len(splits.train)


def test_tune_gives_every_method_the_same_trials_and_picks_the_best(tmp_path: Path) -> None:
    cfg = load_experiment("digits-underrep", [a for a in TINY if a != "--set"])
    out = tmp_path / "t"
    m = mitigate.run_mitigation(cfg, out, methods=["dpsgd", "adaptive-clip"], target_epsilon=4,
                                seeds=[0], tune_trials=2, progress=False)
    chosen = m["tuning"]["chosen"]
    lrs = [[t["lr"] for t in chosen[method]["trials"]] for method in ("dpsgd", "adaptive-clip")]
    assert lrs[0] == lrs[1] and len(lrs[0]) == 2  # the same learning rates for both
    for method, pick in chosen.items():
        best = max(pick["trials"], key=lambda t: t["validation_accuracy"])
        assert (pick["lr"], pick["options"]) == (best["lr"], best["options"])
        run = res.load_results(out / "seed-0" / method)
        assert run["settings"]["lr"] == pick["lr"]
    assert "target_quantile" in chosen["adaptive-clip"]["options"]
    assert m["tuning_note"] == mitigate.TUNING_NOTE and "not covered" in m["tuning_note"]
    tuning_run = res.load_results(out / "tuning" / "dpsgd" / "trial-0")
    assert tuning_run["train_size"] < res.load_results(out / "seed-0" / "dpsgd")["train_size"]


def test_a_diverged_trial_counts_as_failed(tmp_path: Path) -> None:
    cfg = seeded(load_experiment("digits-underrep", [a for a in TINY if a != "--set"]
                                 + ["training.lr=1e30"]), 0)
    chosen = mitigate.tune(cfg, ["dpsgd"], 4.0, 1, prepare_data(cfg), tmp_path, progress=False)
    (trial,) = chosen["dpsgd"]["trials"]
    assert trial["validation_accuracy"] is None
    assert (tmp_path / "tuning" / "dpsgd" / "trial-0" / "diverged.json").exists()
