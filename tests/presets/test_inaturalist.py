"""The iNaturalist presets (paper Section 4.3, Figure 2b): they load with the paper's settings,
run end to end on a generated miniature -- data, DP and non-private training, comparison with
the size-dependence check, report -- and Inception V3 is built without live BatchNorm or an
auxiliary head. Inception itself is too slow for a training test on two CPU cores: the end
to end run swaps in a small torchvision model (``model.name=resnet18``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import _api as weights_api
from torchvision.ops.misc import FrozenBatchNorm2d

from disparate import report
from disparate import results as res
from disparate.comparison import run_comparison
from disparate.config import load_experiment
from disparate.data import dataset_options
from disparate.data.inaturalist import (
    PAPER_CLASSES,
    MalformedINaturalistWarning,
)
from disparate.models import build_model, list_models, model_options
from disparate.privacy import check_model
from disparate.privacy.accounting import compute_epsilon, steps_per_epoch
from disparate.reporting.comparison_table import format_comparison_table
from disparate.synthetic.inaturalist import write_synthetic_inaturalist

PRESETS = ["inaturalist", "inaturalist-2017"]
#: The paper's eight classes and two that the preset drops, unequal as in the release.
MINI = {"Aves": (8, 3), "Plantae": (6, 3), "Insecta": (5, 2), "Reptilia": (3, 2),
        "Mammalia": (3, 2), "Amphibia": (2, 2), "Mollusca": (2, 2), "Actinopterygii": (2, 2),
        "Fungi": (1, 1), "Animalia": (1, 1)}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_has_the_papers_settings(name: str) -> None:
    cfg = load_experiment(name)
    opts = cfg.data.options
    assert cfg.data.dataset == "inaturalist" and set(opts) <= set(dataset_options("inaturalist"))
    assert opts["version"] == {"inaturalist": "2018", "inaturalist-2017": "2017"}[name]
    assert tuple(opts["classes"]) == PAPER_CLASSES and opts["subset_size"] == 60_000
    assert (opts["image_size"], opts["crop_size"]) == (299, 299)
    assert cfg.model.name == "torchvision:inception_v3" and cfg.model.name in list_models()
    assert set(cfg.model.options) <= set(model_options(cfg.model.name))
    assert dict(cfg.model.options) == {"pretrained": True, "batchnorm": "frozen"}
    p, t = cfg.privacy, cfg.training
    assert p.is_private and (p.max_grad_norm, p.noise_multiplier, p.delta) == (1.0, 0.6, 1e-6)
    assert (t.optimizer, t.batch_size, t.epochs) == ("adam", 32, 30)


def test_preset_epsilon_is_near_the_papers() -> None:
    """30 epochs of the 59,996-image subset: 4.61 with the paper's classic RDP conversion
    (the paper reports 4.67, the classic value for 32 epochs), 3.95 with the tight one."""
    cfg = load_experiment("inaturalist")
    steps = cfg.training.epochs * steps_per_epoch(59_996, cfg.training.batch_size)
    common = dict(noise_multiplier=0.6, steps=steps, dataset_size=59_996, batch_size=32,
                  delta=1e-6)
    assert compute_epsilon(method="rdp_classic", **common).epsilon == pytest.approx(4.61, abs=0.01)
    assert compute_epsilon(method="rdp", **common).epsilon == pytest.approx(3.95, abs=0.01)


@pytest.mark.parametrize(("name", "release"), [("inaturalist", "2018"),
                                             ("inaturalist-2017", "2017")])
def test_inaturalist_end_to_end_with_a_small_model(tmp_path: Path, name: str,
                                                   release: str) -> None:
    write_synthetic_inaturalist(tmp_path / "data" / "inaturalist", release, counts=MINI,
                                size=(40, 30))
    cfg = load_experiment(name, [
        f"data.data_dir={tmp_path / 'data'}", "data.options.image_size=36",
        "data.options.crop_size=32", "data.options.subset_size=24", "data.options.cache=false",
        "data.options.workers=1", "model.name=resnet18", "model.options.pretrained=false",
        "model.options.batchnorm=groupnorm", "training.batch_size=8", "training.epochs=1",
        "training.eval_batch_size=64"])
    out = tmp_path / "cmp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MalformedINaturalistWarning)
        comparison = run_comparison(cfg, out, seeds=[0])
    groups = {g["group"]: g for g in comparison["groups"]}
    assert list(groups) == list(PAPER_CLASSES)  # Fungi and Animalia dropped
    # floor(24 * n_c / 31) training images per class; all validation images as the test set
    assert [groups[c]["train_size"] for c in PAPER_CLASSES] == [6, 4, 3, 2, 2, 1, 1, 1]
    assert [groups[c]["test_size"] for c in PAPER_CLASSES] == [3, 3, 2, 2, 2, 2, 2, 2]
    dp = res.load_results(out / comparison["runs"][0]["dp"])
    assert dp["privacy"]["is_private"] and dp["privacy"]["noise_multiplier"] == 0.6
    assert "poor_get_poorer" in comparison
    sd = comparison["size_dependence"]
    assert sd["n_groups"] == 8 and sd["balanced_size"] == pytest.approx(20 / 8)
    assert set(sd) >= {"spearman", "monotone", "small_yet_well_served", "size_alone"}
    written = report.write_report(out)
    assert written["accuracy_by_group"].is_file() and written["group_sizes"].is_file()
    table = format_comparison_table(res.load_comparison(out))
    assert "Reptilia*" in table and "Actinopterygii*" in table
    assert ("size alone: DP drop" in table) == (sd["monotone"] is not None)


def test_size_dependence_finds_the_small_but_well_served_class() -> None:
    """Figure 2(b)'s observation on made-up drops: Reptilia is small yet barely loses."""
    sizes = {"Aves": 20574, "Plantae": 16979, "Insecta": 12461, "Reptilia": 3252,
             "Mammalia": 2873, "Amphibia": 1594, "Mollusca": 1144, "Actinopterygii": 1119}
    drops = {"Aves": 0.01, "Plantae": 0.02, "Insecta": 0.03, "Reptilia": 0.02,
             "Mammalia": 0.15, "Amphibia": 0.25, "Mollusca": 0.2, "Actinopterygii": 0.3}
    groups = [{"group": g, "train_size": n, "drop": {"mean": drops[g]}} for g, n in sizes.items()]
    sd = res.size_dependence(groups)
    assert sd["small_yet_well_served"] == ["Reptilia"]
    assert sd["monotone"] is False and sd["size_alone"] is False
    assert sd["discordant_pairs"] == 2 and sd["pairs"] == 28  # Reptilia-Insecta, Mollusca-Amphibia
    assert sd["spearman"] < -0.7 and sd["median_drop"] == pytest.approx(0.09)
    monotone = res.size_dependence([{"group": g, "train_size": n, "drop": {"mean": 1 / n}}
                                    for g, n in sizes.items()])
    assert monotone["monotone"] is True and monotone["small_yet_well_served"] == []
    assert monotone["size_alone"] is True and monotone["spearman"] == pytest.approx(-1.0)
    # Size alone does not order the big classes, but no small class beats a larger one.
    big = dict(drops, Reptilia=0.12, Mollusca=0.3, Plantae=0.005)
    sd = res.size_dependence([{"group": g, "train_size": n, "drop": {"mean": big[g]}}
                              for g, n in sizes.items()])
    assert sd["monotone"] is False and sd["small_yet_well_served"] == []
    assert sd["size_alone"] is True
    none = res.size_dependence([{"group": "a", "train_size": 3, "drop": {"mean": None}}])
    assert none["monotone"] is None and none["size_alone"] is None


def _no_batchnorm(model: nn.Module) -> bool:
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_inception_v3_random_init_has_no_aux_head_and_no_batchnorm() -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torchvision's init_weights notice
        model = build_model("torchvision:inception_v3", num_classes=8, input_shape=(3, 75, 75))
    assert _no_batchnorm(model) and model.AuxLogits is None and not model.aux_logits
    assert isinstance(model.Conv2d_1a_3x3.bn, nn.GroupNorm) and model.fc.out_features == 8
    check_model(model.train())
    out = model(torch.randn(1, 3, 75, 75))  # 75x75: the smallest input Inception V3 takes
    assert isinstance(out, torch.Tensor) and out.shape == (1, 8)  # not InceptionOutputs


def test_inception_v3_pretrained_freezes_batchnorm(monkeypatch) -> None:
    """Pre-trained weights through the weights API (served locally here): frozen statistics,
    a fresh 8-class head, the auxiliary head dropped, ImageNet input transform kept."""
    state = torchvision.models.inception_v3(init_weights=False, aux_logits=True).state_dict()
    state["Conv2d_1a_3x3.bn.running_mean"] = torch.full((32,), 0.5)
    monkeypatch.setattr(weights_api.WeightsEnum, "get_state_dict",
                        lambda self, *a, **k: state)
    model = build_model("torchvision:inception_v3", num_classes=8, input_shape=(3, 75, 75),
                        pretrained=True)
    assert _no_batchnorm(model) and model.AuxLogits is None and model.transform_input
    bn = model.Conv2d_1a_3x3.bn
    assert isinstance(bn, FrozenBatchNorm2d) and torch.equal(bn.running_mean, state[
        "Conv2d_1a_3x3.bn.running_mean"])
    assert model.fc.out_features == 8
    check_model(model.train())
    assert model(torch.randn(1, 3, 75, 75)).shape == (1, 8)
