"""Tests of :mod:`disparate.reporting.format`: pinned texts of hand-made values, and the
clamping of accuracy intervals to [0, 100]%."""

from __future__ import annotations

import math

import pytest

from disparate.plots import accuracy_yerr
from disparate.reporting import format as fmt


def test_accuracy_and_its_interval_clamped_to_0_100() -> None:
    assert fmt.accuracy(0.97) == "97.0%"
    assert fmt.accuracy({"mean": 0.75, "ci95": [0.70, 0.80]}) == "75.0% [70.0, 80.0]"
    assert fmt.accuracy({"mean": 0.98, "ci95": [0.93, 1.03]}) == "98.0% [93.0, 100.0]"
    assert fmt.accuracy({"mean": 0.02, "ci95": [-0.03, 0.07]}) == "2.0% [0.0, 7.0]"
    assert fmt.accuracy({"mean": 0.5, "ci95": [-0.2, 1.3]}, suffix="") == "50.0 [0.0, 100.0]"
    assert fmt.accuracy({"mean": None, "ci95": None}) == fmt.NA
    assert fmt.accuracy(None) == fmt.NA and fmt.accuracy(math.inf) == fmt.NA


def test_clamp_interval_keeps_order_and_bounds() -> None:
    assert fmt.clamp_interval((-0.5, 0.4)) == (0.0, 0.4)
    assert fmt.clamp_interval((0.6, 1.7)) == (0.6, 1.0)
    assert fmt.clamp_interval((-2.0, 3.0), fmt.DROP_BOUNDS) == (-1.0, 1.0)
    lo, hi = fmt.clamp_interval((1.2, 1.5))
    assert lo <= hi == 1.0


def test_points_percent_spread_epsilon_duration() -> None:
    assert fmt.points({"mean": 0.4, "ci95": [0.35, 0.45]}) == "+40.0 pp [+35.0, +45.0]"
    assert fmt.points(-0.02) == "-2.0 pp"
    assert fmt.points({"mean": 0.9, "ci95": [0.5, 1.3]}) == "+90.0 pp [+50.0, +100.0]"
    assert fmt.percent(0.123, digits=2) == "12.30%" and fmt.percent(0.05, signed=True) == "+5.0%"
    assert fmt.spread({"mean": 0.75, "ci95": [0.70, 0.80]}) == "75.0 ±5.0"
    assert fmt.spread({"mean": 0.02, "ci95": [0.01, 0.03]}, signed=True) == "+2.0 ±1.0"
    assert fmt.spread({"mean": 3.14159, "ci95": [3.0, 3.28318]}, scale=1.0,
                      mean_format="{:.3g}", half_format="{:.2g}") == "3.14 ±0.14"
    assert fmt.epsilon(5.914) == "5.91" and fmt.epsilon(0.01234) == "0.0123"
    assert fmt.epsilon(math.inf) == "inf" and fmt.epsilon(None) == fmt.NA
    assert fmt.duration(42) == "42 s" and fmt.duration(210) == "3.5 min"
    assert fmt.duration(7560) == "2.10 h" and fmt.duration(None) == fmt.NA
    assert fmt.plain(None) == fmt.NA and fmt.plain(True) == "yes" and fmt.plain(0.5) == "0.5"


def test_error_bars_of_accuracies_stop_at_0_and_100() -> None:
    # mean 0.98 with [0.93, 1.03]: down 0.05, up only to 1.0; mean 0.02 with [-0.03, 0.07]
    lower, upper = accuracy_yerr([0.98, 0.02, 0.5], [(0.93, 1.03), (-0.03, 0.07), None])
    assert lower == [pytest.approx(0.05), pytest.approx(0.02), 0.0]
    assert upper == [pytest.approx(0.02), pytest.approx(0.05), 0.0]
    assert accuracy_yerr([0.5], [None]) is None
    # a drop of 0.9 with [0.5, 1.3] stops at +1.0; one of -0.95 with [-1.2, -0.7] at -1.0
    lower, upper = accuracy_yerr([0.9, -0.95], [(0.5, 1.3), (-1.2, -0.7)],
                                 bounds=fmt.DROP_BOUNDS)
    assert lower == [pytest.approx(0.4), pytest.approx(0.05)]
    assert upper == [pytest.approx(0.1), pytest.approx(0.25)]

