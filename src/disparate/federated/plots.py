"""Figure 3 of the paper and training curves of federated runs (PNG, Agg canvas only).

Every function takes parsed ``figure3.json`` data (it has no typed record) or the typed
:class:`~disparate.records.RoundMetrics` lines of ``metrics.jsonl``, writes one PNG and returns
its path; nothing touches pyplot's global state (as in :mod:`disparate.plots`).

- :func:`plot_output_diversity` (Figure 3a): distinct words each model predicts over the test
  set, and the rank-frequency curve of its predictions;
- :func:`plot_accuracy_by_vocab` (Figure 3b): mean participant accuracy per vocabulary-size
  bucket, one bar per model;
- :func:`plot_accuracy_over_rounds`: test accuracy of each model over rounds;
- :func:`plot_update_norms`: mean update norm (before clipping) and clipped fraction per
  bucket -- the mechanism the paper invokes for Figure 3b.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.ticker import PercentFormatter

from disparate.plots import (
    DP_COLOR,
    HIGHLIGHT_COLORS,
    NON_PRIVATE_COLOR,
    accuracy_yerr,
    mean_and_ci,
    new_figure,
    save_figure,
)
from disparate.records import RoundMetrics

__all__ = [
    "plot_accuracy_by_vocab",
    "plot_accuracy_over_rounds",
    "plot_output_diversity",
    "plot_update_norms",
    "variant_color",
]

#: Colours of the DP runs after the first: the highlight colours other than the non-private one.
_EXTRA_COLORS = tuple(c for c in HIGHLIGHT_COLORS if c != NON_PRIVATE_COLOR)


def variant_color(index: int, mode: str) -> str:
    """Non-private runs blue, the first DP run orange, further runs other colours."""
    if mode == "non-private":
        return NON_PRIVATE_COLOR
    return DP_COLOR if index == 0 else _EXTRA_COLORS[(index - 1) % len(_EXTRA_COLORS)]


def _colors(variants: Sequence[Mapping[str, Any]]) -> list[str]:
    out, k = [], 0
    for v in variants:
        if v.get("mode") == "non-private":
            out.append(variant_color(0, "non-private"))
        else:
            out.append(variant_color(k, str(v.get("mode"))))
            k += 1
    return out


def _mean(stat: Any) -> float:
    return mean_and_ci(stat)[0]


def _present(figure3: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [v for v in figure3.get("variants", []) if v.get("groups")]


def plot_output_diversity(figure3: Mapping[str, Any], path: str | Path) -> Path:
    """Figure 3a: distinct predicted words per model and rank-frequency of predictions."""
    variants = _present(figure3)
    colors = _colors(variants)
    fig, ((ax_bar, ax_curve),) = new_figure(10, 4, 1, 2)
    names = [str(v["name"]) for v in variants]
    values = [_mean(v.get("distinct_predicted")) for v in variants]
    bars = ax_bar.bar(range(len(names)), [0 if math.isnan(x) else x for x in values],
                      color=colors, edgecolor="black", linewidth=0.4)
    for bar, value in zip(bars, values, strict=True):
        if not math.isnan(value):
            ax_bar.annotate(f"{value:.0f}", (bar.get_x() + bar.get_width() / 2,
                                             bar.get_height()),
                            xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8)
    ax_bar.set_xticks(range(len(names)))
    ax_bar.set_xticklabels(names, fontsize=9)
    ax_bar.set_ylabel("distinct words predicted on the test set")
    ax_bar.set_title("Output diversity", fontsize=11)
    for v, color in zip(variants, colors, strict=True):
        counts = [c for c in v.get("rank_counts") or [] if c > 0]
        if counts:
            ax_curve.loglog(range(1, len(counts) + 1), counts, color=color, label=v["name"])
    ax_curve.set_xlabel("rank of predicted word")
    ax_curve.set_ylabel("times predicted")
    ax_curve.set_title("Predicted-word frequency by rank", fontsize=11)
    if variants:
        ax_curve.legend(fontsize=8)
    ax_curve.grid(alpha=0.3, which="both")
    return save_figure(fig, path)


def plot_accuracy_by_vocab(figure3: Mapping[str, Any], path: str | Path) -> Path:
    """Figure 3b: mean participant accuracy per vocabulary-size bucket, a bar per model."""
    variants = _present(figure3)
    colors = _colors(variants)
    buckets = list(figure3.get("buckets") or [])
    fig, ((ax,),) = new_figure(max(6.0, 1.5 + 0.45 * len(buckets) * max(1, len(variants))), 4.2)
    width = 0.8 / max(1, len(variants))
    top = 0.0
    for k, (v, color) in enumerate(zip(variants, colors, strict=True)):
        groups = {g["group"]: g for g in v["groups"]}
        xs = [i + (k - (len(variants) - 1) / 2) * width for i in range(len(buckets))]
        means = [_mean(groups.get(b, {}).get("accuracy")) for b in buckets]
        heights = [0 if math.isnan(m) else m for m in means]
        ax.bar(xs, heights, width=width, color=color, edgecolor="black", linewidth=0.4,
               label=v["name"])
        yerr = accuracy_yerr(means, [mean_and_ci(groups.get(b, {}).get("accuracy"))[1]
                                     for b in buckets])
        if yerr is not None:
            ax.errorbar(xs, heights, yerr=yerr, fmt="none", ecolor="black", elinewidth=0.8,
                        capsize=2)
        top = max([top, *heights])
    counts = []
    if variants:
        first = {g["group"]: g for g in variants[0]["groups"]}
        counts = [first.get(b, {}).get("participants") for b in buckets]
    labels = [f"{b}\nn={c}" if c is not None else b for b, c in zip(
        buckets, counts or [None] * len(buckets), strict=True)]
    ax.set_xticks(range(len(buckets)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_xlabel("participant vocabulary size (distinct words; n = participants)")
    ax.set_ylabel("mean participant next-word accuracy")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylim(0, max(0.05, top * 1.25))
    ax.grid(axis="y", alpha=0.3)
    if variants:
        ax.legend(fontsize=8, ncol=len(variants))
    seeds = len(figure3.get("seeds") or [0])
    ax.set_title("Accuracy by participant vocabulary size" + (
        f" (error bars: 95% interval over {seeds} seeds, within [0, 100]%)" if seeds > 1
        else ""), fontsize=11)
    return save_figure(fig, path)


def plot_accuracy_over_rounds(runs: Mapping[str, Sequence[RoundMetrics]],
                              modes: Mapping[str, str], path: str | Path) -> Path:
    """Test accuracy over rounds, one line per model (``runs``: name -> metrics lines; the
    evaluated rounds are those with a test accuracy)."""
    fig, ((ax,),) = new_figure(7, 4)
    variants = [{"name": n, "mode": modes.get(n, "")} for n in runs]
    for v, color in zip(variants, _colors(variants), strict=True):
        pts = [(m.round, m.test_accuracy) for m in runs[v["name"]]
               if m.test_accuracy is not None]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, color=color, label=v["name"], marker="." if len(xs) < 30 else None)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (next word)")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.grid(alpha=0.3)
    if runs:
        ax.legend(fontsize=8)
    ax.set_title("Test accuracy over rounds", fontsize=11)
    return save_figure(fig, path)


def plot_update_norms(figure3: Mapping[str, Any], path: str | Path) -> Path:
    """Mean update norm before clipping and clipped fraction per vocabulary bucket."""
    variants = _present(figure3)
    colors = _colors(variants)
    buckets = list(figure3.get("buckets") or [])
    fig, ((ax_norm, ax_clip),) = new_figure(11, 4, 1, 2)
    width = 0.8 / max(1, len(variants))
    for k, (v, color) in enumerate(zip(variants, colors, strict=True)):
        groups = {g["group"]: g for g in v["groups"]}
        xs = [i + (k - (len(variants) - 1) / 2) * width for i in range(len(buckets))]
        norms = [_mean(groups.get(b, {}).get("update_norm")) for b in buckets]
        clipped = [_mean(groups.get(b, {}).get("clipped_fraction")) for b in buckets]
        ax_norm.bar(xs, [0 if math.isnan(x) else x for x in norms], width=width, color=color,
                    edgecolor="black", linewidth=0.4, label=v["name"])
        ax_clip.bar(xs, [0 if math.isnan(x) else x for x in clipped], width=width,
                    color=color, edgecolor="black", linewidth=0.4, label=v["name"])
        bound = v.get("max_grad_norm")
        if bound:
            ax_norm.axhline(bound, color=color, linestyle="--", linewidth=1)
    for ax in (ax_norm, ax_clip):
        ax.set_xticks(range(len(buckets)))
        ax.set_xticklabels(buckets, fontsize=8)
        ax.set_xlabel("participant vocabulary size")
        ax.grid(axis="y", alpha=0.3)
    ax_norm.set_ylabel("mean update norm before clipping")
    ax_norm.set_title("Update norms (dashed: clipping bound S)", fontsize=11)
    ax_clip.set_ylabel("fraction of updates clipped")
    ax_clip.set_ylim(0, 1.05)
    ax_clip.set_title("Clipped updates", fontsize=11)
    if variants:
        ax_norm.legend(fontsize=8)
    return save_figure(fig, path)
