"""``disparate compare``: the non-private and the DP model on identical data and seeds.

Examples::

    disparate compare digits-underrep --seeds 3 --out runs/cmp
    disparate compare mnist-underrep --data-dir ~/data/mnist --set training.epochs=5
    disparate compare mnist-underrep --seeds 5 --jobs 2 --backend ray --resume

The runs are those of :func:`disparate.comparison.run_comparison` (one sweep point per seed
and mode, in ``--runs-dir``, default ``OUT/runs``); ``comparison.json``
(docs/results-format.md) holds per-group accuracies, drops, group sizes, the "poor get
poorer" rank correlation, the best-worst gaps and, over several seeds, 95% Student-t
intervals. Then the report is rendered (``disparate.report.write_report``) and
:func:`disparate.comparison.summary` printed. This module parses and prints.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from disparate import comparison as cmp
from disparate import report as rep
from disparate.commands.run import (
    ERR_INTERRUPTED,
    add_common_arguments,
    add_sweep_arguments,
    check_device,
    console_log,
    load_config,
)
from disparate.config import config_hash
from disparate.sweep import run_led

NAME = "compare"


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
    add_sweep_arguments(parser)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--resume", action="store_true",
                      help="continue unfinished runs from their checkpoints; reuse finished")
    what.add_argument("--overwrite", action="store_true",
                      help="train again even if --out already holds runs")
    parser.add_argument("--no-report", action="store_true", help="skip the report")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Train, compare, render the report and print the table; under torchrun, each run on
    all its processes, of which rank 0 alone prints and writes (docs/distributed.md)."""
    return run_led(check_device(args.device), lambda device: _compare(args, device))


def _compare(args: argparse.Namespace, device: str) -> int:
    start = time.perf_counter()
    config = load_config(args)
    seeds = cmp.seed_list(config, args.seeds)
    out = Path(args.out) if args.out else Path(
        "runs", f"{config.name}-compare-{config_hash(config)}")
    log = console_log(args.quiet)
    if log is not None:
        log(f"{config.name}: non-private vs {config.privacy.describe()}; seeds {seeds} -> {out}")
    try:
        comparison = cmp.run_comparison(config, out, seeds=seeds, runs_dir=args.runs_dir,
                                        resume=args.resume, overwrite=args.overwrite,
                                        backend=args.backend, jobs=args.jobs,
                                        address=args.address, device=device, log=log,
                                        echo=log)
    except KeyboardInterrupt:
        print(f"disparate: {ERR_INTERRUPTED.format(out=out)}", file=sys.stderr)
        return 130
    report = None if args.no_report else rep.write_report(out)
    print(cmp.summary(comparison, out, report, time.perf_counter() - start))
    return 0
