"""Plots of per-group results (PNG), drawn from the parsed result files.

Every function takes parsed JSON data (see ``docs/results-format.md``), never paths to it,
writes one PNG and returns its path. Figures are ``matplotlib.figure.Figure`` objects rendered
with the Agg canvas: nothing touches pyplot's global state, so plotting from a test, a server
or a notebook leaves no open figures behind.

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

from disparate.records import as_number as _number
from disparate.records import mean_and_ci

__all__ = [
    "NON_PRIVATE_COLOR",
    "DP_COLOR",
    "HIGHLIGHT_COLORS",
    "OTHER_COLOR",
    "OVERALL_COLOR",
    "accuracy_yerr",
    "group_sort_key",
    "mean_and_ci",
    "new_figure",
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

Records = Sequence[Mapping[str, Any]]


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


def _highlight_set(highlight: Iterable[Any] | None) -> list[str]:
    return [str(h) for h in (highlight or ())]


def _is_comparison(data: Mapping[str, Any]) -> bool:
    groups = data.get("groups") or []
    return any(isinstance(g, Mapping) and "dp_accuracy" in g for g in groups)


def _sorted_groups(groups: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted((g for g in groups if isinstance(g, Mapping)),
                  key=lambda g: group_sort_key(str(g.get("group"))))


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


def accuracy_yerr(means: Sequence[float], cis: Sequence[tuple[float, float] | None]
                  ) -> list[list[float]] | None:
    """Error-bar lengths (``[lower, upper]``, for ``yerr=``) of accuracy intervals, drawn
    within [0, 1] (a Student-t interval of few seeds can reach past the bounds; the JSON
    keeps it as computed); ``None`` when no mean has an interval."""
    if not any(ci is not None for ci in cis):
        return None
    lower, upper = [], []
    for mean, ci in zip(means, cis, strict=True):
        if ci is None or math.isnan(mean):
            lower.append(0.0)
            upper.append(0.0)
        else:
            lower.append(max(mean - max(ci[0], 0.0), 0.0))
            upper.append(max(min(ci[1], 1.0) - mean, 0.0))
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


def plot_accuracy_by_group(data: Mapping[str, Any], path: str | Path, *,
                           highlight: Iterable[Any] | None = None,
                           title: str | None = None) -> Path:
    """Bars of test accuracy per group; write a PNG to ``path`` and return it.

    ``data`` is a parsed ``comparison.json`` (non-private and DP bars side by side, error
    bars from the 95% intervals over seeds when present) or a parsed ``results.json`` of one
    run (one bar per group, labelled with the run's mode). The training size of each group
    is written under its name; highlighted groups (default: ``data["highlight"]``) have bold
    names, a shaded background and their accuracies printed on the bars.
    """
    highlight_names = _highlight_set(highlight if highlight is not None
                                     else data.get("highlight"))
    groups = _sorted_groups(data.get("groups") or [])
    names = [str(g.get("group")) for g in groups]
    if _is_comparison(data):
        series = [("non-private", NON_PRIVATE_COLOR, "non_private_accuracy"),
                  ("DP", DP_COLOR, "dp_accuracy")]
    else:
        mode = str(data.get("mode") or "run")
        series = [(mode, DP_COLOR if mode == "dp" else NON_PRIVATE_COLOR, "accuracy")]
    fig, ((ax,),) = new_figure(_width(len(names), 0.55 * len(series)), 4.2)
    _shade_highlighted(ax, names, highlight_names)
    bar_width = 0.8 / len(series)
    annotate = len(names) <= 24
    for k, (label, color, key) in enumerate(series):
        stats = [mean_and_ci(g.get(key)) for g in groups]
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
    sizes = [g.get("train_size") for g in groups]
    labels = [f"{n}\nn={s}" if isinstance(s, int) else n for n, s in zip(names, sizes,
                                                                       strict=True)]
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
    if _is_comparison(data):
        default += ": non-private vs DP"
        if any(mean_and_ci(g.get("dp_accuracy"))[1] is not None for g in groups):
            default += " (95% CI over seeds)"
    _title(ax, title or default)
    return save_figure(fig, path)


# ------------------------------------------------------------------------- over epochs


def _as_runs(value: Any) -> list[Records]:
    """A panel's value as a list of runs (each a list of epoch records)."""
    if not value:
        return []
    if isinstance(value, Sequence) and isinstance(value[0], Mapping):
        return [value]
    return [run for run in value if run]


def _group_series(runs: Sequence[Records], key: str
                  ) -> dict[str, tuple[list[float], list[float], list[float], list[float]]]:
    """Per group: (epochs, mean, min, max) of ``record[key][group]`` across runs."""
    values: dict[str, dict[float, list[float]]] = {}
    for run in runs:
        for record in run:
            epoch = _number(record.get("epoch"))
            per_group = record.get(key)
            if math.isnan(epoch) or not isinstance(per_group, Mapping):
                continue
            for group, value in per_group.items():
                x = _number(value)
                if not math.isnan(x):
                    values.setdefault(str(group), {}).setdefault(epoch, []).append(x)
    out = {}
    for group, by_epoch in values.items():
        epochs = sorted(by_epoch)
        out[group] = (epochs,
                      [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs],
                      [min(by_epoch[e]) for e in epochs],
                      [max(by_epoch[e]) for e in epochs])
    return out


def _plot_over_epochs(panels: Mapping[str, Any], path: str | Path, *, key: str,
                      ylabel: str, highlight: Iterable[Any] | None, title: str,
                      percent: bool) -> Path:
    highlight_names = _highlight_set(highlight)
    items = [(label, _as_runs(value)) for label, value in panels.items()]
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
    return save_figure(fig, path)


def plot_accuracy_over_epochs(panels: Mapping[str, Any], path: str | Path, *,
                              highlight: Iterable[Any] | None = None,
                              title: str | None = None) -> Path:
    """Per-group test accuracy over epochs, one panel per entry of ``panels``.

    ``panels`` maps a panel title (e.g. ``"non-private"``, ``"DP"``) to the parsed
    ``metrics.jsonl`` records of one run, or to a list of such record lists (one per seed;
    the line is then the mean over seeds and highlighted groups get a min-max band).
    Highlighted groups are drawn bold in colour, the others thin and grey.
    """
    return _plot_over_epochs(panels, path, key="group_accuracy", ylabel="test accuracy",
                             highlight=highlight, percent=True,
                             title=title or "Test accuracy by group over epochs")


def plot_grad_norm_over_epochs(panels: Mapping[str, Any], path: str | Path, *,
                               highlight: Iterable[Any] | None = None,
                               title: str | None = None) -> Path:
    """Per-group mean per-example gradient norm (before clipping) over epochs.

    Same layout and ``panels`` format as :func:`plot_accuracy_over_epochs`; reads
    ``group_grad_norm``. The y axis is logarithmic when the norms span more than 30x.
    """
    return _plot_over_epochs(
        panels, path, key="group_grad_norm",
        ylabel="mean per-example gradient norm", highlight=highlight, percent=False,
        title=title or "Mean per-example gradient norm (before clipping) by group")


# ----------------------------------------------------------------------------- group sizes


def plot_group_sizes(groups: Sequence[Mapping[str, Any]], path: str | Path, *,
                     highlight: Iterable[Any] | None = None,
                     small_test: Iterable[Any] | None = None,
                     title: str | None = None) -> Path:
    """Training and test examples per group (the ``groups`` list of either result file).

    Groups named in ``small_test`` (default: those with ``"small_test": true``) get hatched
    test bars: their accuracy rests on few examples.
    """
    highlight_names = _highlight_set(highlight)
    rows = _sorted_groups(groups)
    names = [str(g.get("group")) for g in rows]
    small = set(_highlight_set(small_test)) if small_test is not None else {
        str(g.get("group")) for g in rows if g.get("small_test")}
    fig, ((ax,),) = new_figure(_width(len(names), 0.6), 4.0)
    _shade_highlighted(ax, names, highlight_names)
    annotate = len(names) <= 24
    for k, (label, color, key) in enumerate([("train", TRAIN_COLOR, "train_size"),
                                             ("test", TEST_COLOR, "test_size")]):
        values = [_number(g.get(key)) for g in rows]
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


def plot_poor_get_poorer(comparison: Mapping[str, Any], path: str | Path, *,
                         highlight: Iterable[Any] | None = None,
                         title: str | None = None) -> Path:
    """Scatter of the DP drop against non-private accuracy, one point per group.

    ``comparison`` is a parsed ``comparison.json``. The title gives the Spearman rank
    correlation from ``comparison["poor_get_poorer"]`` (negative: the groups the
    non-private model serves worst lose the most under DP).
    """
    highlight_names = _highlight_set(highlight if highlight is not None
                                     else comparison.get("highlight"))
    groups = _sorted_groups(comparison.get("groups") or [])
    fig, ((ax,),) = new_figure(6.0, 4.6)
    ax.axhline(0.0, color="black", lw=0.7, zorder=1)
    label_points = len(groups) <= 40
    for group in groups:
        name = str(group.get("group"))
        x, x_ci = mean_and_ci(group.get("non_private_accuracy"))
        y, y_ci = mean_and_ci(group.get("drop"))
        if math.isnan(x) or math.isnan(y):
            continue
        emphasised = name in highlight_names
        color = (HIGHLIGHT_COLORS[highlight_names.index(name) % len(HIGHLIGHT_COLORS)]
                 if emphasised else "#555555")
        size = _number(group.get("train_size"))
        area = 30.0 if math.isnan(size) else 15.0 + 3.0 * math.sqrt(max(size, 0.0))
        if x_ci is not None or y_ci is not None:
            ax.errorbar([x], [y],
                        xerr=None if x_ci is None else [[max(x - x_ci[0], 0)],
                                                        [max(x_ci[1] - x, 0)]],
                        yerr=None if y_ci is None else [[max(y - y_ci[0], 0)],
                                                        [max(y_ci[1] - y, 0)]],
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
    spearman = (comparison.get("poor_get_poorer") or {}).get("spearman")
    default = (f"The poor get poorer: Spearman \u03c1 = {format_spearman(spearman)}\n"
               "(\u03c1 < 0: lower non-private accuracy, larger DP drop)")
    _title(ax, title or default)
    return save_figure(fig, path)


# ------------------------------------------------------------------ accuracy vs group size


def plot_accuracy_vs_group_size(data: Mapping[str, Any], path: str | Path, *,
                                highlight: Iterable[Any] | None = None,
                                small_test: Iterable[Any] | None = None,
                                title: str | None = None) -> Path:
    """Accuracy per group against the group's training examples, one point per group.

    ``data`` is a parsed ``comparison.json`` (DP points, with non-private points in grey
    behind them and 95% intervals when there are several seeds) or ``results.json`` (the run's
    accuracy). Groups flagged ``small_test`` (or listed in ``small_test``) are drawn hollow:
    their accuracy rests on few test examples. Groups without an accuracy (no test
    examples) cannot be placed and are counted in a note. The x axis is logarithmic when the
    sizes span more than a factor of 20 (groups with 0 training examples sit at the left).
    """
    highlight_names = _highlight_set(highlight if highlight is not None
                                     else data.get("highlight"))
    small = {str(s) for s in (small_test or ())}
    groups = _sorted_groups(data.get("groups") or [])
    comparison = _is_comparison(data)
    series = ([("non_private_accuracy", "non-private", NON_PRIVATE_COLOR, 0.45),
               ("dp_accuracy", "DP", DP_COLOR, 1.0)] if comparison
              else [("accuracy", "accuracy", DP_COLOR, 1.0)])
    sizes = [_number(g.get("train_size")) for g in groups]
    positive = [x for x in sizes if not math.isnan(x) and x > 0]
    log_x = bool(positive) and max(positive) / min(positive) > 20
    floor = min(positive) / 2 if positive else 0.5
    fig, ((ax,),) = new_figure(7.0, 4.6)
    missing = 0
    seen_labels: set[str] = set()
    for key, label, color, alpha in series:
        for group, size in zip(groups, sizes, strict=True):
            name = str(group.get("group"))
            y, ci = mean_and_ci(group.get(key))
            if math.isnan(y) or math.isnan(size):
                if key == series[-1][0]:
                    missing += 1
                continue
            x = max(size, floor) if log_x else size
            is_small = bool(group.get("small_test")) or name in small
            emphasised = name in highlight_names
            if ci is not None:
                ax.errorbar([x], [y], yerr=[[max(y - ci[0], 0)], [max(ci[1] - y, 0)]],
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
