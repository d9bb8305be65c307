"""``python -m disparate`` runs the ``disparate`` console entry point."""

from disparate.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
