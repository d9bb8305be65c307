"""Figure kinds of a study (``figure.kind`` in the YAML): a registry, one module per kind.

A kind is a class registered with :func:`register_figure` that checks the ``figure``
mapping of a study when it is loaded, draws its PNGs and builds its result tables for the
report. A new kind is one module here, imported at the bottom of this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from disparate.config import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from disparate.reporting.document import Block
    from disparate.study.aggregate import RunRecord
    from disparate.study.spec import Study

__all__ = ["FIGURE_KINDS", "FigureKind", "figure_kind", "register_figure"]


class FigureKind(Protocol):
    """What a figure kind does: check the spec, draw the figures, build the tables."""

    def check(self, study: Study, source: str) -> None:
        """Raise ``ConfigError`` naming the key when ``study.figure`` does not fit."""

    def plot(self, study: Study, runs: Sequence[RunRecord], out_dir: Path) -> dict[str, Path]:
        """Write the PNGs into ``out_dir``; name -> path."""

    def tables(self, study: Study, runs: Sequence[RunRecord], highlight: Sequence[str]
               ) -> list[Block]:
        """The result tables of the report (and their notes)."""


#: name -> the registered kind.
FIGURE_KINDS: dict[str, FigureKind] = {}


def register_figure(name: str) -> Callable[[type], type]:
    """Class decorator: register an instance of the class as figure kind ``name``."""
    def register(cls: type) -> type:
        if name in FIGURE_KINDS:
            raise ValueError(f"figure kind {name!r} is already registered")
        FIGURE_KINDS[name] = cls()
        return cls
    return register


def figure_kind(name: str) -> FigureKind:
    """The kind registered as ``name``; ``ConfigError`` listing the kinds otherwise."""
    if name not in FIGURE_KINDS:
        raise ConfigError(f"figure.kind={name!r}: expected one of "
                          f"{', '.join(map(repr, sorted(FIGURE_KINDS)))}")
    return FIGURE_KINDS[name]


from disparate.study.figures import (  # noqa: E402, F401  (register the kinds)
    clip_noise,
    mitigation,
    sweep,
)
