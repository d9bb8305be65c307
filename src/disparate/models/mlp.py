"""Multilayer perceptron: flatten, then Linear+ReLU per hidden width, then a Linear to logits."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from disparate.models.registry import register_model

__all__ = ["MLP"]


class MLP(nn.Module):
    """flatten -> [Linear(width) -> ReLU] per entry of ``hidden_sizes`` -> Linear(num_classes).

    ``hidden_sizes=()`` gives multinomial logistic regression.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        input_shape: tuple[int, ...],
        hidden_sizes: Sequence[int] = (256, 128),
    ):
        super().__init__()
        hidden = tuple(hidden_sizes)
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(
                f"hidden_sizes={hidden_sizes!r}: expected a sequence of positive ints, "
                f"e.g. (256, 128)"
            )
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_model("mlp")
def build_mlp(
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    hidden_sizes: Sequence[int] = (256, 128),
) -> nn.Module:
    """MLP with ReLU hidden layers of the given widths (default (256, 128))."""
    return MLP(num_classes=num_classes, input_shape=input_shape, hidden_sizes=hidden_sizes)
