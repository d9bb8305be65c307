"""Console entry point ``disparate``: one argparse subcommand per module in ``commands/``.

To add a subcommand, write ``disparate/commands/<name>.py`` with ``add_parser(subparsers)``
(registering the subparser and setting ``func=run``) and ``run(args) -> int``, and append
the module to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from disparate import __version__
from disparate.commands import (
    audit,
    check_model,
    compare,
    demo,
    epsilon,
    federated,
    mitigate,
    report,
    run,
    study,
)
from disparate.commands import list as list_command
from disparate.fileio import CorruptFileError, RunDirBusyError
from disparate.training import TrainingDivergedError

COMMANDS = [epsilon, report, study, run, compare, list_command, demo, federated, check_model,
            audit, mitigate]

PROG = "disparate"

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


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand of ``COMMANDS`` registered."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Differentially private training and its disparate impact on groups.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (default: one line)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (0, or one of the ``EXIT_*`` codes)."""
    parser = build_parser()
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
    except (ValueError, OSError, RunDirBusyError, TrainingDivergedError, ImportError,
            KeyboardInterrupt) as exc:
        if args.debug:
            traceback.print_exc()
        status, text = describe_error(exc)
        print(f"{PROG}: error: {text}", file=sys.stderr)
        return status


def describe_error(exc: BaseException) -> tuple[int, str]:
    """The exit status and the one line of an expected failure."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted (a run continues with --resume)"
    if isinstance(exc, TrainingDivergedError):
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
