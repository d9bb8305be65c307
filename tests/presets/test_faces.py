"""The faces presets (paper Section 4.1, Figure 1): they load, carry the paper's settings,
and run end to end -- data, ResNet18, DP and non-private training, comparison, report --
on tiny generated folders in the real formats."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import pytest

from disparate import report, training
from disparate import results as res
from disparate.config import load_experiment
from disparate.data import dataset_options
from disparate.data.faces import ITA_SIX, MalformedFacesWarning
from disparate.models import list_models, model_options
from disparate.synthetic.faces import write_synthetic_faces

PRESETS = ["faces-gender", "faces-gender-utk", "faces-age", "faces-age-utk",
           "faces-age-fairface"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faces-data")
    write_synthetic_faces(root, n_utkface=40, n_wild=30, n_fairface=28, n_dif=40, size=24)
    return root


def small(data_dir: Path, *extra: str) -> list[str]:
    """Overrides that keep the preset's experiment but make it tiny and offline."""
    return [f"data.data_dir={data_dir}", "data.options.image_size=20",
            "data.options.crop_size=16", "data.options.cache=false", "data.options.workers=1",
            "model.options.pretrained=false", "model.options.batchnorm=groupnorm",
            "training.epochs=1", "training.eval_batch_size=64", *extra]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_with_valid_dataset_and_model_options(name: str) -> None:
    cfg = load_experiment(name)
    assert cfg.data.dataset == "faces"
    assert set(cfg.data.options) <= set(dataset_options("faces"))
    assert cfg.model.name in list_models()
    assert set(cfg.model.options) <= set(model_options(cfg.model.name))
    opts = cfg.data.options
    assert (opts["image_size"], opts["crop_size"], opts["margin"]) == (80, 64, 0.4)
    t = cfg.training
    assert (t.optimizer, t.lr, t.batch_size, t.epochs) == ("adam", 1e-4, 256, 60)
    assert cfg.model.name == "resnet18" and cfg.model.options["pretrained"] is True
    assert cfg.model.options["batchnorm"] == "frozen"
    assert cfg.privacy.is_private


def test_paper_numbers_in_the_figure_1_presets() -> None:
    gender = load_experiment("faces-gender").data.options
    assert dict(gender["train_sizes"]) == {"light": 29500, "dark": 500}
    assert sum(gender["test_sizes"].values()) == 5000
    assert gender["test_sizes"]["light"] / 5000 == pytest.approx(29500 / 30000, abs=1e-3)
    assert dict(gender["balance"]) == {"dark": "gender"}
    assert tuple(gender["skin_groups"]["light"]["ita"]) == (80, None)
    age = load_experiment("faces-age").data.options
    assert age["train_sizes"] == 60000 and age["skin_groups"] == "ita6"
    n_groups = len(age["age_bins"]) * 2 * len(ITA_SIX)
    assert tuple(age["groups"]) == ("age", "gender", "skin") and n_groups == 72


def _compare(cfg, out: Path) -> tuple[dict, dict[str, Path]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MalformedFacesWarning)
        splits = training.prepare_data(cfg)
    dp = training.train(cfg, out / "seed-0" / "dp", splits=splits, progress=False)
    non_private = training.train(cfg.non_private(), out / "seed-0" / "non-private",
                                 splits=splits, progress=False)
    comparison = res.compare_runs([non_private.results], [dp.results], seeds=[0],
                                  highlight=list(cfg.evaluation.highlight),
                                  experiment=cfg.name)
    res.write_json(out / res.COMPARISON_FILE, comparison)
    return comparison, report.write_report(out)


def test_faces_gender_end_to_end(data_dir: Path, tmp_path: Path) -> None:
    cfg = load_experiment("faces-gender", small(
        data_dir, "data.options.train_sizes={light: 6, dark: 2}",
        "data.options.test_sizes={light: 3, dark: 2}", "training.batch_size=8"))  # one step
    comparison, written = _compare(cfg, tmp_path)
    groups = {g["group"]: g for g in comparison["groups"]}
    assert set(groups) == {"light", "dark"}
    assert (groups["light"]["train_size"], groups["dark"]["train_size"]) == (6, 2)
    assert (groups["light"]["test_size"], groups["dark"]["test_size"]) == (3, 2)
    dp = res.load_results(tmp_path / "seed-0" / "dp")
    assert dp["privacy"]["is_private"] and dp["privacy"]["epsilon"]
    assert all(g["small_test"] for g in dp["groups"])  # 3 and 2 test faces < 50: flagged
    assert not res.load_results(tmp_path / "seed-0" / "non-private")["privacy"]["is_private"]
    assert written["accuracy_by_group"].is_file()
    assert "accuracy_vs_group_size" not in written  # two groups: the bar chart is Figure 1(a)


def test_faces_age_end_to_end_reports_figure_1b_and_1c(data_dir: Path, tmp_path: Path) -> None:
    cfg = load_experiment("faces-age", small(
        data_dir, "data.options.train_sizes=12", "data.options.test_sizes=12",
        "training.batch_size=12"))  # one step per run
    comparison, written = _compare(cfg, tmp_path)
    names = [g["group"] for g in comparison["groups"]]
    expected = ["/".join(c) for c in itertools.product(
        ["0-19", "20-29", "30-39", "40-49", "50-59", "60+"], ["female", "male"], ITA_SIX)]
    assert sorted(names) == sorted(expected)  # all 72 subgroups, the empty ones too
    assert sum(g["train_size"] for g in comparison["groups"]) == 12
    dp = res.load_results(tmp_path / "seed-0" / "dp")
    assert len(dp["groups"]) == 72 and all(g["small_test"] for g in dp["groups"])
    assert "spearman" in comparison["poor_get_poorer"]
    for key in ("poor_get_poorer", "accuracy_vs_group_size", "accuracy_by_group"):
        assert written[key].is_file() and written[key].stat().st_size > 1000, key
    md = written["markdown"].read_text(encoding="utf-8")
    assert "accuracy_vs_group_size.png" in md and "small" in md


@pytest.mark.parametrize("name, extra, n_groups, sizes", [
    ("faces-gender-utk", ["data.options.train_sizes={light: 6, dark: 2}",
                          "data.options.test_sizes={light: 2, dark: 2}"], 2, (8, 4)),
    ("faces-age-utk", [], 6 * 2 * 5, (32, 8)),
    ("faces-age-fairface", ["data.options.train_sizes=10"], 6 * 2 * 7, (10, 14)),
])
def test_other_presets_build_their_data(data_dir: Path, name: str, extra: list[str],
                                        n_groups: int, sizes: tuple[int, int]) -> None:
    cfg = load_experiment(name, small(data_dir, *extra))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MalformedFacesWarning)
        train, test = training.prepare_data(cfg)
    assert len(train.group_names) == n_groups
    assert (len(train), len(test)) == sizes
    assert train.input_shape == (3, 16, 16)
