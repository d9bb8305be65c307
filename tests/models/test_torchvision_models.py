"""torchvision classifiers in the model registry: heads, BatchNorm replacement, pre-trained
weights (through torchvision's weights API, faked here: nothing is downloaded), DP-readiness."""

from __future__ import annotations

from urllib.error import URLError

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import _api as weights_api
from torchvision.ops.misc import FrozenBatchNorm2d

from disparate.models import build_model, list_models, model_options
from disparate.models.torchvision_models import ERR_FROZEN_RANDOM
from disparate.privacy import check_model, clipped_grad_sum

SHAPE = (3, 16, 16)


def _batchnorms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def test_registered_names_and_options() -> None:
    names = list_models()
    assert "resnet18" in names and "torchvision:resnet18" in names
    assert "torchvision:mobilenet_v3_small" in names and "torchvision:inception_v3" in names
    assert model_options("resnet18") == {"pretrained": False, "batchnorm": None,
                                         "group_norm_groups": 32}


def test_random_init_resnet18_uses_groupnorm_and_passes_the_dp_check() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=2, input_shape=SHAPE)
    assert not _batchnorms(model)
    assert isinstance(model.bn1, nn.GroupNorm) and model.bn1.num_groups == 32
    assert model.fc.out_features == 2
    model.train()
    check_model(model)  # no BatchNorm in training mode
    assert model(torch.randn(2, *SHAPE)).shape == (2, 2)
    raw = torchvision.models.resnet18(num_classes=2)
    with pytest.raises(ValueError, match="BatchNorm2d.*mixes the examples"):
        check_model(raw)


def test_per_example_clipping_on_resnet18_matches_a_loop() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=3, input_shape=(3, 8, 8), group_norm_groups=8)
    x = torch.randn(3, 3, 8, 8)
    y = torch.tensor([0, 2, 1])
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    sums, norms = clipped_grad_sum(model, loss_fn, x, y, max_grad_norm=1.0)
    params = dict(model.named_parameters())
    expected = {n: torch.zeros_like(p) for n, p in params.items()}
    for i in range(3):
        grads = torch.autograd.grad(loss_fn(model(x[i:i + 1]), y[i:i + 1]).sum(),
                                    list(params.values()))
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
        assert torch.isclose(norms[i].double(), norm, rtol=1e-4)
        for n, g in zip(params, grads, strict=True):
            expected[n] += g * min(1.0, 1.0 / float(norm))
    for n in params:
        assert torch.allclose(sums[n], expected[n], rtol=1e-3, atol=1e-6), n


def test_frozen_needs_pretrained_weights_and_options_are_checked() -> None:
    with pytest.raises(ValueError, match="batchnorm='frozen' with pretrained=false"):
        build_model("resnet18", num_classes=2, input_shape=SHAPE, batchnorm="frozen")
    assert "removes normalisation" in ERR_FROZEN_RANDOM
    with pytest.raises(ValueError, match=r"batchnorm='live': expected one of \['groupnorm'"):
        build_model("resnet18", num_classes=2, input_shape=SHAPE, batchnorm="live")
    with pytest.raises(ValueError, match=r"input_shape=\(1, 28, 28\): expected \(3, height"):
        build_model("resnet18", num_classes=2, input_shape=(1, 28, 28))
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['weights'\]"):
        build_model("resnet18", num_classes=2, input_shape=SHAPE, weights="DEFAULT")


@pytest.fixture
def fake_imagenet(monkeypatch) -> dict[str, torch.Tensor]:
    """ResNet18 'ImageNet' weights without a download: a random state dict with recognisable
    BatchNorm statistics, served by the weights API's get_state_dict."""
    torch.manual_seed(1)
    state = torchvision.models.resnet18().state_dict()
    state["bn1.running_mean"] = torch.full((64,), 0.25)
    state["bn1.running_var"] = torch.full((64,), 4.0)
    calls = []

    def get_state_dict(self, *args, **kwargs):
        calls.append(self.name)
        return state

    monkeypatch.setattr(weights_api.WeightsEnum, "get_state_dict", get_state_dict)
    return {"state": state, "calls": calls}


def test_pretrained_resnet18_replaces_head_and_freezes_batchnorm(fake_imagenet) -> None:
    model = build_model("resnet18", num_classes=2, input_shape=(3, 64, 64), pretrained=True)
    assert fake_imagenet["calls"] == ["IMAGENET1K_V1"]
    assert not _batchnorms(model)
    assert isinstance(model.bn1, FrozenBatchNorm2d)
    assert torch.equal(model.bn1.running_mean, torch.full((64,), 0.25))
    assert torch.equal(model.conv1.weight, fake_imagenet["state"]["conv1.weight"])
    assert model.fc.out_features == 2 and model.fc.in_features == 512
    check_model(model.train())
    # Frozen BatchNorm has no trainable parameters; the convolutions and the head do.
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "fc.weight" in trainable and not any(n.startswith("bn1") for n in trainable)
    gn = build_model("resnet18", num_classes=2, input_shape=(3, 64, 64), pretrained=True,
                     batchnorm="groupnorm")
    assert isinstance(gn.bn1, nn.GroupNorm)
    assert torch.equal(gn.conv1.weight, fake_imagenet["state"]["conv1.weight"])


def test_pretrained_weights_by_name_and_errors(fake_imagenet, monkeypatch) -> None:
    build_model("resnet18", num_classes=2, input_shape=SHAPE, pretrained="IMAGENET1K_V1")
    with pytest.raises(ValueError, match=r"pretrained='NOPE': unknown weights for resnet18"):
        build_model("resnet18", num_classes=2, input_shape=SHAPE, pretrained="NOPE")

    def offline(self, *args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(weights_api.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match=r"could not load .*resnet18-f37072fd.pth.*checkpoints"):
        build_model("resnet18", num_classes=2, input_shape=SHAPE, pretrained=True)


def test_other_torchvision_classifiers_by_name() -> None:
    torch.manual_seed(0)
    model = build_model("torchvision:mobilenet_v3_small", num_classes=4, input_shape=(3, 32, 32))
    assert not _batchnorms(model)
    check_model(model.train())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    squeeze = build_model("torchvision:squeezenet1_1", num_classes=3, input_shape=(3, 48, 48))
    assert squeeze.eval()(torch.randn(1, 3, 48, 48)).shape == (1, 3)  # a conv head
