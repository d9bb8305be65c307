"""Per-example clipping: the weights that clip, and the clipped gradient sum."""

from __future__ import annotations

from torch import Tensor, nn

from disparate.privacy.grad_sample.engine import GradSampleEngine, LossFn


def clip_factors(norms: Tensor, max_grad_norm: float) -> Tensor:
    """min(1, S / ||g_i||): the weight that clips each example's gradient to norm S."""
    return (max_grad_norm / norms.clamp_min(1e-12)).clamp_max(1.0)


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
