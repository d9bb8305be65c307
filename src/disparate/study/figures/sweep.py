"""Figure kind ``sweep`` (paper Figure 5): accuracy of the highlighted groups and overall
against ``figure.x`` (a grid key or ``epoch``), one line style per variant, 95% intervals over
seeds as error bars (within [0, 100]%), the epsilon of each private point on a right axis.
With ``best_of`` (grid keys), each x shows the best of those cells and a second figure every
run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from disparate.config import ConfigError
from disparate.reporting import format as fmt
from disparate.reporting.document import Block, Paragraph, Table
from disparate.results import summarize
from disparate.study import aggregate as agg
from disparate.study.figures import register_figure

if TYPE_CHECKING:
    from disparate.study.spec import Study

NAME = "sweep"
VARIANT_STYLES = ("-", "--", ":", "-.")
VARIANT_MARKERS = ("o", "s", "^", "D", "v", "P")
ERROR_BARS = "error bars: 95% interval over seeds, within [0, 100]%"


def _accountant_of(runs: Sequence[agg.RunRecord]) -> str:
    for r in runs:
        privacy = r.results.get("privacy") or {}
        if privacy.get("is_private"):
            return f"{privacy.get('accountant')}, δ={privacy.get('delta'):g}"
    return "accountant"


def _group_label(g: str) -> str:
    return "overall" if g == agg.OVERALL else f"class {g}"


@register_figure(NAME)
class Sweep:
    """Figure 5 of the paper."""

    def check(self, study: Study, source: str) -> None:
        keys = study.grid_keys
        figure = study.figure
        x = figure.get("x")
        if x is None:
            raise ConfigError(f"{source}: figure.x is required for kind 'sweep' (a grid key "
                              f"or 'epoch'); grid keys: {', '.join(keys) or 'none'}")
        if x != agg.EPOCH and x not in keys:
            raise ConfigError(f"{source}: figure.x={x!r}: expected 'epoch' or a grid key "
                              f"({', '.join(keys) or 'none'})")
        for k in figure.get("best_of") or ():
            if k not in keys or k == x:
                raise ConfigError(f"{source}: figure.best_of: {k!r} is not a grid key other "
                                  f"than x ({', '.join(keys)})")

    def plot(self, study: Study, runs: Sequence[agg.RunRecord], out_dir: Path
             ) -> dict[str, Path]:
        from matplotlib.ticker import MaxNLocator, PercentFormatter

        from disparate.plots import (
            HIGHLIGHT_COLORS,
            OVERALL_COLOR,
            accuracy_yerr,
            mean_and_ci,
            new_figure,
            save_figure,
        )

        highlight = agg.highlight_of(runs)
        groups = [*highlight, agg.OVERALL]
        series = agg.sweep_series(study, runs, groups)
        files: dict[str, Path] = {}
        if not series:
            return files
        fig_spec = study.figure
        x_key = fig_spec.get("x")
        fig, axes = new_figure(7.2, 5.2)
        ax = axes[0][0]
        xs_all = [sp.x for pts in series.values() for sp in pts if sp.x is not None]
        numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x in xs_all)
        categories = [] if numeric else list(dict.fromkeys(str(x) for x in xs_all))

        def pos(x: Any) -> float:
            return float(x) if numeric else float(categories.index(str(x)))

        eps_points: list[tuple[float, float]] = []
        for vi, (vlabel, pts) in enumerate(series.items()):
            style = VARIANT_STYLES[vi % len(VARIANT_STYLES)]
            for gi, g in enumerate(groups):
                color = (OVERALL_COLOR if g == agg.OVERALL
                         else HIGHLIGHT_COLORS[gi % len(HIGHLIGHT_COLORS)])
                label = f"{vlabel}: {_group_label(g)}"
                if all(sp.x is None for sp in pts):
                    # a variant without the x key (e.g. the non-private baseline): a level line
                    mean, ci = mean_and_ci(pts[0].stats[g])
                    if not math.isnan(mean):
                        ax.axhline(mean, color=color, ls=style, lw=1.2, label=label,
                                   alpha=0.9)
                        if ci is not None:
                            ax.axhspan(*fmt.clamp_interval(ci), color=color, alpha=0.08,
                                       lw=0)
                    continue
                stats = [mean_and_ci(sp.stats[g]) for sp in pts]
                means = [m for m, _ in stats]
                ax.errorbar([pos(sp.x) for sp in pts], means,
                            yerr=accuracy_yerr(means, [ci for _, ci in stats]),
                            color=color, ls=style, lw=1.6 if g != agg.OVERALL else 1.2,
                            marker=VARIANT_MARKERS[vi % len(VARIANT_MARKERS)], ms=4,
                            capsize=3, label=label)
            for sp in pts:
                if sp.epsilon is not None and sp.x is not None:
                    eps_points.append((pos(sp.x), sp.epsilon))
        if numeric and fig_spec.get("log_x"):
            ax.set_xscale("log")
        if numeric:
            ticks = sorted({pos(x) for x in xs_all})
            if len(ticks) <= 12 and x_key != agg.EPOCH:
                ax.set_xticks(ticks)
                ax.set_xticklabels([f"{t:g}" for t in ticks])
                ax.minorticks_off()
        else:
            ax.set_xticks(range(len(categories)))
            ax.set_xticklabels(categories)
        if x_key == agg.EPOCH:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(fig_spec.get("x_label") or x_key)
        ax.set_ylabel("test accuracy")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.grid(alpha=0.3)
        if eps_points and fig_spec.get("epsilon_axis", True):
            eps_points.sort()
            seen: dict[float, float] = {}
            for x, e in eps_points:
                seen[x] = e
            ax2 = ax.twinx()
            ax2.plot(list(seen), list(seen.values()), color="#7f7f7f", ls=":", marker="x",
                     ms=5, lw=1.0, label="ε of the DP point (right axis)")
            ax2.set_ylabel("ε (DP runs, " + _accountant_of(runs) + ")", color="#555555")
            ax2.tick_params(axis="y", colors="#555555")
            ax2.set_ylim(bottom=0)
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = h1 + h2, l1 + l2
        else:
            handles, labels = ax.get_legend_handles_labels()
        ax.set_ylim(0, 1.02)
        fig.legend(handles, labels, fontsize=7, loc="outside lower center",
                   ncol=min(3, max(1, len(series))))
        seeds = len(study.seeds)
        title = fig_spec.get("title") or study.title
        extra = []
        if fig_spec.get("best_of"):
            extra.append("best of " + ", ".join(fig_spec["best_of"]) + " per point")
        if seeds > 1:
            extra.append(f"mean of {seeds} seeds, {ERROR_BARS}")
        ax.set_title(f"{title} ({study.scale} scale"
                     + ("; " + "; ".join(extra) if extra else "") + ")", fontsize=10)
        files[study.name] = save_figure(fig, out_dir / f"{study.name}.png")

        if fig_spec.get("best_of") and x_key != agg.EPOCH:
            files[f"{study.name}_all_runs"] = self._plot_all_runs(
                study, runs, highlight, out_dir / f"{study.name}_all_runs.png")
        return files

    @staticmethod
    def _plot_all_runs(study: Study, runs: Sequence[agg.RunRecord], highlight: Sequence[str],
                       path: Path) -> Path:
        """Every run of a best_of sweep: one line per best_of combination, per group panel."""
        from matplotlib.ticker import PercentFormatter

        from disparate.plots import accuracy_yerr, mean_and_ci, new_figure, save_figure

        x_key = study.figure.get("x")
        groups = [*highlight, agg.OVERALL]
        fig, axes = new_figure(3.6 * len(groups), 3.6, 1, len(groups), sharey=True)
        all_cells = agg.cells(study, runs)
        swept = [c for c in all_cells if c.x is not None]
        baseline = [c for c in all_cells if c.x is None]
        combos = sorted({c.others for c in swept}, key=str)
        for gi, g in enumerate(groups):
            ax = axes[0][gi]
            for ci_, combo in enumerate(combos):
                pts = sorted((c for c in swept if c.others == combo),
                             key=lambda c: agg.sort_x(c.x))
                stats = [mean_and_ci(summarize([agg.group_value(r, g) for r in c.runs]))
                         for c in pts]
                means = [m for m, _ in stats]
                label = ", ".join(f"{k.split('.')[-1]}={fmt.plain(v)}" for k, v in combo)
                ax.errorbar([float(c.x) for c in pts], means,
                            yerr=accuracy_yerr(means, [ci for _, ci in stats]), marker="o",
                            ms=3, capsize=2, lw=1.2, color=f"C{ci_ % 10}", label=label)
            for bi, cell in enumerate(baseline):
                mean = agg.mean_accuracy(cell, g)
                if math.isfinite(mean):
                    ax.axhline(mean, color="k", ls="--", lw=1.0,
                               label=f"{cell.variant}" if bi == 0 else None)
            if study.figure.get("log_x"):
                ax.set_xscale("log")
            ax.set_title(_group_label(g), fontsize=10)
            ax.set_xlabel(study.figure.get("x_label") or x_key)
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            if gi == 0:
                ax.set_ylabel("test accuracy")
                ax.legend(fontsize=7, loc="lower right")
        seeds = len(study.seeds)
        fig.suptitle(f"{study.title}: every run ({study.scale} scale"
                     + (f"; {ERROR_BARS}" if seeds > 1 else "") + ")", fontsize=11)
        return save_figure(fig, path)

    def tables(self, study: Study, runs: Sequence[agg.RunRecord], highlight: Sequence[str]
               ) -> list[Block]:
        groups = [*highlight, agg.OVERALL]
        series = agg.sweep_series(study, runs, groups)
        x_key = study.figure.get("x")
        x_label = study.figure.get("x_label") or x_key
        best_of = list(study.figure.get("best_of") or ())
        header = [x_label, "variant"]
        if best_of:
            header.append("best " + ", ".join(best_of))
        header += ["seeds"] + [f"acc {g} %" for g in highlight] + ["overall %"]
        if len(highlight) >= 2:
            header.append(f"gap {highlight[1]} − {highlight[0]} (points)")
        header.append("ε")
        rows = []
        for vlabel, pts in series.items():
            for sp in pts:
                row = [fmt.plain(sp.x) if sp.x is not None else "(any)", vlabel]
                if best_of:
                    row.append(", ".join(fmt.plain(v) for _, v in sp.chosen))
                row.append(str(len(sp.cell.runs)))
                row += [fmt.accuracy(sp.stats[g], suffix="") for g in groups]
                if len(highlight) >= 2:
                    gap = agg.gap_points(sp.stats, highlight)
                    row.append(fmt.NA if gap is None else f"{gap:.1f}")
                row.append("—" if sp.epsilon is None else f"{sp.epsilon:.2f}")
                rows.append(tuple(row))
        blocks: list[Block] = [Table(header=tuple(header), rows=tuple(rows))]
        if not best_of:
            return blocks
        blocks.append(Paragraph(f"Every run (the figure shows, per {x_label}, the "
                                f"{', '.join(best_of)} with the best mean overall "
                                "accuracy):"))
        all_rows = []
        for cell in sorted(agg.cells(study, runs),
                           key=lambda c: (c.variant, agg.sort_x(c.x), str(c.others))):
            row = [fmt.plain(cell.x) if cell.x is not None else "(any)", cell.variant,
                   ", ".join(f"{k}={fmt.plain(v)}" for k, v in cell.others),
                   str(len(cell.runs))]
            row += [fmt.accuracy(summarize([agg.group_value(r, g) for r in cell.runs]),
                                 suffix="") for g in groups]
            zs = {r.results.get("privacy", {}).get("noise_multiplier") for r in cell.runs}
            zs.discard(None)
            row.append(", ".join(f"{z:.3g}" for z in sorted(zs)) or "—")
            eps = [e for e in (agg.run_epsilon(r) for r in cell.runs) if e is not None]
            row.append(f"{max(eps):.2f}" if eps else "—")
            all_rows.append(tuple(row))
        blocks.append(Table(header=(x_label, "variant", "other grid values", "seeds",
                                    *[f"acc {g} %" for g in highlight], "overall %", "z", "ε"),
                            rows=tuple(all_rows)))
        return blocks
