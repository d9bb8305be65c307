"""Per-example gradients of ``nn.LSTM``, once per sequence.

The model keeps the fused ``nn.LSTM``. From its input and the gradients of its outputs,
the rule replays the gates of every layer and direction (one matmul for all input
projections, then the recurrence), back-propagates through time to the gate
pre-activations dZ (B, T, 4H), and hands each weight over as the sum over time steps
of outer products: W_ih: dZ_t x_t^T, W_hh: dZ_t h_{t-1}^T. Their per-example norms
then come from (T x T) Gram matrices over time steps, never from a per-step or
per-example weight gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from disparate.privacy.grad_sample.contributions import Contribution, Materialized
from disparate.privacy.grad_sample.layers import _trainable, outer_product_sum, register_rule

PACKED_ERROR = (
    "per-example gradients of nn.LSTM with a PackedSequence input are not supported: "
    "pass a padded (B, T, F) tensor"
)
PROJ_ERROR = "per-example gradients of nn.LSTM with proj_size > 0 are not supported"
DROPOUT_ERROR = (
    "nn.LSTM(dropout={p}) draws its inter-layer dropout masks inside the fused kernel, "
    "where they cannot be replayed for per-example gradients: use dropout=0 and put "
    "nn.Dropout between single-layer LSTMs, or evaluate in eval mode"
)
UNBATCHED_ERROR = "per-example gradients of nn.LSTM need a batched 3-d input, got shape {shape}"


def _forward(
    x: Tensor, w_ih: Tensor, w_hh: Tensor, bias: Tensor | None, h: Tensor, c: Tensor, reverse: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Activated gates (B, T, 4H) in PyTorch's i, f, g, o order, cells and hiddens (B, T, H)."""
    b, steps, _ = x.shape
    hidden = w_hh.shape[1]
    projected = x @ w_ih.t()  # (B, T, 4H), all time steps at once
    if bias is not None:
        projected += bias
    gates = torch.empty_like(projected)
    cells = x.new_empty(b, steps, hidden)
    hiddens = x.new_empty(b, steps, hidden)
    w_hh_t = w_hh.t()
    for t in range(steps - 1, -1, -1) if reverse else range(steps):
        z = torch.addmm(projected[:, t], h, w_hh_t)
        z[:, : 2 * hidden].sigmoid_()
        z[:, 2 * hidden : 3 * hidden].tanh_()
        z[:, 3 * hidden :].sigmoid_()
        i, f, g, o = z.chunk(4, 1)
        c = torch.addcmul(f * c, i, g)
        h = o * torch.tanh(c)
        gates[:, t] = z
        cells[:, t] = c
        hiddens[:, t] = h
    return gates, cells, hiddens


def _backward(
    gates: Tensor,
    cells: Tensor,
    c0: Tensor,
    w_hh: Tensor,
    d_hiddens: Tensor,
    dh: Tensor,
    dc: Tensor,
    reverse: bool,
) -> Tensor:
    """Gradients of the gate pre-activations, (B, T, 4H), by back-propagation through time."""
    steps = gates.shape[1]
    d_gates = torch.empty_like(gates)
    for t in range(steps) if reverse else range(steps - 1, -1, -1):
        i, f, g, o = gates[:, t].chunk(4, 1)
        prev = t + 1 if reverse else t - 1
        c_prev = cells[:, prev] if 0 <= prev < steps else c0
        tanh_c = torch.tanh(cells[:, t])
        dh = d_hiddens[:, t] + dh
        dc = dc + dh * o * (1 - tanh_c * tanh_c)
        dz = d_gates[:, t]
        dz[:, : i.shape[1]] = dc * g * i * (1 - i)
        dz[:, i.shape[1] : 2 * i.shape[1]] = dc * c_prev * f * (1 - f)
        dz[:, 2 * i.shape[1] : 3 * i.shape[1]] = dc * i * (1 - g * g)
        dz[:, 3 * i.shape[1] :] = dh * tanh_c * o * (1 - o)
        dc = dc * f
        dh = dz @ w_hh
    return d_gates


def _previous_hiddens(hiddens: Tensor, h0: Tensor, reverse: bool) -> Tensor:
    """h_{t-1} in processing order for every t, (B, T, H)."""
    if reverse:
        return torch.cat([hiddens[:, 1:], h0.unsqueeze(1)], 1)
    return torch.cat([h0.unsqueeze(1), hiddens[:, :-1]], 1)


@register_rule(nn.LSTM, multi_output=True)
def lstm_rule(module: nn.LSTM, inputs: tuple, grads: dict[int, Tensor]) -> dict[str, Contribution]:
    x = inputs[0]
    if isinstance(x, PackedSequence):
        raise ValueError(PACKED_ERROR)
    if module.proj_size:
        raise ValueError(PROJ_ERROR)
    if module.dropout and module.training and module.num_layers > 1:
        raise ValueError(DROPOUT_ERROR.format(p=module.dropout))
    if x.dim() != 3:
        raise ValueError(UNBATCHED_ERROR.format(shape=tuple(x.shape)))
    if not module.batch_first:
        x = x.transpose(0, 1)
    b, steps, _ = x.shape
    hidden, layers = module.hidden_size, module.num_layers
    directions = 2 if module.bidirectional else 1
    zeros = x.new_zeros(layers * directions, b, hidden)
    h0, c0 = inputs[1] if len(inputs) > 1 and inputs[1] is not None else (zeros, zeros)
    d_out = grads.get(0)
    if d_out is None:
        d_out = x.new_zeros(b, steps, directions * hidden)
    elif not module.batch_first:
        d_out = d_out.transpose(0, 1)
    d_hn, d_cn = grads.get(1, zeros), grads.get(2, zeros)

    def suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def bias(sfx: str) -> Tensor | None:
        if not module.bias:
            return None
        return getattr(module, "bias_ih" + sfx) + getattr(module, "bias_hh" + sfx)

    layer_inputs, caches = [], {}
    layer_in = x
    for layer in range(layers):
        outputs = []
        for d in range(directions):
            sfx, k = suffix(layer, d), layer * directions + d
            w_ih, w_hh = getattr(module, "weight_ih" + sfx), getattr(module, "weight_hh" + sfx)
            caches[layer, d] = _forward(layer_in, w_ih, w_hh, bias(sfx), h0[k], c0[k], bool(d))
            outputs.append(caches[layer, d][2])
        layer_inputs.append(layer_in)
        layer_in = torch.cat(outputs, -1) if directions == 2 else outputs[0]

    out: dict[str, Contribution] = {}
    d_y = d_out
    for layer in range(layers - 1, -1, -1):
        d_x = None
        for d in range(directions):
            sfx, k = suffix(layer, d), layer * directions + d
            w_ih, w_hh = getattr(module, "weight_ih" + sfx), getattr(module, "weight_hh" + sfx)
            gates, cells, hiddens = caches[layer, d]
            d_gates = _backward(
                gates,
                cells,
                c0[k],
                w_hh,
                d_y[..., d * hidden : (d + 1) * hidden],
                d_hn[k],
                d_cn[k],
                bool(d),
            )
            if _trainable(module, "weight_ih" + sfx):
                out["weight_ih" + sfx] = outer_product_sum(d_gates, layer_inputs[layer])
            if _trainable(module, "weight_hh" + sfx):
                out["weight_hh" + sfx] = outer_product_sum(
                    d_gates, _previous_hiddens(hiddens, h0[k], bool(d))
                )
            for name in ("bias_ih" + sfx, "bias_hh" + sfx):
                if _trainable(module, name):
                    out[name] = Materialized(d_gates.sum(1))
            if layer > 0:
                d_x = d_gates @ w_ih if d_x is None else d_x + d_gates @ w_ih
        d_y = d_x
    return out
