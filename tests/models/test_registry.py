import pytest
import torch
from torch import nn

from disparate.models import build_model, list_models, model_options, register_model
from disparate.models import registry as registry_module


def test_builtin_models():
    assert {"mnist-cnn", "digits-cnn", "mlp"} <= set(list_models())
    assert list_models() == sorted(list_models())
    assert model_options("mlp") == {"hidden_sizes": (256, 128)}
    assert model_options("mnist-cnn") == {}


def test_unknown_model_names_choices():
    with pytest.raises(
        ValueError, match=r"model='resnet': unknown model; valid choices are \["
    ) as e:
        build_model("resnet", num_classes=10, input_shape=(1, 28, 28))
    assert "'mnist-cnn'" in str(e.value)


def test_unknown_option_names_valid_options():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['width'\]; valid options are"):
        build_model("mlp", num_classes=10, input_shape=(1, 8, 8), width=3)
    with pytest.raises(ValueError, match="valid options are none"):
        build_model("mnist-cnn", num_classes=10, input_shape=(1, 28, 28), dropout=0.5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0, "input_shape": (1, 8, 8)}, "num_classes=0"),
        ({"num_classes": 10, "input_shape": (1, 0, 8)}, "input_shape="),
        ({"num_classes": 10, "input_shape": 8}, "input_shape=8"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model("mlp", **kwargs)


def test_duplicate_and_custom_registration(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    with pytest.raises(ValueError, match="'mlp' is already registered"):

        @register_model("mlp")
        def dup(*, num_classes, input_shape):  # pragma: no cover
            raise AssertionError

    @register_model("linear")
    def linear(*, num_classes, input_shape, bias: bool = True):
        return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1], num_classes, bias=bias))

    model = build_model("linear", num_classes=3, input_shape=[4], bias=False)
    assert model(torch.zeros(2, 4)).shape == (2, 3)
    with pytest.raises(ValueError, match="lacks keyword arguments"):

        @register_model("bad")
        def bad(*, num_classes):  # pragma: no cover
            raise AssertionError


def test_seeded_by_caller():
    torch.manual_seed(0)
    a = build_model("digits-cnn", num_classes=10, input_shape=(1, 8, 8))
    torch.manual_seed(0)
    b = build_model("digits-cnn", num_classes=10, input_shape=(1, 8, 8))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb) and pa.device.type == "cpu"
