"""``disparate list``: the shipped experiments (presets), datasets and models."""

from __future__ import annotations

import argparse
from typing import Any

from disparate.config import ConfigError, list_presets, load_experiment
from disparate.data import list_datasets
from disparate.models import list_models, model_options

NAME = "list"
SUMMARY_WIDTH = 100


def summary(description: str, width: int = SUMMARY_WIDTH) -> str:
    """The first line of a description, cut after its first sentence and at ``width`` chars."""
    line = description.strip().splitlines()[0] if description.strip() else ""
    end = line.find(". ")
    if end > 0:
        line = line[: end + 1]
    if len(line) > width:
        line = line[: width - 3].rstrip() + "..."
    return line


def _model_rows(models: list[str]) -> list[tuple[str, str]]:
    """(name, options) rows; a family ``prefix:NAME`` of more than three models is one row."""
    families: dict[str, list[str]] = {}
    for name in models:
        prefix, sep, rest = name.partition(":")
        if sep:
            families.setdefault(prefix, []).append(rest)
    rows: list[tuple[str, str]] = []
    done: set[str] = set()
    for name in models:
        prefix, sep, _ = name.partition(":")
        if sep and len(families[prefix]) > 3:
            if prefix not in done:
                done.add(prefix)
                members = families[prefix]
                options = _options_text(name)
                shown = ", ".join(members[:5]) + (", ..." if len(members) > 5 else "")
                rows.append((f"{prefix}:NAME",
                             f"{options}; NAME one of {len(members)} ({shown})"))
            continue
        rows.append((name, _options_text(name)))
    return rows


def _options_text(name: str) -> str:
    options = ", ".join(f"{k}={v!r}" for k, v in model_options(name).items())
    return options or "(no options)"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``list`` subcommand and set ``func=run``."""
    parser = subparsers.add_parser(
        NAME,
        help="list experiments (presets), datasets and models",
        description="List the shipped experiment presets, the datasets and the models.",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the three lists."""
    del args
    lines = ["experiments (disparate run/compare NAME):"]
    names = list_presets()
    width = max((len(n) for n in names), default=0)
    for name in names:
        try:
            config = load_experiment(name)
            text = summary(config.description) or config.privacy.describe()
        except ConfigError as exc:  # a broken preset is listed, not hidden
            text = f"(invalid: {exc})"
        lines.append(f"  {name:<{width}}  {text}")
    lines.append("")
    lines.append("datasets (data.dataset):")
    lines += [f"  {name}" for name in list_datasets()]
    lines.append("")
    lines.append("models (model.name, model.options):")
    rows = _model_rows(list_models())
    width = max((len(n) for n, _ in rows), default=0)
    lines += [f"  {name:<{width}}  {text}" for name, text in rows]
    print("\n".join(lines))
    return 0
