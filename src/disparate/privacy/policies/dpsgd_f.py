"""DPSGD-F (Xu, Du, Wu, "Removing Disparate Impact of Differentially Private Stochastic
Gradient Descent on Model Accuracy", 2021): a clipping bound per group.

Every step, for each group k of the batch: o_k examples whose gradient norm exceeds the base
bound C0 and u_k whose norm does not. The 2K counts are released ONCE, as one Gaussian
mechanism: every example is in exactly one of them, so the count vector has L2 sensitivity 1,
and ``N(0, count_noise_std^2)`` is added to each count. From the noisy counts (clamped at 0):
the group size |B_k| = o_k + u_k, the fraction over the bound b_k = o_k / |B_k| (0 for a group
whose noisy size is 0), and the group's bound

    C_k = C0 * (1 + b_k / sum_j b_j)                   (Xu et al., Algorithm 1)

so C0 <= C_k <= 2 C0: groups whose gradients are clipped more get a larger bound. Example i
of group k gets weight min(1, C_k / ||g_i||); the sensitivity of the sum, to which the noise is
scaled, is max_k C_k. fair-dp's implementation divides by the mean of the b_j instead of their
sum (bounds up to (1 + K) C0) and draws the group counts twice; neither is copied here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from disparate.privacy.policies.base import (
    ERR_NEEDS_GROUPS,
    AuxStatistic,
    ClippingPolicy,
    check_options,
    finite_norms,
    noisy,
    positive,
)


@dataclass(frozen=True, kw_only=True)
class DPSGDFOptions:
    """``count_noise_std``: std of the noise on each per-group count (default: expected batch
    size / 20, the scale Andrew et al. recommend for their count)."""

    count_noise_std: float

    def __post_init__(self) -> None:
        positive("count_noise_std", self.count_noise_std)


class DPSGDF(ClippingPolicy):
    """Per-group bounds from privately counted group sizes and counts over C0."""

    name = "dpsgd-f"
    needs_groups = True

    def __init__(self, base_bound: float, num_groups: int, options: DPSGDFOptions) -> None:
        super().__init__()
        self.base_bound = base_bound
        self.num_groups = num_groups
        self.options = options
        self.bounds: Tensor | None = None  # C_k of the last step
        self.noisy_counts: Tensor | None = None  # (2, K) released counts of the last step

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, max_grad_norm: float,
                     expected_batch_size: float, num_groups: int | None) -> DPSGDF:
        if not num_groups:
            raise ValueError(ERR_NEEDS_GROUPS.format(method=cls.name, what="dataset",
                                                     groups="no group labels"))
        opts = check_options(cls.name, DPSGDFOptions, options,
                             count_noise_std=expected_batch_size / 20)
        return cls(max_grad_norm, num_groups, opts)

    @property
    def statistics(self) -> tuple[AuxStatistic, ...]:
        return (AuxStatistic(
            name=(f"per-group counts of examples over and not over C0={self.base_bound:g} "
                  f"({2 * self.num_groups} counts, one Gaussian)"),
            noise_std=self.options.count_noise_std, sensitivity=1.0),)

    def group_bounds(self, norms: Tensor, groups: Tensor, generator: torch.Generator
                     ) -> Tensor:
        """C_k (K,) of this batch, from its noisy counts."""
        finite, norms = finite_norms(norms)
        over = (norms > self.base_bound) & finite
        k = self.num_groups
        counts = torch.stack([
            torch.bincount(groups[over], minlength=k),
            torch.bincount(groups[finite & ~over], minlength=k),
        ]).to(norms.dtype)  # (2, K): over, not over
        self.noisy_counts = noisy(counts, self.options.count_noise_std, generator)
        released = self.noisy_counts.clamp_min(0.0)
        size = released.sum(dim=0)
        frac = torch.where(size > 0, released[0] / size.clamp_min(1e-12),
                           torch.zeros_like(size))
        total = frac.sum()
        share = torch.where(total > 0, frac / total.clamp_min(1e-12), torch.zeros_like(frac))
        return self.base_bound * (1 + share)

    def weights(self, norms: Tensor, groups: Tensor | None, generator: torch.Generator
                ) -> Tensor:
        if groups is None:
            raise ValueError(ERR_NEEDS_GROUPS.format(method=self.name, what="step",
                                                     groups="groups=None"))
        bounds = self.group_bounds(norms, groups, generator)
        self.bounds = bounds
        self.sensitivity = float(bounds.max())
        finite, safe = finite_norms(norms)
        factors = (bounds[groups] / safe.clamp_min(1e-12)).clamp_max(1.0)
        return torch.where(finite, factors, torch.zeros_like(factors))

    def describe(self) -> str:
        return (f"DPSGD-F (Xu et al. 2021): per-group bounds C0*(1 + b_k/sum_j b_j) from noisy "
                f"counts, C0={self.base_bound:g}, count noise std "
                f"{self.options.count_noise_std:g}")

    def settings(self) -> dict[str, Any]:
        return {"base_bound": self.base_bound, "count_noise_std": self.options.count_noise_std}
