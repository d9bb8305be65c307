"""The per-group table of a comparison (``comparison.json``) and its notes: one document
block list for the reports, and plain text for a terminal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from disparate.reporting import format as fmt
from disparate.reporting.document import Block, Bullets, Strong, Table, Text, markdown_blocks

__all__ = ["COMPARISON_HEADER", "INTERVAL_HEADER", "comparison_blocks",
           "format_comparison_table", "size_dependence_note"]


def _rho(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def size_dependence_note(sd: Any) -> str | None:
    """One line on :func:`disparate.results.size_dependence` for the table's notes (None
    without pairs)."""
    if not isinstance(sd, Mapping) or sd.get("monotone") is None:
        return None
    text = (f"size alone: DP drop {'is' if sd['monotone'] else 'is not'} monotone in training "
            f"size (Spearman rho = {_rho(sd.get('spearman'))} between size and drop; "
            f"{sd['discordant_pairs']} of {sd['pairs']} pairs discordant)")
    served = sd.get("small_yet_well_served") or []
    if served:
        text += ("; small yet well served (drop below the median and below a larger group's): "
                 + ", ".join(served))
    return text


def _comparison_notes(comparison: Mapping[str, Any], *, markdown: bool) -> list[Text]:
    seeds = comparison["seeds"]
    notes: list[Text] = []
    seeds_text = f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})"
    if len(seeds) > 1:
        notes.append(f"mean over {seeds_text}; {fmt.INTERVAL_LABEL} (drops within "
                     "[-100, +100] points)")
    else:
        notes.append(f"one seed ({seeds[0]}); no interval")
    if any(g.get("highlight") for g in comparison["groups"]):
        notes.append((Strong("bold") if markdown else "*",
                      ": highlighted group (evaluation.highlight)"))
    if any(g.get("small_test") for g in comparison["groups"]):
        notes.append("! fewer test examples than evaluation.min_group_test_size: noisy")
    ppp = comparison["poor_get_poorer"]
    notes.append(f"poor get poorer: Spearman rho = {_rho(ppp['spearman'])} between non-DP "
                 f"accuracy and DP drop across groups (negative: the poor get poorer)")
    size_note = size_dependence_note(comparison.get("size_dependence"))
    if size_note:
        notes.append(size_note)
    for label, key in (("non-DP", "non_private"), ("DP", "dp")):
        gp = comparison["gap"][key]
        if gp.get("difference") is not None:
            notes.append(
                f"gap {label}: {100 * gp['difference']:.1f} points (best {gp['best_group']} "
                f"{100 * gp['best_accuracy']:.1f}%, worst {gp['worst_group']} "
                f"{100 * gp['worst_accuracy']:.1f}%)")
    statement = comparison.get("privacy", {}).get("statement")
    if statement:
        notes.append(f"DP: {statement}")
    return notes


COMPARISON_HEADER = ("group", "train", "test", "non-DP acc %", "DP acc %", "drop (points)")
#: Appended to the accuracy and drop columns' headers when their cells carry an interval.
INTERVAL_HEADER = " [95% CI]"


def _comparison_header(comparison: Mapping[str, Any]) -> tuple[str, ...]:
    if len(comparison["seeds"]) < 2:
        return COMPARISON_HEADER
    return (*COMPARISON_HEADER[:3], *(h + INTERVAL_HEADER for h in COMPARISON_HEADER[3:]))


def _cells(stats: Mapping[str, Any]) -> tuple[str, str, str]:
    """Non-private and DP accuracy (%) and drop (points), intervals clamped to their bounds."""
    return (fmt.accuracy(stats["non_private_accuracy"], suffix=""),
            fmt.accuracy(stats["dp_accuracy"], suffix=""), fmt.points(stats["drop"], suffix=""))


def _comparison_rows(comparison: Mapping[str, Any], *, markdown: bool
                     ) -> list[tuple[Text, ...]]:
    rows: list[tuple[Text, ...]] = []
    for g in comparison["groups"]:
        small = "!" if g.get("small_test") else ""
        if markdown:  # bold marks a highlighted group
            name: Text = (Strong(g["group"]), small) if g.get("highlight") else g["group"] + small
        else:
            name = f"{g['group']}{'*' if g.get('highlight') else ''}{small}"
        rows.append((name, str(g["train_size"]), str(g["test_size"]), *_cells(g)))
    train_total = sum(g["train_size"] for g in comparison["groups"])
    test_total = sum(g["test_size"] for g in comparison["groups"])
    rows.append(("all", str(train_total), str(test_total), *_cells(comparison["overall"])))
    return rows


def comparison_blocks(comparison: Mapping[str, Any]) -> list[Block]:
    """The per-group table of a comparison and its notes, as document blocks."""
    header = _comparison_header(comparison)
    return [Table(header=header, rows=tuple(_comparison_rows(comparison, markdown=True)),
                  right=tuple(range(1, len(header)))),
            Bullets(tuple(_comparison_notes(comparison, markdown=True)))]


def format_comparison_table(comparison: Mapping[str, Any], *, markdown: bool = False) -> str:
    """Per-group table of a comparison: sizes, non-private and DP accuracy (%), drop (points).

    Highlighted groups are marked with ``*`` (set in bold in markdown); groups with fewer
    test examples than ``evaluation.min_group_test_size`` with ``!``. With several seeds each
    cell is ``mean [lo, hi]``, the 95% interval within [0, 100]% (drops within [-100, +100]
    points), the header says so. Markdown is :func:`comparison_blocks` rendered; the plain
    text is for a terminal.
    """
    if markdown:
        return markdown_blocks(comparison_blocks(comparison)).rstrip("\n")
    header = list(_comparison_header(comparison))
    rows = [[str(c) for c in r] for r in _comparison_rows(comparison, markdown=False)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmts = [f"{{:<{widths[0]}}}"] + [f"{{:>{w}}}" for w in widths[1:]]
    lines = ["  ".join(f.format(h) for f, h in zip(fmts, header, strict=True)),
             "  ".join("-" * w for w in widths)]
    for r in rows:
        if r[0] == "all":
            lines.append("  ".join("-" * w for w in widths))
        lines.append("  ".join(f.format(c) for f, c in zip(fmts, r, strict=True)))
    notes = ["".join(n if isinstance(n, str) else n.text for n in
                     (note if isinstance(note, tuple) else (note,)))
             for note in _comparison_notes(comparison, markdown=False)]
    return "\n".join(lines) + "\n" + "\n".join(notes)
