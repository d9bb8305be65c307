"""``disparate run``: train one experiment and write its run directory.

Examples::

    disparate run digits-underrep
    disparate run mnist-underrep --data-dir ~/data/mnist --set training.epochs=5 --out runs/m5
    disparate run mnist-underrep --no-dp --out runs/m-np
    disparate run mnist-underrep --out runs/m5 --resume      # continue after an interruption

The run directory holds config.yaml, metrics.jsonl, results.json and checkpoint.pt
(docs/results-format.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from disparate.config import ExperimentConfig, check_registered, config_hash, load_experiment
from disparate.data import DatasetNotFoundError, list_datasets
from disparate.models import list_models

NAME = "run"


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """EXPERIMENT, --set, --data-dir, --download, --device and --quiet (shared with compare)."""
    parser.add_argument("experiment", metavar="EXPERIMENT",
                        help="a preset name (see 'disparate list') or a path to a .yaml file")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a config value, e.g. --set training.epochs=5 "
                             "(repeatable; VALUE is parsed as YAML)")
    parser.add_argument("--data-dir", metavar="DIR", default=None,
                        help="where the dataset files are (sets data.data_dir)")
    parser.add_argument("--download", action="store_true",
                        help="allow downloading the dataset (sets data.download=true)")
    parser.add_argument("--device", default="cpu",
                        help="torch device to train on (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true",
                        help="no per-epoch lines and no progress bar")


def load_config(args: argparse.Namespace) -> ExperimentConfig:
    """The experiment of ``args`` with --set, --data-dir and --download applied."""
    config = load_experiment(args.experiment, args.overrides)
    changes: dict[str, Any] = {}
    if args.data_dir is not None:
        changes["data_dir"] = str(Path(args.data_dir).expanduser())
    if args.download:
        changes["download"] = True
    if changes:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, **changes))
    if getattr(config, "federated", None) is not None:
        from disparate.training import ERR_FEDERATED

        raise ValueError(ERR_FEDERATED.format(name=config.name))
    check_registered(config, datasets=list_datasets(), models=list_models())
    return config


def console_log(quiet: bool) -> Any:
    """A per-epoch logger that keeps tqdm's bar intact (None when quiet)."""
    if quiet:
        return None
    from tqdm.auto import tqdm

    def log(line: str) -> None:
        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()

    return log


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``run`` subcommand and set ``func=run``."""
    parser = subparsers.add_parser(
        NAME,
        help="train one experiment (DP by default) and write its results",
        description=(
            "Train EXPERIMENT with the one training loop and write config.yaml, "
            "metrics.jsonl, results.json and checkpoint.pt to --out."
        ),
    )
    add_common_arguments(parser)
    parser.add_argument("--no-dp", action="store_true",
                        help="train the non-private baseline (no clipping, no noise) instead")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="run directory (default: runs/<experiment>-<mode>-<config hash>)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--resume", action="store_true",
                      help="continue from the run directory's last checkpoint")
    what.add_argument("--overwrite", action="store_true",
                      help="start again even if the run directory already holds a run")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Train and print where the results are."""
    from disparate.training import train

    config = load_config(args)
    if args.no_dp:
        config = config.non_private()
    out = Path(args.out) if args.out else Path(
        "runs", f"{config.name}-{config.privacy.mode}-{config_hash(config)}")
    log = console_log(args.quiet)
    if log is not None:
        log(f"{config.name}: {config.privacy.describe()} -> {out}")
    try:
        result = train(config, out, resume=args.resume, overwrite=args.overwrite,
                       device=args.device, progress=False if args.quiet else None, log=log)
    except DatasetNotFoundError as exc:
        raise ValueError(str(exc)) from exc
    r = result.results
    acc = {g["group"]: g["accuracy"] for g in r["groups"]}
    parts = [f"test accuracy {100 * r['overall_accuracy']:.2f}%"]
    parts += [f"group {h}: {100 * acc[h]:.1f}%" for h in config.evaluation.highlight
              if acc.get(h) is not None]
    print(f"{config.name} ({r['mode']}): " + ", ".join(parts))
    print(r["privacy"]["statement"])
    print(f"results: {out / 'results.json'}")
    return 0
