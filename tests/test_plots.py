"""Tests of :mod:`disparate.plots`: each function writes a valid PNG from typed result records,
and the bars, error bars and curves drawn carry the hand-computed values (read back from the
matplotlib Axes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from disparate import plots
from disparate.records import ComparisonGroup, EpochMetrics, GroupResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

GROUPS = ["0", "2", "8", "10"]


def _stat(mean: float | None, half: float | None = None) -> dict:
    ci = None if half is None or mean is None else [mean - half, mean + half]
    return {"mean": mean, "ci95": ci, "values": [mean], "n": 1}


def _comparison(*, ci: bool) -> list[ComparisonGroup]:
    half = 0.01 if ci else None
    acc = {"0": (0.99, 0.98), "2": (0.98, 0.97), "8": (0.95, 0.70), "10": (0.97, 0.93)}
    return [ComparisonGroup.from_json({
        "group": g, "train_size": 10 if g == "8" else 120, "test_size": 50,
        "small_test": g == "10", "highlight": g in ("8", "2"),
        "non_private_accuracy": _stat(a, half), "dp_accuracy": _stat(b, half),
        "drop": _stat(a - b, half)}) for g, (a, b) in acc.items()]


def _metrics(epochs: int, scale: float) -> list[EpochMetrics]:
    return [EpochMetrics.from_json({
        "epoch": e,
        "group_accuracy": {g: min(1.0, 0.5 + 0.1 * e + 0.01 * i) for i, g in enumerate(GROUPS)},
        "group_grad_norm": {g: scale * (10.0 if g == "8" else 1.0) / e for g in GROUPS}})
        for e in range(1, epochs + 1)]


def _check_png(path: Path) -> None:
    assert path.is_file()
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5000


def test_group_sort_key_is_natural() -> None:
    assert sorted(["10", "2", "b", "a", "0"], key=plots.group_sort_key) == [
        "0", "2", "10", "a", "b"]


@pytest.mark.parametrize("ci", [False, True])
def test_accuracy_by_group_comparison(tmp_path: Path, ci: bool) -> None:
    out = plots.plot_accuracy_by_group(_comparison(ci=ci), tmp_path / "acc.png")
    assert out == tmp_path / "acc.png"
    _check_png(out)


def test_accuracy_by_group_single_run_with_missing_accuracy(tmp_path: Path) -> None:
    groups = [GroupResult(group="0", train_size=5, test_size=3, accuracy=0.5),
              GroupResult(group="1", train_size=5, test_size=0, accuracy=None)]
    _check_png(plots.plot_accuracy_by_group(groups, tmp_path / "sub" / "acc.png",
                                            mode="non-private"))


def test_over_epochs_two_panels_several_seeds(tmp_path: Path) -> None:
    panels = {"non-private": [_metrics(4, 1.0), _metrics(4, 1.1)],
              "DP": [_metrics(4, 20.0), _metrics(3, 22.0)]}
    _check_png(plots.plot_accuracy_over_epochs(panels, tmp_path / "a.png",
                                               highlight=["8", "2"]))
    _check_png(plots.plot_grad_norm_over_epochs(panels, tmp_path / "g.png",
                                                highlight=["8", "2"]))


def test_over_epochs_single_run_no_highlight_one_epoch(tmp_path: Path) -> None:
    # One run, one epoch, no highlighted groups.
    _check_png(plots.plot_accuracy_over_epochs({"dp": [_metrics(1, 1.0)]}, tmp_path / "a.png"))
    # A panel without metrics renders a note instead of failing.
    _check_png(plots.plot_grad_norm_over_epochs({"dp": [_metrics(2, 1.0)], "non-private": []},
                                                tmp_path / "g.png", highlight=["8"]))


def test_group_sizes_and_poor_get_poorer(tmp_path: Path) -> None:
    comparison = _comparison(ci=True)
    _check_png(plots.plot_group_sizes(comparison, tmp_path / "s.png", highlight=["8"]))
    _check_png(plots.plot_poor_get_poorer(comparison, tmp_path / "p.png", spearman=-0.8))
    _check_png(plots.plot_poor_get_poorer(comparison, tmp_path / "p2.png"))


def test_format_spearman() -> None:
    assert plots.format_spearman(-0.8123) == "-0.81"
    assert plots.format_spearman(None) == "n/a"
    assert plots.format_spearman(float("nan")) == "n/a"


def test_no_pyplot_state(tmp_path: Path) -> None:
    """Plotting never imports pyplot (no global figure registry, no backend switch)."""
    code = (
        "import sys\n"
        "from disparate import plots\n"
        "from disparate.records import GroupResult\n"
        "plots.plot_accuracy_by_group([GroupResult(group='0', train_size=1, test_size=1, "
        f"accuracy=0.5)], {str(tmp_path / 'a.png')!r})\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def _bars_and_error_bars(ax) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(bar centre, height) of every bar and (low, high) of every vertical error bar."""
    bars = [(b.get_x() + b.get_width() / 2, b.get_height()) for b in ax.patches
            if b.get_width() < 1]  # the bars, not the shaded highlight spans
    ends = [(seg[0][1], seg[1][1]) for c in ax.containers if hasattr(c, "has_yerr")
            for col in c.lines[2] for seg in col.get_segments()]
    return bars, ends


def test_accuracy_bars_and_error_bars_carry_the_values_within_0_100() -> None:
    # Group "a": non-private 0.95 [0.90, 1.08] (drawn up to 1.0), DP 0.40 [-0.10, 0.90]
    # (drawn from 0.0); group "b": 0.80 [0.75, 0.85], DP 0.60 without an interval.
    groups = [ComparisonGroup.from_json({
        "group": g, "train_size": n, "test_size": 20,
        "non_private_accuracy": {"mean": npa, "ci95": npci},
        "dp_accuracy": {"mean": dpa, "ci95": dpci}, "drop": {"mean": npa - dpa}})
        for g, n, npa, npci, dpa, dpci in [("b", 50, 0.80, [0.75, 0.85], 0.60, None),
                                           ("a", 5, 0.95, [0.90, 1.08], 0.40, [-0.1, 0.9])]]
    fig = plots.accuracy_by_group_figure(groups, highlight=["a"])
    ax = fig.axes[0]
    bars, ends = _bars_and_error_bars(ax)
    # groups in natural order a, b; non-private bars left of centre, DP right (width 0.4)
    assert bars == [(pytest.approx(-0.2), pytest.approx(0.95)),
                    (pytest.approx(0.8), pytest.approx(0.80)),
                    (pytest.approx(0.2), pytest.approx(0.40)),
                    (pytest.approx(1.2), pytest.approx(0.60))]
    assert ends == [(pytest.approx(0.90), pytest.approx(1.0)),
                    (pytest.approx(0.75), pytest.approx(0.85)),
                    (pytest.approx(0.0), pytest.approx(0.9)),
                    (pytest.approx(0.60), pytest.approx(0.60))]  # no interval: no length
    assert all(lo <= hi for lo, hi in ends)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a\nn=5", "b\nn=50"]
    assert ax.get_title() == "Test accuracy by group: non-private vs DP (95% CI over seeds)"
    assert ax.texts[0].get_text() == "95.0" and ax.texts[1].get_text() == "40.0"

    run = [GroupResult(group="x", train_size=3, test_size=2, accuracy=0.25)]
    ax = plots.accuracy_by_group_figure(run, mode="dp").axes[0]
    assert _bars_and_error_bars(ax) == ([(pytest.approx(0.0), pytest.approx(0.25))], [])
    assert ax.get_legend().get_texts()[0].get_text() == "dp"


def test_accuracy_curve_is_the_mean_over_seeds_with_a_min_max_band() -> None:
    def line(epoch: int, acc8: float, acc2: float) -> EpochMetrics:
        return EpochMetrics(epoch=epoch, group_accuracy={"8": acc8, "2": acc2})
    seeds = [[line(1, 0.2, 0.9), line(2, 0.4, 0.9)], [line(1, 0.4, 0.7), line(2, 0.8, 0.9)]]
    fig = plots.over_epochs_figure({"DP": seeds}, key="group_accuracy", ylabel="acc",
                                   highlight=["8"], title="t", percent=True)
    ax = fig.axes[0]
    curves = {c.get_label(): (list(c.get_xdata()), list(c.get_ydata())) for c in ax.lines}
    assert curves["group 8"] == ([1, 2], [pytest.approx(0.3), pytest.approx(0.6)])
    assert curves["other groups"] == ([1, 2], [pytest.approx(0.8), pytest.approx(0.9)])
    (band,) = ax.collections  # group 8's min-max band: 0.2..0.4 at epoch 1, 0.4..0.8 at 2
    ys = band.get_paths()[0].vertices[:, 1]
    assert min(ys) == pytest.approx(0.2) and max(ys) == pytest.approx(0.8)
    assert ax.get_title() == "DP (mean of 2 seeds, band: min-max)"
