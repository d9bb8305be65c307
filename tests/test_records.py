"""Tests of :mod:`disparate.records`: every shipped result file loads and round-trips, the
per-group metric object on hand-computed values, and the schema version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disparate import records as rec
from disparate import results as res

DOCS = Path(__file__).resolve().parents[1] / "docs" / "results"


def _without_version(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "schema_version"}


@pytest.mark.parametrize("path", sorted(DOCS.rglob("results.json")), ids=str)
def test_shipped_results_json_loads_and_round_trips(path: Path) -> None:
    data = json.loads(path.read_text())
    result = rec.read_run_result(path.parent)
    assert result.to_json()["schema_version"] == rec.SCHEMA_VERSION
    assert _without_version(result.to_json()) == data
    assert rec.RunResult.from_json(result.to_json()) == result
    acc = result.metric("accuracy")
    assert set(acc.by_group) == {g["group"] for g in data["groups"]}
    assert acc.overall == data["overall_accuracy"]
    if result.privacy.is_private:
        head = data["privacy"]["epsilon"][data["privacy"]["accountant"]]["epsilon"]
        assert result.privacy.headline_epsilon == head


@pytest.mark.parametrize("path", sorted(DOCS.rglob("comparison.json")), ids=str)
def test_shipped_comparison_json_loads_and_round_trips(path: Path, tmp_path: Path) -> None:
    data = json.loads(path.read_text())
    comparison = rec.read_comparison_result(path.parent)
    assert _without_version(comparison.to_json()) == data
    rec.write_comparison_result(tmp_path, comparison)
    assert rec.read_comparison_result(tmp_path) == comparison
    drop = comparison.stat("8", "drop")
    group8 = next(g for g in data["groups"] if g["group"] == "8")
    assert drop.mean == group8["drop"]["mean"]
    assert comparison.accuracy("drop").by_group["8"] == group8["drop"]["mean"]
    rows = [rec.ComparisonGroup.from_json(g) for g in data["groups"]]
    assert [r.to_json() for r in rows] == data["groups"]
    row8 = next(r for r in rows if r.group == "8")
    assert row8.drop == drop and row8.train_size == group8["train_size"]
    assert row8.dp_accuracy.ci95 == (None if group8["dp_accuracy"]["ci95"] is None
                                     else tuple(group8["dp_accuracy"]["ci95"]))


def _result() -> rec.RunResult:
    groups = [{"group": "0", "train_size": 100, "test_size": 50, "accuracy": 0.98},
              {"group": "8", "train_size": 5, "test_size": 40, "accuracy": 0.62},
              {"group": "9", "train_size": 80, "test_size": 0, "accuracy": None},
              {"group": "2", "train_size": 90, "test_size": 45, "accuracy": 0.90}]
    return rec.RunResult.from_json({
        "experiment": "toy", "mode": "dp", "overall_accuracy": 0.9, "groups": groups,
        "privacy": {"is_private": True, "mode": "dp", "statement": "(1.00, 1e-05)-DP ...",
                    "accountant": "rdp", "delta": 1e-5,
                    "epsilon": {"rdp": {"epsilon": 1.0}, "pld": {"epsilon": 0.9}}},
        "wall_time_s": 3.0})


def test_group_metrics_hand_computed() -> None:
    acc = _result().metric()
    assert acc.group_max() == ("0", 0.98) and acc.group_min() == ("8", 0.62)
    assert acc.difference() == pytest.approx(0.36)  # 0.98 - 0.62; group 9 (None) left out
    assert acc.ratio() == pytest.approx(0.62 / 0.98)
    assert acc.overall == 0.9
    assert acc.train_sizes == {"0": 100, "8": 5, "9": 80, "2": 90}
    assert acc.test_sizes["9"] == 0
    empty = rec.GroupMetrics(metric="accuracy", by_group={"a": None}, overall=None,
                             train_sizes={"a": 1}, test_sizes={"a": 0})
    assert empty.difference() is None and empty.ratio() is None
    with pytest.raises(ValueError, match="train_sizes: groups"):
        rec.GroupMetrics(metric="accuracy", by_group={"a": 0.5}, overall=None,
                         train_sizes={}, test_sizes={"a": 1})


def test_run_result_keeps_untyped_keys_and_writes_atomically(tmp_path: Path) -> None:
    result = _result()
    assert result.extra == {"wall_time_s": 3.0}
    assert result.privacy.headline_epsilon == 1.0
    rec.write_run_result(tmp_path, result)
    assert json.loads((tmp_path / res.RESULTS_FILE).read_text())["schema_version"] == 1
    assert rec.read_run_result(tmp_path) == result
    with pytest.raises(ValueError, match="name='loss': expected one of accuracy"):
        result.metric("loss")


def test_schema_version_and_missing_keys_are_named() -> None:
    data = _result().to_json()
    with pytest.raises(ValueError, match="schema_version=2: this version of disparate reads "
                                         "schema versions 1 to 1"):
        rec.RunResult.from_json({**data, "schema_version": 2})
    with pytest.raises(ValueError, match="results.json: missing key\\(s\\) experiment"):
        rec.RunResult.from_json({k: v for k, v in data.items() if k != "experiment"})
    with pytest.raises(ValueError, match="groups\\[0\\]: missing key\\(s\\) test_size"):
        rec.RunResult.from_json({**data, "groups": [{"group": "a", "train_size": 1}]})
    with pytest.raises(ValueError, match="^group: missing key\\(s\\) test_size$"):
        rec.GroupResult.from_json({"group": "a", "train_size": 1})
    with pytest.raises(ValueError, match="^metrics line: missing key\\(s\\) epoch$"):
        rec.EpochMetrics.from_json({"test_accuracy": 0.5})
    line = rec.EpochMetrics.from_json({"epoch": 2, "test_accuracy": 0.5, "examples": 7})
    assert (line.epoch, line.extra) == (2, {"examples": 7})
    out = line.to_json()
    assert (out["epoch"], out["test_accuracy"], out["examples"]) == (2, 0.5, 7)
    assert "extra" not in out
    with pytest.raises(ValueError, match="is_private=True needs an epsilon"):
        rec.PrivacyStatement.from_json({"is_private": True, "mode": "dp", "statement": ""})


def test_stat_interval_order_and_summary() -> None:
    stat = rec.Stat.of([0.6, 0.8])
    assert stat.mean == pytest.approx(0.7) and stat.n == 2
    assert stat.ci95[0] < stat.mean < stat.ci95[1]
    assert stat.ci95 == pytest.approx((0.7 - 12.706204736174698 * 0.1,
                                       0.7 + 12.706204736174698 * 0.1))
    with pytest.raises(ValueError, match="expected low <= high"):
        rec.Stat(mean=0.5, ci95=(0.6, 0.4))
    assert rec.Stat.from_json(0.5) == rec.Stat(mean=0.5, n=1, values=(0.5,))


def test_a_metrics_line_round_trips_to_the_same_text_keeping_absent_keys_absent() -> None:
    line = {"round": 3, "train_loss": 0.5, "round_s": 1.25}  # a federated round, not evaluated
    record = rec.RoundMetrics.from_json(line)
    assert record.test_accuracy is None and record.absent == {"test_accuracy", "group_accuracy",
                                                              "epsilon"}
    assert rec.metrics_text([record]) == '{"round": 3, "round_s": 1.25, "train_loss": 0.5}\n'
    epoch = rec.EpochMetrics.from_json({"epoch": 1, "test_accuracy": 0.25, "epsilon": None,
                                        "group_accuracy": {"a": 0.5}, "group_grad_norm": {}})
    assert rec.metrics_text([epoch, epoch]) == 2 * (
        '{"epoch": 1, "epsilon": null, "group_accuracy": {"a": 0.5}, "group_grad_norm": {}, '
        '"test_accuracy": 0.25}\n')


def test_epoch_metrics_are_read_through_the_one_jsonl_reader(tmp_path: Path) -> None:
    (tmp_path / res.METRICS_FILE).write_text('{"epoch": 1, "test_accuracy": 0.5}\n{"epoch": 2, '
                                             '"test_acc', encoding="utf-8")  # cut short
    assert [(m.epoch, m.test_accuracy) for m in rec.read_epoch_metrics(tmp_path)] == [(1, 0.5)]


def test_comparison_schema_versions_one_and_two_are_read_and_written_back(tmp_path: Path
                                                                         ) -> None:
    data = {"experiment": "toy", "seeds": [0], "groups": [], "overall": {},
            "privacy": {"is_private": False, "mode": "non-private", "statement": "none"}}
    assert rec.ComparisonResult.from_json(data).schema_version == 1
    v2 = rec.ComparisonResult.from_json({**data, "schema_version": 2})
    rec.write_comparison_result(tmp_path, v2)
    assert json.loads((tmp_path / res.COMPARISON_FILE).read_text())["schema_version"] == 2
    assert rec.read_comparison_result(tmp_path).schema_version == 2
    with pytest.raises(ValueError, match="schema_version=3: this version of disparate reads "
                                         "schema versions 1 to 2"):
        rec.ComparisonResult.from_json({**data, "schema_version": 3})


def test_undefined_values_of_result_files_read_as_nan() -> None:
    import math

    assert [math.isnan(rec.as_number(v)) for v in (None, "nan", math.inf, True, "x", 0.5)] == [
        True, True, True, True, True, False]
    assert rec.as_number("0.25") == 0.25
    assert rec.mean_and_ci({"mean": 0.7, "ci95": [0.6, 0.8]}) == (0.7, (0.6, 0.8))
    mean, ci = rec.mean_and_ci({"mean": None, "ci95": [0.6, None]})
    assert math.isnan(mean) and ci is None
    assert rec.mean_and_ci(0.5) == (0.5, None)
