"""``disparate mitigate``: clipping policies compared at the same total epsilon.

Examples::

    disparate mitigate digits-underrep --target-epsilon 5 --seeds 3
    disparate mitigate mnist-underrep --methods dpsgd,dpsgd-f --target-epsilon 5 \\
        --set training.epochs=5 --out runs/mnist-mitigate
    disparate mitigate digits-underrep --target-epsilon 5 --tune 6 --tune-objective worst-group

Parses the arguments, calls :func:`disparate.mitigation.run_mitigation` and
:func:`disparate.mitigation.write_report`, and prints the summary table; what is trained and
written is described there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from disparate import mitigation as mit
from disparate.commands.run import ERR_INTERRUPTED, add_common_arguments, console_log, load_config
from disparate.comparison import seed_list
from disparate.config import config_hash
from disparate.privacy.policies import POLICIES

NAME = "mitigate"


# ------------------------------------------------------------------------------- CLI

def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``mitigate`` subcommand and set ``func=run``."""
    parser = subparsers.add_parser(
        NAME, help="compare clipping policies (DPSGD-F, DPSGD-Global-Adapt, ...) at one epsilon",
        description=("Train the non-private reference and each clipping policy of EXPERIMENT "
                     "at the same total epsilon on identical data and seeds; write "
                     "mitigation.json, mitigation.md, mitigation.html and mitigation.png."))
    add_common_arguments(parser)
    parser.add_argument("--methods", default=",".join(mit.DEFAULT_METHODS),
                        help="comma-separated methods, of " + ", ".join(POLICIES)
                        + " (default: %(default)s)")
    parser.add_argument("--target-epsilon", type=float, required=True, metavar="E",
                        help="the total epsilon every method is calibrated to")
    parser.add_argument("--seeds", type=int, default=1, metavar="K",
                        help="number of seeds, starting at training.seed (default: 1)")
    parser.add_argument("--tune", type=int, default=0, metavar="N",
                        help="N tuning trials per method on a validation split (default: 0)")
    parser.add_argument("--tune-objective", choices=tuple(mit.TUNE_OBJECTIVES),
                        default=mit.DEFAULT_TUNE_OBJECTIVE,
                        help="what a trial is scored by on the validation split: overall or "
                        "worst-group accuracy (default: %(default)s)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output directory (default: runs/<experiment>-mitigate-<hash>)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--resume", action="store_true",
                      help="continue unfinished runs from their checkpoints; reuse finished")
    what.add_argument("--overwrite", action="store_true",
                      help="train again even if --out already holds runs")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Check everything, train, write mitigation.json, the report and the figure."""
    start = time.perf_counter()
    methods = mit.parse_methods(args.methods)
    mit.check_target(args.target_epsilon)
    mit.check_tuning(args.tune, args.tune_objective)
    config = load_config(args)
    seeds = seed_list(config, args.seeds)
    out = Path(args.out) if args.out else Path(
        "runs", f"{config.name}-mitigate-{config_hash(config)}")
    log = console_log(args.quiet)
    if log is not None:
        log(f"{config.name}: non-private vs {', '.join(methods)} at epsilon "
            f"{args.target_epsilon:g}; seeds {seeds} -> {out}")
    try:
        mitigation = mit.run_mitigation(
            config, out, methods=methods, target_epsilon=args.target_epsilon, seeds=seeds,
            tune_trials=args.tune, tune_objective=args.tune_objective, resume=args.resume,
            overwrite=args.overwrite, device=args.device,
            progress=False if args.quiet else None, log=log, echo=log)
    except KeyboardInterrupt:
        print(f"disparate: {ERR_INTERRUPTED.format(out=out)}", file=sys.stderr)
        return 130
    files = mit.write_report(mitigation, out)
    print()
    print(mit.format_summary_table(mitigation))
    print()
    print(mit.tuning_text(mitigation))
    print(f"mitigation: {out / mit.MITIGATION_FILE}; report: {files['report']} "
          f"({files['report_html'].name}); figure: {files['figure']}")
    print(f"wall time: {time.perf_counter() - start:.1f} s")
    return 0
