"""The pure part of a study: run records -> tidy rows -> cells -> series.

Nothing here reads or writes a file: :mod:`disparate.study.run` loads the records of the
finished points, and the figures and the report draw what these functions return, so every
number a study shows can be tested on hand-made records.

A *cell* is the runs of one (variant, grid values) over seeds. A *series* is one line of a
sweep figure: per x, the cell with the best mean overall accuracy among the cells that differ
only in the ``best_of`` grid keys (the paper reports the best (z, S) per epsilon).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from disparate.mitigation import (
    NO_TUNING_NOTE,
    REFERENCE,
    TUNE_OBJECTIVES,
    TUNING_NOTE,
    VALIDATION_FRACTION,
    summarize_methods,
)
from disparate.reporting import format as fmt
from disparate.results import summarize

if TYPE_CHECKING:
    from disparate.study.spec import Study

__all__ = [
    "EPOCH",
    "OVERALL",
    "Cell",
    "RunRecord",
    "SeriesPoint",
    "best_cell",
    "cells",
    "epoch_curves",
    "epoch_value",
    "gap_points",
    "group_order",
    "group_value",
    "headline_epsilon",
    "highlight_of",
    "mean_accuracy",
    "mitigation_summary",
    "run_epsilon",
    "sort_x",
    "summary_rows",
    "sweep_series",
    "tidy_rows",
]

#: ``figure.x`` value that reads x from the per-epoch metrics of each run.
EPOCH = "epoch"
#: The group name of overall (all test examples) values in rows and series.
OVERALL = "all"


@dataclass(frozen=True)
class RunRecord:
    """A finished point: its key, labels (variant, grid values, seed) and parsed files."""

    key: str
    labels: Mapping[str, Any]
    results: Mapping[str, Any]
    metrics: tuple[Mapping[str, Any], ...] = ()
    run_dir: Path | None = None

    @property
    def variant(self) -> str:
        return str(self.labels.get("variant"))

    @property
    def private(self) -> bool:
        return bool((self.results.get("privacy") or {}).get("is_private"))


def headline_epsilon(privacy: Mapping[str, Any]) -> tuple[float | None, str | None]:
    """(epsilon, method) by the run's configured accountant."""
    method = privacy.get("accountant")
    report = ((privacy.get("epsilon") or {}).get(method or "") or {})
    return report.get("epsilon"), method


def hashable(value: Any) -> Any:
    """A grid value usable as a dict key (lists and mappings as sorted JSON)."""
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return value


# --------------------------------------------------------------------------------- tidy rows


def _run_rows(study: Study, run: RunRecord, grid_keys: Sequence[str]) -> list[dict[str, Any]]:
    base = {"study": study.name, "scale": study.scale, "point": run.key,
            "variant": run.labels.get("variant")}
    for k in grid_keys:
        base[k] = run.labels.get(k, "")
    base["seed"] = run.labels.get("seed")
    base["mode"] = run.results.get("mode")
    rows: list[dict[str, Any]] = []

    def add(stage: str, epoch: Any, group: str, metric: str, value: Any) -> None:
        if value is None:
            return
        rows.append({**base, "stage": stage, "epoch": epoch, "group": group,
                     "metric": metric, "value": value})

    for m in run.metrics:
        ep = m.get("epoch")
        for metric, key in (("accuracy", "group_accuracy"), ("grad_norm", "group_grad_norm"),
                            ("clipped_fraction", "group_clipped_fraction")):
            for g, v in (m.get(key) or {}).items():
                add("epoch", ep, g, metric, v)
        add("epoch", ep, OVERALL, "accuracy", m.get("test_accuracy"))
        add("epoch", ep, OVERALL, "test_loss", m.get("test_loss"))
        add("epoch", ep, OVERALL, "train_loss", m.get("train_loss"))
        add("epoch", ep, OVERALL, "epsilon", m.get("epsilon"))
    r = run.results
    ep = r.get("epochs")
    for g in r.get("groups", []):
        for metric in ("accuracy", "grad_norm", "clipped_fraction", "train_size", "test_size"):
            add("final", ep, g["group"], metric, g.get(metric))
    add("final", ep, OVERALL, "accuracy", r.get("overall_accuracy"))
    add("final", ep, OVERALL, "test_loss", r.get("test_loss"))
    add("final", ep, OVERALL, "train_size", r.get("train_size"))
    add("final", ep, OVERALL, "steps", r.get("steps"))
    add("final", ep, OVERALL, "wall_time_s", r.get("wall_time_s"))
    privacy = r.get("privacy") or {}
    add("final", ep, OVERALL, "epsilon", headline_epsilon(privacy)[0])
    add("final", ep, OVERALL, "noise_multiplier", privacy.get("noise_multiplier"))
    return rows


def tidy_rows(study: Study, runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One row per run x stage (``epoch``, ``final``) x epoch x group x metric (``results.csv``)."""
    keys = study.grid_keys
    return [row for run in runs for row in _run_rows(study, run, keys)]


def summary_rows(study: Study, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean, count and 95% interval over seeds of the tidy rows (``summary.csv``)."""
    keys = study.grid_keys
    buckets: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        ident = (row["variant"], *(hashable(row[k]) for k in keys), row["stage"], row["epoch"],
                 row["group"], row["metric"])
        buckets.setdefault(ident, []).append(row["value"])
    summary = []
    for ident, values in buckets.items():
        stats = summarize(values)
        ci = stats["ci95"]
        entry = {"study": study.name, "scale": study.scale, "variant": ident[0]}
        for k, v in zip(keys, ident[1:1 + len(keys)], strict=True):
            entry[k] = v
        stage, epoch, group, metric = ident[1 + len(keys):]
        entry.update(stage=stage, epoch=epoch, group=group, metric=metric, n=stats["n"],
                     mean=stats["mean"], ci95_low=ci[0] if ci else None,
                     ci95_high=ci[1] if ci else None)
        summary.append(entry)
    return summary


# ------------------------------------------------------------------------------- run values


def group_value(run: RunRecord, group: str, metric: str = "accuracy") -> float | None:
    """A final per-group value of ``results.json`` (``OVERALL``: the overall accuracy)."""
    if group == OVERALL:
        return run.results.get("overall_accuracy") if metric == "accuracy" else None
    for g in run.results.get("groups", []):
        if g["group"] == group:
            return g.get(metric)
    return None


def epoch_value(run: RunRecord, epoch: int, group: str, metric: str = "accuracy"
                ) -> float | None:
    """A per-group value of the metrics line of ``epoch``."""
    for m in run.metrics:
        if m.get("epoch") == epoch:
            if group == OVERALL:
                return m.get({"accuracy": "test_accuracy"}.get(metric, metric))
            key = {"accuracy": "group_accuracy", "grad_norm": "group_grad_norm"}[metric]
            return (m.get(key) or {}).get(group)
    return None


def run_epsilon(run: RunRecord, epoch: int | None = None) -> float | None:
    """The headline epsilon of a run (after ``epoch`` when given)."""
    if epoch is None:
        return headline_epsilon(run.results.get("privacy") or {})[0]
    for m in run.metrics:
        if m.get("epoch") == epoch:
            return m.get("epsilon")
    return None


def highlight_of(runs: Sequence[RunRecord]) -> list[str]:
    """The highlighted groups of the first run that names some."""
    for run in runs:
        hl = run.results.get("highlight")
        if hl:
            return [str(h) for h in hl]
    return []


def group_order(names: Iterable[str]) -> list[str]:
    """Distinct group names in natural order: numbers numerically ("2" < "10"), then text."""
    def key(n: str) -> tuple[int, float, str]:
        try:
            return (0, float(n), n)
        except ValueError:
            return (1, 0.0, n)
    return sorted(set(names), key=key)


def sort_x(x: Any) -> tuple[int, float, str]:
    """Numbers first in numeric order, then anything else by its text."""
    if isinstance(x, bool):
        return (1, 0.0, str(x))
    if isinstance(x, int | float):
        return (0, float(x), "")
    return (1, 0.0, str(x))


# ------------------------------------------------------------------------------------ cells


@dataclass(frozen=True)
class Cell:
    """Runs of one (variant, x, other grid values) over seeds."""

    variant: str
    x: Any
    others: tuple[tuple[str, Any], ...]
    runs: tuple[RunRecord, ...]


def cells(study: Study, runs: Sequence[RunRecord]) -> list[Cell]:
    """The runs grouped over seeds by (variant, every grid value), in order of first run."""
    keys = study.grid_keys
    x_key = study.figure.get("x")
    found: dict[tuple[Any, ...], tuple[str, Any, tuple[tuple[str, Any], ...]]] = {}
    members: dict[tuple[Any, ...], list[RunRecord]] = {}
    for run in runs:
        labels = run.labels
        present = tuple((k, labels[k]) for k in keys if k in labels)
        ident = (labels.get("variant"), tuple((k, hashable(v)) for k, v in present))
        if ident not in found:
            others = tuple((k, v) for k, v in present if k != x_key)
            found[ident] = (labels.get("variant"), labels.get(x_key), others)
            members[ident] = []
        members[ident].append(run)
    return [Cell(*found[i], tuple(members[i])) for i in found]


def mean_accuracy(cell: Cell, group: str = OVERALL) -> float:
    """Mean final accuracy of ``group`` over the cell's runs (``-inf`` without any)."""
    vals = [v for v in (group_value(r, group) for r in cell.runs) if v is not None]
    return sum(vals) / len(vals) if vals else -math.inf


def best_cell(candidates: Sequence[Cell]) -> Cell:
    """The cell with the highest mean overall accuracy (the first of equals)."""
    return max(candidates, key=mean_accuracy)


@dataclass(frozen=True)
class SeriesPoint:
    """One plotted point of a sweep figure: x, the chosen cell and its statistics."""

    x: Any
    cell: Cell
    stats: Mapping[str, Mapping[str, Any]]  # group -> summarize() of accuracy
    epsilon: float | None
    chosen: tuple[tuple[str, Any], ...] = ()


def _max_or_none(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def sweep_series(study: Study, runs: Sequence[RunRecord], groups: Sequence[str]
                 ) -> dict[str, list[SeriesPoint]]:
    """The lines of the sweep figure, in x order: one per variant and combination of the
    grid keys other than x and ``best_of`` (at each x, :func:`best_cell` of the ``best_of``
    cells). Keyed by the line's label; ``epsilon`` is the largest of the cell's runs."""
    x_key = study.figure.get("x")
    best_of = list(study.figure.get("best_of") or ())
    out: dict[str, list[SeriesPoint]] = {}
    all_cells = cells(study, runs)
    for variant in study.variants:
        lines: dict[tuple[Any, ...], list[Cell]] = {}
        for c in all_cells:
            if c.variant == variant.name:
                rest = tuple((k, hashable(v)) for k, v in c.others if k not in best_of)
                lines.setdefault(rest, []).append(c)
        for rest, lcells in lines.items():
            label = variant.label + "".join(f", {k.split('.')[-1]}={fmt.plain(v)}"
                                            for k, v in rest)
            pts: list[SeriesPoint] = []
            if x_key == EPOCH:
                wanted = set(study.figure.get("epochs") or ())
                for cell in lcells:
                    epochs = sorted({m["epoch"] for r in cell.runs for m in r.metrics})
                    for e in (e for e in epochs if not wanted or e in wanted):
                        stats = {g: summarize([epoch_value(r, e, g) for r in cell.runs])
                                 for g in groups}
                        pts.append(SeriesPoint(e, cell, stats, _max_or_none(
                            run_epsilon(r, e) for r in cell.runs)))
            else:
                by_x: dict[Any, list[Cell]] = {}
                for cell in lcells:
                    by_x.setdefault(hashable(cell.x), []).append(cell)
                for candidates in by_x.values():
                    cell = best_cell(candidates)
                    stats = {g: summarize([group_value(r, g) for r in cell.runs])
                             for g in groups}
                    chosen = tuple((k, v) for k, v in cell.others if k in best_of)
                    pts.append(SeriesPoint(cell.x, cell, stats, _max_or_none(
                        run_epsilon(r) for r in cell.runs), chosen))
            pts.sort(key=lambda sp: sort_x(sp.x))
            out[label] = pts
    return out


def gap_points(stats: Mapping[str, Mapping[str, Any]], highlight: Sequence[str]
               ) -> float | None:
    """Accuracy of the second highlighted group minus the first's, in points (with the
    paper's highlight ("8", "2"): class 2 minus class 8; positive: class 8 is worse off)."""
    if len(highlight) < 2:
        return None
    a = stats[highlight[1]].get("mean")
    b = stats[highlight[0]].get("mean")
    return None if a is None or b is None else 100 * (a - b)


def epoch_curves(runs: Sequence[RunRecord], key: str
                 ) -> dict[str, tuple[list[int], list[float], list[float], list[float]]]:
    """Per group: epochs, mean and 95% interval over the runs of ``metrics[key][group]``."""
    values: dict[str, dict[int, list[float]]] = {}
    for run in runs:
        for m in run.metrics:
            for g, v in (m.get(key) or {}).items():
                if v is not None:
                    values.setdefault(g, {}).setdefault(m["epoch"], []).append(float(v))
    out = {}
    for g, by_epoch in values.items():
        epochs = sorted(by_epoch)
        means, lows, highs = [], [], []
        for e in epochs:
            s = summarize(by_epoch[e])
            means.append(s["mean"])
            lo, hi = s["ci95"] or (s["mean"], s["mean"])
            lows.append(lo)
            highs.append(hi)
        out[g] = (epochs, means, lows, highs)
    return out


# ------------------------------------------------------------------------------- mitigation


def mitigation_summary(study: Study, runs: Sequence[RunRecord]) -> dict[str, Any] | None:
    """A mitigation study's records as a ``mitigation.json``-shaped object (per method its
    comparison against the reference and its summary: worst group, best-worst gap, drops),
    over the seeds where the reference and every method finished; ``None`` without any."""
    m = study.mitigation
    if m is None:
        return None
    by_key = {(r.variant, r.labels.get("seed")): r for r in runs}
    variants = (REFERENCE, *m.methods)
    seeds = [s for s in study.seeds if all((v, s) in by_key for v in variants)]
    if not seeds:
        return None
    results = {v: [by_key[(v, s)].results for s in seeds] for v in variants}
    highlight = highlight_of(runs)
    comparisons, summary = summarize_methods(results, seeds=seeds, highlight=highlight,
                                             experiment=results[REFERENCE][0].get("experiment"))
    return {
        "experiment": results[REFERENCE][0].get("experiment"),
        "target_epsilon": m.target_epsilon,
        "delta": (results[m.methods[0]][0].get("privacy") or {}).get("delta"),
        "seeds": seeds, "methods": list(m.methods), "highlight": highlight,
        "summary": summary, "comparisons": comparisons,
        "tuning": ({"trials": m.tune, "validation_fraction": VALIDATION_FRACTION,
                    "objective": m.tune_objective, "criterion": TUNE_OBJECTIVES[m.tune_objective]}
                   if m.tune else None),
        "tuning_note": TUNING_NOTE if m.tune else NO_TUNING_NOTE,
    }
