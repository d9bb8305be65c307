"""Figure kind ``clip-noise`` (paper Figure 4): per-class gradient norm and accuracy over
epochs, one column per variant, and the final accuracy of every class per variant."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from disparate.reporting import format as fmt
from disparate.reporting.document import Block, Table
from disparate.results import summarize
from disparate.study import aggregate as agg
from disparate.study.figures import register_figure

if TYPE_CHECKING:
    from disparate.study.spec import Study

NAME = "clip-noise"


def _variant_runs(study: Study, runs: Sequence[agg.RunRecord]
                  ) -> list[tuple[Any, list[agg.RunRecord]]]:
    out = []
    for v in study.variants:
        vruns = [r for r in runs if r.variant == v.name]
        if vruns:
            out.append((v, vruns))
    return out


def _first_other(curves: Mapping[str, Any], highlight: Sequence[str]) -> str | None:
    for g in agg.group_order(curves):
        if g not in highlight:
            return g
    return None


@register_figure(NAME)
class ClipNoise:
    """Figure 4 of the paper."""

    def check(self, study: Study, source: str) -> None:
        """Every key of ``figure`` is optional for this kind."""

    def plot(self, study: Study, runs: Sequence[agg.RunRecord], out_dir: Path
             ) -> dict[str, Path]:
        from matplotlib.ticker import MaxNLocator, PercentFormatter

        from disparate.plots import (
            HIGHLIGHT_COLORS,
            OTHER_COLOR,
            accuracy_yerr,
            mean_and_ci,
            new_figure,
            save_figure,
        )

        highlight = agg.highlight_of(runs)
        variants = _variant_runs(study, runs)
        files: dict[str, Path] = {}
        if not variants:
            return files
        n = len(variants)
        fig, axes = new_figure(3.3 * n + 0.6, 6.4, 2, n, sharey="row")
        for col, (variant, vruns) in enumerate(variants):
            for row, (key, ylabel) in enumerate((("group_grad_norm",
                                                  "mean per-example gradient norm"),
                                                 ("group_accuracy", "test accuracy"))):
                ax = axes[row][col]
                curves = agg.epoch_curves(vruns, key)
                for g in agg.group_order(curves):
                    epochs, mean, lo, hi = curves[g]
                    if g in highlight:
                        color = HIGHLIGHT_COLORS[highlight.index(g) % len(HIGHLIGHT_COLORS)]
                        ax.plot(epochs, mean, color=color, lw=2.2, label=f"class {g}",
                                zorder=3, marker="o" if len(epochs) == 1 else None)
                        if len(vruns) > 1:
                            if row == 1:  # accuracies: the band within [0, 1]
                                lo, hi = zip(*(fmt.clamp_interval(ci) for ci in zip(
                                    lo, hi, strict=True)), strict=True)
                            ax.fill_between(epochs, lo, hi, color=color, alpha=0.2, lw=0)
                    else:
                        ax.plot(epochs, mean, color=OTHER_COLOR, lw=0.8,
                                label="other classes" if g == _first_other(curves, highlight)
                                else None, marker="o" if len(epochs) == 1 else None, ms=2)
                ax.grid(alpha=0.3)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                if row == 0:
                    ax.set_title(variant.label, fontsize=10)
                    ax.set_yscale("log")
                else:
                    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
                    ax.set_xlabel("epoch")
                if col == 0:
                    ax.set_ylabel(ylabel + (" (log)" if row == 0 else ""))
                if col == n - 1 and curves:
                    ax.legend(fontsize=7, loc="best")
        seeds = len(study.seeds)
        fig.suptitle(f"{study.title} ({study.scale} scale"
                     + (f", mean of {seeds} seeds, band: 95% interval over seeds" if seeds > 1
                        else "") + ")", fontsize=11)
        files[study.name] = save_figure(fig, out_dir / f"{study.name}.png")

        # Final accuracy of every class, one bar per variant.
        groups = agg.group_order(g["group"] for r in runs for g in r.results.get("groups", []))
        groups.append(agg.OVERALL)
        fig, axes = new_figure(min(max(7.0, 0.24 * len(groups) * n + 2.0), 16.0), 4.2)
        ax = axes[0][0]
        width = 0.8 / n
        for i, (variant, vruns) in enumerate(variants):
            stats = [mean_and_ci(summarize([agg.group_value(r, g) for r in vruns]))
                     for g in groups]
            means = [m for m, _ in stats]
            yerr = accuracy_yerr(means, [ci for _, ci in stats])
            xs = [j - 0.4 + width * (i + 0.5) for j in range(len(groups))]
            ax.bar(xs, means, width=width * 0.95, label=variant.label, color=f"C{i}",
                   yerr=yerr, capsize=2, error_kw={"lw": 0.8})
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(["overall" if g == agg.OVERALL else g for g in groups])
        for tick, g in zip(ax.get_xticklabels(), groups, strict=True):
            if g in highlight:
                tick.set_fontweight("bold")
                tick.set_color(HIGHLIGHT_COLORS[highlight.index(g) % len(HIGHLIGHT_COLORS)])
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("class (highlighted: " + ", ".join(highlight) + ")")
        ax.set_ylabel("final test accuracy")
        ax.grid(axis="y", alpha=0.3)
        fig.legend(fontsize=7, ncol=min(n, 4), loc="outside lower center")
        ax.set_title(f"{study.title}: accuracy per class ({study.scale} scale)" + (
            " (error bars: 95% interval over seeds, within [0, 100]%)" if seeds > 1 else ""),
            fontsize=10)
        files[f"{study.name}_accuracy"] = save_figure(fig,
                                                      out_dir / f"{study.name}_accuracy.png")
        return files

    def tables(self, study: Study, runs: Sequence[agg.RunRecord], highlight: Sequence[str]
               ) -> list[Block]:
        paper = (study.paper or {}).get("accuracy") or {}
        header = ["variant", "seeds"]
        header += [f"acc {g} %" for g in highlight] + ["overall %"]
        header += [f"grad norm {g}: first → last epoch" for g in highlight]
        if paper:
            header.append("paper acc %")
        rows = []
        for v, vruns in _variant_runs(study, runs):
            row = [v.label, str(len(vruns))]
            row += [fmt.accuracy(summarize([agg.group_value(r, g) for r in vruns]), suffix="")
                    for g in [*highlight, agg.OVERALL]]
            for g in highlight:
                firsts = [r.metrics[0].get("group_grad_norm", {}).get(g) for r in vruns
                          if r.metrics]
                lasts = [r.metrics[-1].get("group_grad_norm", {}).get(g) for r in vruns
                         if r.metrics]
                row.append(f"{_norm(summarize(firsts))} → {_norm(summarize(lasts))}")
            if paper:
                pv = paper.get(v.name) or {}
                row.append(", ".join(f"{g}: {100 * float(a):.0f}" for g, a in pv.items()))
            rows.append(tuple(row))
        return [Table(header=tuple(header), rows=tuple(rows))]


def _norm(stat: Mapping[str, Any]) -> str:
    return fmt.spread(stat, scale=1.0, mean_format="{:.3g}", half_format="{:.2g}")
