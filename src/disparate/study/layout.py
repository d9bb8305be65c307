"""The files of a study directory, and relative links between them."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPORT_HTML", "REPORT_MD", "RESULTS_CSV", "RUNS_SUBDIR", "STUDY_JSON",
           "STUDY_YAML", "SUMMARY_CSV", "TUNING_JSON", "relative"]

RUNS_SUBDIR = "runs"
STUDY_YAML = "study.yaml"
STUDY_JSON = "study.json"
RESULTS_CSV = "results.csv"
SUMMARY_CSV = "summary.csv"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
#: A mitigation study's tuning: the chosen learning rate and options per method.
TUNING_JSON = "tuning.json"


def relative(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` (with ``..`` where needed), for links in the report."""
    try:
        return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return str(path.resolve())
