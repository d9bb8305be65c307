"""Expanding a study into points, running them (through :mod:`disparate.sweep`) and writing
the study directory: ``study.yaml`` (the resolved study), ``study.json`` (points, status,
errors, timings), ``results.csv`` (tidy), ``summary.csv`` (mean and 95% interval over seeds),
the figures, ``report.md`` and ``report.html``. Run directories go to ``runs/`` (or a shared
``runs_dir``)."""

from __future__ import annotations

import csv
import itertools
import json
import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from disparate import fileio
from disparate import mitigation as mit
from disparate import results as res
from disparate.config import ConfigError, load_experiment
from disparate.reporting.document import render_html, render_markdown
from disparate.study import aggregate as agg
from disparate.study.figures import figure_kind
from disparate.study.layout import (
    REPORT_HTML,
    REPORT_MD,
    RESULTS_CSV,
    RUNS_SUBDIR,
    STUDY_JSON,
    STUDY_YAML,
    SUMMARY_CSV,
    TUNING_JSON,
    relative,
)
from disparate.study.report import build_report
from disparate.study.spec import SEED_KEY, Study
from disparate.sweep import (
    FAILED,
    FINISHED,
    SweepPoint,
    SweepReport,
    make_point,
    point_status,
    read_error,
    run_sweep,
)

__all__ = ["expand", "load_runs", "read_manifest", "run_study", "write_outputs"]

def _value_text(value: Any) -> str:
    """A grid value as override text (JSON is valid YAML)."""
    return json.dumps(value)


def _base_config(study: Study) -> Any:
    try:
        return load_experiment(study.base, list(study.set))
    except ConfigError as exc:
        raise ConfigError(f"study {study.name!r}: {exc}") from exc


def expand(study: Study, runs_dir: str | Path,
           chosen: Mapping[str, Mapping[str, Any]] | None = None) -> list[SweepPoint]:
    """Every point of the study: variants x grid combinations x seeds, in that order (a
    mitigation study: per seed the reference and every method, with the tuned ``chosen``
    learning rates and options; :func:`disparate.mitigation.mitigation_points`).

    Raises ``ConfigError`` naming the point when its resolved config is invalid, and
    ``ValueError`` when two points resolve to the same config.
    """
    if study.mitigation is not None:
        m = study.mitigation
        return mit.mitigation_points(_base_config(study), m.methods, m.target_epsilon,
                                     study.seeds, runs_dir, chosen)
    points: list[SweepPoint] = []
    seen: dict[str, str] = {}
    for variant in study.variants:
        grid = list(study.grid) + list(variant.grid)
        keys = [k for k, _ in grid]
        for combo in itertools.product(*(vals for _, vals in grid)):
            for seed in study.seeds:
                labels: dict[str, Any] = {"variant": variant.name}
                labels.update(zip(keys, combo, strict=True))
                labels["seed"] = seed
                overrides = (list(study.set) + list(variant.set)
                             + [f"{k}={_value_text(v)}" for k, v in zip(keys, combo,
                                                                      strict=True)]
                             + [f"{SEED_KEY}={seed}"])
                try:
                    config = load_experiment(study.base, overrides)
                except ConfigError as exc:
                    where = ", ".join(f"{k}={v}" for k, v in labels.items())
                    raise ConfigError(f"study {study.name!r} point ({where}): {exc}") from exc
                point = make_point(config, runs_dir, labels)
                if point.key in seen:
                    raise ValueError(
                        f"study {study.name!r}: points {seen[point.key]} and "
                        f"{point.describe()} resolve to the same config (config_hash "
                        f"{point.key}); a grid key or variant changes nothing")
                seen[point.key] = point.describe()
                points.append(point)
    return points


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_manifest(out_dir: str | Path) -> dict[str, Any] | None:
    """The ``study.json`` of a study directory; ``None`` when it is missing or unreadable
    (it is rebuilt from the run directories)."""
    try:
        data = res.read_json(Path(out_dir) / STUDY_JSON)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _manifest(study: Study, points: Sequence[SweepPoint], out_dir: Path,
              previous: Mapping[str, Any] | None) -> dict[str, Any]:
    rows = []
    for p in points:
        status = point_status(p)
        row: dict[str, Any] = {"key": p.key, "run_dir": relative(p.run_dir, out_dir),
                               "labels": dict(p.labels), "status": status, "error": None,
                               "wall_time_s": None}
        if status == FAILED:
            row["error"] = (read_error(p) or {}).get("error")
        if status == FINISHED:
            try:
                row["wall_time_s"] = res.load_results(p.run_dir).get("wall_time_s")
            except (OSError, ValueError):
                row["wall_time_s"] = None
        rows.append(row)
    return {"study": study.name, "scale": study.scale, "title": study.title,
            "updated": _now(), "points": rows,
            "sweeps": list((previous or {}).get("sweeps", []))}


def run_study(
    study: Study,
    out_dir: str | Path,
    *,
    runs_dir: str | Path | None = None,
    backend: str = "local",
    jobs: int = 1,
    threads: int | None = None,
    address: str | None = None,
    retry_failed: bool = True,
    train: bool = True,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the study's unfinished points, then write the CSVs, figures and reports.

    Returns ``{"points", "sweep" (SweepReport or None), "files" (name -> path), "ok"}``.
    ``train=False`` only aggregates what is on disk (``--report-only``).
    """
    out = Path(out_dir)
    say = log or (lambda _line: None)
    chosen = _mitigation_choices(study, out, train=train, log=log)
    out.mkdir(parents=True, exist_ok=True)
    runs = Path(runs_dir) if runs_dir is not None else out / RUNS_SUBDIR
    points = expand(study, runs, chosen)
    fileio.write_text(
        out / STUDY_YAML,
        f"# Resolved study {study.name!r} at scale {study.scale!r} ({len(points)} points)\n"
        + yaml.safe_dump(study.to_dict(), sort_keys=False, allow_unicode=True, width=100))
    previous = read_manifest(out)
    manifest = _manifest(study, points, out, previous)
    res.write_json(out / STUDY_JSON, manifest)

    sweep: SweepReport | None = None
    if train:
        say(f"study {study.name} ({study.scale}): {len(points)} points, runs in {runs}")
        sweep = run_sweep(points, backend=backend, jobs=jobs, threads=threads,
                          address=address, retry_failed=retry_failed, log=say)
        say(sweep.summary())
        manifest = _manifest(study, points, out, previous)
        manifest["sweeps"].append({
            "finished": _now(), "backend": backend, "jobs": jobs,
            "threads": threads, "wall_time_s": sweep.wall_time_s, "summary": sweep.summary(),
            "command": command, "host": platform.node(),
            "outcomes": {o.point.key: o.outcome for o in sweep.outcomes},
        })
        res.write_json(out / STUDY_JSON, manifest)
    files = write_outputs(study, points, out, manifest=manifest)
    ok = all(point_status(p) == FINISHED for p in points)
    return {"points": points, "sweep": sweep, "files": files, "ok": ok}


def _mitigation_choices(study: Study, out: Path, *, train: bool,
                        log: Callable[[str], None] | None) -> dict[str, Any] | None:
    """A mitigation study's checks before any training and its tuning (``TUNING_JSON``: the
    chosen learning rate and options per method, reused when it is there)."""
    m = study.mitigation
    if m is None:
        return None
    path = out / TUNING_JSON
    if path.exists() or not train:
        return res.read_json(path)["chosen"] if path.exists() else None
    from disparate.comparison import seeded

    first = seeded(_base_config(study), study.seeds[0])
    splits, _ = mit.prepare(first, m.methods, m.target_epsilon)
    if not m.tune:
        return None
    chosen = mit.tune(first, m.methods, m.target_epsilon, m.tune, splits, out,
                      objective=m.tune_objective, resume=True, progress=False, log=log)
    res.write_json(path, {"objective": m.tune_objective, "trials": m.tune, "chosen": chosen})
    return chosen


def load_runs(points: Iterable[SweepPoint]) -> list[agg.RunRecord]:
    """The records of the finished points (others are left out)."""
    return [agg.RunRecord(key=p.key, labels=dict(p.labels),
                          results=res.load_results(p.run_dir),
                          metrics=tuple(res.read_metrics(p.run_dir)), run_dir=p.run_dir)
            for p in points if point_status(p) == FINISHED]


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    with fileio.atomic_write(path) as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return path


def write_outputs(study: Study, points: Sequence[SweepPoint], out_dir: str | Path, *,
                  manifest: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write results.csv, summary.csv, the figures, report.md and report.html."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(points)
    rows = agg.tidy_rows(study, runs)
    keys = study.grid_keys
    files: dict[str, Path] = {}
    files["results_csv"] = _write_csv(
        out / RESULTS_CSV, rows,
        ["study", "scale", "point", "variant", *keys, "seed", "mode", "stage", "epoch", "group",
         "metric", "value"])
    files["summary_csv"] = _write_csv(
        out / SUMMARY_CSV, agg.summary_rows(study, rows),
        ["study", "scale", "variant", *keys, "stage", "epoch", "group", "metric", "n", "mean",
         "ci95_low", "ci95_high"])
    figures = figure_kind(study.figure["kind"]).plot(study, runs, out) if runs else {}
    files.update(figures)
    document = build_report(study, points, runs, out, figures, manifest)
    files["report"] = fileio.write_text(out / REPORT_MD, render_markdown(document))
    files["report_html"] = fileio.write_text(out / REPORT_HTML, render_html(document))
    return files
