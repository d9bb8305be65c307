"""Hyperparameter studies (paper Section 5, Figures 4 and 5): a base experiment plus a grid.

A study is a YAML file (shipped ones in ``src/disparate/studies/*.yaml``: ``fig4``, ``fig5a``
.. ``fig5d``; a user's own by path) of this shape::

    name: fig5b
    title: "Figure 5(b): batch size"
    description: ...
    base: mnist-underrep              # an experiment preset or a path to an experiment YAML
    set: []                           # overrides applied to every point
    seeds: 1                          # a count (training.seed = 0..K-1) or a list of seeds
    variants:                         # named variants (default: one, "default")
      - {name: DP, label: "DP (z = 0.8, S = 1)", set: []}
      - name: non-DP
        set: [privacy.clipping=false, privacy.noise=false, privacy.noise_multiplier=null]
        grid: {}                      # a grid of this variant only
    grid:                             # every combination, for every variant
      training.batch_size: [64, 128, 256, 512, 1024]
    figure: {kind: sweep, x: training.batch_size, x_label: batch size, log_x: true}
    scales:                           # --scale NAME: overrides and grid values per scale
      quick: {set: [training.epochs=12], grid: {training.batch_size: [64, 256, 1024]}}
      paper: {}
    paper: {notes: [...], accuracy: {...}}   # the paper's numbers, quoted in the report

The overrides of a point are applied in this order (a later one wins): the study's ``set``,
the scale's ``set``, the caller's ``--set``, the variant's ``set``, the grid values,
``training.seed``. A scale
may also replace the ``base``, the ``seeds`` and entries of ``figure``; its ``grid`` (and
the caller's ``--grid``) replaces the values of a grid key wherever the key appears (a new
key joins the study's grid).

Figure kinds: ``clip-noise`` (Figure 4: per-class gradient norm and accuracy over epochs, one
column per variant, and the final per-class accuracy) and ``sweep`` (Figure 5: accuracy of the
highlighted groups and overall against ``x``, one line style per variant, 95% intervals over
seeds as error bars, the epsilon of each private point on a right axis). ``x`` is a grid key
or ``epoch`` (read from the per-epoch metrics of each run: the first T epochs of a run are
exactly a T-epoch run when nothing depends on the total epoch count). ``best_of`` lists grid
keys to choose the best of at each x (by mean overall accuracy, as the paper reports the best
(z, S) per epsilon); every run is kept in the CSV, the report and a second figure.

Outputs of :func:`run_study` in the study directory: ``study.yaml`` (the resolved study),
``study.json`` (points, their status, errors and timings), ``results.csv`` (tidy: one row per
run x epoch x group x metric), ``summary.csv`` (mean and 95% interval over seeds), the PNG
figures and ``report.md``. Run directories go to ``runs/`` (or a shared ``runs_dir``).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from disparate import fileio
from disparate import results as res
from disparate.config import ConfigError, load_experiment, parse_override
from disparate.plots import new_figure, save_figure
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

__all__ = [
    "FIGURE_KINDS",
    "STUDY_KEYS",
    "Study",
    "Variant",
    "aggregate",
    "expand",
    "list_studies",
    "load_study",
    "run_study",
    "write_outputs",
]

FIGURE_KINDS: tuple[str, ...] = ("clip-noise", "sweep")
STUDY_KEYS: tuple[str, ...] = ("name", "title", "description", "base", "set", "seeds",
                               "variants", "grid", "figure", "scales", "paper")
SCALE_KEYS: tuple[str, ...] = ("base", "set", "grid", "seeds", "figure", "description")
VARIANT_KEYS: tuple[str, ...] = ("name", "label", "set", "grid")
FIGURE_KEYS: tuple[str, ...] = ("kind", "x", "x_label", "log_x", "best_of", "epochs",
                                "epsilon_axis", "title")
SEED_KEY = "training.seed"
EPOCH = "epoch"

RUNS_SUBDIR = "runs"
STUDY_YAML = "study.yaml"
STUDY_JSON = "study.json"
RESULTS_CSV = "results.csv"
SUMMARY_CSV = "summary.csv"
REPORT_MD = "report.md"

HIGHLIGHT_COLORS = ("#c44e52", "#4c72b0", "#55a868", "#8172b3")
OVERALL_COLOR = "#222222"
OTHER_COLOR = "#b0b0b0"
VARIANT_STYLES = ("-", "--", ":", "-.")
VARIANT_MARKERS = ("o", "s", "^", "D", "v", "P")


# --------------------------------------------------------------------------------------------
# The study definition
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """A named set of overrides (e.g. a privacy mode), with a grid of its own."""

    name: str
    label: str
    set: tuple[str, ...] = ()
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()


@dataclass(frozen=True)
class Study:
    """A resolved study: one scale chosen, the caller's overrides merged in."""

    name: str
    title: str
    description: str
    base: str
    scale: str
    set: tuple[str, ...]
    seeds: tuple[int, ...]
    variants: tuple[Variant, ...]
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    figure: Mapping[str, Any]
    paper: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    scales: tuple[str, ...] = ()

    @property
    def grid_keys(self) -> list[str]:
        """Every grid key of the study and its variants, in order of first appearance."""
        keys: list[str] = []
        for k, _ in self.grid:
            if k not in keys:
                keys.append(k)
        for v in self.variants:
            for k, _ in v.grid:
                if k not in keys:
                    keys.append(k)
        return keys

    def to_dict(self) -> dict[str, Any]:
        """The resolved study as plain data (saved as ``study.yaml``)."""
        return {
            "name": self.name, "title": self.title, "description": self.description,
            "base": self.base, "scale": self.scale, "set": list(self.set),
            "seeds": list(self.seeds),
            "variants": [{"name": v.name, "label": v.label, "set": list(v.set),
                          "grid": {k: list(vals) for k, vals in v.grid}}
                         for v in self.variants],
            "grid": {k: list(vals) for k, vals in self.grid},
            "figure": dict(self.figure), "paper": dict(self.paper), "source": self.source,
        }


def _studies_dir() -> Any:
    return resources.files("disparate") / "studies"


def list_studies() -> list[str]:
    """Names of the shipped studies (``src/disparate/studies/*.yaml``), sorted."""
    directory = _studies_dir()
    if not directory.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in directory.iterdir()
                  if p.name.endswith(".yaml"))


def _read_study_source(name_or_path: str) -> tuple[dict[str, Any], str]:
    is_path = name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path
    if is_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"study file {name_or_path!r} does not exist")
        text, source, default_name = path.read_text(encoding="utf-8"), str(path), path.stem
    else:
        names = list_studies()
        if name_or_path not in names:
            import difflib
            close = difflib.get_close_matches(name_or_path, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown study {name_or_path!r}{hint}; shipped studies: "
                              f"{', '.join(names)} (or give a path to a study .yaml file)")
        text = (_studies_dir() / f"{name_or_path}.yaml").read_text(encoding="utf-8")
        source, default_name = f"disparate/studies/{name_or_path}.yaml", name_or_path
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping with keys {', '.join(STUDY_KEYS)}")
    data = dict(data)
    data.setdefault("name", default_name)
    return data, source


def _check_keys(where: str, data: Mapping[str, Any], valid: Sequence[str]) -> None:
    for k in data:
        if k not in valid:
            import difflib
            close = difflib.get_close_matches(str(k), list(valid), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {k!r}{hint}; valid keys: "
                              f"{', '.join(valid)}")


def _overrides(where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(f"{where}={value!r}: expected a list of KEY=VALUE overrides")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ConfigError(f"{where}[{i}]={item!r}: expected a KEY=VALUE string")
        parse_override(item)  # raises a ConfigError naming the override
    return tuple(value)


def _grid(where: str, value: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}={value!r}: expected a mapping KEY: [values]")
    out = []
    for k, vals in value.items():
        if not isinstance(k, str) or "." not in k:
            raise ConfigError(f"{where}: key {k!r}: expected a dotted config key such as "
                              "training.batch_size")
        if k == SEED_KEY:
            raise ConfigError(f"{where}: {SEED_KEY} is set by 'seeds', not by the grid")
        if isinstance(vals, str) or not isinstance(vals, list | tuple) or not vals:
            raise ConfigError(f"{where}.{k}={vals!r}: expected a non-empty list of values")
        out.append((k, tuple(vals)))
    return tuple(out)


def _seeds(where: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise ConfigError(f"{where}={value!r}: expected a count >= 1 or a list of seeds")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{where}={value!r}: expected a count >= 1 or a list of seeds")
        return tuple(range(value))
    if isinstance(value, list | tuple) and value and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value):
        if len(set(value)) != len(value):
            raise ConfigError(f"{where}={value!r}: seeds must be distinct")
        return tuple(value)
    raise ConfigError(f"{where}={value!r}: expected a count >= 1 or a list of seeds >= 0")


def _replace_grid(grid: tuple[tuple[str, tuple[Any, ...]], ...],
                  replacements: Mapping[str, tuple[Any, ...]]
                  ) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    return tuple((k, replacements.get(k, vals)) for k, vals in grid)


def parse_grid_option(text: str) -> tuple[str, tuple[Any, ...]]:
    """``"training.batch_size=[64, 256]"`` (or ``=64,256``) -> (key, values)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--grid {text!r}: expected KEY=[v1, v2, ...]")
    raw = raw.strip()
    if not raw.startswith("["):
        raw = f"[{raw}]"
    try:
        values = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--grid {text!r}: values are not valid YAML: {exc}") from exc
    return _grid("--grid", {key: values})[0]


def load_study(
    name_or_path: str,
    *,
    scale: str = "quick",
    overrides: Sequence[str] = (),
    grid: Mapping[str, Sequence[Any]] | None = None,
    seeds: int | Sequence[int] | None = None,
) -> Study:
    """Load a shipped study by name, or a study YAML by path, at ``scale``.

    Args:
        name_or_path: ``fig4``, ``fig5a`` .. ``fig5d`` or a ``.yaml`` path.
        scale: A scale of the study (``quick``, ``paper``, ``smoke`` for the shipped ones).
        overrides: ``KEY=VALUE`` overrides for every point (after the study's and the
            scale's ``set``, before the variants and the grid).
        grid: Replacement values of grid keys (a new key joins the study's grid).
        seeds: A count or list of seeds, replacing the study's and the scale's.
    """
    data, source = _read_study_source(name_or_path)
    _check_keys(source, data, STUDY_KEYS)
    name = data["name"]
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: name={name!r}: expected a non-empty string")
    scales = data.get("scales") or {}
    if not isinstance(scales, Mapping):
        raise ConfigError(f"{source}: scales={scales!r}: expected a mapping NAME: {{...}}")
    if scale not in scales:
        raise ConfigError(f"scale={scale!r}: study {name!r} has the scales "
                          f"{', '.join(map(repr, scales)) or 'none'}")
    sc = scales[scale] or {}
    if isinstance(sc, list):
        sc = {"set": sc}
    if not isinstance(sc, Mapping):
        raise ConfigError(f"{source}: scales.{scale}={sc!r}: expected a mapping")
    _check_keys(f"{source}: scales.{scale}", sc, SCALE_KEYS)

    base = sc.get("base", data.get("base"))
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{source}: base={base!r}: expected an experiment preset name or path")
    if base.endswith((".yaml", ".yml")) and not Path(base).is_absolute() and "/" in source:
        candidate = Path(source).parent / base
        if candidate.is_file():
            base = str(candidate)

    variants_data = data.get("variants") or [{"name": "default"}]
    if not isinstance(variants_data, list):
        raise ConfigError(f"{source}: variants={variants_data!r}: expected a list")
    variants: list[Variant] = []
    replacements: dict[str, tuple[Any, ...]] = dict(_grid(f"{source}: scales.{scale}.grid",
                                                          sc.get("grid")))
    if grid:
        replacements.update(_grid("grid", dict(grid)))
    for i, v in enumerate(variants_data):
        where = f"{source}: variants[{i}]"
        if not isinstance(v, Mapping):
            raise ConfigError(f"{where}={v!r}: expected a mapping with keys "
                              f"{', '.join(VARIANT_KEYS)}")
        _check_keys(where, v, VARIANT_KEYS)
        vname = v.get("name")
        if not isinstance(vname, str) or not vname:
            raise ConfigError(f"{where}: name={vname!r}: expected a non-empty string")
        if any(x.name == vname for x in variants):
            raise ConfigError(f"{where}: duplicate variant name {vname!r}")
        variants.append(Variant(
            name=vname, label=str(v.get("label") or vname),
            set=_overrides(f"{where}.set", v.get("set")),
            grid=_replace_grid(_grid(f"{where}.grid", v.get("grid")), replacements)))

    study_grid = _replace_grid(_grid(f"{source}: grid", data.get("grid")), replacements)
    present = {k for k, _ in study_grid} | {k for v in variants for k, _ in v.grid}
    study_grid += tuple((k, vals) for k, vals in replacements.items() if k not in present)

    seed_value = seeds if seeds is not None else sc.get("seeds", data.get("seeds", 1))
    figure = dict(data.get("figure") or {"kind": "sweep"})
    figure.update(sc.get("figure") or {})
    _check_keys(f"{source}: figure", figure, FIGURE_KEYS)
    kind = figure.get("kind", "sweep")
    if kind not in FIGURE_KINDS:
        raise ConfigError(f"{source}: figure.kind={kind!r}: expected one of "
                          f"{', '.join(map(repr, FIGURE_KINDS))}")
    figure["kind"] = kind
    study = Study(
        name=name,
        title=str(data.get("title") or name),
        description="\n\n".join(str(d).strip() for d in (data.get("description"),
                                                          sc.get("description")) if d),
        base=base,
        scale=scale,
        set=(_overrides(f"{source}: set", data.get("set"))
             + _overrides(f"{source}: scales.{scale}.set", sc.get("set"))
             + _overrides("--set", list(overrides))),
        seeds=_seeds("seeds", seed_value),
        variants=tuple(variants),
        grid=study_grid,
        figure=figure,
        paper=dict(data.get("paper") or {}),
        source=source,
        scales=tuple(scales),
    )
    keys = study.grid_keys
    if kind == "sweep":
        x = figure.get("x")
        if x is None:
            raise ConfigError(f"{source}: figure.x is required for kind 'sweep' (a grid key "
                              f"or 'epoch'); grid keys: {', '.join(keys) or 'none'}")
        if x != EPOCH and x not in keys:
            raise ConfigError(f"{source}: figure.x={x!r}: expected 'epoch' or a grid key "
                              f"({', '.join(keys) or 'none'})")
        for k in figure.get("best_of") or ():
            if k not in keys or k == x:
                raise ConfigError(f"{source}: figure.best_of: {k!r} is not a grid key other "
                                  f"than x ({', '.join(keys)})")
    return study


# --------------------------------------------------------------------------------------------
# Points
# --------------------------------------------------------------------------------------------


def _value_text(value: Any) -> str:
    """A grid value as override text (JSON is valid YAML)."""
    return json.dumps(value)


def expand(study: Study, runs_dir: str | Path) -> list[SweepPoint]:
    """Every point of the study: variants x grid combinations x seeds, in that order.

    Raises ``ConfigError`` naming the point when its resolved config is invalid, and
    ``ValueError`` when two points resolve to the same config.
    """
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


# --------------------------------------------------------------------------------------------
# Running a study
# --------------------------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _manifest(study: Study, points: Sequence[SweepPoint], out_dir: Path,
              previous: Mapping[str, Any] | None) -> dict[str, Any]:
    rows = []
    for p in points:
        status = point_status(p)
        row: dict[str, Any] = {"key": p.key, "run_dir": _rel(p.run_dir, out_dir),
                               "labels": dict(p.labels), "status": status, "error": None,
                               "wall_time_s": None}
        if status == FAILED:
            row["error"] = (read_error(p) or {}).get("error")
        if status == FINISHED:
            data = _read_json(p.run_dir / res.RESULTS_FILE)
            row["wall_time_s"] = (data or {}).get("wall_time_s")
        rows.append(row)
    return {"study": study.name, "scale": study.scale, "title": study.title,
            "updated": _now(), "points": rows,
            "sweeps": list((previous or {}).get("sweeps", []))}


def _rel(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` (with ``..`` where needed), for links in the report."""
    try:
        return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return str(path.resolve())


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


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
    """Run the study's unfinished points, then write the CSVs, figures and report.

    Returns ``{"points", "sweep" (SweepReport or None), "files" (name -> path), "ok"}``.
    ``train=False`` only aggregates what is on disk (``--report-only``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = Path(runs_dir) if runs_dir is not None else out / RUNS_SUBDIR
    points = expand(study, runs)
    say = log or (lambda _line: None)
    (out / STUDY_YAML).write_text(
        f"# Resolved study {study.name!r} at scale {study.scale!r} ({len(points)} points)\n"
        + yaml.safe_dump(study.to_dict(), sort_keys=False, allow_unicode=True, width=100),
        encoding="utf-8")
    previous = _read_json(out / STUDY_JSON)
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


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------


@dataclass
class RunData:
    """A finished point's files."""

    point: SweepPoint
    results: dict[str, Any]
    metrics: list[dict[str, Any]]

    @property
    def private(self) -> bool:
        return bool((self.results.get("privacy") or {}).get("is_private"))


def load_runs(points: Iterable[SweepPoint]) -> list[RunData]:
    """The results and metrics of the finished points (others are left out)."""
    out = []
    for p in points:
        if point_status(p) != FINISHED:
            continue
        out.append(RunData(p, res.load_results(p.run_dir), res.read_metrics(p.run_dir)))
    return out


def _headline_epsilon(privacy: Mapping[str, Any]) -> tuple[float | None, str | None]:
    method = privacy.get("accountant")
    report = ((privacy.get("epsilon") or {}).get(method or "") or {})
    return report.get("epsilon"), method


def _run_rows(study: Study, run: RunData, grid_keys: Sequence[str]) -> list[dict[str, Any]]:
    p = run.point
    base = {"study": study.name, "scale": study.scale, "point": p.key,
            "variant": p.labels.get("variant")}
    for k in grid_keys:
        base[k] = p.labels.get(k, "")
    base["seed"] = p.labels.get("seed")
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
        add("epoch", ep, "all", "accuracy", m.get("test_accuracy"))
        add("epoch", ep, "all", "test_loss", m.get("test_loss"))
        add("epoch", ep, "all", "train_loss", m.get("train_loss"))
        add("epoch", ep, "all", "epsilon", m.get("epsilon"))
    r = run.results
    ep = r.get("epochs")
    for g in r.get("groups", []):
        for metric in ("accuracy", "grad_norm", "clipped_fraction", "train_size", "test_size"):
            add("final", ep, g["group"], metric, g.get(metric))
    add("final", ep, "all", "accuracy", r.get("overall_accuracy"))
    add("final", ep, "all", "test_loss", r.get("test_loss"))
    add("final", ep, "all", "train_size", r.get("train_size"))
    add("final", ep, "all", "steps", r.get("steps"))
    add("final", ep, "all", "wall_time_s", r.get("wall_time_s"))
    privacy = r.get("privacy") or {}
    eps, _ = _headline_epsilon(privacy)
    add("final", ep, "all", "epsilon", eps)
    add("final", ep, "all", "noise_multiplier", privacy.get("noise_multiplier"))
    return rows


def aggregate(study: Study, runs: Sequence[RunData]
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(tidy rows of every run, summary rows over seeds) for the CSVs."""
    keys = study.grid_keys
    rows = [row for run in runs for row in _run_rows(study, run, keys)]
    buckets: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        ident = (row["variant"], *(_hashable(row[k]) for k in keys), row["stage"], row["epoch"],
                 row["group"], row["metric"])
        buckets.setdefault(ident, []).append(row["value"])
    summary = []
    for ident, values in buckets.items():
        stats = res.summarize(values)
        ci = stats["ci95"]
        entry = {"study": study.name, "scale": study.scale, "variant": ident[0]}
        for k, v in zip(keys, ident[1:1 + len(keys)], strict=True):
            entry[k] = v
        stage, epoch, group, metric = ident[1 + len(keys):]
        entry.update(stage=stage, epoch=epoch, group=group, metric=metric, n=stats["n"],
                     mean=stats["mean"], ci95_low=ci[0] if ci else None,
                     ci95_high=ci[1] if ci else None)
        summary.append(entry)
    return rows, summary


def _hashable(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return value


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    with fileio.atomic_write(path) as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return path


# --------------------------------------------------------------------------------------------
# Series for the figures and tables
# --------------------------------------------------------------------------------------------


def _group_value(run: RunData, group: str, metric: str = "accuracy") -> float | None:
    if group == "all":
        return run.results.get("overall_accuracy") if metric == "accuracy" else None
    for g in run.results.get("groups", []):
        if g["group"] == group:
            return g.get(metric)
    return None


def _epoch_value(run: RunData, epoch: int, group: str, metric: str = "accuracy"
                 ) -> float | None:
    for m in run.metrics:
        if m.get("epoch") == epoch:
            if group == "all":
                return m.get({"accuracy": "test_accuracy"}.get(metric, metric))
            key = {"accuracy": "group_accuracy", "grad_norm": "group_grad_norm"}[metric]
            return (m.get(key) or {}).get(group)
    return None


def _run_epsilon(run: RunData, epoch: int | None = None) -> float | None:
    if epoch is None:
        return _headline_epsilon(run.results.get("privacy") or {})[0]
    for m in run.metrics:
        if m.get("epoch") == epoch:
            return m.get("epsilon")
    return None


def _highlight(study: Study, runs: Sequence[RunData]) -> list[str]:
    for run in runs:
        hl = run.results.get("highlight")
        if hl:
            return [str(h) for h in hl]
    return []


@dataclass
class Cell:
    """Runs of one (variant, x, other grid values) over seeds."""

    variant: str
    x: Any
    others: tuple[tuple[str, Any], ...]
    runs: list[RunData]


def _cells(study: Study, runs: Sequence[RunData]) -> list[Cell]:
    """Group the runs over seeds by (variant, every grid value)."""
    keys = study.grid_keys
    cells: dict[tuple[Any, ...], Cell] = {}
    x_key = study.figure.get("x")
    for run in runs:
        labels = run.point.labels
        present = tuple((k, labels[k]) for k in keys if k in labels)
        ident = (labels.get("variant"), tuple((k, _hashable(v)) for k, v in present))
        if ident not in cells:
            others = tuple((k, v) for k, v in present if k != x_key)
            cells[ident] = Cell(labels.get("variant"), labels.get(x_key), others, [])
        cells[ident].runs.append(run)
    return list(cells.values())


def _mean_accuracy(cell: Cell, group: str = "all") -> float:
    vals = [_group_value(r, group) for r in cell.runs]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else -math.inf


@dataclass
class SeriesPoint:
    """One plotted point of a sweep figure: x, the chosen cell and its statistics."""

    x: Any
    cell: Cell
    stats: dict[str, dict[str, Any]]  # group -> summarize() of accuracy
    epsilon: float | None
    chosen: tuple[tuple[str, Any], ...] = ()


def _sweep_series(study: Study, runs: Sequence[RunData], groups: Sequence[str]
                  ) -> dict[str, list[SeriesPoint]]:
    """The lines of the sweep figure, in x order: one per variant and combination of the
    grid keys other than x and ``best_of`` (at each x, the best of the ``best_of`` cells by
    mean overall accuracy). Keyed by the line's label."""
    x_key = study.figure.get("x")
    best_of = list(study.figure.get("best_of") or ())
    out: dict[str, list[SeriesPoint]] = {}
    cells = _cells(study, runs)
    for variant in study.variants:
        lines: dict[tuple[Any, ...], list[Cell]] = {}
        for c in cells:
            if c.variant == variant.name:
                rest = tuple((k, _hashable(v)) for k, v in c.others if k not in best_of)
                lines.setdefault(rest, []).append(c)
        for rest, lcells in lines.items():
            label = variant.label + "".join(f", {k.split('.')[-1]}={_fmt(v)}" for k, v in rest)
            pts: list[SeriesPoint] = []
            if x_key == EPOCH:
                wanted = set(study.figure.get("epochs") or ())
                for cell in lcells:
                    epochs = sorted({m["epoch"] for r in cell.runs for m in r.metrics})
                    for e in (e for e in epochs if not wanted or e in wanted):
                        stats = {g: res.summarize([_epoch_value(r, e, g) for r in cell.runs])
                                 for g in groups}
                        eps = [v for v in (_run_epsilon(r, e) for r in cell.runs)
                               if v is not None]
                        pts.append(SeriesPoint(e, cell, stats, max(eps) if eps else None))
            else:
                by_x: dict[Any, list[Cell]] = {}
                for cell in lcells:
                    by_x.setdefault(_hashable(cell.x), []).append(cell)
                for candidates in by_x.values():
                    cell = max(candidates, key=_mean_accuracy)
                    stats = {g: res.summarize([_group_value(r, g) for r in cell.runs])
                             for g in groups}
                    eps = [v for v in (_run_epsilon(r) for r in cell.runs) if v is not None]
                    chosen = tuple((k, v) for k, v in cell.others if k in best_of)
                    pts.append(SeriesPoint(cell.x, cell, stats, max(eps) if eps else None,
                                           chosen))
            pts.sort(key=lambda sp: _sort_x(sp.x))
            out[label] = pts
    return out


def _sort_x(x: Any) -> tuple[int, float, str]:
    if isinstance(x, bool):
        return (1, 0.0, str(x))
    if isinstance(x, int | float):
        return (0, float(x), "")
    return (1, 0.0, str(x))


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _err(stat: Mapping[str, Any]) -> tuple[float, float, float]:
    mean = stat.get("mean")
    ci = stat.get("ci95")
    if mean is None:
        return math.nan, 0.0, 0.0
    if not ci:
        return mean, 0.0, 0.0
    return mean, max(mean - ci[0], 0.0), max(ci[1] - mean, 0.0)


def _group_order(names: Iterable[str]) -> list[str]:
    def key(n: str) -> tuple[int, float, str]:
        try:
            return (0, float(n), n)
        except ValueError:
            return (1, 0.0, n)
    return sorted(set(names), key=key)


def _epoch_curves(runs: Sequence[RunData], key: str
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
            s = res.summarize(by_epoch[e])
            means.append(s["mean"])
            lo, hi = s["ci95"] or (s["mean"], s["mean"])
            lows.append(lo)
            highs.append(hi)
        out[g] = (epochs, means, lows, highs)
    return out


def plot_clip_noise(study: Study, runs: Sequence[RunData], out_dir: Path) -> dict[str, Path]:
    """Figure 4: per-class gradient norm and accuracy over epochs (one column per variant),
    and the final per-class accuracy of every variant (95% intervals over seeds)."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    highlight = _highlight(study, runs)
    variants = [v for v in study.variants if any(r.point.labels.get("variant") == v.name
                                                 for r in runs)]
    files: dict[str, Path] = {}
    if not variants:
        return files
    n = len(variants)
    fig, axes = new_figure(3.3 * n + 0.6, 6.4, 2, n, sharey="row")
    for col, variant in enumerate(variants):
        vruns = [r for r in runs if r.point.labels.get("variant") == variant.name]
        for row, (key, ylabel) in enumerate((("group_grad_norm",
                                              "mean per-example gradient norm"),
                                             ("group_accuracy", "test accuracy"))):
            ax = axes[row][col]
            curves = _epoch_curves(vruns, key)
            for g in _group_order(curves):
                epochs, mean, lo, hi = curves[g]
                if g in highlight:
                    color = HIGHLIGHT_COLORS[highlight.index(g) % len(HIGHLIGHT_COLORS)]
                    ax.plot(epochs, mean, color=color, lw=2.2, label=f"class {g}", zorder=3,
                            marker="o" if len(epochs) == 1 else None)
                    if len(vruns) > 1:
                        ax.fill_between(epochs, lo, hi, color=color, alpha=0.2, lw=0)
                else:
                    ax.plot(epochs, mean, color=OTHER_COLOR, lw=0.8,
                            label="other classes" if g == _first_other(curves, highlight)
                            else None, marker="o" if len(epochs) == 1 else None, ms=2)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if row == 0:
                ax.set_title(variant.label, fontsize=10)
                ax.set_yscale("log")
            else:
                ax.yaxis.set_major_formatter(PercentFormatter(1.0))
                ax.set_xlabel("epoch")
            if col == 0:
                ax.set_ylabel(ylabel + (" (log)" if row == 0 else ""))
            if col == n - 1 and curves:
                ax.legend(fontsize=7, loc="best")
    seeds = len(study.seeds)
    fig.suptitle(f"{study.title} ({study.scale} scale"
                 + (f", mean of {seeds} seeds, band: 95% interval" if seeds > 1 else "")
                 + ")", fontsize=11)
    files[study.name] = save_figure(fig, out_dir / f"{study.name}.png")

    # Final accuracy of every class, one bar per variant.
    groups = _group_order(g["group"] for r in runs for g in r.results.get("groups", []))
    groups.append("all")
    fig, axes = new_figure(min(max(7.0, 0.24 * len(groups) * n + 2.0), 16.0), 4.2)
    ax = axes[0][0]
    width = 0.8 / n
    for i, variant in enumerate(variants):
        vruns = [r for r in runs if r.point.labels.get("variant") == variant.name]
        stats = [_err(res.summarize([_group_value(r, g) for r in vruns])) for g in groups]
        xs = [j - 0.4 + width * (i + 0.5) for j in range(len(groups))]
        yerr = [[s[1] for s in stats], [s[2] for s in stats]]
        ax.bar(xs, [s[0] for s in stats], width=width * 0.95, label=variant.label,
               color=f"C{i}", yerr=yerr if any(map(any, yerr)) else None, capsize=2,
               error_kw={"lw": 0.8})
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(["overall" if g == "all" else g for g in groups])
    for tick, g in zip(ax.get_xticklabels(), groups, strict=True):
        if g in highlight:
            tick.set_fontweight("bold")
            tick.set_color(HIGHLIGHT_COLORS[highlight.index(g) % len(HIGHLIGHT_COLORS)])
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("class (highlighted: " + ", ".join(highlight) + ")")
    ax.set_ylabel("final test accuracy")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(fontsize=7, ncol=min(n, 4), loc="outside lower center")
    ax.set_title(f"{study.title}: accuracy per class ({study.scale} scale)" + (
        " (error bars: 95% interval over seeds)" if seeds > 1 else ""), fontsize=10)
    files[f"{study.name}_accuracy"] = save_figure(fig, out_dir / f"{study.name}_accuracy.png")
    return files


def _first_other(curves: Mapping[str, Any], highlight: Sequence[str]) -> str | None:
    for g in _group_order(curves):
        if g not in highlight:
            return g
    return None


def plot_sweep(study: Study, runs: Sequence[RunData], out_dir: Path) -> dict[str, Path]:
    """Figure 5: accuracy of the highlighted groups and overall against x, per variant."""
    from matplotlib.ticker import PercentFormatter

    highlight = _highlight(study, runs)
    groups = [*highlight, "all"]
    series = _sweep_series(study, runs, groups)
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
            color = (OVERALL_COLOR if g == "all"
                     else HIGHLIGHT_COLORS[gi % len(HIGHLIGHT_COLORS)])
            label = f"{vlabel}: " + (
                "overall" if g == "all" else f"class {g}")
            if all(sp.x is None for sp in pts):
                # a variant without the x key (e.g. the non-private baseline): a level line
                mean, lo, hi = _err(pts[0].stats[g])
                if not math.isnan(mean):
                    ax.axhline(mean, color=color, ls=style, lw=1.2, label=label, alpha=0.9)
                    if lo or hi:
                        ax.axhspan(mean - lo, mean + hi, color=color, alpha=0.08, lw=0)
                continue
            xs = [pos(sp.x) for sp in pts]
            errs = [_err(sp.stats[g]) for sp in pts]
            ax.errorbar(xs, [e[0] for e in errs], yerr=[[e[1] for e in errs],
                                                       [e[2] for e in errs]],
                        color=color, ls=style, lw=1.6 if g != "all" else 1.2,
                        marker=VARIANT_MARKERS[vi % len(VARIANT_MARKERS)], ms=4, capsize=3,
                        label=label)
        for sp in pts:
            if sp.epsilon is not None and sp.x is not None:
                eps_points.append((pos(sp.x), sp.epsilon))
    if numeric and fig_spec.get("log_x"):
        ax.set_xscale("log")
    if numeric:
        ticks = sorted({pos(x) for x in xs_all})
        if len(ticks) <= 12 and x_key != EPOCH:
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{t:g}" for t in ticks])
            ax.minorticks_off()
    else:
        ax.set_xticks(range(len(categories)))
        ax.set_xticklabels(categories)
    if x_key == EPOCH:
        from matplotlib.ticker import MaxNLocator

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
        ax2.plot(list(seen), list(seen.values()), color="#7f7f7f", ls=":", marker="x", ms=5,
                 lw=1.0, label="ε of the DP point (right axis)")
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
        extra.append(f"mean of {seeds} seeds, error bars: 95% interval")
    ax.set_title(f"{title} ({study.scale} scale" + ("; " + "; ".join(extra) if extra else "")
                 + ")", fontsize=10)
    files[study.name] = save_figure(fig, out_dir / f"{study.name}.png")

    best_of = list(fig_spec.get("best_of") or ())
    if best_of and x_key != EPOCH:
        files[f"{study.name}_all_runs"] = _plot_all_runs(study, runs, highlight,
                                                         out_dir / f"{study.name}_all_runs.png")
    return files


def _plot_all_runs(study: Study, runs: Sequence[RunData], highlight: Sequence[str],
                   path: Path) -> Path:
    """Every run of a best_of sweep: one line per best_of combination, per group panel."""
    from matplotlib.ticker import PercentFormatter

    x_key = study.figure.get("x")
    groups = [*highlight, "all"]
    fig, axes = new_figure(3.6 * len(groups), 3.6, 1, len(groups), sharey=True)
    cells = [c for c in _cells(study, runs) if c.x is not None]
    combos = sorted({c.others for c in cells}, key=str)
    for gi, g in enumerate(groups):
        ax = axes[0][gi]
        for ci, combo in enumerate(combos):
            pts = sorted((c for c in cells if c.others == combo), key=lambda c: _sort_x(c.x))
            errs = [_err(res.summarize([_group_value(r, g) for r in c.runs])) for c in pts]
            label = ", ".join(f"{k.split('.')[-1]}={_fmt(v)}" for k, v in combo)
            ax.errorbar([float(c.x) for c in pts], [e[0] for e in errs],
                        yerr=[[e[1] for e in errs], [e[2] for e in errs]], marker="o", ms=3,
                        capsize=2, lw=1.2, color=f"C{ci % 10}", label=label)
        baseline = [c for c in _cells(study, runs) if c.x is None]
        for bi, cell in enumerate(baseline):
            mean = _err(res.summarize([_group_value(r, g) for r in cell.runs]))[0]
            if not math.isnan(mean):
                ax.axhline(mean, color="k", ls="--", lw=1.0,
                           label=f"{cell.variant}" if bi == 0 else None)
        if study.figure.get("log_x"):
            ax.set_xscale("log")
        ax.set_title("overall" if g == "all" else f"class {g}", fontsize=10)
        ax.set_xlabel(study.figure.get("x_label") or x_key)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if gi == 0:
            ax.set_ylabel("test accuracy")
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{study.title}: every run ({study.scale} scale)", fontsize=11)
    return save_figure(fig, path)


def _accountant_of(runs: Sequence[RunData]) -> str:
    for r in runs:
        privacy = r.results.get("privacy") or {}
        if privacy.get("is_private"):
            return f"{privacy.get('accountant')}, δ={privacy.get('delta'):g}"
    return "accountant"


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _pct(stat: Mapping[str, Any] | float | None) -> str:
    if stat is None:
        return "n/a"
    if not isinstance(stat, Mapping):
        return f"{100 * stat:.1f}"
    mean = stat.get("mean")
    if mean is None:
        return "n/a"
    text = f"{100 * mean:.1f}"
    ci = stat.get("ci95")
    if ci:
        text += f" ±{100 * (ci[1] - ci[0]) / 2:.1f}"
    return text


def _num(stat: Mapping[str, Any]) -> str:
    mean = stat.get("mean")
    if mean is None:
        return "n/a"
    text = f"{mean:.3g}"
    ci = stat.get("ci95")
    if ci:
        text += f" ±{(ci[1] - ci[0]) / 2:.2g}"
    return text


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return out


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _clip_noise_table(study: Study, runs: Sequence[RunData], highlight: Sequence[str]
                      ) -> list[str]:
    paper = (study.paper or {}).get("accuracy") or {}
    header = ["variant", "seeds"]
    header += [f"acc {g} %" for g in highlight] + ["overall %"]
    header += [f"grad norm {g}: first → last epoch" for g in highlight]
    if paper:
        header.append("paper acc %")
    rows = []
    for v in study.variants:
        vruns = [r for r in runs if r.point.labels.get("variant") == v.name]
        if not vruns:
            continue
        row = [v.label, str(len(vruns))]
        row += [_pct(res.summarize([_group_value(r, g) for r in vruns])) for g in highlight]
        row.append(_pct(res.summarize([_group_value(r, "all") for r in vruns])))
        for g in highlight:
            firsts = [r.metrics[0].get("group_grad_norm", {}).get(g) for r in vruns if r.metrics]
            lasts = [r.metrics[-1].get("group_grad_norm", {}).get(g) for r in vruns if r.metrics]
            row.append(f"{_num(res.summarize(firsts))} → {_num(res.summarize(lasts))}")
        if paper:
            pv = paper.get(v.name) or {}
            row.append(", ".join(f"{g}: {100 * float(a):.0f}" for g, a in pv.items()) or "")
        rows.append(row)
    return _table(header, rows)


def _sweep_tables(study: Study, runs: Sequence[RunData], highlight: Sequence[str]
                  ) -> list[str]:
    groups = [*highlight, "all"]
    series = _sweep_series(study, runs, groups)
    x_key = study.figure.get("x")
    x_label = study.figure.get("x_label") or x_key
    best_of = list(study.figure.get("best_of") or ())
    lines: list[str] = []
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
            row = [_fmt(sp.x) if sp.x is not None else "(any)", vlabel]
            if best_of:
                row.append(", ".join(f"{_fmt(v)}" for _, v in sp.chosen) or "")
            row.append(str(len(sp.cell.runs)))
            row += [_pct(sp.stats[g]) for g in groups]
            if len(highlight) >= 2:
                a = sp.stats[highlight[1]].get("mean")
                b = sp.stats[highlight[0]].get("mean")
                row.append("n/a" if a is None or b is None else f"{100 * (a - b):.1f}")
            row.append("—" if sp.epsilon is None else f"{sp.epsilon:.2f}")
            rows.append(row)
    lines += _table(header, rows)
    if best_of:
        lines += ["", f"Every run (the figure shows, per {x_label}, the "
                  f"{', '.join(best_of)} with the best mean overall accuracy):", ""]
        all_rows = []
        for cell in sorted(_cells(study, runs),
                           key=lambda c: (c.variant, _sort_x(c.x), str(c.others))):
            row = [_fmt(cell.x) if cell.x is not None else "(any)", cell.variant,
                   ", ".join(f"{k}={_fmt(v)}" for k, v in cell.others) or "",
                   str(len(cell.runs))]
            row += [_pct(res.summarize([_group_value(r, g) for r in cell.runs]))
                    for g in groups]
            zs = {r.results.get("privacy", {}).get("noise_multiplier") for r in cell.runs}
            zs.discard(None)
            row.append(", ".join(f"{z:.3g}" for z in sorted(zs)) or "—")
            eps = [_run_epsilon(r) for r in cell.runs]
            eps = [e for e in eps if e is not None]
            row.append(f"{max(eps):.2f}" if eps else "—")
            all_rows.append(row)
        lines += _table([x_label, "variant", "other grid values", "seeds",
                         *[f"acc {g} %" for g in highlight], "overall %", "z", "ε"], all_rows)
    return lines


def _privacy_table(runs: Sequence[RunData], out_dir: Path) -> list[str]:
    rows = []
    for r in runs:
        privacy = r.results.get("privacy") or {}
        labels = r.point.labels
        where = ", ".join(f"{k}={_fmt(v)}" for k, v in labels.items() if k not in ("variant",))
        if not privacy.get("is_private"):
            rows.append([f"[{r.point.key}]({_rel(r.point.run_dir, out_dir)})",
                         str(labels.get("variant")), where, str(privacy.get("mode")),
                         "not private", "—", "—", "—"])
            continue
        eps, method = _headline_epsilon(privacy)
        head = (privacy.get("epsilon") or {}).get(method or "") or {}
        others = ", ".join(f"{m}: {d.get('epsilon'):.2f}"
                           for m, d in (privacy.get("epsilon") or {}).items()
                           if m != method and d.get("epsilon") is not None)
        rows.append([f"[{r.point.key}]({_rel(r.point.run_dir, out_dir)})",
                     str(labels.get("variant")), where, str(privacy.get("mode")),
                     f"{eps:.2f}" if eps is not None else "inf", f"{privacy.get('delta'):g}",
                     f"{method} ({str(head.get('accountant', '')).split(' (')[0]})",
                     others or "—"])
    return _table(["point", "variant", "grid, seed", "mode", "ε", "δ", "accountant",
                   "ε by other accountants"], rows)


def render_report(study: Study, points: Sequence[SweepPoint], runs: Sequence[RunData],
                  out_dir: Path, files: Mapping[str, Path],
                  manifest: Mapping[str, Any] | None = None) -> str:
    """The ``report.md`` text of a study."""
    highlight = _highlight(study, runs)
    statuses = [point_status(p) for p in points]
    lines = [f"# {study.title}", "",
             f"Study `{study.name}` at scale `{study.scale}` (from `{study.source}`), base "
             f"experiment `{study.base}`; {len(points)} points ({len(study.variants)} "
             f"variant{'s' if len(study.variants) != 1 else ''}, each over its grid, x "
             f"{len(study.seeds)} seed{'s' if len(study.seeds) != 1 else ''}).", ""]
    if study.description:
        lines += [study.description, ""]
    finished = statuses.count(FINISHED)
    failed = [p for p, s in zip(points, statuses, strict=True) if s == FAILED]
    lines += [f"**Status:** {finished} of {len(points)} points finished"
              + (f", {len(failed)} failed" if failed else "")
              + (f", {len(points) - finished - len(failed)} not (yet) run"
                 if len(points) - finished - len(failed) else "") + ".", ""]
    if study.set:
        lines += ["Overrides of every point: " + ", ".join(f"`{o}`" for o in study.set), ""]

    lines += ["## Results", ""]
    for name, path in files.items():
        if path.suffix == ".png":
            lines += [f"![{name}]({path.name})", ""]
    if runs:
        if study.figure.get("kind") == "clip-noise":
            lines += _clip_noise_table(study, runs, highlight)
        else:
            lines += _sweep_tables(study, runs, highlight)
        lines += ["", "Accuracies in %, mean ± half-width of the 95% Student-t interval over "
                  "seeds (no interval with one seed). ε is that of the DP runs by their "
                  "configured accountant (table below).", ""]
    else:
        lines += ["No finished runs yet.", ""]

    paper = study.paper or {}
    if paper.get("notes"):
        lines += ["## The paper's numbers", ""]
        lines += [f"- {n}" for n in paper["notes"]]
        lines.append("")

    if failed:
        lines += ["## Failed points", ""]
        for p in failed:
            err = read_error(p) or {}
            lines += [f"- `{p.key}` ({p.describe()}): {err.get('error', 'unknown error')} — "
                      f"traceback in `{_rel(p.run_dir, out_dir)}/error.json`"]
        lines += ["", "Run the study again to retry them (finished points are skipped).", ""]

    lines += ["## Privacy of each point", ""]
    lines += _privacy_table(runs, out_dir)
    statements = sorted({(r.results.get("privacy") or {}).get("statement", "") for r in runs
                         if (r.results.get("privacy") or {}).get("is_private")})
    if statements:
        lines += ["", "How each ε was computed (one line per distinct statement):", ""]
        lines += [f"- {st}" for st in statements]
    lines.append("")

    lines += ["## Runs and times", ""]
    times = [r.results.get("wall_time_s") or 0.0 for r in runs]
    lines.append(f"- compute time of the finished runs: {_duration(sum(times))} in total "
                 f"(sum of run wall times; longest run {_duration(max(times, default=0.0))})")
    for sweep in (manifest or {}).get("sweeps", [])[-5:]:
        lines.append(f"- sweep finished {sweep.get('finished')}: {sweep.get('summary')}"
                     + (f" — `{sweep['command']}`" if sweep.get("command") else ""))
    lines += [f"- files: `{RESULTS_CSV}` (one row per run x epoch x group x metric), "
              f"`{SUMMARY_CSV}` (mean and 95% interval over seeds), `{STUDY_JSON}` (points, "
              f"status, errors), `{STUDY_YAML}` (the resolved study); run directories under "
              f"`{_rel(points[0].run_dir.parent, out_dir) if points else RUNS_SUBDIR}/`", ""]
    return "\n".join(lines)


def write_outputs(study: Study, points: Sequence[SweepPoint], out_dir: str | Path, *,
                  manifest: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write results.csv, summary.csv, the figures and report.md from the finished points."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(points)
    rows, summary = aggregate(study, runs)
    keys = study.grid_keys
    files: dict[str, Path] = {}
    files["results_csv"] = _write_csv(
        out / RESULTS_CSV, rows,
        ["study", "scale", "point", "variant", *keys, "seed", "mode", "stage", "epoch", "group",
         "metric", "value"])
    files["summary_csv"] = _write_csv(
        out / SUMMARY_CSV, summary,
        ["study", "scale", "variant", *keys, "stage", "epoch", "group", "metric", "n", "mean",
         "ci95_low", "ci95_high"])
    figures: dict[str, Path] = {}
    if runs:
        if study.figure.get("kind") == "clip-noise":
            figures = plot_clip_noise(study, runs, out)
        else:
            figures = plot_sweep(study, runs, out)
    files.update(figures)
    text = render_report(study, points, runs, out, figures, manifest)
    path = out / REPORT_MD
    path.write_text(text, encoding="utf-8")
    files["report"] = path
    return files
