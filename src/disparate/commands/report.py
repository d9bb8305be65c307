"""``disparate report DIR``: render report.md, report.html and PNG plots of a result directory.

DIR is a comparison directory (``comparison.json``, from ``disparate compare``) or a run
directory (``results.json``, from ``disparate run``); the files are written into DIR.

Example::

    disparate report runs/digits-underrep
"""

from __future__ import annotations

import argparse
from typing import Any

from disparate.report import write_report

NAME = "report"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``report`` subcommand and set ``func=run``."""
    parser = subparsers.add_parser(
        NAME,
        help="render report.md, report.html and PNG plots of a run or comparison directory",
        description=(
            "Render a Markdown report, a self-contained HTML report (plots embedded) and the "
            "PNG plots of a comparison directory (with comparison.json, from 'disparate "
            "compare') or a run directory (with results.json, from 'disparate run'). The "
            "files are written into DIR."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="a comparison or run directory")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Write the report; print the files written. ``ValueError`` if DIR has no results."""
    written = write_report(args.directory)
    print(f"report: {written['markdown']}")
    print(f"html:   {written['html']}")
    figures = [path for key, path in written.items() if key not in ("markdown", "html")]
    if figures:
        print("plots:  " + ", ".join(str(path.name) for path in figures))
    return 0
