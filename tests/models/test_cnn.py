import pytest
import torch
from torch import nn

from disparate.models import build_model, count_parameters


def test_mnist_cnn_has_paper_parameter_count():
    model = build_model("mnist-cnn", num_classes=10, input_shape=(1, 28, 28))
    assert count_parameters(model) == 431_080
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert shapes == {
        "conv1.weight": (20, 1, 5, 5),
        "conv1.bias": (20,),
        "conv2.weight": (50, 20, 5, 5),
        "conv2.bias": (50,),
        "fc1.weight": (500, 800),
        "fc1.bias": (500,),
        "fc2.weight": (10, 500),
        "fc2.bias": (10,),
    }


def test_mnist_cnn_forward_returns_logits():
    torch.manual_seed(0)
    model = build_model("mnist-cnn", num_classes=10, input_shape=(1, 28, 28))
    out = model(torch.randn(4, 1, 28, 28))
    assert out.shape == (4, 10)
    # logits, not log-probabilities
    assert not torch.allclose(out.exp().sum(1), torch.ones(4))


def test_mnist_cnn_rejects_small_input():
    with pytest.raises(ValueError, match="mnist-cnn: input_shape=\\(1, 8, 8\\)"):
        build_model("mnist-cnn", num_classes=10, input_shape=(1, 8, 8))


@pytest.mark.parametrize("group_norm", [0, 4])
def test_digits_cnn_forward(group_norm):
    model = build_model("digits-cnn", num_classes=10, input_shape=(1, 8, 8), group_norm=group_norm)
    assert model(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules()) == bool(group_norm)
    expected = 13_706 + (2 * (16 + 32) if group_norm else 0)
    assert count_parameters(model) == expected


def test_digits_cnn_other_shapes_and_options():
    model = build_model(
        "digits-cnn", num_classes=3, input_shape=(3, 12, 12), channels=(8, 8), hidden=16
    )
    assert model(torch.randn(2, 3, 12, 12)).shape == (2, 3)
    with pytest.raises(ValueError, match="group_norm=3: expected a divisor"):
        build_model("digits-cnn", num_classes=10, input_shape=(1, 8, 8), group_norm=3)
    with pytest.raises(ValueError, match="channels="):
        build_model("digits-cnn", num_classes=10, input_shape=(1, 8, 8), channels=(8,))


@pytest.mark.parametrize("name, shape", [("mnist-cnn", (1, 28, 28)), ("digits-cnn", (1, 8, 8))])
def test_no_batchnorm(name, shape):
    model = build_model(name, num_classes=10, input_shape=shape)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
