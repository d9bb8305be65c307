"""Gaussian noise for DP-SGD, from a generator of its own (separate from data order)."""

from __future__ import annotations

import torch
from torch import Tensor


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A seeded generator on ``device``, used for noise only."""
    return torch.Generator(device=device).manual_seed(seed)


def add_gaussian_noise(tensor: Tensor, std: float, generator: torch.Generator) -> Tensor:
    """Return ``tensor + N(0, std^2)`` per coordinate; ``std = 0`` returns it unchanged."""
    if std < 0:
        raise ValueError(f"std={std!r}: expected >= 0")
    if std == 0:
        return tensor
    noise = torch.randn(tensor.shape, generator=generator, device=tensor.device, dtype=tensor.dtype)
    return torch.add(tensor, noise, alpha=std)
