"""Tests of :mod:`disparate.plots`: each function writes a valid PNG from parsed result data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from disparate import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

GROUPS = ["0", "2", "8", "10"]


def _stat(mean: float | None, half: float | None = None) -> dict:
    ci = None if half is None or mean is None else [mean - half, mean + half]
    return {"mean": mean, "ci95": ci, "values": [mean], "n": 1}


def _comparison(*, ci: bool) -> dict:
    half = 0.01 if ci else None
    acc = {"0": (0.99, 0.98), "2": (0.98, 0.97), "8": (0.95, 0.70), "10": (0.97, 0.93)}
    return {
        "experiment": "toy", "seeds": [0, 1] if ci else [0], "highlight": ["8", "2"],
        "groups": [{"group": g, "train_size": 10 if g == "8" else 120, "test_size": 50,
                    "small_test": g == "10",
                    "non_private_accuracy": _stat(a, half), "dp_accuracy": _stat(b, half),
                    "drop": _stat(a - b, half)} for g, (a, b) in acc.items()],
        "poor_get_poorer": {"spearman": -0.8, "description": "..."},
    }


def _metrics(epochs: int, scale: float) -> list[dict]:
    return [{"epoch": e,
             "group_accuracy": {g: min(1.0, 0.5 + 0.1 * e + 0.01 * i)
                                for i, g in enumerate(GROUPS)},
             "group_grad_norm": {g: scale * (10.0 if g == "8" else 1.0) / e for g in GROUPS}}
            for e in range(1, epochs + 1)]


def _check_png(path: Path) -> None:
    assert path.is_file()
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5000


def test_group_sort_key_is_natural() -> None:
    assert sorted(["10", "2", "b", "a", "0"], key=plots.group_sort_key) == [
        "0", "2", "10", "a", "b"]


@pytest.mark.parametrize("ci", [False, True])
def test_accuracy_by_group_comparison(tmp_path: Path, ci: bool) -> None:
    out = plots.plot_accuracy_by_group(_comparison(ci=ci), tmp_path / "acc.png")
    assert out == tmp_path / "acc.png"
    _check_png(out)


def test_accuracy_by_group_single_run_with_missing_accuracy(tmp_path: Path) -> None:
    results = {"mode": "non-private",
               "groups": [{"group": "0", "train_size": 5, "test_size": 3, "accuracy": 0.5},
                          {"group": "1", "train_size": 5, "test_size": 0, "accuracy": None}]}
    _check_png(plots.plot_accuracy_by_group(results, tmp_path / "sub" / "acc.png"))


def test_over_epochs_two_panels_several_seeds(tmp_path: Path) -> None:
    panels = {"non-private": [_metrics(4, 1.0), _metrics(4, 1.1)],
              "DP": [_metrics(4, 20.0), _metrics(3, 22.0)]}
    _check_png(plots.plot_accuracy_over_epochs(panels, tmp_path / "a.png",
                                               highlight=["8", "2"]))
    _check_png(plots.plot_grad_norm_over_epochs(panels, tmp_path / "g.png",
                                                highlight=["8", "2"]))


def test_over_epochs_single_run_no_highlight_one_epoch(tmp_path: Path) -> None:
    # A single record list (not a list of runs), one epoch, no highlighted groups.
    _check_png(plots.plot_accuracy_over_epochs({"dp": _metrics(1, 1.0)}, tmp_path / "a.png"))
    # A panel without metrics renders a note instead of failing.
    _check_png(plots.plot_grad_norm_over_epochs({"dp": _metrics(2, 1.0), "non-private": []},
                                                tmp_path / "g.png", highlight=["8"]))


def test_group_sizes_and_poor_get_poorer(tmp_path: Path) -> None:
    comparison = _comparison(ci=True)
    _check_png(plots.plot_group_sizes(comparison["groups"], tmp_path / "s.png",
                                      highlight=["8"]))
    _check_png(plots.plot_poor_get_poorer(comparison, tmp_path / "p.png"))
    comparison["poor_get_poorer"]["spearman"] = None
    _check_png(plots.plot_poor_get_poorer(comparison, tmp_path / "p2.png"))


def test_format_spearman() -> None:
    assert plots.format_spearman(-0.8123) == "-0.81"
    assert plots.format_spearman(None) == "n/a"
    assert plots.format_spearman(float("nan")) == "n/a"


def test_no_pyplot_state(tmp_path: Path) -> None:
    """Plotting never imports pyplot (no global figure registry, no backend switch)."""
    code = (
        "import sys\n"
        "from disparate import plots\n"
        "plots.plot_accuracy_by_group({'groups': [{'group': '0', 'accuracy': 0.5}]}, "
        f"{str(tmp_path / 'a.png')!r})\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
