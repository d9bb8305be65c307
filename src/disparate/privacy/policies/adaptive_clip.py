"""Adaptive quantile clipping (Andrew, Thakkar, McMahan, Ramaswamy, "Differentially Private
Learning with Adaptive Clipping", NeurIPS 2021): the group-blind adaptive baseline.

The bound C follows the gamma-quantile of the gradient norms by a geometric update from a
private estimate of the fraction of norms <= C, as in TensorFlow Privacy's
``QuantileAdaptiveClipSumQuery``: each example contributes 1[||g_i|| <= C] - 1/2 (sensitivity
1/2 under add/remove-one), the sum gets N(0, sigma_b^2), and

    b = (sum + noise) / b_expected + 1/2,       C <- C * exp(-eta * (b - gamma)).

So the statistic's noise multiplier is sigma_b / (1/2) = 2 sigma_b, which the plan composes with
the gradient's Gaussian (the paper's z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2) is the same
composition written by hand). Weights min(1, C / ||g_i||) with this step's C; sensitivity C.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from disparate.privacy.policies.base import (
    ERR_OPTION_RANGE,
    AuxStatistic,
    ClippingPolicy,
    check_options,
    finite_norms,
    noisy,
    positive,
)


@dataclass(frozen=True, kw_only=True)
class AdaptiveClipOptions:
    """``target_quantile``: gamma in (0, 1) (default 0.5); ``learning_rate``: eta (> 0,
    default 0.2, the paper's); ``count_noise_std``: sigma_b (> 0, default expected batch / 20,
    the paper's recommendation); the initial C is ``privacy.max_grad_norm``."""

    target_quantile: float = 0.5
    learning_rate: float = 0.2
    count_noise_std: float

    def __post_init__(self) -> None:
        gamma = positive("target_quantile", self.target_quantile)
        if gamma >= 1:
            raise ValueError(ERR_OPTION_RANGE.format(name="target_quantile",
                                                     value=self.target_quantile,
                                                     expected="in (0, 1)"))
        positive("learning_rate", self.learning_rate)
        positive("count_noise_std", self.count_noise_std)


class AdaptiveQuantileClipping(ClippingPolicy):
    """Flat clipping to a bound C that tracks a private quantile of the norms."""

    name = "adaptive-clip"

    def __init__(self, initial_bound: float, expected_batch_size: float,
                 options: AdaptiveClipOptions) -> None:
        super().__init__()
        self.initial_bound = initial_bound
        self.bound = initial_bound  # C, adapted every step
        self.expected_batch_size = expected_batch_size
        self.options = options
        self.sensitivity = initial_bound

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, max_grad_norm: float,
                     expected_batch_size: float, num_groups: int | None
                     ) -> AdaptiveQuantileClipping:
        opts = check_options(cls.name, AdaptiveClipOptions, options,
                             count_noise_std=expected_batch_size / 20)
        return cls(max_grad_norm, expected_batch_size, opts)

    @property
    def statistics(self) -> tuple[AuxStatistic, ...]:
        return (AuxStatistic(name="count of examples with norm <= C, centred (1[.] - 1/2)",
                             noise_std=self.options.count_noise_std, sensitivity=0.5),)

    def weights(self, norms: Tensor, groups: Tensor | None, generator: torch.Generator
                ) -> Tensor:
        c, opts = self.bound, self.options
        finite, safe = finite_norms(norms)
        self.sensitivity = c
        factors = (c / safe.clamp_min(1e-12)).clamp_max(1.0)
        centred = torch.where(finite, (safe <= c).to(norms.dtype) - 0.5,
                              torch.zeros_like(norms)).sum()
        below = float(noisy(centred, opts.count_noise_std, generator)) / self.expected_batch_size
        self.bound = c * math.exp(-opts.learning_rate * (below + 0.5 - opts.target_quantile))
        return torch.where(finite, factors, torch.zeros_like(factors))

    def describe(self) -> str:
        o = self.options
        return (f"adaptive quantile clipping (Andrew et al. 2021): C from "
                f"{self.initial_bound:g} towards the {o.target_quantile:g}-quantile "
                f"(eta={o.learning_rate:g}, count noise std {o.count_noise_std:g})")

    def settings(self) -> dict[str, Any]:
        return {"initial_bound": self.initial_bound,
                "target_quantile": self.options.target_quantile,
                "learning_rate": self.options.learning_rate,
                "count_noise_std": self.options.count_noise_std, "final_bound": self.bound}

    def state_dict(self) -> dict[str, Any]:
        return {"bound": self.bound}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.bound = float(state["bound"])
