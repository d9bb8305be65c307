"""Console entry point ``disparate``: one argparse subcommand per module in ``commands/``.

To add a subcommand, write ``disparate/commands/<name>.py`` with ``add_parser(subparsers)``
(registering the subparser and setting ``func=run``) and ``run(args) -> int``, and append
the module to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys

from disparate import __version__
from disparate.commands import audit, compare, demo, epsilon, federated, report, run, study
from disparate.commands import list as list_command

COMMANDS = [epsilon, report, study, run, compare, list_command, demo, federated, audit]

PROG = "disparate"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand of ``COMMANDS`` registered."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Differentially private training and its disparate impact on groups.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (2 for usage and value errors)."""
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
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
