"""``disparate audit``: an empirical privacy audit of the DP run and its non-private twin.

Examples::

    disparate audit digits-underrep --seeds 3 --out runs/audit
    disparate audit mnist-underrep --data-dir ~/data/mnist --canaries 1000 --set training.epochs=5

Per group and overall: membership-inference attacks (loss threshold, offline LiRA) and the
one-run lower bound on epsilon (Steinke, Nasr, Jagielski 2023) beside the claimed epsilon.
Writes ``audit.json``, ``audit.md``, ``audit.html`` and ``audit_roc.png`` (docs/audit.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from disparate.commands.run import add_common_arguments, console_log, load_config
from disparate.comparison import seed_list
from disparate.config import config_hash

NAME = "audit"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``audit`` subcommand and set ``func=run``."""
    from disparate.audit import AuditOptions

    defaults = AuditOptions()
    parser = subparsers.add_parser(
        NAME,
        help="membership inference per group and a one-run lower bound on epsilon",
        description=(
            "Audit the DP model of EXPERIMENT and its non-private twin: per-group "
            "membership-inference attacks and an empirical lower bound on epsilon from one "
            "training run with canaries; write audit.json and a report."
        ),
    )
    add_common_arguments(parser)
    parser.add_argument("--canaries", type=int, default=defaults.canaries, metavar="M",
                        help="canaries, spread evenly over the groups (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=1, metavar="K",
                        help="number of seeds, starting at training.seed (default: 1)")
    parser.add_argument("--holdout", type=float, default=defaults.holdout_fraction,
                        metavar="F", help="share of each group held out as non-members "
                        "(default: %(default)s)")
    parser.add_argument("--reference-models", type=int, default=defaults.reference_models,
                        metavar="K", help="offline-LiRA reference models per mode, even "
                        "(default: %(default)s)")
    parser.add_argument("--canary-scores", default=",".join(defaults.canary_scores),
                        metavar="S[,S]", help="how canaries are scored: loss (black-box), "
                        "gradient (white-box: parameter change along the canary's gradient), "
                        "or both, Bonferroni-corrected (default: %(default)s)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="audit directory (default: runs/<experiment>-audit-<hash>)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the finished runs in the audit directory (same audit data, "
                        "checked) and continue unfinished ones; then attack again")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Train, attack, bound, write the report and print the headline."""
    from disparate.audit import AuditOptions, run_audit
    from disparate.audit.report import write_audit_report

    start = time.perf_counter()
    config = load_config(args)
    options = AuditOptions(canaries=args.canaries, holdout_fraction=args.holdout,
                           reference_models=args.reference_models,
                           canary_scores=tuple(s.strip() for s in args.canary_scores.split(",")))
    seeds = seed_list(config, args.seeds)
    out = Path(args.out) if args.out else Path(
        "runs", f"{config.name}-audit-{config_hash(config)}")
    log = console_log(args.quiet)
    if log is not None:
        log(f"{config.name}: audit of {config.privacy.describe()} and its non-private twin; "
            f"{options.canaries} canaries; seeds {seeds} -> {out}")
    audit = run_audit(config, out, seeds=seeds, options=options, device=args.device,
                      progress=False if args.quiet else None, log=log, resume=args.resume)
    paths = write_audit_report(out)
    print()
    print(audit["headline"])
    print(f"audit: {out / 'audit.json'}; report: {paths['markdown']}, {paths['html']}")
    print(f"wall time: {time.perf_counter() - start:.1f} s")
    return 0
