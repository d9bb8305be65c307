"""Convolutional models: the paper's MNIST CNN and a small CNN for 8x8 digits.

No BatchNorm anywhere (it mixes examples, which DP-SGD refuses); ``digits-cnn`` can use
GroupNorm instead. Both return logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from disparate.models.registry import register_model

__all__ = ["DigitsCNN", "MnistCNN"]


def _check_image_shape(model: str, input_shape: tuple[int, ...], min_hw: int) -> None:
    if len(input_shape) != 3 or input_shape[1] < min_hw or input_shape[2] < min_hw:
        raise ValueError(
            f"{model}: input_shape={input_shape}: expected (channels, height, width) with "
            f"height, width >= {min_hw}"
        )


class MnistCNN(nn.Module):
    """The CNN of the PyTorch MNIST example used by the paper (431,080 parameters on MNIST).

    conv 1->20 5x5, relu, maxpool 2, conv 20->50 5x5, relu, maxpool 2, flatten,
    fc 800->500, relu, fc 500->10. The flattened size is computed from ``input_shape``.
    """

    def __init__(self, *, num_classes: int = 10, input_shape: tuple[int, ...] = (1, 28, 28)):
        super().__init__()
        _check_image_shape("mnist-cnn", input_shape, 16)
        c, h, w = input_shape
        self.conv1 = nn.Conv2d(c, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        h, w = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(50 * h * w, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 digits.

    conv 1->c1 3x3 pad 1, [GroupNorm], relu, maxpool 2, conv c1->c2 3x3 pad 1, [GroupNorm],
    relu, maxpool 2, flatten, fc ->hidden, relu, fc ->num_classes. With the defaults
    (16, 32, hidden 64) on (1, 8, 8): 13,706 parameters.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        input_shape: tuple[int, ...] = (1, 8, 8),
        channels: tuple[int, int] = (16, 32),
        hidden: int = 64,
        group_norm: int = 0,
    ):
        super().__init__()
        _check_image_shape("digits-cnn", input_shape, 4)
        channels = tuple(channels)
        if len(channels) != 2 or any(
            isinstance(ch, bool) or not isinstance(ch, int) or ch < 1 for ch in channels
        ):
            raise ValueError(f"channels={channels!r}: expected two positive ints, e.g. (16, 32)")
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden={hidden!r}: expected an int >= 1")
        if isinstance(group_norm, bool) or not isinstance(group_norm, int) or group_norm < 0:
            raise ValueError(f"group_norm={group_norm!r}: expected an int >= 0 (0 disables)")
        if group_norm and any(ch % group_norm for ch in channels):
            raise ValueError(
                f"group_norm={group_norm}: expected a divisor of both channel counts {channels}"
            )
        c, h, w = input_shape
        c1, c2 = channels
        self.conv1 = nn.Conv2d(c, c1, kernel_size=3, padding=1)
        self.norm1: nn.Module = nn.GroupNorm(group_norm, c1) if group_norm else nn.Identity()
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=3, padding=1)
        self.norm2: nn.Module = nn.GroupNorm(group_norm, c2) if group_norm else nn.Identity()
        self.fc1 = nn.Linear(c2 * (h // 4) * (w // 4), hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.norm1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.norm2(self.conv2(x))), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


@register_model("mnist-cnn")
def build_mnist_cnn(*, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """The paper's MNIST CNN (no options)."""
    return MnistCNN(num_classes=num_classes, input_shape=input_shape)


@register_model("digits-cnn")
def build_digits_cnn(
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    channels: tuple[int, int] = (16, 32),
    hidden: int = 64,
    group_norm: int = 0,
) -> nn.Module:
    """Small CNN for 8x8 digits; ``group_norm`` = number of GroupNorm groups (0: none)."""
    return DigitsCNN(
        num_classes=num_classes,
        input_shape=input_shape,
        channels=channels,
        hidden=hidden,
        group_norm=group_norm,
    )
