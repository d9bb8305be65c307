import pytest
import torch
from torch import nn

from disparate.models import build_model, count_parameters


def test_default_mlp_shapes_and_params():
    model = build_model("mlp", num_classes=10, input_shape=(1, 8, 8))
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    assert count_parameters(model) == (64 * 256 + 256) + (256 * 128 + 128) + (128 * 10 + 10)


def test_custom_widths_and_logistic_regression():
    model = build_model("mlp", num_classes=10, input_shape=(1, 28, 28), hidden_sizes=[32])
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 1
    linear = build_model("mlp", num_classes=4, input_shape=(6,), hidden_sizes=())
    assert count_parameters(linear) == 6 * 4 + 4


def test_bad_widths():
    with pytest.raises(ValueError, match="hidden_sizes=\\(0,\\)"):
        build_model("mlp", num_classes=10, input_shape=(1, 8, 8), hidden_sizes=(0,))
