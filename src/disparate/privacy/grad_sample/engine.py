"""Per-example gradient norms and weighted gradient sums from one forward and one backward.

The forward pass records each parameterised layer's inputs; one backward pass of
the summed per-example losses asks autograd only for the gradients with respect to
those layers' outputs (no parameter gradients are formed). Each layer rule turns
(input, output gradient) into per-example contributions, from which come the
per-example norms and then any weighted sum sum_i w_i g_i, e.g. the clipped sum
with w_i = min(1, S / ||g_i||) ("book-keeping": no second backward pass).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.autograd.graph import GradientEdge, get_gradient_edge
from torch.utils._pytree import tree_flatten

from disparate.privacy.grad_sample.contributions import Contribution, ParamGrads
from disparate.privacy.grad_sample.fallback import vmap_contributions
from disparate.privacy.grad_sample.layers import rule_for
from disparate.privacy.validate import check_model

LossFn = Callable[[Tensor, Tensor], Tensor]

LOSS_SHAPE_ERROR = (
    "loss_fn must return one loss per example, shape ({batch},); got shape {shape}. "
    "Use a per-example loss, e.g. nn.CrossEntropyLoss(reduction='none')."
)


@dataclass
class _Call:
    module_name: str
    module: nn.Module
    args: tuple
    kwargs: dict
    output_positions: list[int]
    outputs: list[Tensor]
    edges: list[GradientEdge]


class PerExampleGrads:
    """Per-example gradients of one batch, kept in factored form.

    ``norms`` is each example's gradient norm over all trainable parameters, (B,);
    ``losses`` each example's loss, (B,); ``outputs`` the model's outputs (detached).
    """

    def __init__(self, params: dict[str, ParamGrads], losses: Tensor, outputs: Tensor):
        self._params = params
        self.losses = losses
        self.outputs = outputs
        with torch.no_grad():
            sq = torch.zeros_like(losses)
            for pg in params.values():
                sq = sq + pg.sq_norms()
        self.norms = sq.sqrt()

    def weighted_sum(self, weights: Tensor) -> dict[str, Tensor]:
        """sum_i weights_i g_i for every trainable parameter, by name."""
        with torch.no_grad():
            weights = weights.to(self.losses.dtype)
            return {name: pg.weighted_sum(weights) for name, pg in self._params.items()}


class GradSampleEngine:
    """Computes :class:`PerExampleGrads` for a model; hooks stay until :meth:`close`."""

    def __init__(self, model: nn.Module):
        check_model(model)
        self.model = model
        self._names: dict[int, str] = {
            id(p): name for name, p in model.named_parameters() if p.requires_grad
        }
        self._calls: list[_Call] | None = None
        self._handles = []
        for module_name, module in model.named_modules(remove_duplicate=False):
            if any(p.requires_grad for p in module.parameters(recurse=False)):
                handle = module.register_forward_hook(
                    self._make_hook(module_name or type(module).__name__), with_kwargs=True
                )
                self._handles.append(handle)

    def _make_hook(self, module_name: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output) -> None:
            if self._calls is None or not torch.is_grad_enabled():
                return
            flat = [t for t in tree_flatten(output)[0] if isinstance(t, Tensor)]
            positions = [i for i, t in enumerate(flat) if t.requires_grad]
            outputs = [flat[i] for i in positions]
            self._calls.append(
                _Call(
                    module_name=module_name,
                    module=module,
                    args=tuple(a.detach() if isinstance(a, Tensor) else a for a in args),
                    kwargs=kwargs,
                    output_positions=positions,
                    outputs=outputs,
                    edges=[get_gradient_edge(t) for t in outputs],
                )
            )

        return hook

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> GradSampleEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def compute(self, loss_fn: LossFn, inputs: Tensor, targets: Tensor) -> PerExampleGrads:
        """Forward and backward once; return per-example norms and the means to sum."""
        check_model(self.model)
        batch = inputs.shape[0]
        self._calls = []
        try:
            outputs = self.model(inputs)
        finally:
            calls, self._calls = self._calls, None
        losses = loss_fn(outputs, targets)
        if losses.shape != (batch,):
            raise ValueError(LOSS_SHAPE_ERROR.format(batch=batch, shape=tuple(losses.shape)))
        edges = [e for c in calls for e in c.edges]
        grads = torch.autograd.grad(losses.sum(), edges, allow_unused=True) if edges else ()
        contributions: dict[str, list[Contribution]] = {}
        with torch.no_grad():
            start = 0
            for call in calls:
                stop = start + len(call.outputs)
                grad_outputs = [
                    g if g is not None else torch.zeros_like(t)
                    for t, g in zip(call.outputs, grads[start:stop], strict=True)
                ]
                start = stop
                for attr, contribution in self._contributions(call, grad_outputs, batch).items():
                    param = getattr(call.module, attr)
                    contributions.setdefault(self._names[id(param)], []).append(contribution)
            params = {name: ParamGrads(cs) for name, cs in contributions.items()}
        return PerExampleGrads(params, losses.detach(), outputs.detach())

    @staticmethod
    def _contributions(
        call: _Call, grad_outputs: list[Tensor], batch: int
    ) -> dict[str, Contribution]:
        found = rule_for(call.module)
        if found is not None and not call.kwargs:
            rule, multi_output = found
            if multi_output:
                return rule(
                    call.module,
                    call.args,
                    dict(zip(call.output_positions, grad_outputs, strict=True)),
                )
            if len(grad_outputs) == 1:
                return rule(call.module, call.args, grad_outputs[0])
        return vmap_contributions(
            call.module_name,
            call.module,
            call.args,
            call.kwargs,
            call.output_positions,
            grad_outputs,
            batch,
        )
