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

ERR_DATA_DIR = (
    "--data-dir {path}: no such directory (it is not created); check the path, or create "
    "it first to --download into it"
)
ERR_DEVICE = "--device {device!r}: not a torch device; expected e.g. 'cpu', 'cuda', 'cuda:1', 'mps'"
ERR_NO_CUDA = (
    "--device {device!r}: CUDA is not available on this machine (torch {version}{build}); "
    "use --device cpu"
)
ERR_CUDA_INDEX = "--device {device!r}: this machine has {count} CUDA device(s), 0..{last}"
ERR_NO_MPS = "--device {device!r}: Apple's MPS is not available on this machine; use --device cpu"
ERR_INTERRUPTED = (
    "interrupted; {out} keeps the last finished epoch's checkpoint: continue with the same "
    "command and --resume"
)


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """--runs-dir, --jobs, --backend and --address: how a command trains its runs over the run
    store (compare, federated compare, study)."""
    from disparate.sweep import BACKENDS

    parser.add_argument("--runs-dir", metavar="DIR", default=None,
                        help="where the run directories go (default: OUT/runs); give studies "
                             "and comparisons the same one to share the runs they have in "
                             "common")
    parser.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                        help="runs trained at the same time (default 1: in this process)")
    parser.add_argument("--backend", choices=BACKENDS, default="local",
                        help="'local' process pool (default) or 'ray' (pip install "
                             "'disparate[ray]')")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (with --backend ray), e.g. 'auto'; "
                             "default: start a local Ray instance")


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


def check_device(device: str) -> str:
    """``device`` if torch can train on it here, else a ValueError saying why (nothing made)."""
    import torch

    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(ERR_DEVICE.format(device=device)) from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            build = ", a CPU-only build" if torch.version.cuda is None else (
                f" built for CUDA {torch.version.cuda}, but no usable GPU or driver")
            raise ValueError(ERR_NO_CUDA.format(device=device, version=torch.__version__,
                                                build=build))
        count = torch.cuda.device_count()
        if d.index is not None and d.index >= count:
            raise ValueError(ERR_CUDA_INDEX.format(device=device, count=count, last=count - 1))
    if d.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(ERR_NO_MPS.format(device=device))
    return device


def load_config(args: argparse.Namespace) -> ExperimentConfig:
    """The experiment of ``args`` with --set, --data-dir and --download applied; --device and
    --data-dir are checked first, so that a bad one leaves nothing behind."""
    check_device(args.device)
    config = load_experiment(args.experiment, args.overrides)
    changes: dict[str, Any] = {}
    if args.data_dir is not None:
        data_dir = Path(args.data_dir).expanduser()
        if not data_dir.exists():
            raise ValueError(ERR_DATA_DIR.format(path=data_dir))
        changes["data_dir"] = str(data_dir)
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
    parser.add_argument("--tensorboard", metavar="DIR", default=None,
                        help="also write per-epoch scalars (per-group accuracy, gradient norm, "
                             "clipped fraction, epsilon) for TensorBoard to DIR")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Train and print where the results are; under torchrun, one run on all its processes
    (docs/distributed.md) of which rank 0 alone prints and writes."""
    from disparate import distributed
    from disparate.training import train

    config = load_config(args)
    launch = distributed.Launch.from_environment()
    follower = launch is not None and launch.rank > 0
    if follower:
        args = argparse.Namespace(**{**vars(args), "quiet": True, "tensorboard": None})
    if args.no_dp:
        config = config.non_private()
    out = Path(args.out) if args.out else Path(
        "runs", f"{config.name}-{config.privacy.mode}-{config_hash(config)}")
    log = console_log(args.quiet)
    board = None
    if args.tensorboard is not None:
        from disparate.tensorboard import TensorBoardLogger

        try:
            board = TensorBoardLogger(args.tensorboard)
        except ImportError as exc:
            raise ValueError(str(exc)) from exc
    if log is not None:
        log(f"{config.name}: {config.privacy.describe()} -> {out}")
    try:
        with distributed.launched(args.device) as device:
            result = train(config, out, resume=args.resume, overwrite=args.overwrite,
                           device=device, progress=False if args.quiet else None, log=log,
                           on_epoch=board)
    except DatasetNotFoundError as exc:
        raise ValueError(str(exc)) from exc
    except KeyboardInterrupt:
        print(f"disparate: {ERR_INTERRUPTED.format(out=out)}", file=sys.stderr)
        return 130
    finally:
        if board is not None:
            board.close()
    if follower:
        return 0
    r = result.results
    acc = {g["group"]: g["accuracy"] for g in r["groups"]}
    parts = [f"test accuracy {100 * r['overall_accuracy']:.2f}%"]
    parts += [f"group {h}: {100 * acc[h]:.1f}%" for h in config.evaluation.highlight
              if acc.get(h) is not None]
    print(f"{config.name} ({r['mode']}): " + ", ".join(parts))
    print(r["privacy"]["statement"])
    print(f"results: {out / 'results.json'}")
    return 0
