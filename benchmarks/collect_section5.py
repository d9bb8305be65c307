"""Collect paper-scale Section 5 runs into files a reader can keep and recompute from.

The Figure 4 study (``disparate study fig4 --scale paper --runs-dir RUNS``) trains the four
modes of the same loop; its ``non-private`` and ``dp`` points are exactly the two runs of
``disparate compare mnist-underrep`` (same config hash as ``config.non_private()`` and the
preset), so the comparison is built from them instead of training them twice. This script

- copies each finished run directory of the study (``config.yaml``, ``results.json``,
  ``metrics.jsonl``, ``train.log``; never the checkpoint, which holds the noise state): the
  non-private and DP runs to ``OUT/comparison/seed-<s>/{non-private,dp}/``, the others to
  ``OUT/runs/<variant>/``,
- writes ``OUT/comparison/comparison.json`` from the non-private and DP runs, with the
  report (``disparate report``) beside it,
- copies the study's CSVs, figures and report (``disparate study ... --report-only``).

    python benchmarks/collect_section5.py --study-dir runs/studies/fig4-paper \\
        --runs-dir runs/paper/runs --out docs/results/mnist-underrep-60ep
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from disparate import results as res
from disparate.config import load_experiment
from disparate.report import write_report
from disparate.reporting.comparison_table import format_comparison_table

RUN_FILES = ("config.yaml", "results.json", "metrics.jsonl", "train.log")
COMPARED = ("non-private", "dp")
STUDY_FILES = ("results.csv", "summary.csv", "report.md", "study.yaml", "study.json")


def copy_run(run_dir: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, dest / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study-dir", required=True, type=Path,
                        help="the fig4 study directory (holds study.json)")
    parser.add_argument("--runs-dir", required=True, type=Path,
                        help="the run store of its points")
    parser.add_argument("--out", required=True, type=Path, help="where the files go")
    args = parser.parse_args(argv)

    manifest = json.loads((args.study_dir / "study.json").read_text(encoding="utf-8"))
    by_variant: dict[str, Path] = {}
    for point in manifest["points"]:
        run_dir = args.runs_dir / point["key"]
        if not (run_dir / res.RESULTS_FILE).is_file():
            print(f"not finished, skipped: {point['labels']} ({run_dir})")
            continue
        variant = point["labels"]["variant"]
        found = res.load_results(run_dir)["config_hash"]
        if found != point["key"]:
            raise SystemExit(f"{run_dir}: results of config {found}, not of the point's "
                             f"{point['key']}")
        by_variant[variant] = run_dir
        if variant not in COMPARED:  # those two are copied into the comparison below
            copy_run(run_dir, args.out / "runs" / variant)

    study_out = args.out / "study"
    study_out.mkdir(parents=True, exist_ok=True)
    for path in args.study_dir.iterdir():
        if path.name in STUDY_FILES or path.suffix == ".png":
            shutil.copy2(path, study_out / path.name)

    if set(COMPARED) <= set(by_variant):
        cmp_dir = args.out / "comparison"
        non_private = res.load_results(by_variant["non-private"])
        dp = res.load_results(by_variant["dp"])
        seed = dp["seed"]
        for label in COMPARED:
            copy_run(by_variant[label], cmp_dir / f"seed-{seed}" / label)
        config = load_experiment(str(by_variant["dp"] / res.CONFIG_FILE))
        comparison = res.compare_runs(
            [non_private], [dp], seeds=[seed], highlight=config.evaluation.highlight,
            experiment=config.name,
            run_dirs=[{"seed": str(seed), "non_private": f"seed-{seed}/non-private",
                       "dp": f"seed-{seed}/dp"}])
        res.write_json(cmp_dir / res.COMPARISON_FILE, comparison)
        write_report(cmp_dir)
        print(format_comparison_table(comparison, markdown=True))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
