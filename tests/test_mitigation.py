"""Tests of :mod:`disparate.mitigation`: the summary table by hand, the validation split,
tuning (the same trials for every method, the objective, a diverged trial), the file format of
schema version 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disparate import mitigation as mit
from disparate import results as res
from disparate.comparison import seeded
from disparate.config import load_experiment
from disparate.reporting.document import render_markdown
from disparate.training import prepare_data

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["data.subsample=120", "training.batch_size=30", "training.epochs=1",
        "evaluation.min_group_test_size=20"]
DOCS_RESULTS = Path(__file__).parents[1] / "docs" / "results"


def stat(mean, ci=None):
    return {"mean": mean, "ci95": ci, "values": [mean], "n": 1}


def test_summary_table_by_hand() -> None:
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
    lines = mit.format_summary_table(mitigation).splitlines()
    assert lines[0] == ("| method | epsilon | overall % | overall drop | 8 % | 8 drop | "
                        "worst group | gap (points) |")
    assert lines[1] == "|---|---:|---:|---:|---:|---:|---:|---:|"
    assert lines[2] == "| non-private | - | 90.0 | - | 70.0 | - | - | - |"
    assert lines[3] == ("| dpsgd-f | 4.999 | 80.0 | +10.0 | 25.0 [0.0, 55.0] | +45.0 | 8 (25.0) "
                        "| 60.0 |")
    # the interval of an accuracy is cut to [0, 100]%


def test_summarize_methods_on_hand_made_results() -> None:
    def run(seed, accs, overall):
        return {"seed": seed, "overall_accuracy": overall, "groups": [
            {"group": g, "train_size": n, "test_size": 10, "accuracy": a}
            for (g, n), a in zip((("2", 100), ("8", 10)), accs, strict=True)],
            "privacy": {"accountant": "rdp", "noise_multiplier": 1.5, "statement": "s",
                        "epsilon": {"rdp": {"epsilon": 3.99, "aux_noise_multipliers": [2.0]}}}}

    results = {mit.REFERENCE: [run(0, (1.0, 0.9), 0.95), run(1, (1.0, 0.7), 0.85)],
               "dpsgd-f": [run(0, (0.9, 0.3), 0.6), run(1, (0.8, 0.5), 0.65)]}
    comparisons, summary = mit.summarize_methods(results, seeds=[0, 1], highlight=["8"])
    s = summary["dpsgd-f"]
    assert (s["worst_group"], s["worst_group_accuracy"]) == ("8", pytest.approx(0.4))
    assert s["gap"] == pytest.approx(0.85 - 0.4)
    assert s["overall_drop"]["values"] == [pytest.approx(0.35), pytest.approx(0.2)]
    assert (s["epsilon"], s["aux_noise_multipliers"]) == (3.99, [2.0])
    drop8 = {g["group"]: g for g in comparisons["dpsgd-f"]["groups"]}["8"]["drop"]
    assert drop8["values"] == [pytest.approx(0.6), pytest.approx(0.2)]


def test_validation_split_is_stratified_and_disjoint() -> None:
    cfg = seeded(load_experiment("digits-underrep"), 0)
    splits = prepare_data(cfg)
    keep, held = mit.validation_splits(splits, 0)
    sizes, kept, val = splits.train.group_sizes(), keep.group_sizes(), held.group_sizes()
    for g, n in sizes.items():
        assert kept[g] + val[g] == n
        assert abs(val[g] - 0.2 * n) <= 1  # stratified: 20% of every group, class 8 too
    assert len(keep) + len(held) == len(splits.train)


def test_objective_value_overall_or_worst_group() -> None:
    result = {"experiment": "x", "mode": "dp", "overall_accuracy": 0.9,
              "privacy": {"is_private": False, "mode": "dp", "statement": ""},
              "groups": [{"group": "a", "train_size": 5, "test_size": 5, "accuracy": 0.95},
                         {"group": "b", "train_size": 5, "test_size": 0, "accuracy": None},
                         {"group": "c", "train_size": 5, "test_size": 5, "accuracy": 0.6}]}
    assert mit.objective_value(result, "overall") == 0.9
    assert mit.objective_value(result, "worst-group") == 0.6  # a group without examples: left out


@pytest.mark.parametrize(("trials", "objective", "message"), [
    (-1, "overall", "--tune=-1: expected an integer >= 0"),
    (True, "overall", "--tune=True: expected an integer >= 0"),
    (2, "best", "--tune-objective='best': expected one of 'overall', 'worst-group'"),
])
def test_bad_tuning_arguments(trials, objective, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        mit.check_tuning(trials, objective)


def test_tune_gives_every_method_the_same_trials_and_the_runs_take_the_best(tmp_path: Path
                                                                             ) -> None:
    cfg = seeded(load_experiment("digits-underrep", TINY), 0)
    # dpsgd-global has parameters of its own and DP-SGD's accounting: its calibration is
    # DP-SGD's (cached), which keeps this test fast
    splits = prepare_data(cfg)
    chosen = mit.tune(cfg, ["dpsgd", "dpsgd-global"], 4.0, 2, splits, tmp_path,
                      objective="worst-group", progress=False)
    kept = len(mit.validation_splits(splits, cfg.data.seed)[0])
    lrs = [[t["lr"] for t in chosen[method]["trials"]] for method in ("dpsgd", "dpsgd-global")]
    assert lrs[0] == lrs[1] and len(lrs[0]) == 2 and lrs[0][0] != lrs[0][1]
    assert all(0.03 <= lr <= 3.0 for lr in lrs[0])  # log-uniform in [lr/10, 10 lr], lr = 0.3
    for method, pick in chosen.items():
        best = max(pick["trials"], key=lambda t: t["score"])
        assert (pick["lr"], pick["options"]) == (best["lr"], best["options"])
        for k, trial in enumerate(pick["trials"]):
            val = res.load_results(tmp_path / mit.TUNING_SUBDIR / method / f"trial-{k}")
            assert trial["score"] == min(g["accuracy"] for g in val["groups"]
                                         if g["accuracy"] is not None)
            assert trial["validation_accuracy"] == val["overall_accuracy"]
            assert val["settings"]["lr"] == trial["lr"] and val["train_size"] == kept < 120
    assert 2.0 <= chosen["dpsgd-global"]["options"]["upper_bound"] <= 20.0
    points = mit.mitigation_points(cfg, ["dpsgd", "dpsgd-global"], 4.0, [0, 1],
                                   tmp_path / "runs", chosen)
    assert [(p.labels["variant"], p.labels["seed"]) for p in points] == [
        ("non-private", 0), ("dpsgd", 0), ("dpsgd-global", 0),
        ("non-private", 1), ("dpsgd", 1), ("dpsgd-global", 1)]
    for p in points:
        if p.labels["variant"] == "non-private":
            assert p.config.privacy.mode == "non-private" and p.config.mitigation is None
            assert p.config.training.lr == cfg.training.lr
        else:
            pick = chosen[p.labels["variant"]]
            assert p.config.training.lr == pick["lr"]
            assert dict(p.config.mitigation.options) == pick["options"]
            assert p.config.privacy.target_epsilon == 4.0
        assert p.config.training.seed == p.config.data.seed == p.labels["seed"]


def test_a_diverged_trial_counts_as_failed(tmp_path: Path) -> None:
    cfg = seeded(load_experiment("digits-underrep", [*TINY, "training.lr=1e30"]), 0)
    chosen = mit.tune(cfg, ["dpsgd"], 4.0, 1, prepare_data(cfg), tmp_path, progress=False)
    (trial,) = chosen["dpsgd"]["trials"]
    assert trial["validation_accuracy"] is None and trial["score"] is None
    assert (tmp_path / "tuning" / "dpsgd" / "trial-0" / "diverged.json").exists()


def test_schema_version_1_files_are_read(tmp_path: Path) -> None:
    old = json.loads((DOCS_RESULTS / "mitigations-digits" / mit.MITIGATION_FILE).read_text())
    assert "schema_version" not in old  # written before version 2
    m = mit.read_mitigation(DOCS_RESULTS / "mitigations-digits")
    assert m["schema_version"] == 2 and m["summary"] == old["summary"]
    (tmp_path / mit.MITIGATION_FILE).write_text(json.dumps({**old, "schema_version": 3}))
    with pytest.raises(ValueError, match="schema_version=3: this version of disparate reads "
                                         "mitigation files of versions 1 to 2"):
        mit.read_mitigation(tmp_path)
    document = mit.build_document(m, None)
    assert mit.format_summary_table(m) in render_markdown(document)
