"""``disparate study NAME``: run a hyperparameter study (paper Figures 4 and 5) end to end.

NAME is a shipped study (``fig4``, ``fig5a``, ``fig5b``, ``fig5c``, ``fig5d``; ``--list``
shows them) or the path of a study YAML file. Every grid point is a run directory keyed by
the hash of its resolved config: running the command again skips finished points, resumes
interrupted ones from their checkpoints and retries failed ones. Then the tidy CSV, the
figures, ``report.md`` and ``report.html`` are (re)written.

Examples::

    disparate study fig4 --scale quick --jobs 2 --data-dir ~/data/mnist
    disparate study fig5b --scale paper --seeds 3 --backend ray --address auto
    disparate study my-study.yaml --scale quick --set training.lr=0.1 \\
        --grid training.batch_size=[128,512]
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from disparate.commands.run import add_sweep_arguments
from disparate.study import (
    expand,
    list_studies,
    load_study,
    parse_grid_option,
    run_study,
)
from disparate.sweep import point_status, run_led, threads_per_point

NAME = "study"
DEFAULT_OUT = Path("runs") / "studies"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``study`` subcommand and set ``func=run``."""
    parser = subparsers.add_parser(
        NAME,
        help="run a hyperparameter study (paper Figures 4 and 5): grid, resume, CSV, plots",
        description=(
            "Run every point of a study (a base experiment plus variants and a grid over "
            "config keys), skipping finished points and resuming interrupted ones, then "
            "write results.csv (one row per run x epoch x group x metric), summary.csv "
            "(mean and 95%% interval over seeds), the figures, report.md and report.html. "
            "Shipped "
            "studies: fig4 (clipping and noise), fig5a (epsilon), fig5b (batch size), "
            "fig5c (epochs), fig5d (size of the under-represented class)."
        ),
        epilog=("A failed point is recorded (error.json in its run directory, listed in the "
                "report) without stopping the others; the exit status is 1 if any point is "
                "not finished."),
    )
    parser.add_argument("study", metavar="NAME", nargs="?",
                        help="a shipped study (see --list) or a study .yaml file")
    parser.add_argument("--list", action="store_true", help="list the shipped studies")
    parser.add_argument("--scale", default="quick",
                        help="scale of the study: 'quick' (reduced, default), 'paper' (the "
                             "paper's full setting) or 'smoke' (seconds, for tests)")
    parser.add_argument("--seeds", type=int, default=None, metavar="K",
                        help="seeds per point (training.seed 0..K-1); default: the study's")
    parser.add_argument("--threads", type=int, default=None, metavar="T",
                        help="torch threads per point (default: cores // jobs)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="study directory (default runs/studies/NAME-SCALE)")
    add_sweep_arguments(parser)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="config override for every point (repeatable), e.g. "
                             "training.lr=0.1")
    parser.add_argument("--grid", dest="grid", action="append", default=[],
                        metavar="KEY=[V1,V2]",
                        help="replace the values of a grid key (repeatable), e.g. "
                             "training.batch_size=[128,512]")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="where the dataset files are (sets data.data_dir)")
    parser.add_argument("--skip-failed", action="store_true",
                        help="leave points that failed before as failed instead of retrying")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the points and their status; train nothing")
    parser.add_argument("--report-only", action="store_true",
                        help="write the CSVs, figures and report from what is on disk")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the study; 0 when every point is finished, 1 otherwise, 2 for usage errors. Under
    torchrun each point trains on all its processes, of which rank 0 alone prints and writes
    (docs/distributed.md)."""
    return run_led("cpu", lambda _device: _study(args))


def _study(args: argparse.Namespace) -> int:
    if args.list:
        for name in list_studies():
            study = load_study(name, scale="paper")
            print(f"{name:8s} {study.title}  (scales: {', '.join(study.scales)})")
        return 0
    if not args.study:
        raise ValueError("study: expected NAME (a shipped study or a .yaml file); see --list")
    if args.jobs < 1:
        raise ValueError(f"--jobs={args.jobs}: expected an integer >= 1")
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds={args.seeds}: expected an integer >= 1")
    if args.address and args.backend != "ray":
        raise ValueError("--address applies only with --backend ray")
    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    grid = dict(parse_grid_option(g) for g in args.grid)
    study = load_study(args.study, scale=args.scale, overrides=overrides, grid=grid,
                       seeds=args.seeds)
    out = Path(args.out) if args.out else DEFAULT_OUT / f"{study.name}-{study.scale}"
    if args.dry_run:
        runs_dir = Path(args.runs_dir) if args.runs_dir else out / "runs"
        points = expand(study, runs_dir)
        print(f"study {study.name} ({study.scale}): {len(points)} points, runs in {runs_dir}")
        for p in points:
            print(f"  {p.key}  {point_status(p):8s}  {p.describe()}")
        return 0
    threads = args.threads or threads_per_point(args.jobs)
    command = "disparate " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if (
        sys.argv and Path(sys.argv[0]).name in ("disparate", "__main__.py")) else None
    outcome = run_study(
        study, out, runs_dir=args.runs_dir, backend=args.backend, jobs=args.jobs,
        threads=threads, address=args.address, retry_failed=not args.skip_failed,
        train=not args.report_only, command=command,
        log=lambda line: print(line, flush=True))
    files = outcome["files"]
    print(f"report:  {files['report']}")
    print(f"csv:     {files['results_csv']}, {files['summary_csv'].name}")
    figures = [p.name for k, p in files.items() if p.suffix == ".png"]
    if figures:
        print(f"figures: {', '.join(figures)}")
    if not outcome["ok"]:
        print("some points are not finished (see the report); run the command again to "
              "retry them", file=sys.stderr)
        return 1
    return 0
