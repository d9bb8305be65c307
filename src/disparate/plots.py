"""Plots of per-group results (PNG), drawn from the typed result records.

Every function takes the records of :mod:`disparate.records` (a run's
:class:`~disparate.records.GroupResult` rows or a comparison's
:class:`~disparate.records.ComparisonGroup` rows, :class:`~disparate.records.EpochMetrics`
lines), never paths or parsed JSON: callers convert once with ``from_json``. Each ``plot_*``
writes one PNG and returns its path; the ``*_figure`` functions return the figure they draw.
Figures are ``matplotlib.figure.Figure`` objects rendered with the Agg canvas: nothing touches
pyplot's global state, so plotting from a test, a server or a notebook leaves no open figures
behind.

- :func:`plot_accuracy_by_group`: accuracy per group, DP vs non-private bars with the training
  size of each group under its name and 95% intervals over seeds when there are several (the
  paper's per-class comparison, Figures 1, 4 and 5);
- :func:`plot_accuracy_over_epochs` / :func:`plot_grad_norm_over_epochs`: a metric per group
  over epochs, one panel per run kind (non-private, DP), highlighted groups bold and the
  others thin and grey (the paper's Figure 4 gradient-norm curves);
- :func:`plot_group_sizes`: training and test examples per group;
- :func:`plot_poor_get_poorer`: the DP accuracy drop against non-private accuracy per group,
  with the Spearman rank correlation in the title (the paper's Figure 1(c));
- :func:`plot_accuracy_vs_group_size`: accuracy per group against its number of training
  examples, DP (and non-private) points, small-test groups hollow (the paper's Figure 1(b)).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, PercentFormatter

from disparate.records import ComparisonGroup, EpochMetrics, GroupResult, mean_and_ci
from disparate.records import as_number as _number
from disparate.reporting.format import ACCURACY_BOUNDS, DROP_BOUNDS, clamp_interval

__all__ = [
    "NON_PRIVATE_COLOR",
    "DP_COLOR",
    "HIGHLIGHT_COLORS",
    "OTHER_COLOR",
    "OVERALL_COLOR",
    "accuracy_by_group_figure",
    "accuracy_yerr",
    "group_sort_key",
    "mean_and_ci",
    "new_figure",
    "over_epochs_figure",
    "save_figure",
    "plot_accuracy_by_group",
    "plot_accuracy_vs_group_size",
    "plot_accuracy_over_epochs",
    "plot_grad_norm_over_epochs",
    "plot_group_sizes",
    "plot_poor_get_poorer",
    "format_spearman",
]

NON_PRIVATE_COLOR = "#4c72b0"
DP_COLOR = "#dd8452"
TRAIN_COLOR = "#55a868"
TEST_COLOR = "#8172b3"
OTHER_COLOR = "#a0a0a0"
#: Colour of the overall (all groups) line of a sweep.
OVERALL_COLOR = "#222222"
HIGHLIGHT_BACKGROUND = "#fff3c4"
#: Colours of highlighted groups in line and scatter plots, in highlight order.
HIGHLIGHT_COLORS = ("#c44e52", "#4c72b0", "#55a868", "#8172b3", "#937860", "#da8bc3")
DPI = 110

#: A group's row: of a run (one accuracy) or of a comparison (non-private, DP, drop).
Group = GroupResult | ComparisonGroup
#: The metrics lines of each run of a panel (one list per seed).
Runs = Sequence[Sequence[EpochMetrics]]


# --------------------------------------------------------------------------------- helpers


def group_sort_key(name: str) -> tuple[int, float, str]:
    """Natural order of group names: numbers numerically ("2" < "10"), then text."""
    try:
        return (0, float(name), name)
    except (TypeError, ValueError):
        return (1, 0.0, str(name))


def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **subplot_kw: Any
               ) -> tuple[Figure, Any]:
    """An Agg figure (no pyplot state) and its axes as a (nrows, ncols) array."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG (creating folders) and release its memory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, format="png", dpi=DPI)
    finally:
        fig.clear()
    return path


def _highlight_set(highlight: Iterable[Any] | None, groups: Sequence[Group] = ()
                   ) -> list[str]:
    """The given names, or (``None``) the groups marked ``highlight``."""
    if highlight is None:
        return [g.group for g in groups if g.highlight]
    return [str(h) for h in highlight]


def _is_comparison(groups: Sequence[Group]) -> bool:
    return any(isinstance(g, ComparisonGroup) for g in groups)


def _sorted_groups(groups: Iterable[Group]) -> list[Group]:
    return sorted(groups, key=lambda g: group_sort_key(g.group))


def _style_group_ticks(ax: Any, names: Sequence[str], labels: Sequence[str],
                       highlight: Sequence[str]) -> None:
    ax.set_xticks(range(len(names)))
    rotation = 0 if len(names) <= 16 else 90
    ax.set_xticklabels(labels, rotation=rotation, fontsize=9 if len(names) <= 24 else 7)
    for tick, name in zip(ax.get_xticklabels(), names, strict=True):
        if name in highlight:
            tick.set_fontweight("bold")


def _shade_highlighted(ax: Any, names: Sequence[str], highlight: Sequence[str]) -> None:
    for i, name in enumerate(names):
        if name in highlight:
            ax.axvspan(i - 0.5, i + 0.5, color=HIGHLIGHT_BACKGROUND, zorder=0, lw=0)


def accuracy_yerr(means: Sequence[float], cis: Sequence[tuple[float, float] | None], *,
                  bounds: tuple[float, float] = ACCURACY_BOUNDS) -> list[list[float]] | None:
    """Error-bar lengths (``[lower, upper]``, for ``yerr=``) of accuracy intervals, drawn
    within [0, 1] (drops: ``bounds=DROP_BOUNDS``; a Student-t interval of few seeds can
    reach past the bounds; the JSON keeps it as computed); ``None`` when no mean has an
    interval."""
    if not any(ci is not None for ci in cis):
        return None
    lower, upper = [], []
    for mean, ci in zip(means, cis, strict=True):
        if ci is None or math.isnan(mean):
            lower.append(0.0)
            upper.append(0.0)
        else:
            lo, hi = clamp_interval(ci, bounds)
            lower.append(max(mean - lo, 0.0))
            upper.append(max(hi - mean, 0.0))
    return [lower, upper]


def _width(n: int, per_item: float, minimum: float = 6.0, maximum: float = 30.0) -> float:
    return min(max(minimum, 1.5 + per_item * n), maximum)


def _title(ax_or_fig: Any, text: str | None, *, suptitle: bool = False) -> None:
    if not text:
        return
    if suptitle:
        ax_or_fig.suptitle(text, fontsize=12)
    else:
        ax_or_fig.set_title(text, fontsize=11)


# ------------------------------------------------------------------------ accuracy by group


def plot_accuracy_by_group(groups: Sequence[Group], path: str | Path, *, mode: str = "run",
                           highlight: Iterable[Any] | None = None,
                           title: str | None = None) -> Path:
    """:func:`accuracy_by_group_figure` written as a PNG to ``path``; returns ``path``."""
    return save_figure(accuracy_by_group_figure(groups, mode=mode, highlight=highlight,
                                                title=title), path)


def accuracy_by_group_figure(groups: Sequence[Group], *, mode: str = "run",
                             highlight: Iterable[Any] | None = None,
                             title: str | None = None) -> Figure:
    """Bars of test accuracy per group.

    ``groups`` are a comparison's :class:`ComparisonGroup` rows (non-private and DP bars
    side by side, error bars from the 95% intervals over seeds when present, drawn within
    [0, 100]%) or a run's :class:`GroupResult` rows (one bar per group, labelled ``mode``).
    The training size of each group is written under its name; highlighted groups (default:
    those marked ``highlight``) have bold names, a shaded background and their accuracies
    printed on the bars.
    """
    highlight_names = _highlight_set(highlight, groups)
    comparison = _is_comparison(groups)
    groups = _sorted_groups(groups)
    names = [g.group for g in groups]
    if comparison:
        series = [("non-private", NON_PRIVATE_COLOR, "non_private_accuracy"),
                  ("DP", DP_COLOR, "dp_accuracy")]
    else:
        series = [(mode, DP_COLOR if mode == "dp" else NON_PRIVATE_COLOR, "accuracy")]
    fig, ((ax,),) = new_figure(_width(len(names), 0.55 * len(series)), 4.2)
    _shade_highlighted(ax, names, highlight_names)
    bar_width = 0.8 / len(series)
    annotate = len(names) <= 24
    for k, (label, color, key) in enumerate(series):
        stats = [mean_and_ci(getattr(g, key)) for g in groups]
        means = [m for m, _ in stats]
        heights = [0.0 if math.isnan(m) else m for m in means]
        xs = [i + (k - (len(series) - 1) / 2) * bar_width for i in range(len(names))]
        alphas = [1.0 if (not highlight_names or n in highlight_names) else 0.6 for n in names]
        bars = ax.bar(xs, heights, width=bar_width, color=color, label=label,
                      edgecolor="black", linewidth=0.4, zorder=2)
        for bar, alpha, name in zip(bars, alphas, names, strict=True):
            bar.set_alpha(alpha)
            if name in highlight_names:
                bar.set_linewidth(1.2)
        yerr = accuracy_yerr(means, [ci for _, ci in stats])
        if yerr is not None:
            ax.errorbar(xs, heights, yerr=yerr, fmt="none", ecolor="black", elinewidth=0.9,
                        capsize=2.5, zorder=3)
        if annotate:
            tops = [m if ci is None else max(m, ci[1]) for m, (_, ci) in zip(means, stats,
                                                                             strict=True)]
            for x, mean, top, name in zip(xs, means, tops, names, strict=True):
                if name in highlight_names and not math.isnan(mean):
                    ax.annotate(f"{100 * mean:.1f}", (x, min(top, 1.04)), xytext=(0, 2),
                                textcoords="offset points", ha="center", va="bottom",
                                fontsize=7, fontweight="bold", zorder=4)
    labels = [f"{g.group}\nn={g.train_size}" for g in groups]
    _style_group_ticks(ax, names, labels, highlight_names)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(0, 1.2)  # headroom above 100% for the value labels and the legend
    ax.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylabel("test accuracy")
    ax.set_xlabel("group (n = training examples)")
    ax.grid(axis="y", alpha=0.3, zorder=0)
    ax.legend(loc="upper right", ncol=len(series), fontsize=8, framealpha=0.9)
    default = "Test accuracy by group"
    if comparison:
        default += ": non-private vs DP"
        if any(g.dp_accuracy.ci95 is not None for g in groups):
            default += " (95% CI over seeds)"
    _title(ax, title or default)
    return fig


# ------------------------------------------------------------------------- over epochs


def _group_series(runs: Runs, key: str
                  ) -> dict[str, tuple[list[float], list[float], list[float], list[float]]]:
    """Per group: (epochs, mean, min, max) of ``line.<key>[group]`` across runs."""
    values: dict[str, dict[float, list[float]]] = {}
    for run in runs:
        for line in run:
            for group, value in getattr(line, key).items():
                x = _number(value)
                if not math.isnan(x):
                    values.setdefault(str(group), {}).setdefault(line.epoch, []).append(x)
    out = {}
    for group, by_epoch in values.items():
        epochs = sorted(by_epoch)
        out[group] = (epochs,
                      [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs],
                      [min(by_epoch[e]) for e in epochs],
                      [max(by_epoch[e]) for e in epochs])
    return out


def over_epochs_figure(panels: Mapping[str, Runs], *, key: str, ylabel: str,
                       highlight: Iterable[Any] | None, title: str, percent: bool) -> Figure:
    """``key`` (an :class:`EpochMetrics` per-group field) per group over epochs, one panel
    per entry of ``panels`` (title -> the metrics lines of each run)."""
    highlight_names = _highlight_set(highlight or ())
    items = [(label, [run for run in runs if run]) for label, runs in panels.items()]
    if not items:
        items = [("", [])]
    series = [(label, runs, _group_series(runs, key)) for label, runs in items]
    fig, (axes,) = new_figure(max(5.0, 4.6 * len(series)), 4.0, 1, len(series), sharey=True)
    positive = [v for _, _, s in series for g in s.values() for v in g[1] if v > 0]
    log_scale = (not percent and bool(positive) and
                 max(positive) / max(min(positive), 1e-12) > 30)
    for ax, (label, runs, by_group) in zip(axes, series, strict=True):
        colored: dict[str, str] = {}
        if highlight_names:
            for i, name in enumerate(highlight_names):
                colored[name] = HIGHLIGHT_COLORS[i % len(HIGHLIGHT_COLORS)]
        groups = sorted(by_group, key=group_sort_key)
        plain_all = not highlight_names
        drew_other = False
        for j, group in enumerate(groups):
            epochs, mean, lo, hi = by_group[group]
            if group in colored:
                continue
            if plain_all:
                color = f"C{j % 10}"
                ax.plot(epochs, mean, color=color, lw=1.2, label=group,
                        marker="o" if len(epochs) == 1 else None, ms=3)
            else:
                ax.plot(epochs, mean, color=OTHER_COLOR, lw=0.8, alpha=0.8,
                        label=None if drew_other else "other groups",
                        marker="o" if len(epochs) == 1 else None, ms=2)
                drew_other = True
        for group in [g for g in highlight_names if g in by_group]:
            epochs, mean, lo, hi = by_group[group]
            color = colored[group]
            if len(runs) > 1:
                ax.fill_between(epochs, lo, hi, color=color, alpha=0.15, lw=0)
            ax.plot(epochs, mean, color=color, lw=2.4, label=f"group {group}",
                    marker="o" if len(epochs) == 1 else None, ms=4, zorder=3)
        if not by_group:
            ax.text(0.5, 0.5, "no per-epoch metrics", ha="center", va="center",
                    transform=ax.transAxes, color="grey")
        heading = label
        if len(runs) > 1:
            heading += f" (mean of {len(runs)} seeds, band: min-max)"
        if heading:
            ax.set_title(heading, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if percent:
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        if log_scale:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        if by_group:
            ncol = 1 if len(ax.get_legend_handles_labels()[1]) <= 6 else 2
            ax.legend(fontsize=7, ncol=ncol, framealpha=0.9)
    axes[0].set_ylabel(ylabel + (" (log scale)" if log_scale else ""))
    _title(fig, title, suptitle=True)
    return fig


def plot_accuracy_over_epochs(panels: Mapping[str, Runs], path: str | Path, *,
                              highlight: Iterable[Any] | None = None,
                              title: str | None = None) -> Path:
    """Per-group test accuracy over epochs, one panel per entry of ``panels``.

    ``panels`` maps a panel title (e.g. ``"non-private"``, ``"DP"``) to the
    :class:`EpochMetrics` lines of each of its runs (one list per seed; with several the
    line is the mean over seeds and highlighted groups get a min-max band). Highlighted
    groups are drawn bold in colour, the others thin and grey.
    """
    return save_figure(over_epochs_figure(
        panels, key="group_accuracy", ylabel="test accuracy", highlight=highlight,
        percent=True, title=title or "Test accuracy by group over epochs"), path)


def plot_grad_norm_over_epochs(panels: Mapping[str, Runs], path: str | Path, *,
                               highlight: Iterable[Any] | None = None,
                               title: str | None = None) -> Path:
    """Per-group mean per-example gradient norm (before clipping) over epochs.

    Same layout and ``panels`` format as :func:`plot_accuracy_over_epochs`; reads
    ``group_grad_norm``. The y axis is logarithmic when the norms span more than 30x.
    """
    return save_figure(over_epochs_figure(
        panels, key="group_grad_norm", ylabel="mean per-example gradient norm",
        highlight=highlight, percent=False,
        title=title or "Mean per-example gradient norm (before clipping) by group"), path)


# ----------------------------------------------------------------------------- group sizes


def plot_group_sizes(groups: Sequence[Group], path: str | Path, *,
                     highlight: Iterable[Any] | None = None,
                     small_test: Iterable[Any] | None = None,
                     title: str | None = None) -> Path:
    """Training and test examples per group (a run's or a comparison's group rows).

    Groups named in ``small_test`` (default: those marked ``small_test``) get hatched test
    bars: their accuracy rests on few examples.
    """
    highlight_names = _highlight_set(highlight or ())
    rows = _sorted_groups(groups)
    names = [g.group for g in rows]
    small = ({str(s) for s in small_test} if small_test is not None
             else {g.group for g in rows if g.small_test})
    fig, ((ax,),) = new_figure(_width(len(names), 0.6), 4.0)
    _shade_highlighted(ax, names, highlight_names)
    annotate = len(names) <= 24
    for k, (label, color, key) in enumerate([("train", TRAIN_COLOR, "train_size"),
                                             ("test", TEST_COLOR, "test_size")]):
        values = [_number(getattr(g, key)) for g in rows]
        heights = [0.0 if math.isnan(v) else v for v in values]
        xs = [i + (k - 0.5) * 0.4 for i in range(len(names))]
        bars = ax.bar(xs, heights, width=0.4, color=color, label=label, edgecolor="black",
                      linewidth=0.4, zorder=2)
        if key == "test_size":
            for bar, name in zip(bars, names, strict=True):
                if name in small:
                    bar.set_hatch("///")
                    bar.set_edgecolor("#c44e52")
        if annotate:
            for x, v in zip(xs, values, strict=True):
                if not math.isnan(v):
                    ax.annotate(f"{int(v)}", (x, v), xytext=(0, 2), textcoords="offset points",
                                ha="center", va="bottom", fontsize=6.5, rotation=90)
    _style_group_ticks(ax, names, names, highlight_names)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.margins(y=0.35)  # room for the counts and the legend above the bars
    ax.set_ylim(bottom=0)
    ax.set_xlabel("group")
    ax.set_ylabel("examples")
    ax.grid(axis="y", alpha=0.3, zorder=0)
    handles, labels = ax.get_legend_handles_labels()
    if small:
        from matplotlib.patches import Patch

        handles.append(Patch(facecolor=TEST_COLOR, hatch="///", edgecolor="#c44e52"))
        labels.append("test (small: accuracy unreliable)")
    ax.legend(handles, labels, loc="upper right", ncol=len(handles), fontsize=8,
              framealpha=0.9)
    _title(ax, title or "Examples per group")
    return save_figure(fig, path)


# --------------------------------------------------------------------------- poor get poorer


def format_spearman(value: Any) -> str:
    """``"-0.81"``, or ``"n/a"`` when the correlation is undefined."""
    x = _number(value)
    return "n/a" if math.isnan(x) else f"{x:+.2f}"


def plot_poor_get_poorer(groups: Sequence[ComparisonGroup], path: str | Path, *,
                         spearman: float | None = None,
                         highlight: Iterable[Any] | None = None,
                         title: str | None = None) -> Path:
    """Scatter of the DP drop against non-private accuracy, one point per group.

    ``groups`` are a comparison's rows; the title gives ``spearman``, the rank correlation
    of ``comparison.json`` ``poor_get_poorer`` (negative: the groups the non-private model
    serves worst lose the most under DP). Error bars: the 95% intervals over seeds, the
    accuracy's within [0, 100]%, the drop's within [-100, +100] points.
    """
    highlight_names = _highlight_set(highlight, groups)
    groups = _sorted_groups(groups)
    fig, ((ax,),) = new_figure(6.0, 4.6)
    ax.axhline(0.0, color="black", lw=0.7, zorder=1)
    label_points = len(groups) <= 40
    for group in groups:
        name = group.group
        x, x_ci = mean_and_ci(group.non_private_accuracy)
        y, y_ci = mean_and_ci(group.drop)
        if math.isnan(x) or math.isnan(y):
            continue
        emphasised = name in highlight_names
        color = (HIGHLIGHT_COLORS[highlight_names.index(name) % len(HIGHLIGHT_COLORS)]
                 if emphasised else "#555555")
        area = 15.0 + 3.0 * math.sqrt(max(group.train_size, 0))
        if x_ci is not None or y_ci is not None:
            ax.errorbar([x], [y], xerr=accuracy_yerr([x], [x_ci]),
                        yerr=accuracy_yerr([y], [y_ci], bounds=DROP_BOUNDS),
                        fmt="none", ecolor=color, alpha=0.5, elinewidth=0.8, zorder=2)
        ax.scatter([x], [y], s=area, color=color, edgecolor="black",
                   linewidth=1.0 if emphasised else 0.3, zorder=3)
        if label_points or emphasised:
            ax.annotate(name, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=8,
                        fontweight="bold" if emphasised else "normal", color=color)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("non-private accuracy (marker area ~ training examples)")
    ax.set_ylabel("accuracy drop under DP (non-private - DP)")
    ax.grid(alpha=0.3)
    ax.margins(0.12)
    default = (f"The poor get poorer: Spearman \u03c1 = {format_spearman(spearman)}\n"
               "(\u03c1 < 0: lower non-private accuracy, larger DP drop)")
    _title(ax, title or default)
    return save_figure(fig, path)


# ------------------------------------------------------------------ accuracy vs group size


def plot_accuracy_vs_group_size(groups: Sequence[Group], path: str | Path, *,
                                highlight: Iterable[Any] | None = None,
                                small_test: Iterable[Any] | None = None,
                                title: str | None = None) -> Path:
    """Accuracy per group against the group's training examples, one point per group.

    ``groups`` are a comparison's rows (DP points, with non-private points in grey behind
    them and 95% intervals within [0, 100]% when there are several seeds) or a run's (its
    accuracy). Groups flagged ``small_test`` (or listed in ``small_test``) are drawn hollow:
    their accuracy rests on few test examples. Groups without an accuracy (no test
    examples) cannot be placed and are counted in a note. The x axis is logarithmic when the
    sizes span more than a factor of 20 (groups with 0 training examples sit at the left).
    """
    highlight_names = _highlight_set(highlight, groups)
    small = {str(s) for s in (small_test or ())}
    comparison = _is_comparison(groups)
    groups = _sorted_groups(groups)
    series = ([("non_private_accuracy", "non-private", NON_PRIVATE_COLOR, 0.45),
               ("dp_accuracy", "DP", DP_COLOR, 1.0)] if comparison
              else [("accuracy", "accuracy", DP_COLOR, 1.0)])
    sizes = [float(g.train_size) for g in groups]
    positive = [x for x in sizes if not math.isnan(x) and x > 0]
    log_x = bool(positive) and max(positive) / min(positive) > 20
    floor = min(positive) / 2 if positive else 0.5
    fig, ((ax,),) = new_figure(7.0, 4.6)
    missing = 0
    seen_labels: set[str] = set()
    for key, label, color, alpha in series:
        for group, size in zip(groups, sizes, strict=True):
            name = group.group
            y, ci = mean_and_ci(getattr(group, key))
            if math.isnan(y) or math.isnan(size):
                if key == series[-1][0]:
                    missing += 1
                continue
            x = max(size, floor) if log_x else size
            is_small = group.small_test or name in small
            emphasised = name in highlight_names
            if ci is not None:
                ax.errorbar([x], [y], yerr=accuracy_yerr([y], [ci]),
                            fmt="none", ecolor=color, alpha=0.5 * alpha, elinewidth=0.8,
                            zorder=2)
            text = label + (" (small test set)" if is_small else "")
            ax.scatter([x], [y], s=42 if emphasised else 24,
                       facecolor="none" if is_small else color, edgecolor=color,
                       linewidth=1.6 if emphasised else 0.9, alpha=alpha, zorder=3,
                       label=None if text in seen_labels else text)
            seen_labels.add(text)
            if key == series[-1][0] and (emphasised or len(groups) <= 24):
                ax.annotate(name, (x, y), xytext=(4, 3), textcoords="offset points",
                            fontsize=7 if not emphasised else 8,
                            fontweight="bold" if emphasised else "normal")
    if log_x:
        ax.set_xscale("log")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("training examples in the group" + (" (log scale)" if log_x else ""))
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.margins(0.08)
    if seen_labels:
        ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    if missing:
        ax.text(0.01, 0.01, f"{missing} group(s) without test examples not shown",
                transform=ax.transAxes, fontsize=8, color="grey", va="bottom")
    what = "DP accuracy" if comparison else "accuracy"
    _title(ax, title or f"{what} vs training examples per group")
    return save_figure(fig, path)
