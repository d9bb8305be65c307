"""Hyperparameter studies (paper Section 5, Figures 4 and 5): a base experiment plus a grid.

- :mod:`.spec`: the study YAML, its checks and the resolved :class:`Study`;
- :mod:`.run`: expansion into sweep points, running them, writing the study directory;
- :mod:`.aggregate`: the pure part, run records -> tidy rows -> cells -> series;
- :mod:`.figures`: the registry of figure kinds (``clip-noise``, ``sweep``), one module each;
- :mod:`.report`: the report document (Markdown and HTML).

The shipped study YAMLs are in ``shipped/``; ``docs/studies.md`` describes the format.
"""

from disparate.study.aggregate import EPOCH, RunRecord
from disparate.study.figures import FIGURE_KINDS
from disparate.study.run import expand, load_runs, run_study, write_outputs
from disparate.study.spec import (
    STUDY_KEYS,
    Study,
    Variant,
    list_studies,
    load_study,
    parse_grid_option,
)

__all__ = [
    "EPOCH",
    "FIGURE_KINDS",
    "STUDY_KEYS",
    "RunRecord",
    "Study",
    "Variant",
    "expand",
    "list_studies",
    "load_runs",
    "load_study",
    "parse_grid_option",
    "run_study",
    "write_outputs",
]
