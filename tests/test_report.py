"""Tests of :mod:`disparate.report` and the ``disparate report`` command.

The renderer's input is the result files of ``docs/results-format.md``; most tests write
small run and comparison directories from dicts in that format, so that every rendered number
is known. One test renders the report of a real tiny ``compare`` when the training loop and
the ``compare`` command are available.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from disparate import report
from disparate.cli import COMMANDS, main
from disparate.commands import report as report_command

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GROUPS = ["0", "2", "8", "9"]
TRAIN = {"0": 120, "2": 125, "8": 10, "9": 118}
TEST = {"0": 55, "2": 52, "8": 17, "9": 50}  # "8" is below min_group_test_size=20
# Per seed accuracies (non-private, DP).
ACC = {
    0: {"0": (0.99, 0.98), "2": (0.98, 0.96), "8": (0.80, 0.40), "9": (0.95, 0.90)},
    1: {"0": (0.97, 0.96), "2": (0.96, 0.94), "8": (0.70, 0.30), "9": (0.93, 0.86)},
}


def _epsilon_report(method: str, epsilon: float | None) -> dict[str, Any]:
    return {
        "epsilon": epsilon, "delta": 1e-05, "method": method,
        "accountant": "RdpAccountant" if method.startswith("rdp") else "PLDAccountant",
        "conversion": "tight RDP conversion" if method == "rdp" else "classic conversion",
        "sampling": "poisson", "neighboring_relation": "add or remove one example",
        "steps": 90, "dataset_size": 373, "batch_size": 64, "noise_multiplier": 1.0,
        "sampling_probability": 64 / 373, "approximate": False, "note": "",
        "optimal_order": 8.0,
    }


DP_PRIVACY = {
    "is_private": True, "mode": "dp", "max_grad_norm": 1.0, "noise_multiplier": 1.0,
    "noise_std": 1.0, "delta": 1e-05, "sampling": "poisson", "accountant": "rdp",
    "description": "DP-SGD: clip to S=1, Gaussian noise z=1",
    "epsilon": {"rdp": _epsilon_report("rdp", 7.4321),
                "rdp_classic": _epsilon_report("rdp_classic", 8.1)},
    "statement": "(7.43, 1e-05)-DP for 90 steps of DP-SGD (z=1, S=1) with poisson; "
                 "accountant: RdpAccountant; conversion: tight RDP conversion",
}
NON_PRIVATE_PRIVACY = {
    "is_private": False, "mode": "non-private", "max_grad_norm": None,
    "noise_multiplier": None, "noise_std": 0.0, "delta": None, "sampling": "poisson",
    "accountant": None, "epsilon": None,
    "statement": "not differentially private: no clipping, no noise",
}
CONFIG_YAML = """name: toy-underrep
description: A <toy> & "small" analogue of the paper's MNIST experiment.
evaluation:
  highlight: ['8', '2']
  min_group_test_size: 20
privacy:
  delta: 1e-5
"""


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, sort_keys=True, indent=2), encoding="utf-8")


def _write_run(directory: Path, *, seed: int, dp: bool, epochs: int = 3) -> dict[str, Any]:
    """A run directory: config.yaml, metrics.jsonl and results.json."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(CONFIG_YAML, encoding="utf-8")
    k = 1 if dp else 0
    final = {g: ACC[seed % 2][g][k] for g in GROUPS}
    lines = []
    for e in range(1, epochs + 1):
        lines.append({
            "epoch": e, "steps": 6 * e, "train_loss": 1.0 / e, "test_loss": 1.1 / e,
            "test_accuracy": 0.9,
            "group_accuracy": {g: final[g] * e / epochs for g in GROUPS},
            "group_grad_norm": {g: (30.0 if g == "8" else 3.0) * (2 if dp else 1) / e
                                for g in GROUPS},
            "group_clipped_fraction": {g: 1.0 if dp else 0.0 for g in GROUPS},
            "epsilon": 2.5 * e if dp else None, "elapsed_s": 0.1 * e,
        })
    (directory / "metrics.jsonl").write_text(
        "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines), encoding="utf-8")
    results = {
        "experiment": "toy-underrep", "mode": "dp" if dp else "non-private", "seed": seed,
        "config_hash": "ab12cd34ef56", "overall_accuracy": 0.93 - 0.05 * k,
        "test_loss": 0.2, "epochs": epochs, "steps": 6 * epochs, "highlight": ["8", "2"],
        "groups": [{"group": g, "train_size": TRAIN[g], "test_size": TEST[g],
                    "accuracy": final[g], "grad_norm": (30.0 if g == "8" else 3.0),
                    "clipped_fraction": 1.0 if dp else 0.0, "small_test": TEST[g] < 20,
                    "highlight": g in ("8", "2")} for g in GROUPS],
        "privacy": DP_PRIVACY if dp else NON_PRIVATE_PRIVACY,
        "wall_time_s": 1.5,
    }
    _write_json(directory / "results.json", results)
    return results


def _summary(values: list[float], ci: bool) -> dict[str, Any]:
    mean = sum(values) / len(values)
    return {"mean": mean, "values": values, "n": len(values),
            "ci95": [mean - 0.05, mean + 0.05] if ci else None}


def _write_comparison(directory: Path, seeds: list[int]) -> dict[str, Any]:
    for s in seeds:
        _write_run(directory / f"seed-{s}" / "non-private", seed=s, dp=False)
        _write_run(directory / f"seed-{s}" / "dp", seed=s, dp=True)
    ci = len(seeds) > 1
    groups = []
    for g in GROUPS:
        npa = [ACC[s][g][0] for s in seeds]
        dpa = [ACC[s][g][1] for s in seeds]
        groups.append({
            "group": g, "train_size": TRAIN[g], "test_size": TEST[g],
            "small_test": TEST[g] < 20, "highlight": g in ("8", "2"),
            "non_private_accuracy": _summary(npa, ci), "dp_accuracy": _summary(dpa, ci),
            "drop": _summary([a - b for a, b in zip(npa, dpa, strict=True)], ci),
        })
    comparison = {
        "experiment": "toy-underrep", "seeds": seeds, "highlight": ["8", "2"],
        "groups": groups,
        "overall": {"non_private_accuracy": _summary([0.93] * len(seeds), ci),
                    "dp_accuracy": _summary([0.88] * len(seeds), ci),
                    "drop": _summary([0.05] * len(seeds), ci)},
        "poor_get_poorer": {"spearman": -0.8, "p_value": 0.2, "n_groups": 4,
                            "description": "Spearman rank correlation across groups between "
                                           "non-private accuracy and the DP drop (negative: "
                                           "the poor get poorer)"},
        "gap": {"non_private": {"best_group": "0", "best_accuracy": 0.98,
                                "worst_group": "8", "worst_accuracy": 0.75,
                                "difference": 0.23},
                "dp": {"best_group": "0", "best_accuracy": 0.97, "worst_group": "8",
                       "worst_accuracy": 0.35, "difference": 0.62}},
        "privacy": DP_PRIVACY,
    }
    _write_json(directory / "comparison.json", comparison)
    return comparison


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 5000, path


def _table_row(text: str, group: str) -> str:
    """The markdown table row of ``group`` (first cell, possibly bold)."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and cells[0].replace("*", "").split(" ")[0] == group:
            return line
    raise AssertionError(f"no table row for group {group!r} in\n{text}")


# ---------------------------------------------------------------------------- comparison


@pytest.fixture(scope="module")
def comparison_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    directory = tmp_path_factory.mktemp("cmp")
    _write_comparison(directory, [0, 1])
    return directory, report.write_report(directory)


def test_comparison_files_exist(comparison_dir: tuple[Path, dict[str, Path]]) -> None:
    directory, written = comparison_dir
    assert written["markdown"] == directory / "report.md"
    assert written["html"] == directory / "report.html"
    expected = {"accuracy_by_group", "accuracy_over_epochs", "grad_norm_over_epochs",
                "group_sizes", "poor_get_poorer"}
    assert expected <= set(written)
    for key in expected:
        assert written[key].parent == directory
        _check_png(written[key])


def test_comparison_markdown_table(comparison_dir: tuple[Path, dict[str, Path]]) -> None:
    directory, _ = comparison_dir
    md = (directory / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# Report: toy-underrep")
    assert "A \\<toy> & \"small\" analogue" in md  # description, markup escaped
    assert "non-private vs dp" in md
    # Group 8: highlighted, small test set; mean over seeds with the 95% interval.
    row8 = _table_row(md, "8")
    assert "**8** \u2605" in row8
    assert "| 10 |" in row8 and "17 \u2020 small" in row8
    assert "75.0% [70.0, 80.0]" in row8  # non-private: mean(0.80, 0.70)
    assert "35.0% [30.0, 40.0]" in row8  # DP
    assert "+40.0 pp [+35.0, +45.0]" in row8  # drop
    row0 = _table_row(md, "0")
    assert "\u2605" not in row0 and "small" not in row0
    assert "98.0% [93.0, 100.0]" in row0 and "+1.0 pp" in row0  # [93, 103] shown within 100
    assert "\u2605 highlighted group" in md
    assert "fewer than 20 test examples" in md
    # Overall, poor get poorer and gaps.
    assert "non-private 93.0% [88.0, 98.0], DP 88.0% [83.0, 93.0], drop +5.0 pp" in md
    assert "Spearman \u03c1 = -0.80 (p = 0.2, 4 groups)" in md
    assert "best served 0 (98.0%), worst served 8 (75.0%), gap 23.0 pp" in md
    assert "gap 62.0 pp" in md
    # Figures by relative path.
    for name in ["accuracy_by_group.png", "grad_norm_over_epochs.png", "poor_get_poorer.png"]:
        assert f"]({name})" in md


def test_comparison_privacy_statement(comparison_dir: tuple[Path, dict[str, Path]]) -> None:
    directory, _ = comparison_dir
    md = (directory / "report.md").read_text(encoding="utf-8")
    assert "**Differentially private: (\u03b5 = 7.43, \u03b4 = 1e-05).**" in md
    assert "(7.43, 1e-05)-DP for 90 steps" in md
    # How epsilon was computed: accountant, conversion, sampling, delta, per method; the
    # configured accountant first.
    rdp = ("- **rdp**: \u03b5 = 7.43 at \u03b4 = 1e-05 (reported); accountant: RdpAccountant; "
           "conversion: tight RDP conversion; sampling: poisson; neighbouring datasets: add or "
           "remove one example; N = 373, b = 64, q = 0.1716, z = 1, steps = 90")
    assert rdp in md
    assert "- **rdp_classic**: \u03b5 = 8.10 at \u03b4 = 1e-05; accountant" in md
    assert md.index("- **rdp**") < md.index("- **rdp_classic**")
    assert "Mechanism: DP-SGD: clip to S=1, Gaussian noise z=1." in md
    assert "Non-private baseline: not differentially private: no clipping" in md


def test_comparison_html(comparison_dir: tuple[Path, dict[str, Path]]) -> None:
    directory, _ = comparison_dir
    page = (directory / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<style>" in page
    # Self-contained: every image is a data URI, no reference to the PNG files.
    images = re.findall(r'<img src="([^"]*)"', page)
    assert len(images) == 5
    assert all(src.startswith("data:image/png;base64,iVBORw0KGgo") for src in images)
    assert ".png\"" not in page
    # Escaped description.
    assert "A &lt;toy&gt; &amp; &quot;small&quot; analogue" in page
    assert "<toy>" not in page
    # The highlighted, small-test row of group 8 with its numbers.
    row = re.search(r'<tr class="highlight"><td><strong>8</strong> \u2605</td>.*?</tr>', page)
    assert row is not None
    assert '<td class="small" title="small test set">17 \u2020 small</td>' in row.group(0)
    assert "<td>75.0% [70.0, 80.0]</td><td>35.0% [30.0, 40.0]</td>" in row.group(0)
    assert "<td>+40.0 pp [+35.0, +45.0]</td>" in row.group(0)
    assert "<tr><td>0</td>" in page  # not highlighted
    assert "RdpAccountant" in page and "tight RDP conversion" in page


def test_one_seed_renders_na_intervals(tmp_path: Path) -> None:
    _write_comparison(tmp_path, [0])
    comparison = json.loads((tmp_path / "comparison.json").read_text())
    comparison["poor_get_poorer"]["spearman"] = None
    del comparison["gap"]  # an older comparison without gaps: computed from the table
    _write_json(tmp_path / "comparison.json", comparison)
    written = report.write_report(tmp_path)
    md = written["markdown"].read_text(encoding="utf-8")
    row8 = _table_row(md, "8")
    assert "80.0% |" in row8 and "40.0% |" in row8 and "+40.0 pp |" in row8
    assert "[" not in row8
    assert "one seed: no confidence intervals (n/a)" in md
    assert "Spearman \u03c1 = n/a" in md
    assert "best served 0 (99.0%), worst served 8 (80.0%), gap 19.0 pp" in md
    _check_png(written["poor_get_poorer"])


def test_gap_per_seed_interval_is_shown_within_0_100(tmp_path: Path) -> None:
    # Gaps per seed 0.20 and 0.26 with a Student-t interval reaching below 0 (as few seeds do)
    # and one reaching past 1: shown from 0.0 and up to 100.0, low end first.
    _write_comparison(tmp_path, [0, 1])
    comparison = json.loads((tmp_path / "comparison.json").read_text())
    comparison["gap"]["non_private"]["per_seed"] = {"mean": 0.23, "ci95": [-0.15, 0.61]}
    comparison["gap"]["dp"]["per_seed"] = {"mean": 0.62, "ci95": [0.2, 1.04]}
    _write_json(tmp_path / "comparison.json", comparison)
    md = report.render_markdown(report.build_document(report.load_report_data(tmp_path), {}))
    assert "gap 23.0 pp; gap per seed 23.0 pp [0.0, 61.0]" in md
    assert "gap 62.0 pp; gap per seed 62.0 pp [20.0, 100.0]" in md


# ---------------------------------------------------------------------------- single runs


def test_single_non_private_run(tmp_path: Path) -> None:
    _write_run(tmp_path, seed=3, dp=False)
    written = report.write_report(tmp_path)
    assert "poor_get_poorer" not in written
    for key in ["accuracy_by_group", "accuracy_over_epochs", "grad_norm_over_epochs",
                "group_sizes"]:
        _check_png(written[key])
    md = written["markdown"].read_text(encoding="utf-8")
    assert "**Not private.** not differentially private: no clipping, no noise" in md
    assert "How epsilon was computed" not in md
    assert "\u03b5 =" not in md
    assert "- **Mode:** non-private" in md and "- **Seed:** 3" in md
    row8 = _table_row(md, "8")
    assert "**8** \u2605" in row8 and "17 \u2020 small" in row8
    assert "| 70.0% | 30 | 0% |" in row8  # seed 3 uses the accuracies of ACC[1]
    assert "Overall accuracy: 93.0% (non-private), test loss 0.2." in md
    assert "best served 0 (97.0%), worst served 8 (70.0%), gap 27.0 pp" in md
    page = written["html"].read_text(encoding="utf-8")
    assert 'class="statement not-private"' in page
    assert "Not private." in page


def test_single_dp_run_without_metrics_or_config(tmp_path: Path) -> None:
    _write_run(tmp_path, seed=0, dp=True)
    (tmp_path / "metrics.jsonl").unlink()
    (tmp_path / "config.yaml").unlink()
    written = report.write_report(tmp_path)
    assert "accuracy_over_epochs" not in written
    md = written["markdown"].read_text(encoding="utf-8")
    assert "(\u03b5 = 7.43, \u03b4 = 1e-05)" in md
    assert "No per-epoch metrics" in md
    assert "**8** \u2605" in _table_row(md, "8")  # highlight from results.json


def test_missing_optional_fields(tmp_path: Path) -> None:
    _write_json(tmp_path / "results.json", {
        "experiment": "bare", "mode": "dp",
        "groups": [{"group": "a", "train_size": 3, "test_size": 0, "accuracy": None}],
        "privacy": {"is_private": True, "mode": "dp",
                    "epsilon": {"rdp": {"epsilon": None, "method": "rdp"}}},
    })
    written = report.write_report(tmp_path)
    md = written["markdown"].read_text(encoding="utf-8")
    assert "| a | 3 | 0 | n/a | n/a | n/a |" in md
    assert "Gap, dp:** n/a" in md
    assert "(\u03b5 = n/a, \u03b4 = n/a)" in md
    assert "Overall accuracy: n/a (dp)." in md


def test_truncated_last_metrics_line_is_skipped(tmp_path: Path) -> None:
    _write_run(tmp_path, seed=0, dp=True)
    with (tmp_path / "metrics.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"epoch": 4, "group_acc')
    assert [r["epoch"] for r in report.read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3]
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1\n{"epoch": 2}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="metrics.jsonl: line 1"):
        report.read_metrics(tmp_path / "metrics.jsonl")


def test_html_escapes_group_names(tmp_path: Path) -> None:
    _write_json(tmp_path / "results.json", {
        "experiment": "x<script>", "mode": "non-private", "highlight": ["<b>"],
        "groups": [{"group": "<b>", "train_size": 1, "test_size": 1, "accuracy": 1.0},
                   {"group": "a|b", "train_size": 1, "test_size": 1, "accuracy": 0.0}],
        "privacy": NON_PRIVATE_PRIVACY,
    })
    written = report.write_report(tmp_path)
    page = written["html"].read_text(encoding="utf-8")
    assert "<script>" not in page and "x&lt;script&gt;" in page
    assert "<td><strong>&lt;b&gt;</strong> \u2605</td>" in page
    md = written["markdown"].read_text(encoding="utf-8")
    assert "| a\\|b |" in md


# ---------------------------------------------------------------------------- errors, CLI


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        report.write_report(tmp_path)
    text = str(info.value)
    assert str(tmp_path) in text and "comparison.json" in text and "results.json" in text
    assert not (tmp_path / "report.md").exists()
    with pytest.raises(ValueError, match="not a directory"):
        report.write_report(tmp_path / "missing")


def test_cli_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_command in COMMANDS
    _write_run(tmp_path, seed=0, dp=True)
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "report.md") in out and str(tmp_path / "report.html") in out
    assert "accuracy_by_group.png" in out


def test_cli_report_empty_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                    ) -> None:
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("disparate: error: ")
    assert str(tmp_path) in err and "comparison.json" in err and "results.json" in err


# ---------------------------------------------------------------------------- real runs


def test_report_of_real_tiny_runs(tmp_path: Path) -> None:
    """Render what the real training loop and comparison write (digits, one epoch).

    ``disparate compare`` is not written yet; its building blocks are: a non-private and a
    DP run per seed by :func:`disparate.training.train`, and ``comparison.json`` from
    :func:`disparate.results.compare_runs`.
    """
    training = pytest.importorskip("disparate.training")
    from disparate import results as res
    from disparate.config import load_experiment

    dp = load_experiment("digits-underrep", ["training.epochs=1"])
    non_private = load_experiment("digits-underrep", [
        "training.epochs=1", "privacy.clipping=false", "privacy.noise=false",
        "privacy.noise_multiplier=null"])
    out = tmp_path / "cmp"
    training.train(non_private, out / "seed-0" / "non-private", progress=False)
    training.train(dp, out / "seed-0" / "dp", progress=False)
    comparison = res.compare_runs([res.load_results(out / "seed-0" / "non-private")],
                                  [res.load_results(out / "seed-0" / "dp")], seeds=[0],
                                  highlight=list(dp.evaluation.highlight),
                                  experiment=dp.name)
    res.write_json(out / res.COMPARISON_FILE, comparison)

    written = report.write_report(out)
    for key in ["accuracy_by_group", "accuracy_over_epochs", "grad_norm_over_epochs",
                "group_sizes", "poor_get_poorer"]:
        _check_png(written[key])
    md = written["markdown"].read_text(encoding="utf-8")
    assert md.startswith("# Report: digits-underrep")
    assert "Small, fast analogue" in md  # the description, from the saved config.yaml
    assert "**8** \u2605" in _table_row(md, "8") and "**2** \u2605" in _table_row(md, "2")
    eps = comparison["privacy"]["epsilon"]["rdp"]["epsilon"]
    assert f"(\u03b5 = {eps:.2f}, \u03b4 = 1e-05)" in md
    assert "How epsilon was computed" in md and "RdpAccountant" in md
    assert "Non-private baseline: not differentially private" in md
    group8 = next(g for g in comparison["groups"] if g["group"] == "8")
    assert report.format_accuracy(group8["dp_accuracy"]) in _table_row(md, "8")

    single = report.write_report(out / "seed-0" / "non-private")
    text = single["markdown"].read_text(encoding="utf-8")
    assert "**Not private.**" in text and "\u03b5 =" not in text
