"""The formatters of every report: percent, interval (clamped and labelled), points,
epsilon, duration, plain values. Inputs are fractions (0.97 is 97%) or the ``{"mean",
"ci95"}`` statistics of :func:`disparate.results.summarize`; a missing value is ``"n/a"``.

Accuracies are fractions in [0, 1], so their intervals are shown within [0, 100]%: a
Student-t interval of few seeds can reach past the bounds (the JSON keeps it as computed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "ACCURACY_BOUNDS",
    "DROP_BOUNDS",
    "INTERVAL_LABEL",
    "NA",
    "accuracy",
    "clamp_interval",
    "duration",
    "epsilon",
    "number",
    "percent",
    "plain",
    "points",
    "spread",
    "stat",
]

NA = "n/a"
#: What ``[lo, hi]`` after a mean is, for the legend of every table that shows one.
INTERVAL_LABEL = ("[lo, hi]: 95% Student-t interval of the mean over seeds, shown within "
                  "[0, 100]%")
#: Accuracies are fractions in [0, 1]; differences of two accuracies lie in [-1, 1].
ACCURACY_BOUNDS = (0.0, 1.0)
DROP_BOUNDS = (-1.0, 1.0)


def number(value: Any) -> float | None:
    """A finite float, or ``None`` for a missing, non-numeric or non-finite value."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def stat(value: Any) -> tuple[float | None, tuple[float, float] | None]:
    """(mean, ci95) of a ``{"mean", "ci95"}`` statistic or of a plain number."""
    if isinstance(value, Mapping):
        ci = value.get("ci95")
        interval = None
        if isinstance(ci, Sequence) and not isinstance(ci, str) and len(ci) == 2:
            lo, hi = number(ci[0]), number(ci[1])
            if lo is not None and hi is not None:
                interval = (lo, hi)
        return number(value.get("mean")), interval
    return number(value), None


def clamp_interval(ci: tuple[float, float], bounds: tuple[float, float] = ACCURACY_BOUNDS
                   ) -> tuple[float, float]:
    """``ci`` cut to ``bounds`` (low first)."""
    lo, hi = bounds
    return min(max(ci[0], lo), hi), min(max(ci[1], lo), hi)


def percent(value: Any, *, digits: int = 1, signed: bool = False, suffix: str = "%") -> str:
    """A fraction (or the mean of a statistic) in percent: ``"97.0%"``; ``"+2.0%"`` signed."""
    mean = stat(value)[0]
    if mean is None:
        return NA
    return f"{100 * mean:{'+' if signed else ''}.{digits}f}{suffix}"


def _with_interval(value: Any, *, bounds: tuple[float, float], signed: bool, digits: int,
                   suffix: str) -> str:
    mean, ci = stat(value)
    if mean is None:
        return NA
    sign = "+" if signed else ""
    text = f"{100 * mean:{sign}.{digits}f}{suffix}"
    if ci is not None:
        lo, hi = clamp_interval(ci, bounds)
        text += f" [{100 * lo:{sign}.{digits}f}, {100 * hi:{sign}.{digits}f}]"
    return text


def accuracy(value: Any, *, digits: int = 1, suffix: str = "%") -> str:
    """An accuracy as ``"97.0%"`` or ``"97.0% [96.0, 98.0]"`` (95% interval over seeds,
    within [0, 100]%); ``suffix=""`` for a column whose header says "%"."""
    return _with_interval(value, bounds=ACCURACY_BOUNDS, signed=False, digits=digits,
                          suffix=suffix)


def points(value: Any, *, digits: int = 1, suffix: str = " pp") -> str:
    """A difference of accuracies in percentage points: ``"+2.0 pp"``, with
    ``" [+1.0, +3.0]"`` (within [-100, +100]) when there is an interval."""
    return _with_interval(value, bounds=DROP_BOUNDS, signed=True, digits=digits,
                          suffix=suffix)


def spread(value: Any, *, scale: float = 100.0, digits: int = 1, signed: bool = False,
           mean_format: str | None = None, half_format: str | None = None) -> str:
    """``"mean ±half-width"`` of a statistic's 95% interval (a quantity without bounds, e.g.
    a gradient norm, or a terminal table); ``"n/a"`` without a mean."""
    mean, ci = stat(value)
    if mean is None:
        return NA
    text = (mean_format or f"{{:{'+' if signed else ''}.{digits}f}}").format(scale * mean)
    if ci is not None:
        text += " ±" + (half_format or f"{{:.{digits}f}}").format(scale * (ci[1] - ci[0]) / 2)
    return text


def epsilon(value: Any) -> str:
    """``"5.91"`` (``"0.0123"`` when small); ``"inf"``/``"n/a"`` when infinite or missing."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isinf(value):
        return "inf"
    x = number(value)
    if x is None:
        return NA
    return f"{x:.2f}" if x >= 0.1 else f"{x:.3g}"


def duration(seconds: Any) -> str:
    """``"42 s"``, ``"3.5 min"`` or ``"2.10 h"``; ``"n/a"`` when missing."""
    x = number(seconds)
    if x is None:
        return NA
    if x < 120:
        return f"{x:.0f} s"
    if x < 7200:
        return f"{x / 60:.1f} min"
    return f"{x / 3600:.2f} h"


def plain(value: Any) -> str:
    """A setting's value: ``"n/a"`` for None, yes/no, floats by ``:g``, else ``str``."""
    if value is None:
        return NA
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
