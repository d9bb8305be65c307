"""Console entry point ``disparate``: one argparse subcommand per module in ``commands/``.

To add a subcommand, write ``disparate/commands/<name>.py`` with ``add_parser(subparsers)``
(registering the subparser and setting ``func=run``) and ``run(args) -> int``, and add it
to :data:`SUBCOMMANDS` with its one-line help.

Only the module of the subcommand given on the command line is imported: ``disparate
--help`` imports none, ``disparate epsilon`` only the accountant (no torch, no matplotlib).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from types import ModuleType
from typing import Any

from disparate import __version__
from disparate.fileio import CorruptFileError, RunDirBusyError

#: Subcommand -> (its module in ``disparate.commands``, its one-line help in ``--help``),
#: in the order ``--help`` lists them. A test checks each help against its module's.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "epsilon": ("epsilon", "privacy loss epsilon of DP-SGD (RDP, classic RDP, PLD) or noise "
                           "for a target"),
    "report": ("report", "render report.md, report.html and PNG plots of a run or comparison "
                         "directory"),
    "study": ("study", "run a hyperparameter study (paper Figures 4 and 5): grid, resume, CSV, "
                       "plots"),
    "run": ("run", "train one experiment (DP by default) and write its results"),
    "compare": ("compare", "train non-private and DP models on identical data and compare "
                           "groups"),
    "list": ("list", "list experiments (presets), datasets and models"),
    "demo": ("demo", "compare non-private and DP training on digits-underrep (about a minute "
                     "on a laptop)"),
    "federated": ("federated", "DP-FedAvg language model on Reddit: preprocess, run, compare "
                               "(Figure 3)"),
    "check-model": ("check_model", "run the step-1 self-check of an experiment's model on its "
                                   "first batch"),
    "audit": ("audit", "membership inference per group and a one-run lower bound on epsilon"),
    "mitigate": ("mitigate", "compare clipping policies (DPSGD-F, DPSGD-Global-Adapt, ...) at "
                             "one epsilon"),
}

PROG = "disparate"
_TRAINING = "disparate.training"
#: The subcommands that run on every process of a torchrun launch (docs/distributed.md).
DISTRIBUTED_COMMANDS = ("run", "compare", "study")
ERR_NOT_DISTRIBUTED = (
    "'disparate {command}' runs on one process, but torchrun started {world} "
    "(WORLD_SIZE={world}): launch it without torchrun; only 'run', 'compare' and 'study' "
    "run on several processes"
)


def command_module(name: str) -> ModuleType:
    """The module of subcommand ``name`` (imported now)."""
    return importlib.import_module(f"disparate.commands.{SUBCOMMANDS[name][0]}")


def __getattr__(name: str) -> Any:
    if name == "COMMANDS":  # every command module: imports them all
        return [command_module(command) for command in SUBCOMMANDS]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Exit status of each kind of expected failure (one line on stderr; ``--debug``: traceback).
EXIT_USAGE = 2  # bad argument, config or input value (ValueError)
EXIT_IO = 3  # a file cannot be read or written: missing, permissions, disk full, corrupt
EXIT_BUSY = 4  # the run directory is in use by another run
EXIT_DIVERGED = 5  # training diverged (non-finite loss, parameters or inputs)
EXIT_MISSING_PACKAGE = 6  # an optional package is not installed
EXIT_CORRUPT = 7  # an input file is truncated or corrupt
EXIT_INTERRUPTED = 130

#: pip extra of each optional package (pyproject.toml).
EXTRAS = {"zstandard": "reddit", "ray": "ray", "flwr": "flower"}


def build_parser(commands: Any = ()) -> argparse.ArgumentParser:
    """The top-level parser: the subcommands named in ``commands`` get their full parsers
    (importing their modules), the others a stub that carries only their help."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Differentially private training and its disparate impact on groups.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (default: one line)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in SUBCOMMANDS.items():
        if name in commands:
            command_module(name).add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=summary, add_help=False)
    return parser


def _command_word(argv: list[str]) -> str | None:
    """The subcommand of ``argv``: its first word that is not an option (the top-level
    options take no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (0, or one of the ``EXIT_*`` codes)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command, world = _command_word(argv), os.environ.get("WORLD_SIZE", "1")
    if (command in SUBCOMMANDS and command not in DISTRIBUTED_COMMANDS and world.isdigit()
            and int(world) > 1):
        print(f"{PROG}: error: {ERR_NOT_DISTRIBUTED.format(command=command, world=world)}",
              file=sys.stderr)
        return EXIT_USAGE
    parser = build_parser({command})
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argparse usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args))
    except (ValueError, OSError, RunDirBusyError, ImportError, KeyboardInterrupt,
            *_diverged_error()) as exc:
        if args.debug:
            traceback.print_exc()
        status, text = describe_error(exc)
        print(f"{PROG}: error: {text}", file=sys.stderr)
        return status


def _diverged_error() -> tuple[type[BaseException], ...]:
    """``TrainingDivergedError`` if the training loop was imported (only it raises one)."""
    training = sys.modules.get(_TRAINING)
    return (training.TrainingDivergedError,) if training is not None else ()


def describe_error(exc: BaseException) -> tuple[int, str]:
    """The exit status and the one line of an expected failure."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted (a run continues with --resume)"
    if isinstance(exc, _diverged_error()):
        return EXIT_DIVERGED, str(exc)
    if isinstance(exc, RunDirBusyError):
        return EXIT_BUSY, str(exc)
    if isinstance(exc, CorruptFileError):
        return EXIT_CORRUPT, str(exc)
    if isinstance(exc, ImportError):
        name = (exc.name or "").split(".")[0]
        if name in EXTRAS:
            return EXIT_MISSING_PACKAGE, (
                f"the optional package {name!r} is not installed; install it with "
                f"pip install 'disparate[{EXTRAS[name]}]'")
        return EXIT_MISSING_PACKAGE, f"{exc} (a package is missing: reinstall disparate)"
    if isinstance(exc, UnicodeDecodeError):
        return EXIT_IO, f"{exc}: the file is not UTF-8 text"
    if isinstance(exc, OSError):
        text = exc.strerror or str(exc)
        if exc.filename is not None and str(exc.filename) not in text:
            text = f"{exc.filename}: {text}"
        return EXIT_IO, " ".join(text.split())
    return EXIT_USAGE, str(exc)
