"""``disparate compare``: the non-private and the DP model on identical data and seeds.

Examples::

    disparate compare digits-underrep --seeds 3 --out runs/cmp
    disparate compare mnist-underrep --data-dir ~/data/mnist --set training.epochs=5

For each seed s, the config's ``data.seed`` and ``training.seed`` are set to s, the data are
built once, and ``seed-<s>/non-private`` (``config.non_private()``) and ``seed-<s>/dp`` are
trained on them. ``comparison.json`` (docs/results-format.md) holds per-group accuracies,
drops, group sizes, the "poor get poorer" rank correlation, the best-worst gaps and, over
several seeds, 95% Student-t intervals. Then the report is rendered
(``disparate.report.write_report``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from disparate import results as res
from disparate.commands.run import (
    ERR_INTERRUPTED,
    add_common_arguments,
    console_log,
    load_config,
)
from disparate.config import ExperimentConfig, config_hash, config_hashes
from disparate.data import DatasetNotFoundError

NAME = "compare"

ERR_NOT_DP = (
    "compare trains a DP model against the non-private one, but {name!r} is in privacy mode "
    "{mode!r}; expected mode 'dp' (privacy.clipping=true, privacy.noise=true and a "
    "noise_multiplier or target_epsilon)"
)
ERR_SEEDS = "--seeds={value!r}: expected an integer >= 1"


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


def run_comparison(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    seeds: Sequence[int],
    resume: bool = False,
    overwrite: bool = False,
    device: str = "cpu",
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train both models for every seed, write and return ``comparison.json``.

    A run directory that already holds a run is an error unless ``overwrite`` (start it
    again) or ``resume`` (continue it from its checkpoint; a finished run is reused).
    """
    from disparate.training import prepare_data, train

    if config.privacy.mode != "dp":
        raise ValueError(ERR_NOT_DP.format(name=config.name, mode=config.privacy.mode))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    non_private: list[dict[str, Any]] = []
    dp: list[dict[str, Any]] = []
    run_dirs: list[dict[str, str]] = []
    configs: dict[str, ExperimentConfig] = {}
    for seed in seeds:
        cfg = seeded(config, seed)
        try:
            splits = prepare_data(cfg)
        except DatasetNotFoundError as exc:
            raise ValueError(str(exc)) from exc
        dirs = {"seed": str(seed)}
        for key, label, run_cfg in (("non_private", "non-private", cfg.non_private()),
                                    ("dp", "dp", cfg)):
            run_dir = out / f"seed-{seed}" / label
            dirs[key] = str(run_dir.relative_to(out))
            configs.setdefault(key, run_cfg)
            reuse = resume and _finished(run_dir, run_cfg)
            if reuse:
                result = res.load_results(run_dir)
                if log is not None:
                    log(f"reusing finished run {run_dir}")
            else:
                result = train(run_cfg, run_dir, resume=resume, overwrite=overwrite,
                               splits=splits, device=device, progress=progress, log=log).results
            (non_private if key == "non_private" else dp).append(result)
        run_dirs.append(dirs)
    comparison = res.compare_runs(non_private, dp, seeds=seeds,
                                  highlight=config.evaluation.highlight,
                                  experiment=config.name, run_dirs=run_dirs,
                                  configs=configs)
    res.write_json(out / res.COMPARISON_FILE, comparison)
    _write_group_metrics(out, run_dirs)
    return comparison


def _write_group_metrics(out: Path, run_dirs: list[dict[str, str]]) -> None:
    """``group_metrics.csv``: the tidy metrics rows of every run, with seed and mode."""
    from disparate.metrics import GROUP_METRICS_CSV, PREDICTIONS_FILE, Predictions, write_rows

    rows = [{"seed": int(d["seed"]), "mode": mode, **row}
            for d in run_dirs for mode in ("non_private", "dp")
            if (out / d[mode] / PREDICTIONS_FILE).exists()
            for row in Predictions.load(out / d[mode]).metrics().to_rows()]
    write_rows(out / GROUP_METRICS_CSV, rows)


def _finished(run_dir: Path, config: ExperimentConfig) -> bool:
    try:
        result = res.load_results(run_dir)
    except (FileNotFoundError, ValueError):
        return False
    return result.get("config_hash") in config_hashes(config)


def write_report(out_dir: str | Path) -> Any:
    """Render the report with ``disparate.report.write_report`` if that module exists.

    Returns what it returns, or ``None`` (with a note on stderr) when it is not installed.
    """
    try:
        from disparate.report import write_report as render
    except ModuleNotFoundError as exc:
        if exc.name != "disparate.report":
            raise
        print("note: disparate.report is not available; no report written", file=sys.stderr)
        return None
    return render(out_dir)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``compare`` subcommand and set ``func=run``."""
    parser = subparsers.add_parser(
        NAME,
        help="train non-private and DP models on identical data and compare groups",
        description=(
            "Train the non-private baseline and the DP model of EXPERIMENT on identical data "
            "and seeds, write comparison.json and a report, and print a per-group table."
        ),
    )
    add_common_arguments(parser)
    parser.add_argument("--seeds", type=int, default=1, metavar="K",
                        help="number of seeds, starting at training.seed (default: 1)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="comparison directory (default: runs/<experiment>-compare-<hash>)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--resume", action="store_true",
                      help="continue unfinished runs from their checkpoints; reuse finished")
    what.add_argument("--overwrite", action="store_true",
                      help="train again even if --out already holds runs")
    parser.add_argument("--no-report", action="store_true", help="skip the report")
    parser.set_defaults(func=run)
    return parser


def print_summary(comparison: dict[str, Any], out: Path, report: Any, elapsed: float) -> None:
    """The per-group table, where the files are, and the wall time."""
    print()
    print(f"{comparison['experiment']}: non-private vs DP, accuracy per group")
    print(res.format_comparison_table(comparison))
    print()
    print(f"comparison: {out / res.COMPARISON_FILE}")
    if report is not None:
        paths = [out / name for name in ("report.md", "report.html") if (out / name).exists()]
        if isinstance(report, str | Path) and Path(report) not in paths:
            paths.insert(0, Path(report))
        print(f"report: {', '.join(str(p) for p in paths) or out}")
    print(f"wall time: {elapsed:.1f} s")


def run(args: argparse.Namespace) -> int:
    """Train, compare, render the report and print the table."""
    start = time.perf_counter()
    config = load_config(args)
    seeds = seed_list(config, args.seeds)
    out = Path(args.out) if args.out else Path(
        "runs", f"{config.name}-compare-{config_hash(config)}")
    log = console_log(args.quiet)
    if log is not None:
        log(f"{config.name}: non-private vs {config.privacy.describe()}; seeds {seeds} -> {out}")
    try:
        comparison = run_comparison(config, out, seeds=seeds, resume=args.resume,
                                    overwrite=args.overwrite, device=args.device,
                                    progress=False if args.quiet else None, log=log)
    except KeyboardInterrupt:
        print(f"disparate: {ERR_INTERRUPTED.format(out=out)}", file=sys.stderr)
        return 130
    report = None if args.no_report else write_report(out)
    print_summary(comparison, out, report, time.perf_counter() - start)
    return 0
