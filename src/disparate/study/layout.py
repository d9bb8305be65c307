"""The files of a study directory, and relative links between them."""

from __future__ import annotations

from disparate.fileio import relative_path as relative

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
