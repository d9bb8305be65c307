"""The report of a federated comparison directory (``disparate federated compare``).

Reads ``figure3.json``, the ``comparison-<variant>.json`` files (the format of
``comparison.json``, vocabulary buckets as groups) and the runs' ``metrics.jsonl``; writes the
PNGs of :mod:`disparate.federated.plots`, ``report.md`` and a self-contained ``report.html``.
The per-bucket comparison tables are :func:`disparate.results.format_comparison_table`.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from disparate import results as res
from disparate.federated import plots as fp

__all__ = ["FIGURES", "write_federated_report"]

FIGURES: dict[str, tuple[str, str]] = {
    "output_diversity": ("fig3a_output_diversity.png",
                         "Figure 3a: output diversity (distinct predicted words)"),
    "accuracy_by_vocab": ("fig3b_accuracy_by_vocab.png",
                          "Figure 3b: accuracy by participant vocabulary size"),
    "accuracy_over_rounds": ("accuracy_over_rounds.png", "Test accuracy over rounds"),
    "update_norms": ("update_norms_by_vocab.png",
                     "Update norms and clipped fraction by vocabulary size"),
}


def _pct(stat: Any) -> str:
    mean = stat.get("mean") if isinstance(stat, Mapping) else stat
    if mean is None or (isinstance(mean, float) and not math.isfinite(mean)):
        return "n/a"
    text = f"{100 * mean:.2f}"
    ci = stat.get("ci95") if isinstance(stat, Mapping) else None
    if ci:
        text += f" ±{100 * (ci[1] - ci[0]) / 2:.2f}"
    return text


def _num(stat: Any, fmt: str = "{:.0f}") -> str:
    mean = stat.get("mean") if isinstance(stat, Mapping) else stat
    return "n/a" if mean is None else fmt.format(mean)


def _epsilon_text(variant: Mapping[str, Any]) -> str:
    eps = variant.get("epsilon")
    if not eps:
        return "not private"
    parts = []
    for method, rep in eps.items():
        value = rep.get("epsilon") if isinstance(rep, Mapping) else None
        parts.append(f"{method} {value:.4g}" if value is not None else f"{method} inf")
    return ", ".join(parts)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def write_federated_report(directory: str | Path) -> dict[str, Path]:
    """Write the figures, ``report.md`` and ``report.html`` of a federated comparison."""
    out = Path(directory)
    figure3 = json.loads((out / "figure3.json").read_text(encoding="utf-8"))
    variants = figure3.get("variants", [])
    seeds = figure3.get("seeds") or [0]
    metrics = {}
    modes = {}
    for v in variants:
        run_dirs = v.get("runs") or []
        if run_dirs:
            metrics[v["name"]] = res.read_metrics(out / run_dirs[0])
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

    lines = [f"# Federated learning of a language model: {figure3['experiment']}", ""]
    if figure3.get("description"):
        lines += [figure3["description"].strip(), ""]
    lines += [f"Seeds: {', '.join(map(str, seeds))}. Accuracies in % (mean ±half-width of the "
              "95% interval over seeds when there are several).", ""]
    lines += ["## Models", ""]
    rows = []
    for v in variants:
        if not v.get("groups"):
            rows.append([v["name"], v["mode"], str(v["rounds"]), "not finished", "", "", "",
                         ""])
            continue
        rows.append([v["name"], v["mode"], str(v["rounds"]), _pct(v["overall_accuracy"]),
                     _pct(v["mean_participant_accuracy"]), _num(v["distinct_predicted"]),
                     _epsilon_text(v), _num(v.get("mean_round_s"), "{:.2f}")])
    lines += _table(["model", "mode", "rounds", "test acc %", "mean participant acc %",
                     "distinct predicted words", "epsilon (participant level)",
                     "s / round"], rows)
    lines.append("")
    statements = [(v["name"], v.get("privacy_statement")) for v in variants
                  if v.get("privacy_statement")]
    for name, text in statements:
        lines.append(f"- **{name}**: {text}")
    lines.append("")

    buckets = figure3.get("buckets", [])
    present = [v for v in variants if v.get("groups")]
    if present:
        lines += ["## Accuracy by participant vocabulary size (Figure 3b)", ""]
        header = ["vocabulary size", "participants"] + [f"{v['name']} %" for v in present]
        rows = []
        for i, b in enumerate(buckets):
            rows.append([b, str(present[0]["groups"][i]["participants"])]
                        + [_pct(v["groups"][i]["accuracy"]) for v in present])
        lines += _table(header, rows)
        lines += ["", "Mean of the participants' accuracies in each bucket (every participant "
                  "counts once); token-weighted accuracies are in `figure3.json`.", ""]
        lines += ["## Output diversity (Figure 3a)", ""]
        rows = [[v["name"], _num(v["distinct_predicted"]),
                 ", ".join(f"{w} ({c})" for w, c in (v.get("top_predicted") or [])[:6])]
                for v in present]
        lines += _table(["model", "distinct predicted words", "most predicted (count)"], rows)
        lines.append("")
    for path in sorted(out.glob("comparison-*.json")):
        comp = json.loads(path.read_text(encoding="utf-8"))
        lines += [f"## {comp.get('baseline', 'non-private')} vs {comp.get('variant')}", "",
                  "Groups are vocabulary-size buckets; 'train'/'test' count tokens.", "",
                  res.format_comparison_table(comp, markdown=True), ""]
    lines += ["## Figures", ""]
    for key, path in written.items():
        lines += [f"![{FIGURES[key][1]}]({path.name})", "", f"*{FIGURES[key][1]}*", ""]
    md = "\n".join(lines) + "\n"
    md_path = out / "report.md"
    md_path.write_text(md, encoding="utf-8")
    html_path = out / "report.html"
    html_path.write_text(_html(md, written), encoding="utf-8")
    return {"markdown": md_path, "html": html_path, **written}


def _html(markdown: str, figures: Mapping[str, Path]) -> str:
    """A plain HTML rendering of the report with the PNGs embedded."""
    body: list[str] = []
    table: list[str] = []

    def close_table() -> None:
        if table:
            body.append("<table>" + "".join(table) + "</table>")
            table.clear()

    images = {p.name: p for p in figures.values()}
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= set("-:") for c in cells):
                continue
            tag = "th" if not table else "td"
            table.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells)
                         + "</tr>")
            continue
        close_table()
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            name = line[line.index("(") + 1:line.rindex(")")]
            if name in images:
                data = base64.b64encode(images[name].read_bytes()).decode("ascii")
                body.append(f'<img alt="{html.escape(name)}" '
                            f'src="data:image/png;base64,{data}">')
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    close_table()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}"
             "img{max-width:100%}")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Federated report</title>"
            f"<style>{style}</style></head><body>" + "\n".join(body) + "</body></html>\n")
