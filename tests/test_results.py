"""Tests of disparate.results on hand-made numbers: statistics, comparison, tables, JSON."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from disparate import results as res
from disparate.config import load_experiment
from disparate.privacy.accounting import compute_epsilons
from disparate.reporting.comparison_table import format_comparison_table

T_975_DF2 = 4.302652729749464  # scipy.stats.t.ppf(0.975, 2)


# ------------------------------------------------------------------------------ statistics


def test_summarize_mean_and_student_t_interval() -> None:
    s = res.summarize([0.9, 0.8, 0.7])
    assert s["mean"] == pytest.approx(0.8)
    half = T_975_DF2 * 0.1 / math.sqrt(3)  # sample std 0.1
    assert s["ci95"] == pytest.approx([0.8 - half, 0.8 + half])
    assert s["values"] == [0.9, 0.8, 0.7] and s["n"] == 3


def test_summarize_one_value_has_no_interval_and_none_is_skipped() -> None:
    assert res.summarize([0.5]) == {"values": [0.5], "n": 1, "mean": 0.5, "ci95": None}
    s = res.summarize([0.5, None, 0.7])
    assert s["values"] == [0.5, None, 0.7] and s["n"] == 2
    assert s["mean"] == pytest.approx(0.6)
    assert res.summarize([None])["mean"] is None


def test_summarize_identical_values_give_a_zero_width_interval() -> None:
    assert res.summarize([0.25, 0.25])["ci95"] == [0.25, 0.25]


def test_spearman_known_values() -> None:
    # The poorer the group, the larger its drop: perfectly negative.
    out = res.spearman([0.99, 0.98, 0.97, 0.60], [0.01, 0.02, 0.05, 0.40])
    assert out["spearman"] == pytest.approx(-1.0) and out["n_groups"] == 4
    # One swap among four: rho = 1 - 6 * 2 / (4 * 15) = 0.8.
    assert res.spearman([1, 2, 3, 4], [1, 2, 4, 3])["spearman"] == pytest.approx(0.8)


def test_spearman_undefined_cases_are_none() -> None:
    assert res.spearman([0.9, 0.8], [0.1, 0.2])["spearman"] is None  # < 3 groups
    assert res.spearman([0.9, 0.8, 0.7], [0.1, 0.1, 0.1])["spearman"] is None  # constant
    out = res.spearman([0.9, None, 0.7, 0.6], [0.1, 0.5, 0.2, 0.3])  # None pair dropped
    assert out["n_groups"] == 3 and out["spearman"] == pytest.approx(-1.0)


def test_gap_best_and_worst_group() -> None:
    g = res.gap({"0": 0.99, "8": 0.77, "2": 0.98, "x": None})
    assert (g["best_group"], g["worst_group"]) == ("0", "8")
    assert g["difference"] == pytest.approx(0.22)
    assert res.gap({"a": None})["difference"] is None


# ------------------------------------------------------------------------------ comparison


def _run(accs: dict[str, float | None], *, sizes: dict[str, tuple[int, int]] | None = None,
         overall: float = 0.9, mode: str = "dp") -> dict:
    sizes = sizes or {g: (100, 50) for g in accs}
    return {
        "experiment": "toy", "mode": mode, "config_hash": mode, "overall_accuracy": overall,
        "wall_time_s": 1.0,
        "groups": [{"group": g, "train_size": sizes[g][0], "test_size": sizes[g][1],
                    "accuracy": a, "grad_norm": 1.0, "small_test": sizes[g][1] < 20}
                   for g, a in accs.items()],
        "privacy": {"is_private": mode == "dp", "statement": "(1.00, 1e-05)-DP by test"},
    }


def test_compare_runs_drops_spearman_gaps_over_seeds() -> None:
    sizes = {"a": (100, 50), "b": (100, 50), "c": (10, 10)}
    np_runs = [_run({"a": 0.99, "b": 0.95, "c": 0.80}, sizes=sizes, overall=0.95, mode="np"),
               _run({"a": 0.97, "b": 0.93, "c": 0.70}, sizes=sizes, overall=0.93, mode="np")]
    dp_runs = [_run({"a": 0.98, "b": 0.90, "c": 0.40}, sizes=sizes, overall=0.90),
               _run({"a": 0.96, "b": 0.89, "c": 0.30}, sizes=sizes, overall=0.86)]
    c = res.compare_runs(np_runs, dp_runs, seeds=[0, 1], highlight=["c", "a"],
                         experiment="toy")
    assert c["seeds"] == [0, 1] and c["highlight"] == ["c", "a"] and c["experiment"] == "toy"
    groups = {g["group"]: g for g in c["groups"]}
    assert [g["group"] for g in c["groups"]] == ["a", "b", "c"]
    assert groups["c"]["drop"]["values"] == pytest.approx([0.40, 0.40])
    assert groups["c"]["drop"]["mean"] == pytest.approx(0.40)
    assert groups["c"]["drop"]["ci95"] == pytest.approx([0.40, 0.40])
    assert groups["b"]["drop"]["mean"] == pytest.approx((0.05 + 0.04) / 2)
    assert groups["a"]["non_private_accuracy"]["mean"] == pytest.approx(0.98)
    assert groups["a"]["dp_accuracy"]["ci95"] is not None
    assert (groups["c"]["train_size"], groups["c"]["test_size"]) == (10, 10)
    assert groups["c"]["small_test"] and groups["c"]["highlight"] and not groups["b"]["highlight"]
    # Mean non-DP accuracy a > b > c and mean drop a < b < c: the poor get poorer.
    assert c["poor_get_poorer"]["spearman"] == pytest.approx(-1.0)
    assert c["poor_get_poorer"]["per_seed"]["values"] == pytest.approx([-1.0, -1.0])
    assert "negative: the poor get poorer" in c["poor_get_poorer"]["description"]
    assert c["gap"]["non_private"]["difference"] == pytest.approx(0.98 - 0.75)
    assert c["gap"]["dp"]["best_group"] == "a" and c["gap"]["dp"]["worst_group"] == "c"
    assert c["gap"]["dp"]["difference"] == pytest.approx(0.97 - 0.35)
    assert c["gap"]["dp"]["per_seed"]["values"] == pytest.approx([0.58, 0.66])
    assert c["overall"]["drop"]["values"] == pytest.approx([0.05, 0.07])
    assert c["privacy"] == dp_runs[0]["privacy"]
    assert c["wall_time_s"] == pytest.approx(4.0)


def test_compare_runs_one_seed_has_no_intervals_and_none_accuracy_is_kept() -> None:
    c = res.compare_runs([_run({"a": 0.9, "b": None, "c": 0.5, "d": 0.7})],
                         [_run({"a": 0.9, "b": None, "c": 0.1, "d": 0.6})], seeds=[3])
    groups = {g["group"]: g for g in c["groups"]}
    assert groups["a"]["drop"]["ci95"] is None and groups["a"]["drop"]["mean"] == 0.0
    assert groups["b"]["drop"]["mean"] is None  # no test examples: not counted as 0
    assert c["poor_get_poorer"]["n_groups"] == 3
    assert c["poor_get_poorer"]["spearman"] == pytest.approx(-1.0)


def test_compare_runs_refuses_different_data() -> None:
    a = _run({"a": 0.9, "b": 0.8}, sizes={"a": (100, 50), "b": (10, 50)})
    b = _run({"a": 0.9, "b": 0.8}, sizes={"a": (100, 50), "b": (11, 50)})
    with pytest.raises(ValueError, match="identical data"):
        res.compare_runs([a], [b], seeds=[0])
    with pytest.raises(ValueError, match="one of each per seed"):
        res.compare_runs([a], [a, a], seeds=[0])


def test_comparison_table_marks_highlighted_and_small_groups() -> None:
    sizes = {"2": (120, 50), "8": (10, 5), "0": (120, 50)}
    c = res.compare_runs([_run({"0": 0.99, "2": 0.98, "8": 0.6}, sizes=sizes)],
                         [_run({"0": 0.98, "2": 0.97, "8": 0.1}, sizes=sizes)],
                         seeds=[0], highlight=["8", "2"])
    text = format_comparison_table(c)
    lines = text.splitlines()
    row8 = next(line for line in lines if line.startswith("8*!"))
    assert "60.0" in row8 and "10.0" in row8 and "+50.0" in row8
    assert any(line.startswith("2*") for line in lines)
    assert any(line.startswith("0 ") for line in lines)
    assert "*: highlighted group" in text and "(1.00, 1e-05)-DP" in text
    md = format_comparison_table(c, markdown=True)
    assert "| **8**! | 10 | 5 |" in md and "| **2** | 120 |" in md and "| 0 | 120 |" in md
    assert md.startswith("| group |") and "- **bold**: highlighted group" in md


T_975_DF1 = 12.706204736174698  # scipy.stats.t.ppf(0.975, 1)


def test_comparison_table_intervals_are_clamped_and_ordered() -> None:
    # Two seeds, t(0.975, 1) = 12.706. Class 8: non-DP 0.9, 1.0 -> 0.95 +- 0.6353 reaches
    # 158.5%, shown up to 100.0; DP 0.1, 0.0 -> 0.05 +- 0.6353 from -58.5%, shown from 0.0;
    # drop 0.8, 1.0 -> 0.9 +- 1.2706, shown [-37.1, +100.0]. Class 2 is constant.
    sizes = {"8": (10, 50), "2": (120, 50)}
    c = res.compare_runs([_run({"8": 0.9, "2": 0.5}, sizes=sizes, overall=0.7, mode="np"),
                          _run({"8": 1.0, "2": 0.5}, sizes=sizes, overall=0.7, mode="np")],
                         [_run({"8": 0.1, "2": 0.5}, sizes=sizes, overall=0.3),
                          _run({"8": 0.0, "2": 0.5}, sizes=sizes, overall=0.3)], seeds=[0, 1])
    half = T_975_DF1 * 0.05
    group8 = next(g for g in c["groups"] if g["group"] == "8")
    assert group8["non_private_accuracy"]["ci95"][1] == pytest.approx(0.95 + half)
    lines = format_comparison_table(c).splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["group", "train", "test", "non-DP acc % [95% CI]",
                                           "DP acc % [95% CI]", "drop (points) [95% CI]"]
    row8 = next(line for line in lines if line.startswith("8 "))
    assert row8.split()[3:] == ["95.0", "[31.5,", "100.0]", "5.0", "[0.0,", "68.5]",
                                "+90.0", "[-37.1,", "+100.0]"]
    row2 = next(line for line in lines if line.startswith("2 "))
    assert "50.0 [50.0, 50.0]" in row2 and "+0.0 [+0.0, +0.0]" in row2
    assert lines[6].startswith("mean over 2 seeds (0, 1); [lo, hi]: 95% Student-t interval")
    assert "within [0, 100]%" in lines[6]
    cells = [float(x.strip("[],")) for line in lines[2:6] if not line.startswith("-")
             for x in line.split()[3:]]
    assert len(cells) == 27  # 3 rows x 3 columns x (mean, lo, hi)
    for mean, lo, hi in zip(cells[::3], cells[1::3], cells[2::3], strict=True):
        assert lo <= mean <= hi
    md = format_comparison_table(c, markdown=True)
    assert "| 8 | 10 | 50 | 95.0 [31.5, 100.0] | 5.0 [0.0, 68.5] | +90.0 [-37.1, +100.0] |" in md
    assert "±" not in md and "±" not in "\n".join(lines)


# ------------------------------------------------------------------------------ one run


def test_privacy_block_non_private_reports_no_epsilon() -> None:
    cfg = load_experiment("digits-underrep").with_mode("clip-only")
    block = res.privacy_block(cfg.privacy, noise_multiplier=None, reports=None, steps=10)
    assert block["is_private"] is False and block["mode"] == "clip-only"
    assert block["epsilon"] is None and block["delta"] is None
    assert block["statement"].startswith("not differentially private: clipping only")
    assert block["max_grad_norm"] == 1.0 and block["noise_std"] == 0.0


def test_privacy_block_private_says_how_epsilon_was_computed() -> None:
    cfg = load_experiment("digits-underrep")
    p = cfg.privacy
    reports = compute_epsilons(dataset_size=1000, batch_size=100, noise_multiplier=2.0,
                               steps=50, delta=p.delta, methods=["rdp", "rdp_classic"])
    block = res.privacy_block(p, noise_multiplier=2.0, reports=reports, steps=50)
    assert block["is_private"] and block["accountant"] == "rdp"
    assert set(block["epsilon"]) == {"rdp", "rdp_classic"}
    assert block["epsilon"]["rdp"]["epsilon"] == reports["rdp"].epsilon
    assert block["noise_std"] == pytest.approx(2.0 * p.max_grad_norm)
    eps = f"{reports['rdp'].epsilon:.2f}"
    assert block["statement"].startswith(f"({eps}, 1e-05)-DP for 50 steps")
    for word in ("accountant:", "conversion:", "Poisson sampling"):
        assert word in block["statement"]
    assert block["delta"] == p.delta and block["sampling"] == "poisson"


def test_build_run_results_flags_small_test_groups() -> None:
    cfg = load_experiment("digits-underrep", ["evaluation.min_group_test_size=50"])
    metrics = {"epoch": 2, "steps": 20, "test_accuracy": 0.75, "test_loss": 0.5,
               "train_loss": 0.4, "group_accuracy": {"a": 1.0, "b": 0.5},
               "group_grad_norm": {"a": 2.0, "b": None},
               "group_clipped_fraction": {"a": 0.5, "b": None}}
    out = res.build_run_results(cfg, group_names=["a", "b"], train_sizes={"a": 5, "b": 0},
                                test_sizes={"a": 60, "b": 40}, final_metrics=metrics,
                                privacy={"is_private": False}, wall_time_s=1.5)
    assert out["groups"][0] == {"group": "a", "train_size": 5, "test_size": 60,
                                "accuracy": 1.0, "grad_norm": 2.0, "clipped_fraction": 0.5,
                                "small_test": False, "highlight": False}
    assert out["groups"][1]["small_test"] is True and out["groups"][1]["grad_norm"] is None
    assert (out["train_size"], out["test_size"], out["epochs"], out["steps"]) == (5, 100, 2, 20)
    assert out["overall_accuracy"] == 0.75 and out["experiment"] == "digits-underrep"


def test_write_json_sorted_keys_inf_as_null_and_nan_as_a_string(tmp_path: Path) -> None:
    path = res.write_json(tmp_path / "x" / "a.json", {"b": math.inf, "a": (1, 2.5),
                                                      "c": {"z": 1, "y": math.nan}})
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == {"a": [1, 2.5], "b": None, "c": {"y": "nan", "z": 1}}
    assert text.index('"a"') < text.index('"b"') < text.index('"c"')
    assert not list(tmp_path.glob("x/*.tmp"))


def test_read_metrics_and_load_results(tmp_path: Path) -> None:
    assert res.read_metrics(tmp_path) == []
    (tmp_path / res.METRICS_FILE).write_text('{"epoch": 1}\n\n{"epoch": 2}\n', encoding="utf-8")
    assert res.read_metrics(tmp_path) == [{"epoch": 1}, {"epoch": 2}]
    with pytest.raises(FileNotFoundError, match="has the run finished"):
        res.load_results(tmp_path)
