"""``disparate demo``: the paper's Section 5 effect in under two minutes on two CPU cores.

``compare`` on the preset ``digits-underrep``: scikit-learn's bundled 8x8 digits (no
download) with class "8" reduced to 10 training examples (about the paper's 12:1), the
non-private model and DP-SGD trained on identical data for ``DEMO_SEEDS`` seeds, then the
per-class table (classes 8 and 2 highlighted) and the report.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from disparate import comparison as cmp
from disparate import report as rep
from disparate.commands.run import console_log
from disparate.config import load_experiment

NAME = "demo"
PRESET = "digits-underrep"
DEMO_SEEDS = 3
DEFAULT_OUT = "runs/demo"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``demo`` subcommand and set ``func=run``."""
    parser = subparsers.add_parser(
        NAME,
        help=f"compare non-private and DP training on {PRESET} (about a minute on a laptop)",
        description=(
            f"Run 'disparate compare {PRESET} --seeds {DEMO_SEEDS}': digits with class 8 "
            "under-represented, non-private vs DP-SGD, per-class table and report."
        ),
    )
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                        help="comparison directory, replaced if it exists "
                             "(default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=DEMO_SEEDS, metavar="K",
                        help="number of seeds (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a preset value (repeatable)")
    parser.add_argument("--quiet", action="store_true",
                        help="no per-epoch lines and no progress bar")
    parser.add_argument("--no-report", action="store_true", help="skip the report")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Train, compare, print the table and where the report is."""
    start = time.perf_counter()
    config = load_experiment(PRESET, args.overrides)
    seeds = cmp.seed_list(config, args.seeds)
    out = Path(args.out)
    print(f"demo: {PRESET}, class 8 has "
          f"{config.data.reduce.get('8', 'all')} training examples; "
          f"non-private vs {config.privacy.describe()}; seeds {seeds}")
    log = console_log(args.quiet)
    comparison = cmp.run_comparison(config, out, seeds=seeds, overwrite=True, log=log, echo=log)
    report = None if args.no_report else rep.write_report(out)
    print(cmp.summary(comparison, out, report, time.perf_counter() - start))
    explanation = cmp.explain(comparison)
    if explanation:
        print(explanation)
    return 0

