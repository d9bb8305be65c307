"""Comparisons: the non-private and the DP model of one experiment on identical data and
seeds, run as a sweep over the run store that studies use.

For each seed s, ``data.seed`` and ``training.seed`` are set to s (:func:`seeded`) and two
points are trained: ``config.non_private()`` and the DP config. Each is an ordinary run
directory ``RUNS/<config_hash>/`` (:func:`disparate.sweep.make_point`; ``RUNS`` is
``OUT/runs`` unless a shared store is given), so a comparison resumes where it stopped,
locks each run, runs on the local pool or the Ray backend, and reuses -- or lends to a
study -- every finished run of the same config. ``OUT/comparison.json`` (schema version 2,
``docs/results-format.md``) names the run directories relative to ``OUT``; version 1 kept
them in ``OUT/seed-<s>/{non-private,dp}/`` (:data:`V1_RUN_DIR`): the report still reads them,
and a comparison run again in such a directory reuses its finished runs and resumes its
interrupted ones where they lie.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from disparate import fileio, records, rundir
from disparate import results as res
from disparate.config import ExperimentConfig
from disparate.reporting.comparison_table import format_comparison_table
from disparate.sweep import (
    BUSY,
    FAILED,
    PENDING,
    SweepPoint,
    make_point,
    point_status,
    run_sweep,
)

__all__ = [
    "COMPARISON_SCHEMA_VERSION",
    "RUNS_SUBDIR",
    "check_run_dirs",
    "comparison_points",
    "explain",
    "run_comparison",
    "seed_list",
    "seeded",
    "summary",
    "sweep_all",
    "with_v1_runs",
]

COMPARISON_SCHEMA_VERSION = records.COMPARISON_SCHEMA_VERSION
RUNS_SUBDIR = "runs"
#: A run directory of a version-1 comparison directory, by seed and point label.
V1_RUN_DIR = "seed-{seed}/{label}"
#: The two runs of a seed: key in comparison.json's ``runs`` entries, label of the point.
MODES: tuple[tuple[str, str], ...] = (("non_private", "non-private"), ("dp", "dp"))

ERR_NOT_DP = (
    "compare trains a DP model against the non-private one, but {name!r} is in privacy mode "
    "{mode!r}; expected mode 'dp' (privacy.clipping=true, privacy.noise=true and a "
    "noise_multiplier or target_epsilon)"
)
ERR_SEEDS = "--seeds={value!r}: expected an integer >= 1"
ERR_FAILED = "{count} of {total} runs of the comparison failed: {failures}"

Log = Callable[[str], None]


def seeded(config: ExperimentConfig, seed: int) -> ExperimentConfig:
    """A copy with ``data.seed`` and ``training.seed`` set to ``seed``."""
    return dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, seed=seed),
        training=dataclasses.replace(config.training, seed=seed),
    )


def seed_list(config: ExperimentConfig, count: int) -> list[int]:
    """``count`` seeds starting at the config's ``training.seed``."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(ERR_SEEDS.format(value=count))
    return [config.training.seed + i for i in range(count)]


def comparison_points(config: ExperimentConfig, seeds: Sequence[int], runs_dir: str | Path
                      ) -> list[SweepPoint]:
    """The points of a comparison in ``runs_dir``: per seed, the non-private run then the
    DP run, labelled ``{"variant": "non-private" | "dp", "seed": s}``."""
    if config.privacy.mode != "dp":
        raise ValueError(ERR_NOT_DP.format(name=config.name, mode=config.privacy.mode))
    points = []
    for seed in seeds:
        cfg = seeded(config, seed)
        for (_, label), run_cfg in zip(MODES, (cfg.non_private(), cfg), strict=True):
            points.append(make_point(run_cfg, runs_dir, {"variant": label, "seed": seed}))
    return points


def check_run_dirs(points: Sequence[SweepPoint], *, resume: bool, overwrite: bool) -> None:
    """Before a sweep: ``overwrite`` resets every started run; otherwise, without ``resume``,
    a started run is an error naming it."""
    if overwrite:
        for p in points:
            if point_status(p) != PENDING:
                rundir.reset(p.run_dir, p.config)
    elif not resume:
        for p in points:
            if point_status(p) != PENDING:
                raise ValueError(rundir.ERR_EXISTING_RUN.format(path=p.run_dir))


def sweep_all(points: Sequence[SweepPoint], **sweep_kwargs: Any) -> None:
    """:func:`~disparate.sweep.run_sweep` that raises unless every run finished: a
    :class:`~disparate.fileio.RunDirBusyError` when all the others were busy, else ValueError."""
    sweep = run_sweep(points, **sweep_kwargs)
    unfinished = [o for o in sweep.outcomes if o.outcome in (FAILED, BUSY)]
    if unfinished:
        text = ERR_FAILED.format(count=len(unfinished), total=len(points), failures="; ".join(
            f"{o.point.describe()}: {o.outcome}" + (f" ({o.error})" if o.error else "")
            + f", see {o.point.run_dir}" for o in unfinished))
        busy = all(o.outcome == BUSY for o in unfinished)
        raise (fileio.RunDirBusyError if busy else ValueError)(text)


def run_comparison(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    seeds: Sequence[int],
    runs_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    backend: str = "local",
    jobs: int = 1,
    threads: int | None = None,
    address: str | None = None,
    device: str = "cpu",
    log: Log | None = None,
    echo: Log | None = None,
) -> dict[str, Any]:
    """Train both models for every seed, write and return ``comparison.json``.

    A run that already holds files (finished, interrupted or failed) is an error unless
    ``resume`` (continue it; a finished run is reused) or ``overwrite`` (train it again).

    Args:
        config: The DP experiment (privacy mode ``dp``).
        out_dir: The comparison directory.
        seeds: The seeds (each sets ``data.seed`` and ``training.seed``).
        runs_dir: The run store (default ``out_dir/runs``); a study's store shares its runs.
        resume, overwrite: See above (``overwrite`` wins when both are set).
        backend, jobs, threads, address: As for :func:`disparate.sweep.run_sweep`.
        device: Torch device of every run.
        log: Called with one line per run as it ends (and notes).
        echo: Called with the runs' per-epoch lines (in-process runs only).
    """
    out = Path(out_dir)
    runs = Path(runs_dir) if runs_dir is not None else out / RUNS_SUBDIR
    points = comparison_points(config, seeds, runs)
    if not overwrite:
        points = with_v1_runs(out, points, log)
    check_run_dirs(points, resume=resume, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    sweep_all(points, backend=backend, jobs=jobs, threads=threads, address=address,
              device=device, log=log, echo=echo)
    by_seed = [points[i:i + len(MODES)] for i in range(0, len(points), len(MODES))]
    run_dirs = [{"seed": str(seed), **{key: fileio.relative_path(p.run_dir, out)
                                       for (key, _), p in zip(MODES, pair, strict=True)}}
                for seed, pair in zip(seeds, by_seed, strict=True)]
    comparison = res.compare_runs(
        [res.load_results(pair[0].run_dir) for pair in by_seed],
        [res.load_results(pair[1].run_dir) for pair in by_seed],
        seeds=seeds, highlight=config.evaluation.highlight, experiment=config.name,
        run_dirs=run_dirs, configs={key: p.config for (key, _), p in zip(MODES, by_seed[0],
                                                                          strict=True)})
    result = records.ComparisonResult.from_json(
        {**comparison, records.SCHEMA_KEY: COMPARISON_SCHEMA_VERSION})
    records.write_comparison_result(out, result)
    comparison = result.to_json()
    _write_group_metrics(out, run_dirs)
    return comparison


def with_v1_runs(out: Path, points: Sequence[SweepPoint], log: Log | None
                 ) -> list[SweepPoint]:
    """``points``, where the store has nothing yet and ``out`` holds the finished or the
    interrupted run of a point's config in the version-1 layout (:data:`V1_RUN_DIR`), with
    that run directory (by the point's ``seed`` and ``variant`` labels): reused or resumed
    where it lies (``comparison.json`` then names it), not trained again from scratch (an
    interrupted one, like any started run, needs ``resume``)."""
    moved: list[SweepPoint] = []
    counts = {rundir.FINISHED: 0, rundir.PARTIAL: 0}
    for p in points:
        old = out / V1_RUN_DIR.format(seed=p.labels["seed"], label=p.labels["variant"])
        status = rundir.run_status(old, p.config) if point_status(p) == PENDING else None
        if status == rundir.FINISHED or (status == rundir.PARTIAL
                                         and rundir.resumable(old, p.config)):
            p = dataclasses.replace(p, run_dir=old)
            counts[status] += 1
        moved.append(p)
    if log is not None:
        where = f"of the version-1 layout ({out}/seed-<s>/...)"
        if counts[rundir.FINISHED]:
            log(f"{counts[rundir.FINISHED]} finished run(s) {where} reused")
        if counts[rundir.PARTIAL]:
            log(f"{counts[rundir.PARTIAL]} interrupted run(s) {where} resumed where they lie")
    return moved


def _write_group_metrics(out: Path, run_dirs: Sequence[dict[str, str]]) -> None:
    """``group_metrics.csv``: the tidy metrics rows of every run, with seed and mode."""
    from disparate.metrics import GROUP_METRICS_CSV, PREDICTIONS_FILE, Predictions, write_rows

    rows = [{"seed": int(d["seed"]), "mode": key, **row}
            for d in run_dirs for key, _ in MODES
            if (out / d[key] / PREDICTIONS_FILE).exists()
            for row in Predictions.load(out / d[key]).metrics().to_rows()]
    write_rows(out / GROUP_METRICS_CSV, rows)


def summary(comparison: dict[str, Any], out: Path, report: dict[str, Path] | None,
            elapsed: float) -> str:
    """The per-group table of ``comparison``, where its files are, and the wall time.

    ``report`` is what :func:`disparate.report.write_report` returned (``None``: no report);
    the report files listed are those found in ``out``, or ``out`` itself when there are none.
    """
    lines = ["", f"{comparison['experiment']}: non-private vs DP, accuracy per group",
             format_comparison_table(comparison), "",
             f"comparison: {out / res.COMPARISON_FILE}"]
    if report is not None:
        paths = [out / name for name in ("report.md", "report.html") if (out / name).exists()]
        lines.append(f"report: {', '.join(str(p) for p in paths) or out}")
    lines.append(f"wall time: {elapsed:.1f} s")
    return "\n".join(lines)


def explain(comparison: dict[str, Any]) -> str:
    """In words: each highlighted group's mean drop, and in how many seeds the first
    highlighted group dropped more than the second (``""``: nothing to say)."""
    groups = {g["group"]: g for g in comparison["groups"]}
    lines = []
    parts = [f"class {name} ({groups[name]['train_size']} training examples) loses "
             f"{100 * groups[name]['drop']['mean']:.1f} points"
             for name in comparison["highlight"]
             if name in groups and groups[name]["drop"]["mean"] is not None]
    if parts:
        lines.append("With DP, " + "; ".join(parts) + " (means over seeds).")
    names = [h for h in comparison["highlight"] if h in groups][:2]
    if len(names) == 2:
        a, b = (groups[n]["drop"]["values"] for n in names)
        pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
        larger = sum(x > y for x, y in pairs)
        lines.append(f"The drop on class {names[0]} exceeds the drop on class {names[1]} in "
                     f"{larger} of {len(pairs)} seeds (paired: same data, same seed).")
    return "\n".join(lines)
