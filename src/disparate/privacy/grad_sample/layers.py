"""Per-layer rules: from a layer's input and output gradient to per-example contributions.

A rule receives the module, the positional inputs of one call and the gradient of
the summed loss with respect to that call's output, and returns a contribution for
every trainable parameter the call uses, by its name relative to the module
(``"weight"``, or ``"out_proj.weight"`` for a child used functionally). Adding a layer
type is one decorated function here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from disparate.privacy.grad_sample.contributions import (
    Contribution,
    Factored,
    Materialized,
    _zero_dropped,
    prefer_materialized,
    within_limit,
)

Rule = Callable[[nn.Module, tuple, Tensor], dict[str, Contribution]]
# A multi-output rule gets the output gradients by position among the output's tensors.
MultiOutputRule = Callable[[nn.Module, tuple, dict[int, Tensor]], dict[str, Contribution]]
# A rule with keyword arguments gets them too: (module, args, kwargs, {position: gradient}).
KwargsRule = Callable[[nn.Module, tuple, dict, dict[int, Tensor]], dict[str, Contribution]]
# A rule that cuts the graph also returns the gradient of its first input (or None when not
# asked: input_grad=False): (module, args, {position: gradient}, input_grad), or with keyword
# arguments (module, args, kwargs, {position: gradient}, input_grad).
CuttingRule = (Callable[[nn.Module, tuple, dict[int, Tensor], bool],
                        tuple[dict[str, Contribution], Tensor | None]]
               | Callable[[nn.Module, tuple, dict, dict[int, Tensor], bool],
                          tuple[dict[str, Contribution], Tensor | None]])
# The module's output of a call whose graph is cut, computed by the rule's own means, and what
# the rule keeps of it: (module, args, kwargs) -> (output, state); the rule then gets
# ``replay=state``.
CutForward = Callable[[nn.Module, tuple, dict], tuple[Any, Any]]


@dataclass(frozen=True)
class RegisteredRule:
    """A rule and the form of its arguments (see :func:`register_rule`)."""

    rule: Rule | MultiOutputRule | KwargsRule | CuttingRule
    multi_output: bool
    with_kwargs: bool
    cuts_graph: bool = False
    forward: CutForward | None = None


_RULES: dict[type[nn.Module], RegisteredRule] = {}


def register_rule(
    *module_types: type[nn.Module], multi_output: bool = False, with_kwargs: bool = False,
    cuts_graph: bool = False, forward: CutForward | None = None,
) -> Callable[[Rule], Rule]:
    """Register ``rule`` for exactly these module types (subclasses are not matched).

    With ``multi_output`` the rule receives ``{position: gradient}`` for the tensors of the
    module's output (e.g. ``output, (h_n, c_n)`` of an LSTM) instead of one gradient.
    With ``with_kwargs`` (implies ``multi_output``) it also receives the call's keyword
    arguments, as ``rule(module, args, kwargs, grads)``; without it a call with keyword
    arguments goes to the vmap fallback. With ``cuts_graph`` (implies ``multi_output``) the
    rule is ``rule(module, args, grads, input_grad) -> (contributions, d_input)``: given
    ``input_grad`` it also returns the gradient of the call's first input, and
    :meth:`GradSampleEngine.compute` then replaces the module's own backward by the rule
    (the module's backward would compute what the rule computes, once more), and runs its
    forward without building a graph; with ``with_kwargs`` too, it is
    ``rule(module, args, kwargs, grads, input_grad)``. A cutting rule's ``forward``, if
    given, computes such a call's output instead of the module's forward, with what the rule
    can reuse (``replay=``): work done once instead of twice.
    """

    if forward is not None and not cuts_graph:
        raise ValueError("register_rule(forward=...) is for a rule that cuts the graph: "
                         "pass cuts_graph=True as well")

    def decorate(rule: Rule) -> Rule:
        for module_type in module_types:
            if module_type in _RULES:
                raise ValueError(
                    f"a per-example gradient rule for {module_type.__name__} is already registered"
                )
            _RULES[module_type] = RegisteredRule(rule, multi_output or with_kwargs or cuts_graph,
                                                 with_kwargs, cuts_graph, forward)
        return rule

    return decorate


def rule_for(module: nn.Module) -> RegisteredRule | None:
    """The rule registered for the module's type, if any."""
    return _RULES.get(type(module))


def _trainable(module: nn.Module, name: str) -> bool:
    p = getattr(module, name, None)
    return isinstance(p, nn.Parameter) and p.requires_grad


def outer_product_sum(u: Tensor, v: Tensor) -> Contribution:
    """G_i = sum_t u_it v_it^T for u (B, T, m), v (B, T, n); formed or ghost (the cheaper)."""
    b, steps, m = u.shape
    if prefer_materialized(b, steps, m, v.shape[-1]):
        return Materialized(torch.bmm(u.transpose(1, 2), v))
    return Factored(u=u, v=v, m=m, shape=torch.Size((m, v.shape[-1])))


@register_rule(nn.Linear)
def linear_rule(module: nn.Linear, inputs: tuple, grad_out: Tensor) -> dict[str, Contribution]:
    x = inputs[0]
    b = x.shape[0]
    out: dict[str, Contribution] = {}
    if _trainable(module, "weight"):
        out["weight"] = outer_product_sum(
            grad_out.reshape(b, -1, module.out_features),  # (B, T, out)
            x.reshape(b, -1, module.in_features),  # (B, T, in)
        )
    if _trainable(module, "bias"):
        g = grad_out.reshape(b, -1, module.out_features)  # (B, T, out)
        out["bias"] = Materialized(g[:, 0] if g.shape[1] == 1 else g.sum(1))
    return out


def _conv_geometry(module: nn.Conv1d | nn.Conv2d, x: Tensor, g: Tensor):
    """Padded input and output gradient as 2-d convolutions, with kernel/stride/dilation."""
    pad = module._reversed_padding_repeated_twice
    if any(pad):
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        x = F.pad(x, pad, mode=mode)
    if isinstance(module, nn.Conv1d):
        return (
            x.unsqueeze(2),
            g.unsqueeze(2),
            (1, module.kernel_size[0]),
            (1, module.stride[0]),
            (1, module.dilation[0]),
        )
    return x, g, module.kernel_size, module.stride, module.dilation


# Input patches are formed for at most this many elements at a time (a chunk of the batch):
# 2 MB of float32, as fast as 8 MB or faster (the paper's CNN's conv2 at batch 256: 6.9 against
# 7.7 ms), in a quarter of the memory.
PATCH_CHUNK = 1 << 19


def _windows(x: Tensor, kernel, stride, dilation) -> Tensor:
    """Sliding windows of a (B, C, H, W) tensor, a (B, C, h, w, kh, kw) view (no copy)."""
    for dim, (k, s, d) in enumerate(zip(kernel, stride, dilation, strict=True), start=2):
        x = x.unfold(dim, d * (k - 1) + 1, s)[..., ::d]
    return x


def _conv_weight_per_example(module: nn.Conv1d | nn.Conv2d, x: Tensor, g: Tensor) -> Materialized:
    """Per-example weight gradients, (C_in, B, C_out, *kernel), as one grouped convolution
    (for ``groups=1``; the fastest with one input channel, and it forms no patches).

    With the batch folded into the groups, the input channels as the batch and each
    example's output gradient as its kernels, a convolution correlates every
    example's input with its own output gradient (stride and dilation swap roles).
    """
    x, g, kernel, stride, dilation = _conv_geometry(module, x, g)
    b, c = x.shape[:2]
    o = g.shape[1]
    out = F.conv2d(
        x.transpose(0, 1),  # (C, B, H, W)
        g.reshape(b * o, 1, *g.shape[2:]),
        stride=dilation,
        dilation=stride,
        groups=b,
    )  # (C, B*O, >=kh, >=kw)
    out = out[:, :, : kernel[0], : kernel[1]].reshape(c, b, o, *module.weight.shape[2:])
    return Materialized(out, batch_dim=1, perm=(1, 0, *range(2, module.weight.dim())))


def _conv_weight_by_patches(module: nn.Conv1d | nn.Conv2d, x: Tensor, g: Tensor) -> Materialized:
    """Per-example weight gradients, (B, C_out, *kernel, C_in / groups), by batched matmuls.

    Each example's (and group's) gradient is its output gradient (O/G, L) times its input
    patches (L, K*C/G), read from the input in channels-last order; the patches are formed
    for a chunk of the batch at a time (``PATCH_CHUNK`` elements).
    """
    x, g, kernel, stride, dilation = _conv_geometry(module, x, g)
    b, c = x.shape[:2]
    groups, o = module.groups, g.shape[1]
    steps = g[0, 0].numel()
    x = x.contiguous(memory_format=torch.channels_last)
    # (B, C, h, w, kh, kw) -> (B, G, h, w, kh, kw, C/G)
    win = _windows(x, kernel, stride, dilation).unflatten(1, (groups, c // groups))
    win = win.permute(0, 1, 3, 4, 5, 6, 2)
    gg = g.reshape(b * groups, o // groups, steps)  # (B*G, O/G, L)
    fan_in = module.weight[0].numel()
    out = g.new_empty(b * groups, o // groups, fan_in)
    chunk = max(1, PATCH_CHUNK // (groups * steps * fan_in))
    for i in range(0, b, chunk):
        patches = win[i : i + chunk].reshape(-1, steps, fan_in)  # (chunk*G, L, K*C/G)
        torch.bmm(gg[i * groups : (i + chunk) * groups], patches,
                  out=out[i * groups : (i + chunk) * groups])
    nd = len(module.kernel_size)
    grads = out.view(b, o, *module.kernel_size, c // groups)
    return Materialized(grads, perm=(0, nd + 1, *range(1, nd + 1)))


def _pixel_gram_is_cheaper(module: nn.Conv1d | nn.Conv2d, x: Tensor, g: Tensor) -> bool:
    """Whether :func:`_conv_input_gram` costs fewer multiply-adds than the patches' Gram
    (B*P^2*C for P padded input pixels against B*L^2*C*K; not so for strided layers), and
    its (B, P, P) products of pixels stay within MATERIALIZE_LIMIT."""
    pad = module._reversed_padding_repeated_twice  # (left, right) per dim, last dim first
    pixels = math.prod(n + pad[2 * k] + pad[2 * k + 1] for k, n in enumerate(x.shape[:1:-1]))
    steps = g[0, 0].numel()
    return (pixels * pixels <= steps * steps * math.prod(module.kernel_size)
            and within_limit(x.shape[0] * pixels * pixels))


def _conv_input_gram(module: nn.Conv1d | nn.Conv2d, x: Tensor, g: Tensor) -> Tensor:
    """(B, L, L) inner products between the input patches of the output positions of ``g``
    (``groups=1``), without forming the patches: each is a sum over the kernel's offsets of
    inner products between the padded input's pixels."""
    x, g, kernel, stride, dilation = _conv_geometry(module, x, g)  # padded, 2-d
    b, c, hp, wp = x.shape
    h, w = g.shape[2:]
    flat = x.flatten(2)  # (B, C, P)
    by_pixel = torch.bmm(flat.transpose(1, 2), flat).view(b, hp, wp, hp, wp)
    gram = None
    for i in range(kernel[0]):
        rows = slice(i * dilation[0], i * dilation[0] + stride[0] * (h - 1) + 1, stride[0])
        for j in range(kernel[1]):
            cols = slice(j * dilation[1], j * dilation[1] + stride[1] * (w - 1) + 1, stride[1])
            offset = by_pixel[:, rows, cols, rows, cols]  # (B, h, w, h, w)
            gram = offset.clone() if gram is None else gram.add_(offset)
    return gram.view(b, h * w, h * w)


def _conv_patches(module: nn.Conv1d | nn.Conv2d, x: Tensor, g: Tensor) -> Tensor:
    """Input patches (B, L, C*prod(kernel)) matching the output positions of ``g``."""
    x, g, kernel, stride, dilation = _conv_geometry(module, x, g)
    win = _windows(x, kernel, stride, dilation)  # (B, C, h, w, kh, kw)
    return win.permute(0, 2, 3, 1, 4, 5).reshape(x.shape[0], g[0, 0].numel(), -1)


# Per-example conv weight gradients by one grouped weight gradient when the channels per group
# are multiples of this, else by patches. Measured on 2 cores: 1.3-2.3x faster than patches
# for 64-channel 3x3 convolutions (ResNet18's first stage, batch 64-512) in 0.9x their memory;
# with 20 -> 50 channels (the paper's CNN) it took 5.7x their memory, and was slower at batch 1024.
GROUPED_CHANNELS = 16


def _grouped_weight_gradient_is_faster(module: nn.Conv1d | nn.Conv2d) -> bool:
    per_group = (module.in_channels // module.groups, module.out_channels // module.groups)
    return all(c % GROUPED_CHANNELS == 0 for c in per_group)


def _weight_gradient(module: nn.Conv1d | nn.Conv2d, x: Tensor, g: Tensor, *,
                     per_example: bool) -> Tensor:
    """torch's weight gradient of the layer's convolution for input ``x`` and output gradient
    ``g``: summed over the batch, the weight's shape; or ``per_example``, (B, *weight shape),
    as one convolution whose groups are the examples' (the batch folded into the channels)."""
    weight, stride, padding, dilation = (module.weight, module.stride, module.padding,
                                         module.dilation)
    if module.padding_mode != "zeros" or isinstance(padding, str):  # padded here instead
        x, g, kernel, stride, dilation = _conv_geometry(module, x, g)
        weight, padding = weight.view(*weight.shape[:2], *kernel), (0, 0)
    groups, b = module.groups, x.shape[0]
    if per_example:
        x, g = x.reshape(1, -1, *x.shape[2:]), g.reshape(1, -1, *g.shape[2:])
        weight = weight.new_empty(b * weight.shape[0], *weight.shape[1:])  # only its shape
        groups *= b
    summed = torch.ops.aten.convolution_backward(
        g, x, weight, None, stride, padding, dilation, False, [0] * len(stride), groups,
        (False, True, False))[1]
    return summed.view(b, *module.weight.shape) if per_example else summed.view(
        module.weight.shape)


def _conv_weight_by_groups(module: nn.Conv1d | nn.Conv2d, x: Tensor, g: Tensor
                           ) -> Materialized:
    """Per-example weight gradients, (B, *weight shape), by one grouped weight gradient."""
    return Materialized(_weight_gradient(module, x, g, per_example=True))


def _conv_weight_sum(module: nn.Conv1d | nn.Conv2d, x: Tensor, g: Tensor, weights: Tensor,
                     keep: Tensor | None) -> Tensor:
    """sum_i w_i G_i of the weight over the examples ``keep`` (all if None): torch's weight
    gradient of the convolution, fed each example's output gradient times its weight."""
    if keep is not None:  # a dropped example adds nothing, its non-finite values included
        x, g = _zero_dropped(x, keep, 0), _zero_dropped(g, keep, 0)
    return _weight_gradient(module, x, g * weights.view(-1, *[1] * (g.dim() - 1)),
                            per_example=False)


@register_rule(nn.Conv1d, nn.Conv2d)
def conv_rule(
    module: nn.Conv1d | nn.Conv2d, inputs: tuple, grad_out: Tensor
) -> dict[str, Contribution]:
    x = inputs[0]
    b = x.shape[0]
    out: dict[str, Contribution] = {}
    if _trainable(module, "weight"):
        o = module.out_channels
        steps = grad_out[0, 0].numel()
        fan_in = module.weight[0].numel()
        if module.groups > 1 or prefer_materialized(b, steps, o, fan_in):
            # the fastest measured (2 cores): a convolution grouped by example for up to 3
            # input channels, else a grouped weight gradient for channels in blocks of 16,
            # else patches
            if module.groups == 1 and module.in_channels <= 3:
                per_example = _conv_weight_per_example
            elif _grouped_weight_gradient_is_faster(module):
                per_example = _conv_weight_by_groups
            else:
                per_example = _conv_weight_by_patches
            out["weight"] = per_example(module, x, grad_out)
        else:
            patches = functools.partial(_conv_patches, module, x, grad_out)  # (B, L, C*K)
            gram = (_conv_input_gram(module, x, grad_out)
                    if _pixel_gram_is_cheaper(module, x, grad_out) else None)
            out["weight"] = Factored(
                u=grad_out.reshape(b, o, -1).transpose(1, 2),  # (B, L, O)
                v=patches() if gram is None else None,
                m=o,
                shape=module.weight.shape,
                summed_by=functools.partial(_conv_weight_sum, module, x, grad_out),
                v_gram=gram,
                rows_of_v=patches,
            )
    if _trainable(module, "bias"):
        out["bias"] = Materialized(grad_out.reshape(b, module.out_channels, -1).sum(2))
    return out


@register_rule(nn.Embedding)
def embedding_rule(
    module: nn.Embedding, inputs: tuple, grad_out: Tensor
) -> dict[str, Contribution]:
    if not _trainable(module, "weight"):
        return {}
    idx = inputs[0]
    b = idx.shape[0]
    idx = idx.reshape(b, -1)  # (B, T)
    g = grad_out.reshape(b, -1, module.embedding_dim)  # (B, T, D)
    if module.padding_idx is not None:
        g = g.masked_fill((idx == module.padding_idx).unsqueeze(-1), 0.0)
    return {"weight": Factored(u=idx, v=g, m=module.num_embeddings, shape=module.weight.shape)}


def _affine_norm_contributions(
    module: nn.Module, grad_out: Tensor, normalized: Tensor, reduce_dims: list[int]
) -> dict[str, Contribution]:
    out: dict[str, Contribution] = {}
    if _trainable(module, "weight"):
        w = (grad_out * normalized).sum(reduce_dims) if reduce_dims else grad_out * normalized
        out["weight"] = Materialized(w)
    if _trainable(module, "bias"):
        out["bias"] = Materialized(grad_out.sum(reduce_dims) if reduce_dims else grad_out)
    return out


@register_rule(nn.LayerNorm)
def layer_norm_rule(
    module: nn.LayerNorm, inputs: tuple, grad_out: Tensor
) -> dict[str, Contribution]:
    x = inputs[0]
    normalized = F.layer_norm(x, module.normalized_shape, eps=module.eps)
    reduce_dims = list(range(1, x.dim() - len(module.normalized_shape)))
    return _affine_norm_contributions(module, grad_out, normalized, reduce_dims)


@register_rule(nn.GroupNorm)
def group_norm_rule(
    module: nn.GroupNorm, inputs: tuple, grad_out: Tensor
) -> dict[str, Contribution]:
    x = inputs[0]
    normalized = F.group_norm(x, module.num_groups, eps=module.eps)
    return _affine_norm_contributions(module, grad_out, normalized, list(range(2, x.dim())))
