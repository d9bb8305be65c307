"""Per-example gradients of ``nn.LSTM``, once per sequence.

The model keeps the fused ``nn.LSTM``. From its input and the gradients of its outputs,
the rule replays the gates of every layer and direction (one matmul for all input
projections, then the recurrence), back-propagates through time to the gate
pre-activations dZ (T, B, 4H), and hands each weight over as the sum over time steps
of outer products: W_ih: dZ_t x_t^T, W_hh: dZ_t h_{t-1}^T. Their per-example norms
then come from (T x T) Gram matrices over time steps, never from a per-step or
per-example weight gradient. The rule also gives the input's gradient (dZ W_ih), so the
engine cuts the graph at the LSTM's input: the fused kernel's own backward never runs.
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
    """Activated gates (T, B, 4H) in PyTorch's i, f, g, o order, cells and hiddens (T, B, H),
    from a time-major input (T, B, F)."""
    steps, b, _ = x.shape
    hidden = w_hh.shape[1]
    gates = x @ w_ih.t()  # (T, B, 4H): the input projections of all time steps at once
    if bias is not None:
        gates += bias
    cells = x.new_empty(steps, b, hidden)
    hiddens = x.new_empty(steps, b, hidden)
    w_hh_t = w_hh.t()
    for t in range(steps - 1, -1, -1) if reverse else range(steps):
        z = gates[t]
        z.addmm_(h, w_hh_t)
        z[:, : 2 * hidden].sigmoid_()
        z[:, 2 * hidden : 3 * hidden].tanh_()
        z[:, 3 * hidden :].sigmoid_()
        i, f, g, o = z.chunk(4, 1)
        c = torch.mul(f, c, out=cells[t]).addcmul_(i, g)
        h = torch.tanh(c, out=hiddens[t]).mul_(o)
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
    """Gradients of the gate pre-activations, (T, B, 4H), by back-propagation through time
    (all time-major). What does not depend on the recurrence is computed for all time steps
    at once; each step then costs two multiply-adds, two products and one matmul."""
    steps, b, four_h = gates.shape
    hidden = four_h // 4
    i, f, g, o = gates.chunk(4, -1)
    c_prev = _previous(cells, c0, reverse)
    tanh_c = cells.tanh()
    # dz_i, dz_f, dz_g = dc_t * coef_t (per gate); dz_o = dh_t * coef_o; dc_t += dh_t * d_cell
    coef = torch.stack([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g),
                        tanh_c * o * (1 - o)], 2)  # (T, B, 4, H)
    d_cell = o * (1 - tanh_c * tanh_c)
    d_gates = torch.empty_like(gates)
    d_gates4 = d_gates.view(steps, b, 4, hidden)
    for t in range(steps) if reverse else range(steps - 1, -1, -1):
        dh = d_hiddens[t] + dh
        dc = torch.addcmul(dc, dh, d_cell[t])
        torch.mul(coef[t, :, :3], dc.unsqueeze(1), out=d_gates4[t, :, :3])
        torch.mul(coef[t, :, 3], dh, out=d_gates4[t, :, 3])
        dc = dc * f[t]
        dh = d_gates[t] @ w_hh
    return d_gates


def _previous(states: Tensor, first: Tensor, reverse: bool) -> Tensor:
    """The state before each time step in processing order, (T, B, H)."""
    if reverse:
        return torch.cat([states[1:], first.unsqueeze(0)], 0)
    return torch.cat([first.unsqueeze(0), states[:-1]], 0)


def _batch_major(t: Tensor) -> Tensor:
    """(T, B, ...) -> (B, T, ...), contiguous for the Gram matrices and sums."""
    return t.transpose(0, 1).contiguous()


def _lstm_contributions(module: nn.LSTM, inputs: tuple, grads: dict[int, Tensor],
                        input_grad: bool) -> tuple[dict[str, Contribution], Tensor | None]:
    x = inputs[0]
    if isinstance(x, PackedSequence):
        raise ValueError(PACKED_ERROR)
    if module.proj_size:
        raise ValueError(PROJ_ERROR)
    if module.dropout and module.training and module.num_layers > 1:
        raise ValueError(DROPOUT_ERROR.format(p=module.dropout))
    if x.dim() != 3:
        raise ValueError(UNBATCHED_ERROR.format(shape=tuple(x.shape)))
    if module.batch_first:
        x = x.transpose(0, 1)
    steps, b, _ = x.shape
    hidden, layers = module.hidden_size, module.num_layers
    directions = 2 if module.bidirectional else 1
    zeros = x.new_zeros(layers * directions, b, hidden)
    h0, c0 = inputs[1] if len(inputs) > 1 and inputs[1] is not None else (zeros, zeros)
    d_out = grads.get(0)
    if d_out is None:
        d_out = x.new_zeros(steps, b, directions * hidden)
    elif module.batch_first:
        d_out = d_out.transpose(0, 1)
    d_hn, d_cn = grads.get(1, zeros), grads.get(2, zeros)

    def suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def bias(sfx: str) -> Tensor | None:
        if not module.bias:
            return None
        return getattr(module, "bias_ih" + sfx) + getattr(module, "bias_hh" + sfx)

    layer_inputs, caches = [], {}
    layer_in = x  # (T, B, F)
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
            gates, cells, hiddens = caches.pop((layer, d))
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
            del gates, cells
            if layer > 0 or input_grad:
                part = d_gates @ w_ih  # (T, B, F) of this direction
                d_x = part if d_x is None else d_x.add_(part)
            d_gates_b = _batch_major(d_gates)
            del d_gates
            if _trainable(module, "weight_ih" + sfx):
                out["weight_ih" + sfx] = outer_product_sum(d_gates_b,
                                                           _batch_major(layer_inputs[layer]))
            if _trainable(module, "weight_hh" + sfx):
                out["weight_hh" + sfx] = outer_product_sum(
                    d_gates_b, _batch_major(_previous(hiddens, h0[k], bool(d))))
            for name in ("bias_ih" + sfx, "bias_hh" + sfx):
                if _trainable(module, name):
                    out[name] = Materialized(d_gates_b.sum(1))
        d_y = d_x
    if d_y is not None and module.batch_first:
        d_y = d_y.transpose(0, 1)
    return out, d_y


register_rule(nn.LSTM, cuts_graph=True)(_lstm_contributions)
