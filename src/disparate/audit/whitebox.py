"""White-box canary scores: how far training moved the parameters along a canary's gradient.

An auditor who knows the initial parameters ``theta_0`` (the seeded ``model_init`` stream of
:func:`disparate.training.build_model_for`) and sees the final ones ``theta_T`` scores an
input-space canary ``(x, y)`` by

    score = < g / ||g||, theta_0 - theta_T >,   g = grad_theta loss(x, y; theta_T),

the parameter change projected on the canary's unit loss gradient at the final model: to
first order, how much the canary's loss would rise if training were undone. Every step of
(DP-)SGD on an included canary adds its (clipped) gradient to ``theta_0 - theta_T``, so
included canaries score higher. Steinke, Nasr and Jagielski (2023) audit white-box in the
same spirit; their Dirac (gradient-space) canaries need a hook in the optimizer, which the
audit does not have -- it sees only the two endpoints of one ordinary training run.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

__all__ = ["gradient_alignment_scores"]

ERR_PARAMETERS = (
    "initial and final models have different parameters ({initial} vs {final}): expected "
    "the same architecture before and after training"
)


def gradient_alignment_scores(initial: nn.Module, final: nn.Module, inputs: torch.Tensor,
                              labels: torch.Tensor, *, batch_size: int = 64) -> np.ndarray:
    """``<g_i / ||g_i||, theta_0 - theta_T>`` for every example (float64 array (N,)).

    ``g_i`` is the cross-entropy gradient of example ``i`` at ``final`` (in eval mode) over
    all trainable parameters; an example with a zero gradient scores 0.
    """
    names = [n for n, p in final.named_parameters() if p.requires_grad]
    init = dict(initial.named_parameters())
    if sorted(names) != sorted(n for n in init if init[n].requires_grad):
        raise ValueError(ERR_PARAMETERS.format(initial=sorted(init), final=names))
    params = {n: p.detach() for n, p in final.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in final.named_buffers()}
    device = next(iter(params.values())).device
    change = {n: init[n].detach().to(device) - params[n] for n in names}  # theta_0 - theta_T

    def loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(final, (p, buffers), (x.unsqueeze(0),))
        return nn.functional.cross_entropy(out, y.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    was_training = final.training
    final.eval()
    scores = []
    try:
        for start in range(0, inputs.shape[0], batch_size):
            x = inputs[start:start + batch_size].to(device)
            y = labels[start:start + batch_size].to(device)
            g = per_example(params, x, y)  # name -> (B, *param shape)
            dot = sum((g[n].flatten(1).double() * change[n].flatten().double()).sum(1)
                      for n in names)
            norm = torch.sqrt(sum(g[n].flatten(1).double().pow(2).sum(1) for n in names))
            scores.append(torch.where(norm > 0, dot / norm.clamp_min(1e-300),
                                      torch.zeros_like(dot)).cpu())
    finally:
        final.train(was_training)
    return torch.cat(scores).numpy() if scores else np.zeros(0)
