"""The audit's report: ``audit.md``, ``audit.html`` and the ROC figure, from ``audit.json``.

A :class:`disparate.reporting.document.Document` rendered twice, to Markdown and to
self-contained HTML, with the figure helpers of :mod:`disparate.plots`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from disparate import fileio, plots
from disparate.audit.runner import AUDIT_FILE, OVERALL
from disparate.report import HIGHLIGHT_MARK
from disparate.reporting import format as fmt
from disparate.reporting.document import (
    Block,
    Bullets,
    Document,
    Heading,
    Image,
    Paragraph,
    Strong,
    Table,
    render_html,
    render_markdown,
)
from disparate.results import read_json

__all__ = ["AUDIT_HTML", "AUDIT_MARKDOWN", "LIMITS", "ROC_FIGURE", "format_stat",
           "guesser_text", "plot_roc", "write_audit_report"]

AUDIT_MARKDOWN = "audit.md"
AUDIT_HTML = "audit.html"
ROC_FIGURE = "audit_roc.png"
LIMITS = (
    "What an audit can and cannot show: the one-run bound is a *lower* bound on the epsilon "
    "of the training run as it was executed, valid at the stated confidence. A lower bound "
    "far below the claimed epsilon is expected -- black-box attacks with a loss-based "
    "guesser are weak, and few canaries cap the bound -- and does not prove the claim. A "
    "lower bound above the claimed epsilon proves (up to the stated confidence) that the "
    "claim is wrong: a bug in the mechanism or in its accounting. Membership-inference "
    "metrics measure what these particular attacks achieve, not the worst case."
)


def format_stat(summary: Mapping[str, Any] | None, digits: int = 2) -> str:
    """'0.66 [0.60, 0.72]' for a :func:`disparate.results.summarize` object; 'n/a' if empty.

    Every number shown here (accuracy, AUC, TPR, advantage) lies in [0, 1]; so does its
    interval as displayed (a Student-t interval over few seeds can overshoot).
    """
    if not summary or summary.get("mean") is None:
        return "n/a"
    text = f"{summary['mean']:.{digits}f}"
    if summary.get("ci95"):
        lo, hi = fmt.clamp_interval(tuple(summary["ci95"]))
        text += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return text


SCORE_TEXT = {
    "loss": "lower canary loss = 'in' (black-box)",
    "gradient": "larger parameter change along the canary's unit loss gradient, "
                "<g/|g|, theta_0 - theta_T>, = 'in' (white-box)",
}


def guesser_text(scores: Sequence[str]) -> str:
    """How the guesser scores canaries, in words; several scores are Bonferroni-corrected."""
    text = "; ".join(SCORE_TEXT[s] for s in scores)
    if len(scores) > 1:
        text += f" -- each score at beta/{len(scores)}, the best bound reported"
    return text


def _bounds(values: Sequence[float | None]) -> str:
    shown = ["n/a" if v is None else ("inf" if math.isinf(v) else f"{v:.2f}") for v in values]
    return ", ".join(shown)


def _group_table(header: Sequence[str], rows: Sequence[tuple[str, ...]], marks: Sequence[bool]
           ) -> Table:
    """A per-group table; highlighted groups' names bold and their rows marked."""
    return Table(header=tuple(header),
                 rows=tuple(((Strong(r[0]) if m else r[0]), *r[1:])
                            for r, m in zip(rows, marks, strict=True)),
                 row_classes=tuple("highlight" if m else "" for m in marks))


def _rows(audit: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    return audit["modes"]["non-private"]["groups"], audit["modes"]["dp"]["groups"]


def _group_label(row: Mapping[str, Any]) -> str:
    return row["group"] + (f" {HIGHLIGHT_MARK}" if row["highlight"] else "")


def _size(audit: Mapping[str, Any], group: str, key: str) -> str:
    values = sorted({s[group][key] for s in audit["sizes"]})
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def _count(row: Mapping[str, Any], key: str) -> str:
    """The members or non-members the attacks used, per seed (range if they differ)."""
    values = sorted(set(row["attack_counts"][key]))
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def document(audit: Mapping[str, Any], figure: Path | None) -> list[Block]:
    """The report's blocks."""
    non_private, dp = _rows(audit)
    seeds = audit["seeds"]
    opts = audit["options"]
    blocks: list[Block] = [Paragraph(Strong(f"{audit['headline']}."), cls="statement"),
                           Paragraph(LIMITS)]
    exceeded = sum(audit["claim_exceeded"])
    verdict = (f"The overall lower bound exceeds the claimed epsilon in {exceeded} of "
               f"{len(seeds)} seed(s): the claim is refuted." if exceeded else
               f"The overall lower bound stays below the claimed epsilon in all {len(seeds)} "
               "seed(s): no evidence against the claim (which this does not prove).")
    blocks.append(Paragraph(verdict))
    blocks += [Heading("Setup"), Bullets((
        f"experiment: {audit['experiment']}; seeds {', '.join(map(str, seeds))}",
        f"DP run: {audit['privacy_description']}; claims per seed: "
        + "; ".join(f"({c['epsilon']:.2f}, {c['delta']:g}) for N = {c['train_size']:,}"
                    for c in audit["claims"]),
        f"statement (seed {seeds[0]}): {audit['claims'][0]['statement']}",
        f"members: the experiment's training examples less a {opts['holdout_fraction']:g} "
        "holdout per group; non-members: the held-out and left-out training-split examples "
        "(never the test split); the overall attack uses non-members cut to the members' "
        "group proportions",
        f"canaries: {opts['canaries']:,} mislabeled training-split images (not members, not "
        "non-members), spread evenly over the groups, each included with probability 1/2; "
        "N counts the included ones",
        f"guesser: {guesser_text(opts.get('canary_scores', ['loss']))}; guess counts "
        f"{', '.join(map(str, opts['guess_fractions']))} of the canaries, Bonferroni over "
        f"them; confidence {100 * (1 - opts['beta']):g}%",
        f"attacks: loss threshold, and offline LiRA with {opts['reference_models']} reference "
        "models per mode (complementary halves, the target's group ratios)",
    ))]
    header = ("group", "members", "non-members", "canaries (in)", "non-DP acc",
              "DP acc", "non-DP LiRA AUC", "DP LiRA AUC", "non-DP loss AUC", "DP loss AUC",
              "DP eps lower bound", "non-DP eps lower bound")
    rows, marks = [], []
    for np_row, dp_row in zip(non_private, dp, strict=True):
        g = np_row["group"]
        rows.append((
            _group_label(np_row), _count(np_row, "members"), _count(np_row, "nonmembers"),
            f"{_size(audit, g, 'canaries')} ({_size(audit, g, 'canaries_included')})",
            format_stat(np_row["accuracy"]), format_stat(dp_row["accuracy"]),
            format_stat(np_row["lira"]["auc"]), format_stat(dp_row["lira"]["auc"]),
            format_stat(np_row["loss"]["auc"]), format_stat(dp_row["loss"]["auc"]),
            _bounds(dp_row["one_run"]["epsilon_lower_bound"]),
            _bounds(np_row["one_run"]["epsilon_lower_bound"])))
        marks.append(bool(np_row["highlight"]))
    blocks += [Heading("Per group: attack AUC and one-run lower bound"),
               _group_table(header, rows, marks),
               Paragraph("AUC: mean [95% Student-t interval, cut to [0, 1]] over seeds; "
                     "accuracy on the test split; lower bounds: one per seed, each at the "
                     "stated confidence (per group: that group's canaries only). Sizes: per "
                     "seed (range if they differ).")]
    header2 = ("group", "mode", "LiRA TPR@1%FPR", "LiRA TPR@0.1%FPR", "LiRA advantage",
               "loss TPR@1%FPR", "loss advantage")
    rows2, marks2 = [], []
    for np_row, dp_row in zip(non_private, dp, strict=True):
        for mode, row in (("non-DP", np_row), ("DP", dp_row)):
            rows2.append((_group_label(row), mode,
                          format_stat(row["lira"]["tpr_at_1pct_fpr"], 3),
                          format_stat(row["lira"]["tpr_at_0.1pct_fpr"], 3),
                          format_stat(row["lira"]["advantage"], 3),
                          format_stat(row["loss"]["tpr_at_1pct_fpr"], 3),
                          format_stat(row["loss"]["advantage"], 3)))
            marks2.append(bool(row["highlight"]))
    blocks += [Heading("TPR at low FPR and membership advantage"),
               _group_table(header2, rows2, marks2),
               Paragraph("With n non-members the FPR moves in steps of 1/n: with fewer "
                     "than 1,000 (or 100) non-members, TPR at 0.1% (1%) FPR is TPR at FPR 0.")]
    blocks.append(Heading("Leakage by group"))
    blocks.append(Paragraph(leakage_sentence(non_private, dp)))
    if figure:
        blocks += [Heading("Figure"), Image(
            figure, f"Offline-LiRA ROC per group (seed {seeds[0]}), DP vs non-private; "
                    "log-log axes, dashed: chance")]
    return blocks


def leakage_sentence(non_private: Sequence[Mapping[str, Any]],
                     dp: Sequence[Mapping[str, Any]]) -> str:
    """Which highlighted group leaks more (LiRA AUC), in each model."""
    marked = [(a, b) for a, b in zip(non_private, dp, strict=True) if a["highlight"]]
    if len(marked) < 2:
        return "Fewer than two highlighted groups: no comparison."
    parts = []
    for label, idx in (("non-private", 0), ("DP", 1)):
        rows = [pair[idx] for pair in marked]
        parts.append(f"{label} model: " + ", ".join(
            f"group {r['group']} LiRA AUC {format_stat(r['lira']['auc'])}" for r in rows))
    return "; ".join(parts) + "."


def plot_roc(audit: Mapping[str, Any], path: str | Path) -> Path:
    """Per-group offline-LiRA ROC curves, DP vs non-private (log-log), first seed."""
    curves = {mode: audit["modes"][mode]["roc_lira"] for mode in ("non-private", "dp")}
    groups = [g for g in curves["dp"]["tpr"] if g in curves["non-private"]["tpr"]]
    fig, axes = plots.new_figure(3.6 * max(len(groups), 1), 3.6, 1, max(len(groups), 1))
    for ax, group in zip(axes[0], groups, strict=False):
        for mode, color in (("non-private", plots.NON_PRIVATE_COLOR), ("dp", plots.DP_COLOR)):
            fpr, tpr = curves[mode]["fpr"][1:], curves[mode]["tpr"][group][1:]
            ax.step(fpr, [max(t, 1e-3) for t in tpr], where="post", color=color, label=mode)
        ax.plot([1e-3, 1], [1e-3, 1], ls="--", color=plots.OTHER_COLOR, lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(1e-3, 1)
        ax.set_ylim(1e-3, 1)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.set_title("all groups" if group == OVERALL else f"group {group}")
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{audit['experiment']}: membership inference (offline LiRA)")
    return plots.save_figure(fig, path)


def write_audit_report(directory: str | Path) -> dict[str, Path]:
    """Write ``audit.md``, ``audit.html`` and ``audit_roc.png`` from ``directory/audit.json``."""
    out = Path(directory)
    audit = read_json(out / AUDIT_FILE)
    figure = plot_roc(audit, out / ROC_FIGURE)
    doc = Document(title=f"Privacy audit: {audit['experiment']}",
                   blocks=tuple(document(audit, figure)))
    md = fileio.write_text(out / AUDIT_MARKDOWN, render_markdown(doc))
    page = fileio.write_text(out / AUDIT_HTML, render_html(doc))
    return {"markdown": md, "html": page, "roc": figure}
