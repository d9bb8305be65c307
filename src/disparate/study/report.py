"""The report of a study as a :class:`~disparate.reporting.document.Document` (written as
``report.md`` and a self-contained ``report.html``): status, figures, the figure kind's result
tables, the paper's numbers, failed points, the privacy of every point and the run times."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from disparate.reporting import format as fmt
from disparate.reporting.document import (
    Block,
    Bullets,
    Code,
    Document,
    Heading,
    Image,
    Link,
    Paragraph,
    Strong,
    Table,
)
from disparate.study import aggregate as agg
from disparate.study.figures import figure_kind
from disparate.study.layout import (
    RESULTS_CSV,
    RUNS_SUBDIR,
    STUDY_JSON,
    STUDY_YAML,
    SUMMARY_CSV,
    relative,
)
from disparate.study.spec import Study
from disparate.sweep import FAILED, FINISHED, SweepPoint, point_status, read_error

__all__ = ["build_report"]

TABLE_NOTE = ("Accuracies in %, the mean over seeds and its 95% Student-t interval [lo, hi] "
              "within [0, 100] (no interval with one seed); gaps in percentage points. ε is "
              "that of the DP runs by their configured accountant (table below).")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _privacy_table(runs: Sequence[agg.RunRecord], out_dir: Path) -> Table:
    rows = []
    for r in runs:
        privacy = r.results.get("privacy") or {}
        where = ", ".join(f"{k}={fmt.plain(v)}" for k, v in r.labels.items() if k != "variant")
        link = Link(r.key, relative(r.run_dir, out_dir)) if r.run_dir is not None else r.key
        if not privacy.get("is_private"):
            rows.append((link, str(r.labels.get("variant")), where, str(privacy.get("mode")),
                         "not private", "—", "—", "—"))
            continue
        eps, method = agg.headline_epsilon(privacy)
        head = (privacy.get("epsilon") or {}).get(method or "") or {}
        others = ", ".join(f"{m}: {d.get('epsilon'):.2f}"
                           for m, d in (privacy.get("epsilon") or {}).items()
                           if m != method and d.get("epsilon") is not None)
        rows.append((link, str(r.labels.get("variant")), where, str(privacy.get("mode")),
                     f"{eps:.2f}" if eps is not None else "inf", f"{privacy.get('delta'):g}",
                     f"{method} ({str(head.get('accountant', '')).split(' (')[0]})",
                     others or "—"))
    return Table(header=("point", "variant", "grid, seed", "mode", "ε", "δ", "accountant",
                         "ε by other accountants"), rows=tuple(rows))


def build_report(study: Study, points: Sequence[SweepPoint], runs: Sequence[agg.RunRecord],
                 out_dir: Path, figures: Mapping[str, Path],
                 manifest: Mapping[str, Any] | None = None) -> Document:
    """The study's report: ``figures`` are the PNGs of its figure kind (name -> path)."""
    highlight = agg.highlight_of(runs)
    statuses = [point_status(p) for p in points]
    blocks: list[Block] = [Paragraph((
        "Study ", Code(study.name), " at scale ", Code(study.scale), " (from ",
        Code(study.source), "), base experiment ", Code(study.base),
        f"; {_plural(len(points), 'point')} ({_plural(len(study.variants), 'variant')}, each "
        f"over its grid, x {_plural(len(study.seeds), 'seed')})."))]
    if study.description:
        blocks.append(Paragraph(study.description))
    finished = statuses.count(FINISHED)
    failed = [p for p, s in zip(points, statuses, strict=True) if s == FAILED]
    pending = len(points) - finished - len(failed)
    blocks.append(Paragraph((Strong("Status:"), f" {finished} of {len(points)} points finished"
                             + (f", {len(failed)} failed" if failed else "")
                             + (f", {pending} not (yet) run" if pending else "") + ".")))
    if study.set:
        overrides: list[Any] = ["Overrides of every point: "]
        for i, o in enumerate(study.set):
            overrides += [", "] * (i > 0) + [Code(o)]
        blocks.append(Paragraph(tuple(overrides)))

    blocks.append(Heading("Results"))
    blocks += [Image(path, name) for name, path in figures.items() if path.suffix == ".png"]
    if runs:
        blocks += figure_kind(study.figure["kind"]).tables(study, runs, highlight)
        blocks.append(Paragraph(TABLE_NOTE, cls="note"))
    else:
        blocks.append(Paragraph("No finished runs yet."))

    notes = (study.paper or {}).get("notes")
    if notes:
        blocks += [Heading("The paper's numbers"), Bullets(tuple(str(n) for n in notes))]

    if failed:
        items = []
        for p in failed:
            err = read_error(p) or {}
            items.append((Code(p.key), f" ({p.describe()}): {err.get('error', 'unknown error')}"
                          " — traceback in ", Code(f"{relative(p.run_dir, out_dir)}/error.json")))
        blocks += [Heading("Failed points"), Bullets(tuple(items)),
                   Paragraph("Run the study again to retry them (finished points are "
                             "skipped).")]

    blocks += [Heading("Privacy of each point"), _privacy_table(runs, out_dir)]
    statements = sorted({(r.results.get("privacy") or {}).get("statement", "") for r in runs
                         if r.private})
    if statements:
        blocks += [Paragraph("How each ε was computed (one line per distinct statement):"),
                   Bullets(tuple(statements))]

    times = [r.results.get("wall_time_s") or 0.0 for r in runs]
    items: list[Any] = [
        f"compute time of the finished runs: {fmt.duration(sum(times))} in total (sum of run "
        f"wall times; longest run {fmt.duration(max(times, default=0.0))})"]
    for sweep in (manifest or {}).get("sweeps", [])[-5:]:
        text = f"sweep finished {sweep.get('finished')}: {sweep.get('summary')}"
        items.append((text, " — ", Code(sweep["command"])) if sweep.get("command") else text)
    runs_dir = relative(points[0].run_dir.parent, out_dir) if points else RUNS_SUBDIR
    items.append(("files: ", Code(RESULTS_CSV), " (one row per run x epoch x group x metric), ",
                  Code(SUMMARY_CSV), " (mean and 95% interval over seeds), ", Code(STUDY_JSON),
                  " (points, status, errors), ", Code(STUDY_YAML), " (the resolved study); run "
                  "directories under ", Code(f"{runs_dir}/")))
    blocks += [Heading("Runs and times"), Bullets(tuple(items))]
    return Document(title=study.title, blocks=tuple(blocks))
