"""Subcommands of the ``disparate`` console entry point.

Each module here exposes ``add_parser(subparsers)``, which registers its subparser and
sets ``func`` to its ``run(args) -> int``; ``disparate.cli.SUBCOMMANDS`` lists them with
their one-line help.
"""
