"""Tests of :mod:`disparate.study.aggregate` and the figure kinds' tables on hand-made run
records: every number a study shows, computed by hand."""

from __future__ import annotations

import math

import pytest

from disparate.config import ConfigError
from disparate.reporting.document import Table
from disparate.study import aggregate as agg
from disparate.study.figures import FIGURE_KINDS, figure_kind, register_figure
from disparate.study.spec import Study, Variant

EPS, CLIP = "privacy.target_epsilon", "privacy.max_grad_norm"
T_975_1 = 12.706204736174698  # Student-t 97.5% quantile, 1 degree of freedom


def _study(**figure) -> Study:
    return Study(
        name="toy", title="Toy", description="", base="digits-underrep", scale="quick",
        set=(), seeds=(0, 1),
        variants=(Variant(name="dp", label="DP", grid=((CLIP, (0.5, 1.0)),)),
                  Variant(name="non-dp", label="non-DP")),
        grid=((EPS, (1.0, 3.0)),),
        figure={"kind": "sweep", "x": EPS, "best_of": [CLIP], **figure})


def _run(key: str, variant: str, seed: int, acc8: float, acc2: float, overall: float, *,
         eps: float | None = None, clip: float | None = None, x: float | None = None
         ) -> agg.RunRecord:
    labels = {"variant": variant, "seed": seed}
    if x is not None:
        labels[EPS] = x
    if clip is not None:
        labels[CLIP] = clip
    privacy = ({"is_private": True, "accountant": "rdp", "delta": 1e-5,
                "noise_multiplier": 1.1, "epsilon": {"rdp": {"epsilon": eps}}}
               if eps is not None else {"is_private": False, "mode": "non-private"})
    return agg.RunRecord(key=key, labels=labels, results={
        "mode": "dp" if eps is not None else "non-private", "epochs": 2, "steps": 10,
        "overall_accuracy": overall, "highlight": ["8", "2"], "privacy": privacy,
        "groups": [{"group": "2", "accuracy": acc2, "train_size": 100, "test_size": 50},
                   {"group": "8", "accuracy": acc8, "train_size": 5, "test_size": 50}]},
        metrics=({"epoch": 1, "test_accuracy": overall - 0.1,
                  "group_accuracy": {"2": acc2 - 0.1, "8": acc8 - 0.1},
                  "group_grad_norm": {"2": 1.0, "8": 4.0}, "epsilon": eps},))


def _runs() -> list[agg.RunRecord]:
    """At epsilon 1 the best clip is S=1.0 (overall 0.70 vs 0.60); at epsilon 3 it is
    S=0.5 (0.90 vs 0.80). Two seeds per cell; the non-DP variant has no x."""
    out = []
    cells = {(1.0, 0.5): (0.10, 0.70, 0.60), (1.0, 1.0): (0.20, 0.80, 0.70),
             (3.0, 0.5): (0.50, 0.90, 0.90), (3.0, 1.0): (0.40, 0.85, 0.80)}
    for (x, clip), (a8, a2, overall) in cells.items():
        for seed, d in ((0, -0.05), (1, +0.05)):
            out.append(_run(f"k{x}-{clip}-{seed}", "dp", seed, a8 + d, a2 + d, overall + d,
                            eps=x + 0.01 * seed, clip=clip, x=x))
    out += [_run(f"np{seed}", "non-dp", seed, 0.9, 0.95, 0.97) for seed in (0, 1)]
    return out


def test_best_cell_per_epsilon_is_the_highest_mean_overall_accuracy() -> None:
    series = agg.sweep_series(_study(), _runs(), ["8", "2", "all"])
    dp = series["DP"]
    assert [sp.x for sp in dp] == [1.0, 3.0]
    assert [sp.chosen for sp in dp] == [((CLIP, 1.0),), ((CLIP, 0.5),)]
    assert dp[0].stats["all"]["mean"] == pytest.approx(0.70)
    assert dp[1].stats["all"]["mean"] == pytest.approx(0.90)
    assert dp[1].stats["8"]["mean"] == pytest.approx(0.50)
    assert dp[1].epsilon == pytest.approx(3.01)  # the largest epsilon of the cell's seeds
    (baseline,) = series["non-DP"]
    assert baseline.x is None and baseline.stats["2"]["mean"] == pytest.approx(0.95)


def test_best_cell_and_mean_accuracy() -> None:
    cells = agg.cells(_study(), _runs())
    assert len(cells) == 5 and all(len(c.runs) == 2 for c in cells)
    at_1 = [c for c in cells if c.x == 1.0]
    assert [agg.mean_accuracy(c) for c in at_1] == pytest.approx([0.60, 0.70])
    assert agg.best_cell(at_1).others == ((CLIP, 1.0),)
    assert agg.mean_accuracy(agg.Cell("v", None, (), ())) == -math.inf


def test_gap_is_the_second_highlighted_group_minus_the_first_in_points() -> None:
    stats = {"8": {"mean": 0.50}, "2": {"mean": 0.90}}
    assert agg.gap_points(stats, ["8", "2"]) == pytest.approx(40.0)
    assert agg.gap_points(stats, ["2", "8"]) == pytest.approx(-40.0)
    assert agg.gap_points(stats, ["8"]) is None
    assert agg.gap_points({"8": {"mean": None}, "2": {"mean": 0.9}}, ["8", "2"]) is None


def test_sweep_table_rows_hand_computed() -> None:
    study = _study()
    table, _note, every = figure_kind("sweep").tables(study, _runs(), ["8", "2"])
    assert isinstance(table, Table)
    assert table.header == (EPS, "variant", f"best {CLIP}", "seeds", "acc 8 %", "acc 2 %",
                            "overall %", "gap 2 − 8 (points)", "ε")
    eps1, eps3, baseline = table.rows
    # 2 seeds: mean +- t * s / sqrt(2) with s / sqrt(2) = 0.05
    half = 100 * T_975_1 * 0.05
    assert eps1[:4] == ("1", "DP", "1", "2")
    assert eps1[4] == f"20.0 [{max(20.0 - half, 0.0):.1f}, {20.0 + half:.1f}]"
    assert eps1[4] == "20.0 [0.0, 83.5]"  # clamped at 0
    assert eps1[7] == "60.0" and eps3[7] == "40.0"  # class 2 minus class 8
    assert eps3[2] == "0.5" and eps3[6] == "90.0 [26.5, 100.0]"  # clamped at 100
    assert eps1[8] == "1.01" and eps3[8] == "3.01"
    assert baseline[:2] == ("(any)", "non-DP") and baseline[8] == "—"
    assert baseline[7] == "5.0"
    assert len(every.rows) == 5  # every cell, not only the best


def test_tidy_and_summary_rows_hand_computed() -> None:
    study = _study()
    runs = _runs()
    rows = agg.tidy_rows(study, runs)
    first = [r for r in rows if r["point"] == runs[0].key]
    final_acc = {r["group"]: r["value"] for r in first
                 if r["stage"] == "final" and r["metric"] == "accuracy"}
    assert final_acc == pytest.approx({"2": 0.65, "8": 0.05, "all": 0.55})
    epoch8 = [r for r in first if r["stage"] == "epoch" and r["group"] == "8"]
    assert {r["metric"]: r["value"] for r in epoch8} == pytest.approx(
        {"accuracy": -0.05, "grad_norm": 4.0})
    assert first[0][EPS] == 1.0 and first[0][CLIP] == 0.5 and first[0]["seed"] == 0

    summary = agg.summary_rows(study, rows)
    (cell,) = [s for s in summary if s["variant"] == "dp" and s[EPS] == 3.0
               and s[CLIP] == 0.5 and s["stage"] == "final" and s["group"] == "all"
               and s["metric"] == "accuracy"]
    # seeds 0.85 and 0.95: mean 0.90, half-width t(0.975, 1) * 0.05
    assert cell["n"] == 2 and cell["mean"] == pytest.approx(0.90)
    assert cell["ci95_low"] == pytest.approx(0.90 - T_975_1 * 0.05)
    assert cell["ci95_high"] == pytest.approx(0.90 + T_975_1 * 0.05)
    assert cell["ci95_low"] < cell["mean"] < cell["ci95_high"]
    assert all(s["ci95_low"] <= s["mean"] <= s["ci95_high"] for s in summary
               if s["ci95_low"] is not None)
    (eps_row,) = [s for s in summary if s["variant"] == "dp" and s[EPS] == 1.0
                  and s[CLIP] == 1.0 and s["stage"] == "final" and s["metric"] == "epsilon"]
    assert eps_row["mean"] == pytest.approx(1.005)


def test_epoch_series_and_curves() -> None:
    study = _study(x="epoch", best_of=[])
    series = agg.sweep_series(study, _runs(), ["8", "all"])
    line = series["DP, target_epsilon=1, max_grad_norm=0.5"]
    (point,) = line
    assert point.x == 1 and point.stats["8"]["mean"] == pytest.approx(0.0)
    assert point.epsilon == pytest.approx(1.01)
    curves = agg.epoch_curves([r for r in _runs() if r.variant == "non-dp"],
                              "group_accuracy")
    epochs, mean, lo, hi = curves["8"]
    assert epochs == [1] and mean == pytest.approx([0.8]) and lo == hi == pytest.approx([0.8])


def test_group_order_highlight_and_values() -> None:
    assert agg.group_order(["10", "2", "b", "a", "2"]) == ["2", "10", "a", "b"]
    runs = _runs()
    assert agg.highlight_of(runs) == ["8", "2"]
    assert agg.group_value(runs[0], "all") == pytest.approx(0.55)
    assert agg.group_value(runs[0], "8", "train_size") == 5
    assert agg.epoch_value(runs[0], 1, "all") == pytest.approx(0.45)
    assert agg.run_epsilon(runs[-1]) is None and agg.run_epsilon(runs[1]) == 1.01


def test_clip_noise_table_hand_computed() -> None:
    study = Study(name="f4", title="F4", description="", base="digits-underrep",
                  scale="quick", set=(), seeds=(0, 1),
                  variants=(Variant(name="dp", label="DP"),), grid=(),
                  figure={"kind": "clip-noise"}, paper={"accuracy": {"dp": {"8": 0.1}}})
    runs = [_run(f"s{s}", "dp", s, 0.3 + d, 0.9 + d, 0.8 + d, eps=1.0)
            for s, d in ((0, -0.02), (1, 0.02))]
    (table,) = figure_kind("clip-noise").tables(study, runs, ["8", "2"])
    (row,) = table.rows
    half = 100 * T_975_1 * 0.02
    assert row[:2] == ("DP", "2")
    assert row[2] == f"30.0 [{30.0 - half:.1f}, {30.0 + half:.1f}]" == "30.0 [4.6, 55.4]"
    assert row[3] == "90.0 [64.6, 100.0]"
    assert row[5] == "4 ±0 → 4 ±0" and row[-1] == "8: 10"


def test_figure_kinds_registry() -> None:
    assert set(FIGURE_KINDS) == {"clip-noise", "mitigation", "sweep"}
    with pytest.raises(ValueError, match="'sweep' is already registered"):
        register_figure("sweep")(type("Again", (), {}))
    with pytest.raises(ConfigError, match="figure.kind='bars': expected one of "
                                          "'clip-noise', 'mitigation', 'sweep'"):
        figure_kind("bars")
    with pytest.raises(ConfigError, match="figure.x='training.lr': expected 'epoch' or a "
                                          "grid key"):
        figure_kind("sweep").check(_study(x="training.lr"), "toy.yaml")
