"""DP-SGD's flat clipping (Abadi et al. 2016): every example clipped to the same bound S."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from disparate.privacy.clipping import clip_factors
from disparate.privacy.policies.base import ClippingPolicy, check_options


@dataclass(frozen=True)
class _NoOptions:
    """Flat clipping has no parameter of its own (S is ``privacy.max_grad_norm``)."""


class FlatClipping(ClippingPolicy):
    """Weight ``min(1, S / ||g_i||)``; sensitivity S; no auxiliary statistics."""

    name = "dpsgd"

    def __init__(self, max_grad_norm: float) -> None:
        super().__init__()
        self.max_grad_norm = max_grad_norm
        self.sensitivity = max_grad_norm

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, max_grad_norm: float,
                     expected_batch_size: float, num_groups: int | None) -> FlatClipping:
        check_options(cls.name, _NoOptions, options)
        return cls(max_grad_norm)

    def weights(self, norms: Tensor, groups: Tensor | None, generator: torch.Generator
                ) -> Tensor:
        return clip_factors(norms, self.max_grad_norm)

    def describe(self) -> str:
        return f"DP-SGD flat clipping (S={self.max_grad_norm:g})"
