"""DPSGD-Global and DPSGD-Global-Adapt (Esipova, Ghomi, Luo, Cresswell, "Disparate Impact in
Differential Privacy from Gradient Misalignment", ICLR 2023).

Flat clipping rescales large gradients more than small ones, which turns the summed gradient
away from the direction of the groups with large gradients. Both methods scale every kept
gradient by the same factor C / Z, with Z an upper bound on the norms (C = ``privacy.
max_grad_norm``), so the kept gradients keep their relative sizes and directions:

- **DPSGD-Global**: weight C / Z if ||g_i|| <= Z, else 0 (the example is dropped).
- **DPSGD-Global-Adapt**: weight C / Z if ||g_i|| <= Z, else min(1, C / ||g_i||) (clipped to C,
  not dropped), and Z adapted every step from a private count of the examples whose norm
  exceeds tau * Z: with b = (that count + N(0, sigma_b^2)) / b_expected,
  ``Z <- Z * exp(eta * (b - gamma))`` (Z grows while more than a fraction gamma exceeds
  tau * Z). With eta = 1 this is the update of the authors' code (fair-dp,
  ``exp(-lr_Z + noisy_fraction)`` with lr_Z = gamma); the fraction is over the public
  expected batch size, not the sampled batch's size (which is not private).

Either way a weighted example has norm <= C: the sensitivity is C. The count has sensitivity 1.
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


def _check_bound(upper_bound: float, max_grad_norm: float) -> float:
    z = positive("upper_bound", upper_bound)
    if z < max_grad_norm:
        raise ValueError(ERR_OPTION_RANGE.format(
            name="upper_bound", value=upper_bound,
            expected=f">= privacy.max_grad_norm={max_grad_norm:g} (Z bounds the norms kept)"))
    return z


@dataclass(frozen=True, kw_only=True)
class GlobalOptions:
    """``upper_bound``: Z (>= C; default 10 C)."""

    upper_bound: float

    def __post_init__(self) -> None:
        positive("upper_bound", self.upper_bound)


@dataclass(frozen=True, kw_only=True)
class GlobalAdaptOptions:
    """``upper_bound``: the initial Z (>= C; default 10 C); ``threshold``: tau (> 0, default
    1); ``target_fraction``: gamma in [0, 1) (default 0.01, fair-dp's lr_Z); ``learning_rate``:
    eta (> 0, default 1); ``count_noise_std``: sigma_b (> 0, default expected batch / 20)."""

    upper_bound: float
    threshold: float = 1.0
    target_fraction: float = 0.01
    learning_rate: float = 1.0
    count_noise_std: float

    def __post_init__(self) -> None:
        positive("upper_bound", self.upper_bound)
        positive("threshold", self.threshold)
        gamma = positive("target_fraction", self.target_fraction, inclusive=True)
        if gamma >= 1:
            raise ValueError(ERR_OPTION_RANGE.format(name="target_fraction",
                                                     value=self.target_fraction,
                                                     expected="in [0, 1)"))
        positive("learning_rate", self.learning_rate)
        positive("count_noise_std", self.count_noise_std)


class DPSGDGlobal(ClippingPolicy):
    """Weight C / Z for ||g_i|| <= Z, 0 above."""

    name = "dpsgd-global"

    def __init__(self, max_grad_norm: float, upper_bound: float) -> None:
        super().__init__()
        self.max_grad_norm = max_grad_norm
        self.upper_bound = upper_bound
        self.sensitivity = max_grad_norm

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, max_grad_norm: float,
                     expected_batch_size: float, num_groups: int | None) -> DPSGDGlobal:
        opts = check_options(cls.name, GlobalOptions, options, upper_bound=10 * max_grad_norm)
        return cls(max_grad_norm, _check_bound(opts.upper_bound, max_grad_norm))

    def weights(self, norms: Tensor, groups: Tensor | None, generator: torch.Generator
                ) -> Tensor:
        finite, norms = finite_norms(norms)
        kept = finite & (norms <= self.upper_bound)
        return torch.where(kept, torch.full_like(norms, self.max_grad_norm / self.upper_bound),
                           torch.zeros_like(norms))

    def describe(self) -> str:
        return (f"DPSGD-Global (Esipova et al. 2023): C/Z scaling, C={self.max_grad_norm:g}, "
                f"Z={self.upper_bound:g}, norms above Z dropped")

    def settings(self) -> dict[str, Any]:
        return {"max_grad_norm": self.max_grad_norm, "upper_bound": self.upper_bound}


class DPSGDGlobalAdapt(ClippingPolicy):
    """Weight C / Z for ||g_i|| <= Z, clipped to C above; Z adapted by a noisy count."""

    name = "dpsgd-global-adapt"

    def __init__(self, max_grad_norm: float, expected_batch_size: float,
                 options: GlobalAdaptOptions) -> None:
        super().__init__()
        self.max_grad_norm = max_grad_norm
        self.expected_batch_size = expected_batch_size
        self.options = options
        self.upper_bound = options.upper_bound  # Z, adapted every step
        self.sensitivity = max_grad_norm

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, max_grad_norm: float,
                     expected_batch_size: float, num_groups: int | None) -> DPSGDGlobalAdapt:
        opts = check_options(cls.name, GlobalAdaptOptions, options,
                             upper_bound=10 * max_grad_norm,
                             count_noise_std=expected_batch_size / 20)
        _check_bound(opts.upper_bound, max_grad_norm)
        return cls(max_grad_norm, expected_batch_size, opts)

    @property
    def statistics(self) -> tuple[AuxStatistic, ...]:
        return (AuxStatistic(
            name=f"count of examples with norm > tau*Z (tau={self.options.threshold:g})",
            noise_std=self.options.count_noise_std, sensitivity=1.0),)

    def weights(self, norms: Tensor, groups: Tensor | None, generator: torch.Generator
                ) -> Tensor:
        z, c, opts = self.upper_bound, self.max_grad_norm, self.options
        finite, safe = finite_norms(norms)
        clipped = (c / safe.clamp_min(1e-12)).clamp_max(1.0)
        factors = torch.where(safe <= z, torch.full_like(safe, c / z), clipped)
        over = (finite & (safe > opts.threshold * z)).sum().to(norms.dtype)
        fraction = float(noisy(over, opts.count_noise_std, generator)) / self.expected_batch_size
        self.upper_bound = z * math.exp(opts.learning_rate * (fraction - opts.target_fraction))
        return torch.where(finite, factors, torch.zeros_like(factors))

    def describe(self) -> str:
        o = self.options
        return (f"DPSGD-Global-Adapt (Esipova et al. 2023): C/Z scaling, C={self.max_grad_norm:g}"
                f", Z from {o.upper_bound:g} adapted (tau={o.threshold:g}, "
                f"gamma={o.target_fraction:g}, eta={o.learning_rate:g}, count noise std "
                f"{o.count_noise_std:g})")

    def settings(self) -> dict[str, Any]:
        return {"max_grad_norm": self.max_grad_norm, "initial_upper_bound": self.options.
                upper_bound, "threshold": self.options.threshold,
                "target_fraction": self.options.target_fraction,
                "learning_rate": self.options.learning_rate,
                "count_noise_std": self.options.count_noise_std,
                "final_upper_bound": self.upper_bound}

    def state_dict(self) -> dict[str, Any]:
        return {"upper_bound": self.upper_bound}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.upper_bound = float(state["upper_bound"])
