"""Per-example gradients of ``nn.MultiheadAttention``, including its ``out_proj``.

The module never calls ``out_proj`` as a module (it passes the weight to
``F.multi_head_attention_forward``), so no hook on ``out_proj`` sees it: the rule
accounts for every parameter of the module. It replays the projections q = x_q W_q^T + b_q
(and k, v), runs torch's own attention on them with identity projections (exact: a
product with the identity adds only zeros), and back-propagates the output gradient
through that attention to dq, dk, dv. Each projection weight then gets the outer
products of its input and its output gradient, as a Linear does. The rule also gives the
gradient of the first argument (self-attention: through q, k and v), so where no other
tensor argument needs a gradient the engine cuts the graph there: the module's own backward
(attention and projections once more) never runs, and the call's output comes from the
replay (:func:`multihead_attention_forward`: the same projections, attention and out
projection), which the rule then reuses instead of computing the attention twice.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from disparate.privacy.grad_sample.contributions import Contribution, Materialized, RowBlocks
from disparate.privacy.grad_sample.layers import _trainable, outer_product_sum, register_rule

MHA_DROPOUT_ERROR = (
    "nn.MultiheadAttention(dropout={p}) draws its attention dropout inside "
    "F.multi_head_attention_forward, where it cannot be replayed for per-example "
    "gradients: construct it with dropout=0 (put nn.Dropout after it), or evaluate in eval mode"
)
MHA_UNBATCHED_ERROR = (
    "per-example gradients of nn.MultiheadAttention need a batched 3-d query, got shape {shape}"
)

_SIGNATURE = inspect.signature(nn.MultiheadAttention.forward)


def _each_once(f: Callable[[Tensor], Tensor], tensors: tuple[Tensor, ...]) -> list[Tensor]:
    """``[f(t) for t in tensors]``, with one result for a tensor given more than once (the
    query, key and value of self-attention), so that later steps can share their work."""
    done = {id(t): f(t) for t in tensors}
    return [done[id(t)] for t in tensors]


def _leaf(t: Tensor) -> Tensor:
    return t.detach().requires_grad_()


def _attend(q: Tensor, k: Tensor, v: Tensor, heads: int, attn_mask: Tensor | None,
            key_padding_mask: Tensor | None, need_weights: bool, average_weights: bool
            ) -> tuple[Tensor, Tensor | None]:
    """The attention of ``F.multi_head_attention_forward`` on projected q (T, B, E), k and v
    (S, B, E) and float masks, before the out projection: (T, B, E), and the weights if
    asked. torch's own steps, without its in and out projections."""
    length, b, e = q.shape
    source = k.shape[0]
    q, k, v = (t.reshape(t.shape[0], b * heads, e // heads).transpose(0, 1)
               for t in (q, k, v))  # (B*H, T or S, E/H)
    if attn_mask is not None and attn_mask.dim() == 2:
        attn_mask = attn_mask.unsqueeze(0)  # (1 or B*H, T, S)
    if key_padding_mask is not None:
        padding = key_padding_mask.view(b, 1, 1, source).expand(-1, heads, -1, -1)
        padding = padding.reshape(b * heads, 1, source)
        attn_mask = padding if attn_mask is None else attn_mask + padding
    if need_weights:
        scores = torch.bmm(q * math.sqrt(1.0 / q.shape[-1]), k.transpose(1, 2))
        weights = (scores if attn_mask is None else scores + attn_mask).softmax(-1)
        attended = torch.bmm(weights, v).transpose(0, 1).reshape(length, b, e)
        weights = weights.view(b, heads, length, source)
        return attended, weights.mean(1) if average_weights else weights
    if attn_mask is not None:
        attn_mask = (attn_mask.unsqueeze(0) if attn_mask.shape[0] == 1
                     else attn_mask.view(b, heads, -1, source))
    q, k, v = (t.view(b, heads, -1, t.shape[-1]) for t in (q, k, v))
    attended = F.scaled_dot_product_attention(q, k, v, attn_mask)  # (B, H, T, E/H)
    return attended.permute(2, 0, 1, 3).reshape(length, b, e), None


@dataclass
class _Replay:
    """One call's attention from its projections q, k, v (leaves of a graph to ``attended``,
    and to ``weights`` if asked), with what the rule needs of the call."""

    first: tuple[bool, bool, bool]  # which of query, key, value is the first argument
    inputs: list[Tensor]  # (T, B, E) each: query, key, value sequence-first
    weights_in: tuple[Tensor, Tensor, Tensor]  # W_q, W_k, W_v
    # self-attention of the packed weight: one projection (T, B, 3E) of the one input, as
    # torch's own; else q, k, v apart
    packed: bool
    leaves: list[Tensor]  # the projection(s), and bias_k, bias_v if the module adds them
    attended: Tensor  # (T, B, E), before the out projection
    weights: Tensor | None  # the attention weights, as the module returns them


def _replay(module: nn.MultiheadAttention, args: tuple, kwargs: dict) -> _Replay:
    call = _SIGNATURE.bind(module, *args, **kwargs)
    call.apply_defaults()
    a = call.arguments
    query, key, value = given = a["query"], a["key"], a["value"]
    if query.dim() != 3:
        raise ValueError(MHA_UNBATCHED_ERROR.format(shape=tuple(query.shape)))
    if module.dropout and module.training:
        raise ValueError(MHA_DROPOUT_ERROR.format(p=module.dropout))
    if module.batch_first:  # torch's attention is sequence-first: (T, B, E)
        query, key, value = _each_once(lambda t: t.transpose(0, 1), (query, key, value))
    length, b, e = query.shape
    key_padding_mask = F._canonical_mask(
        mask=a["key_padding_mask"], mask_name="key_padding_mask",
        other_type=F._none_or_dtype(a["attn_mask"]), other_name="attn_mask",
        target_type=query.dtype,
    )
    attn_mask = F._canonical_mask(
        mask=a["attn_mask"], mask_name="attn_mask", other_type=None, other_name="",
        target_type=query.dtype, check_other=False,
    )
    if module._qkv_same_embed_dim:
        w_q, w_k, w_v = module.in_proj_weight.chunk(3)
    else:
        w_q, w_k, w_v = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
    b_q = b_k = b_v = None
    if module.in_proj_bias is not None:
        b_q, b_k, b_v = module.in_proj_bias.chunk(3)

    packed = module._qkv_same_embed_dim and query is key is value
    with torch.enable_grad():
        if packed:
            projections = [_leaf(F.linear(query, module.in_proj_weight, module.in_proj_bias))]
            q, k, v = projections[0].chunk(3, -1)
        else:
            projections = [
                _leaf(F.linear(x, w, bias))
                for x, w, bias in ((query, w_q, b_q), (key, w_k, b_k), (value, w_v, b_v))
            ]
            q, k, v = projections  # (T, B, E), (S, B, E), (S, B, E)
        k_full, v_full, extra = k, v, []
        if module.bias_k is not None:  # one more key and value per example, as torch appends
            bias_kv = [_leaf(t.expand(1, b, e)) for t in (module.bias_k, module.bias_v)]
            extra = bias_kv
            k_full, v_full = torch.cat([k, bias_kv[0]]), torch.cat([v, bias_kv[1]])
            if attn_mask is not None:
                attn_mask = F.pad(attn_mask, (0, 1))
            if key_padding_mask is not None:
                key_padding_mask = F.pad(key_padding_mask, (0, 1))
        if not (module.add_zero_attn or a["is_causal"]):
            attended, weights = _attend(q, k_full, v_full, module.num_heads, attn_mask,
                                        key_padding_mask, a["need_weights"],
                                        a["average_attn_weights"])
        else:  # torch's own, with identity projections
            eye = torch.eye(e, dtype=q.dtype, device=q.device)
            attended, weights = F.multi_head_attention_forward(
                q, k_full, v_full, e, module.num_heads, None, None, None, None,
                module.add_zero_attn, 0.0, eye, None, training=module.training,
                key_padding_mask=key_padding_mask, need_weights=a["need_weights"],
                attn_mask=attn_mask, use_separate_proj_weight=True,
                q_proj_weight=eye, k_proj_weight=eye, v_proj_weight=eye,
                average_attn_weights=a["average_attn_weights"], is_causal=a["is_causal"],
            )  # attended: (T, B, E), before out_proj
    first = tuple(bool(args) and t is args[0] for t in given)
    return _Replay(first, [query, key, value], (w_q, w_k, w_v), packed, [*projections, *extra],
                   attended, weights)


def multihead_attention_forward(module: nn.MultiheadAttention, args: tuple, kwargs: dict
                                ) -> tuple[tuple[Tensor, Tensor | None], _Replay]:
    """The module's output (attention output and weights, as ``module(*args, **kwargs)``
    returns them, without a graph) from a replay the rule then reuses, so that a call whose
    graph is cut computes its attention once."""
    replay = _replay(module, args, kwargs)
    out = F.linear(replay.attended.detach(), module.out_proj.weight, module.out_proj.bias)
    weights = None if replay.weights is None else replay.weights.detach()
    return (out.transpose(0, 1) if module.batch_first else out, weights), replay


@register_rule(nn.MultiheadAttention, with_kwargs=True, cuts_graph=True,
               forward=multihead_attention_forward)
def multihead_attention_rule(
    module: nn.MultiheadAttention, args: tuple, kwargs: dict, grads: dict[int, Tensor],
    input_grad: bool, replay: _Replay | None = None,
) -> tuple[dict[str, Contribution], Tensor | None]:
    r = _replay(module, args, kwargs) if replay is None else replay
    (query, key, value), (w_q, w_k, w_v) = r.inputs, r.weights_in
    b, e = query.shape[1], query.shape[2]
    d_out = grads[0].transpose(0, 1) if module.batch_first else grads[0]  # (T, B, E)
    d_attended = d_out @ module.out_proj.weight
    outs, out_grads = [r.attended], [d_attended]
    if 1 in grads and r.weights is not None:
        outs.append(r.weights)
        out_grads.append(grads[1])
    inputs, packed = r.leaves, r.packed
    found = torch.autograd.grad(outs, inputs, out_grads, allow_unused=True)
    found = [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, found, strict=True)]
    projections = 1 if packed else 3  # the leaves: the projection(s), then bias_k, bias_v
    d_projections, d_extra = found[:projections], found[projections:]
    if packed:
        (d_proj,) = d_projections
    else:
        d_q, d_k, d_v = d_projections
    d_input = None
    if input_grad:  # the first argument's gradient, through each of q, k, v it is
        if packed:
            d_input = d_proj @ module.in_proj_weight
        else:
            for is_first, d, w in zip(r.first, (d_q, d_k, d_v), (w_q, w_k, w_v), strict=True):
                if is_first:
                    part = d @ w
                    d_input = part if d_input is None else d_input.add_(part)
        if module.batch_first:
            d_input = d_input.transpose(0, 1)
    # the replay's graph and projections are done with: freed before the contributions form
    attended = r.attended.detach()
    del r, replay, inputs, outs, out_grads, found, d_projections, d_attended

    def batch_major(t: Tensor) -> Tensor:
        return t.transpose(0, 1)  # (T, B, *) -> (B, T, *)

    out: dict[str, Contribution] = {}
    if packed:  # one outer product sum of (B, T, 3E) and (B, T, E) for the (3E, E) weight
        ds = [batch_major(d_proj)]
        if _trainable(module, "in_proj_weight"):
            out["in_proj_weight"] = outer_product_sum(ds[0], batch_major(query))
    else:
        xs = _each_once(batch_major, (query, key, value))  # (B, T, E)
        ds = [batch_major(t) for t in (d_q, d_k, d_v)]
        if module._qkv_same_embed_dim:
            if _trainable(module, "in_proj_weight"):  # the packed (3E, E) weight's row blocks
                out["in_proj_weight"] = RowBlocks([outer_product_sum(d, x)
                                                   for d, x in zip(ds, xs, strict=True)])
        else:
            for name, d, x in zip(("q_proj_weight", "k_proj_weight", "v_proj_weight"), ds,
                                  xs, strict=True):
                if _trainable(module, name):
                    out[name] = outer_product_sum(d, x)
    if _trainable(module, "in_proj_bias"):
        out["in_proj_bias"] = Materialized(torch.cat([d.sum(1) for d in ds], 1))
    for name, d in zip(("bias_k", "bias_v"), d_extra, strict=False):
        if _trainable(module, name):
            out[name] = Materialized(d.reshape(b, 1, 1, e))
    dy, att = batch_major(d_out), batch_major(attended)
    if _trainable(module.out_proj, "weight"):
        out["out_proj.weight"] = outer_product_sum(dy, att)
    if _trainable(module.out_proj, "bias"):
        out["out_proj.bias"] = Materialized(dy.sum(1))
    return out, d_input
