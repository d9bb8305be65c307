"""The report of a federated comparison directory (``disparate federated compare``).

Reads ``figure3.json`` (:func:`read_figure3`), the ``comparison-<variant>.json`` files (the
format of ``comparison.json``, vocabulary buckets as groups) and the runs' ``metrics.jsonl``;
writes the PNGs of :mod:`disparate.federated.plots`, ``report.md`` and a self-contained
``report.html``. Both layouts are read: schema version 2 (runs in a run store) and 1 (no
``schema_version``, runs in ``seed-<s>/<variant>/``); their run paths are relative to the
directory either way.
The report is a :class:`disparate.reporting.document.Document`; the per-bucket comparison
tables are :func:`disparate.reporting.comparison_table.comparison_blocks`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from disparate import fileio, records
from disparate import results as res
from disparate.federated import plots as fp
from disparate.records import RoundMetrics
from disparate.reporting import format as fmt
from disparate.reporting.comparison_table import comparison_blocks
from disparate.reporting.document import (
    Block,
    Bullets,
    Code,
    Document,
    Heading,
    Image,
    Paragraph,
    Strong,
    Table,
    render_html,
    render_markdown,
)

__all__ = [
    "FIGURE3_FILE",
    "FIGURE3_SCHEMA_VERSION",
    "FIGURES",
    "read_figure3",
    "read_variant_comparison",
    "write_federated_report",
]

FIGURE3_FILE = "figure3.json"
#: 2: ``variants[].runs`` name run directories of a run store (relative to the comparison
#: directory); 1 (no ``schema_version``): ``seed-<s>/<variant>``.
FIGURE3_SCHEMA_VERSION = 2
ERR_SCHEMA = ("{path}: schema_version={value!r}: this version of disparate reads "
              f"{FIGURE3_FILE} of versions 1 to {FIGURE3_SCHEMA_VERSION}; upgrade disparate")

FIGURES: dict[str, tuple[str, str]] = {
    "output_diversity": ("fig3a_output_diversity.png",
                         "Figure 3a: output diversity (distinct predicted words)"),
    "accuracy_by_vocab": ("fig3b_accuracy_by_vocab.png",
                          "Figure 3b: accuracy by participant vocabulary size"),
    "accuracy_over_rounds": ("accuracy_over_rounds.png", "Test accuracy over rounds"),
    "update_norms": ("update_norms_by_vocab.png",
                     "Update norms and clipped fraction by vocabulary size"),
}


def _accuracy(stat: Any) -> str:
    return fmt.accuracy(stat, digits=2, suffix="")


def _num(stat: Any, pattern: str = "{:.0f}") -> str:
    mean = fmt.stat(stat)[0]
    return fmt.NA if mean is None else pattern.format(mean)


def _epsilon_text(variant: Mapping[str, Any]) -> str:
    eps = variant.get("epsilon")
    if not eps:
        return "not private"
    parts = []
    for method, rep in eps.items():
        value = rep.get("epsilon") if isinstance(rep, Mapping) else None
        parts.append(f"{method} {value:.4g}" if value is not None else f"{method} inf")
    return ", ".join(parts)


def read_figure3(directory: str | Path) -> dict[str, Any]:
    """The ``figure3.json`` of a federated comparison directory, of schema version 1 or 2
    (``schema_version`` set either way); a newer one raises."""
    path = Path(directory) / FIGURE3_FILE
    data = res.read_json(path)
    version = data.get(records.SCHEMA_KEY, 1)
    if isinstance(version, bool) or version not in range(1, FIGURE3_SCHEMA_VERSION + 1):
        raise ValueError(ERR_SCHEMA.format(path=path, value=version))
    return {**data, records.SCHEMA_KEY: version}


def read_variant_comparison(path: str | Path) -> dict[str, Any]:
    """A ``comparison-<variant>.json``, of a version :class:`~disparate.records.ComparisonResult`
    reads (1 or 2; a newer one raises)."""
    return records.ComparisonResult.from_json(res.read_json(path), str(path)).to_json()


def write_federated_report(directory: str | Path) -> dict[str, Path]:
    """Write the figures, ``report.md`` and ``report.html`` of a federated comparison."""
    out = Path(directory)
    figure3 = read_figure3(out)
    variants = figure3.get("variants", [])
    seeds = figure3.get("seeds") or [0]
    metrics = {}
    modes = {}
    for v in variants:
        run_dirs = v.get("runs") or []
        if run_dirs:
            metrics[v["name"]] = [RoundMetrics.from_json(m)
                                  for m in res.read_metrics(out / run_dirs[0])]
            modes[v["name"]] = v.get("mode", "")
    written: dict[str, Path] = {
        "output_diversity": fp.plot_output_diversity(figure3, out / FIGURES[
            "output_diversity"][0]),
        "accuracy_by_vocab": fp.plot_accuracy_by_vocab(figure3, out / FIGURES[
            "accuracy_by_vocab"][0]),
        "accuracy_over_rounds": fp.plot_accuracy_over_rounds(metrics, modes, out / FIGURES[
            "accuracy_over_rounds"][0]),
        "update_norms": fp.plot_update_norms(figure3, out / FIGURES["update_norms"][0]),
    }

    blocks: list[Block] = []
    if figure3.get("description"):
        blocks.append(Paragraph(figure3["description"].strip()))
    blocks.append(Paragraph(f"Seeds: {', '.join(map(str, seeds))}. Accuracies in %: the mean "
                            "and, with several seeds, its 95% Student-t interval [lo, hi] "
                            "within [0, 100]."))
    rows = []
    for v in variants:
        if not v.get("groups"):
            rows.append((v["name"], v["mode"], str(v["rounds"]), "not finished", "", "", "",
                         ""))
            continue
        rows.append((v["name"], v["mode"], str(v["rounds"]), _accuracy(v["overall_accuracy"]),
                     _accuracy(v["mean_participant_accuracy"]), _num(v["distinct_predicted"]),
                     _epsilon_text(v), _num(v.get("mean_round_s"), "{:.2f}")))
    blocks += [Heading("Models"), Table(
        header=("model", "mode", "rounds", "test acc %", "mean participant acc %",
                "distinct predicted words", "epsilon (participant level)", "s / round"),
        rows=tuple(rows), right=tuple(range(1, 8)))]
    statements = tuple((Strong(v["name"]), f": {v['privacy_statement']}") for v in variants
                       if v.get("privacy_statement"))
    if statements:
        blocks.append(Bullets(statements))

    buckets = figure3.get("buckets", [])
    present = [v for v in variants if v.get("groups")]
    if present:
        rows = [(b, str(present[0]["groups"][i]["participants"]),
                 *(_accuracy(v["groups"][i]["accuracy"]) for v in present))
                for i, b in enumerate(buckets)]
        blocks += [
            Heading("Accuracy by participant vocabulary size (Figure 3b)"),
            Table(header=("vocabulary size", "participants",
                          *(f"{v['name']} %" for v in present)),
                  rows=tuple(rows), right=tuple(range(1, 2 + len(present)))),
            Paragraph(("Mean of the participants' accuracies in each bucket (every "
                       "participant counts once); token-weighted accuracies are in ",
                       Code("figure3.json"), ".")),
        ]
        blocks += [Heading("Output diversity (Figure 3a)"), Table(
            header=("model", "distinct predicted words", "most predicted (count)"),
            rows=tuple((v["name"], _num(v["distinct_predicted"]),
                        ", ".join(f"{w} ({c})" for w, c in (v.get("top_predicted") or [])[:6]))
                       for v in present), right=(1, 2))]
    for path in sorted(out.glob("comparison-*.json")):
        comp = read_variant_comparison(path)
        blocks += [Heading(f"{comp.get('baseline', 'non-private')} vs {comp.get('variant')}"),
                   Paragraph("Groups are vocabulary-size buckets; 'train'/'test' count tokens."),
                   *comparison_blocks(comp)]
    blocks.append(Heading("Figures"))
    blocks += [Image(path, FIGURES[key][1]) for key, path in written.items()]
    document = Document(title="Federated learning of a language model: "
                              f"{figure3['experiment']}", blocks=tuple(blocks))
    md_path = fileio.write_text(out / "report.md", render_markdown(document))
    html_path = fileio.write_text(out / "report.html", render_html(document))
    return {"markdown": md_path, "html": html_path, **written}
