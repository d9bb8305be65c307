"""General per-example gradients for layers without a rule, with ``torch.func.vmap``.

Correct for any layer that treats the examples of a batch independently and takes
and returns tensors with the batch as the first dimension; slower than a rule. It
differentiates every parameter the engine names for the call, the children's ones
included (a parent that uses ``self.child.weight`` through ``F.linear``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap
from torch.utils._pytree import tree_flatten, tree_unflatten

from disparate.privacy.grad_sample.contributions import Materialized


def _batch_first_error(module_name: str, module: nn.Module, what: str, shape: tuple, b: int) -> str:
    return (
        f"cannot compute per-example gradients of {module_name} ({type(module).__name__}): "
        f"its {what} has shape {tuple(shape)}, expected the batch ({b}) as the first dimension. "
        "Register a rule for this layer with disparate.privacy.grad_sample.register_rule."
    )


def vmap_contributions(
    module_name: str,
    module: nn.Module,
    args: tuple,
    kwargs: dict,
    output_positions: list[int],
    grad_outputs: list[Tensor],
    batch_size: int,
    param_names: list[str],
) -> dict[str, Materialized]:
    """Per-example gradients of the module's parameters ``param_names`` (relative names).

    ``output_positions`` are the positions, among the tensors of the flattened output,
    that ``grad_outputs`` belong to.
    """
    params = {n: module.get_parameter(n).detach() for n in param_names}
    if not params:
        return {}
    flat_in, in_spec = tree_flatten((args, kwargs))
    tensor_pos = [i for i, a in enumerate(flat_in) if isinstance(a, Tensor)]
    for i in tensor_pos:
        if flat_in[i].dim() == 0 or flat_in[i].shape[0] != batch_size:
            raise ValueError(
                _batch_first_error(module_name, module, "input", flat_in[i].shape, batch_size)
            )
    for g in grad_outputs:
        if g.dim() == 0 or g.shape[0] != batch_size:
            raise ValueError(_batch_first_error(module_name, module, "output", g.shape, batch_size))

    def loss_one(p: dict[str, Tensor], tensors: list[Tensor], grads: list[Tensor]) -> Tensor:
        flat = list(flat_in)
        for i, t in zip(tensor_pos, tensors, strict=True):
            flat[i] = t.unsqueeze(0)
        call_args, call_kwargs = tree_unflatten(flat, in_spec)
        out = functional_call(module, p, call_args, call_kwargs)
        out_tensors = [t for t in tree_flatten(out)[0] if isinstance(t, Tensor)]
        total = out_tensors[0].new_zeros(())
        for pos, g in zip(output_positions, grads, strict=True):
            total = total + (out_tensors[pos].squeeze(0) * g).sum()
        return total

    with torch.enable_grad():
        per_example = vmap(grad(loss_one), in_dims=(None, 0, 0))(
            params, [flat_in[i] for i in tensor_pos], list(grad_outputs)
        )
    return {name: Materialized(g) for name, g in per_example.items()}
