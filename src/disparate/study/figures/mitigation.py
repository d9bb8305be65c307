"""Figure kind ``mitigation``: clipping policies at one epsilon (``disparate mitigate`` as a
study): per-group accuracy bars of the reference and every method, the summary table (worst
group, best-worst gap, drops against non-private) and each method's per-group table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from disparate.config import ConfigError
from disparate.reporting.document import Block, Heading, Paragraph
from disparate.study import aggregate as agg
from disparate.study.figures import register_figure

if TYPE_CHECKING:
    from disparate.study.spec import Study

NAME = "mitigation"


@register_figure(NAME)
class Mitigation:
    """The comparison of ``disparate mitigate``, from a study's records."""

    def check(self, study: Study, source: str) -> None:
        """A mitigation section is needed; no other ``figure`` key is used."""
        if study.mitigation is None:
            raise ConfigError(f"{source}: figure.kind={NAME!r} needs a mitigation section")

    def plot(self, study: Study, runs: Sequence[agg.RunRecord], out_dir: Path
             ) -> dict[str, Path]:
        from disparate import mitigation as mit

        summary = agg.mitigation_summary(study, runs)
        if summary is None:
            return {}
        return {study.name: mit.plot_methods(summary, Path(out_dir) / f"{study.name}.png")}

    def tables(self, study: Study, runs: Sequence[agg.RunRecord], highlight: Sequence[str]
               ) -> list[Block]:
        from disparate import mitigation as mit
        from disparate.reporting.comparison_table import comparison_blocks

        summary = agg.mitigation_summary(study, runs)
        if summary is None:
            return [Paragraph("No seed has finished runs of the reference and every method.")]
        blocks: list[Block] = [Paragraph(mit.tuning_text(summary), cls="note"),
                               mit.summary_table(summary)]
        for method in summary["methods"]:
            blocks += [Heading(method, level=3),
                       Paragraph(f"Privacy: {summary['summary'][method]['statement']}",
                                 cls="statement"),
                       *comparison_blocks(summary["comparisons"][method])]
        return blocks
