"""Federated comparisons (``disparate federated compare``, Figure 3): every variant of an
experiment x seeds as points of a sweep over the run store that studies and comparisons use.

For each seed s, ``training.seed`` is set to s (the participants' data, ``data.seed``, is the
same for every run) and every variant of :func:`~disparate.federated.simulation.variant_configs`
is one point, an ordinary run directory ``RUNS/<config_hash>/``
(:func:`disparate.sweep.make_point`; ``RUNS`` is ``OUT/runs`` unless a shared store is given),
trained by :func:`~disparate.federated.simulation.train_federated`
(:func:`disparate.sweep.train_point`). So a comparison resumes where it stopped, locks each
run, runs on the local pool or the Ray backend, and reuses -- or lends to a study -- every
finished run of the same config.

``OUT`` then holds ``comparison-<variant>.json`` for every variant against the non-private
baseline (the format of ``comparison.json``, vocabulary buckets as groups), ``figure3.json``
and the report (:mod:`disparate.federated.report`). Both files are of schema version 2 and
name the run directories relative to ``OUT``; version 1 (no ``schema_version``) kept them in
``OUT/seed-<s>/<variant>/``: the report still reads them, and a comparison run again in such a
directory reuses their finished runs, and resumes their interrupted ones, where they lie
(:func:`disparate.comparison.with_v1_runs`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from disparate import fileio, records, rundir
from disparate import results as res
from disparate.comparison import RUNS_SUBDIR, check_run_dirs, sweep_all, with_v1_runs
from disparate.config import ExperimentConfig, apply_overrides, config_hash
from disparate.federated.report import (
    FIGURE3_FILE,
    FIGURE3_SCHEMA_VERSION,
    write_federated_report,
)
from disparate.federated.simulation import load_federated_data, variant_configs
from disparate.sweep import FINISHED, SweepPoint, make_point, point_status

__all__ = [
    "compare_federated",
    "comparison_points",
    "describe_variant",
    "figure3_data",
]

Log = Callable[[str], None]


def comparison_points(variants: Mapping[str, ExperimentConfig], seeds: Sequence[int],
                      runs_dir: str | Path) -> list[SweepPoint]:
    """The points of a federated comparison in ``runs_dir``: per seed, every variant (in the
    order of ``variants``) with ``training.seed`` set to the seed, labelled
    ``{"variant": name, "seed": s}``."""
    points = []
    for seed in seeds:
        for name, base in variants.items():
            cfg = (apply_overrides(base, [f"training.seed={seed}"])
                   if seed != base.training.seed else base)
            points.append(make_point(cfg, runs_dir, {"variant": name, "seed": seed}))
    return points


def compare_federated(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    seeds: Sequence[int] = (0,),
    overrides: Sequence[str] = (),
    only: Sequence[str] | None = None,
    runs_dir: str | Path | None = None,
    resume: bool = True,
    overwrite: bool = False,
    backend: str = "local",
    jobs: int = 1,
    threads: int | None = None,
    address: str | None = None,
    device: str = "cpu",
    log: Log | None = None,
    echo: Log | None = None,
    progress: bool | None = False,
) -> dict[str, Any]:
    """Train every variant for every seed and write the comparison files into ``out_dir``.

    A run that already holds files (finished, interrupted or failed) is an error unless
    ``resume`` (the default: continue it; a finished run is reused) or ``overwrite`` (train it
    again). ``only`` restricts the variants trained; the finished runs of the others are
    reported all the same. A run that fails or is busy (another process trains it) raises,
    after the other runs, and no file is written.

    Args:
        config: A federated experiment (its ``federated.variants``, or non-private + itself).
        out_dir: The comparison directory.
        seeds: The seeds (each sets ``training.seed``).
        overrides: ``--set`` values, applied to every variant after its own.
        only: The names of the variants to train (``None``: all).
        runs_dir: The run store (default ``out_dir/runs``); a study's store shares its runs.
        resume, overwrite: See above (``overwrite`` wins when both are set).
        backend, jobs, threads, address: As for :func:`disparate.sweep.run_sweep`.
        device: Torch device of every run.
        log: Called with one line per run as it ends (and notes).
        echo: Called with the runs' per-round lines (in-process runs only).
        progress: A tqdm bar over the rounds of in-process runs (True, or None: on a
            terminal).

    Returns ``{"figure3": ..., "comparisons": {variant: comparison}}``.
    """
    out = Path(out_dir)
    variants = variant_configs(config, overrides)
    if only is not None:
        unknown = [name for name in only if name not in variants]
        if unknown:
            raise ValueError(f"only={list(only)!r}: {unknown[0]!r} is not a variant; expected "
                             f"names among {list(variants)}")
    runs = Path(runs_dir) if runs_dir is not None else out / RUNS_SUBDIR
    points = comparison_points(variants, seeds, runs)
    if not overwrite:
        points = with_v1_runs(out, points, log)
    trained = [p for p in points if only is None or p.labels["variant"] in only]
    check_run_dirs(trained, resume=resume, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    pending = [p for p in trained if point_status(p) != FINISHED]
    if pending:
        load_federated_data(config, log=log)  # preprocessed once, before the runs read it
    if log is not None:
        for p in pending:
            log(f"== {p.labels['variant']} (seed {p.labels['seed']}): "
                f"{describe_variant(p.config)}")
    sweep_all(trained, backend=backend, jobs=jobs, threads=threads, address=address,
              device=device, log=log, echo=echo, progress=progress)

    results: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    dirs: dict[str, list[str]] = {name: [] for name in variants}
    for p in points:
        name = p.labels["variant"]
        dirs[name].append(fileio.relative_path(p.run_dir, out))
        finished = rundir.finished_results(p.run_dir, p.config)
        if finished is not None:
            results[name].append(finished)
    complete = {k: v for k, v in results.items() if len(v) == len(seeds)}
    baseline = next(k for k in variants if variants[k].privacy.mode == "non-private")
    comparisons: dict[str, Any] = {}
    if baseline in complete:
        for name in complete:
            if name == baseline:
                continue
            comp = res.compare_runs(complete[baseline], complete[name], seeds=list(seeds),
                                    highlight=config.evaluation.highlight,
                                    experiment=config.name,
                                    run_dirs=[{"non_private": a, "dp": b} for a, b in
                                              zip(dirs[baseline], dirs[name], strict=True)])
            comp["variant"] = name
            comp["baseline"] = baseline
            comparisons[name] = records.ComparisonResult.from_json(
                {**comp, records.SCHEMA_KEY: records.COMPARISON_SCHEMA_VERSION}).to_json()
            res.write_json(out / f"comparison-{name}.json", comparisons[name])
    figure = figure3_data(config, variants, complete, seeds, dirs)
    res.write_json(out / FIGURE3_FILE, figure)
    write_federated_report(out)
    return {"figure3": figure, "comparisons": comparisons}


def describe_variant(config: ExperimentConfig) -> str:
    """One line: rounds, C and the DP-FedAvg mechanism of a federated config."""
    p, fed = config.privacy, config.federated
    if p.mode == "dp":
        noise = (f"z={p.noise_multiplier:g}" if p.noise_multiplier is not None
                 else f"z for epsilon={p.target_epsilon:g}")
        mech = f"DP-FedAvg, S={p.max_grad_norm:g}, {noise}"
    elif p.mode == "clip-only":
        mech = f"updates clipped to S={p.max_grad_norm:g}, no noise"
    elif p.mode == "noise-only":
        mech = f"noise std {p.noise_std:g} on the sum, no clipping"
    else:
        mech = "plain FedAvg (non-private)"
    return f"{mech}, {fed.rounds} rounds of C={fed.participants_per_round}"


def figure3_data(config: ExperimentConfig, variants: Mapping[str, ExperimentConfig],
                 results: Mapping[str, Sequence[Mapping[str, Any]]], seeds: Sequence[int],
                 dirs: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """``figure3.json``: per variant the bucket accuracies and output diversity over seeds."""
    out_variants = []
    bucket_names = config.federated.bucket_names()
    for name, cfg in variants.items():
        runs = list(results.get(name, []))
        entry: dict[str, Any] = {
            "name": name, "mode": cfg.privacy.mode, "rounds": cfg.federated.rounds,
            "config_hash": config_hash(cfg), "runs": list(dirs.get(name, [])),
            "complete": len(runs) == len(seeds),
            "max_grad_norm": cfg.privacy.max_grad_norm if cfg.privacy.clipping else None,
            "noise_multiplier": cfg.privacy.noise_multiplier,
        }
        if runs:
            entry.update(
                overall_accuracy=res.summarize([r["overall_accuracy"] for r in runs]),
                mean_participant_accuracy=res.summarize(
                    [r["mean_participant_accuracy"] for r in runs]),
                distinct_predicted=res.summarize(
                    [r["output_diversity"]["distinct_predicted"] for r in runs]),
                rank_counts=runs[0]["output_diversity"]["rank_counts"],
                top_predicted=runs[0]["output_diversity"]["top_predicted"][:10],
                privacy_statement=runs[0]["privacy"]["statement"],
                epsilon=runs[0]["privacy"].get("epsilon"),
                wall_time_s=sum(float(r.get("wall_time_s") or 0) for r in runs),
                mean_round_s=res.summarize([r.get("mean_round_s") for r in runs]),
                groups=[{
                    "group": g,
                    "participants": runs[0]["groups"][i]["participants"],
                    "accuracy": res.summarize([r["groups"][i]["accuracy"] for r in runs]),
                    "token_accuracy": res.summarize([r["groups"][i]["token_accuracy"]
                                                     for r in runs]),
                    "update_norm": res.summarize([r["groups"][i]["grad_norm"] for r in runs]),
                    "clipped_fraction": res.summarize([r["groups"][i]["clipped_fraction"]
                                                       for r in runs]),
                } for i, g in enumerate(bucket_names)],
            )
        out_variants.append(entry)
    return {records.SCHEMA_KEY: FIGURE3_SCHEMA_VERSION,
            "experiment": config.name, "description": config.description,
            "seeds": [int(s) for s in seeds], "buckets": bucket_names,
            "vocab_buckets": list(config.federated.vocab_buckets), "variants": out_variants}
