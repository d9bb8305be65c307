"""Per-example clipping: the weights that clip, and the clipped gradient sum."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from disparate.privacy.grad_sample.engine import GradSampleEngine, LossFn


def clip_factors(norms: Tensor, max_grad_norm: float | None) -> Tensor:
    """min(1, S / ||g_i||): the weight that clips each example's gradient to norm S.

    ``max_grad_norm=None`` (no clipping): weight 1. Either way an example whose norm is
    not finite (NaN or inf) gets weight 0: it is dropped, which keeps the bound S on
    what one example adds, and the model finite.
    """
    finite = torch.isfinite(norms)
    if max_grad_norm is None:
        return finite.to(norms.dtype)
    factors = (max_grad_norm / norms.clamp_min(1e-12)).clamp_max(1.0)
    return torch.where(finite, factors, torch.zeros_like(factors))


def clipped_grad_sum(
    model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, max_grad_norm: float
) -> tuple[dict[str, Tensor], Tensor]:
    """Sum over the batch of per-example gradients clipped to ``max_grad_norm``.

    Returns (summed clipped gradient per parameter name, per-example gradient norms
    before clipping), from one forward and one backward pass. ``loss_fn(outputs,
    targets)`` must return one loss per example.
    """
    if not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm={max_grad_norm!r}: expected > 0")
    with GradSampleEngine(model) as engine:
        per_example = engine.compute(loss_fn, inputs, targets)
    return per_example.weighted_sum(
        clip_factors(per_example.norms, max_grad_norm)
    ), per_example.norms
