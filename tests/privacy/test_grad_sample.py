"""Oracle tests: per-example norms and clipped sums equal a one-example-at-a-time loop.

Everything runs in float64; tolerance: relative 1e-9, absolute 1e-10.
"""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from disparate.privacy import GradSampleEngine, clip_factors, clipped_grad_sum
from disparate.privacy.grad_sample import register_rule
from disparate.privacy.grad_sample.engine import LOSS_SHAPE_ERROR
from disparate.privacy.grad_sample.fallback import vmap_contributions

RTOL, ATOL = 1e-9, 1e-10
HYPOTHESIS = settings(max_examples=12, deadline=None)


def mse_per_example(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs - targets).pow(2).reshape(outputs.shape[0], -1).sum(1)


def oracle(model, loss_fn, inputs, targets, max_grad_norm):
    """Per-example gradients by a loop of batch-one backward passes."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    per_example = []
    for i in range(inputs.shape[0]):
        model.zero_grad(set_to_none=True)
        loss_fn(model(inputs[i : i + 1]), targets[i : i + 1]).sum().backward()
        per_example.append(
            {
                n: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                for n, p in params.items()
            }
        )
    norms = torch.stack(
        [torch.sqrt(sum(g.pow(2).sum() for g in grads.values())) for grads in per_example]
    )
    weights = clip_factors(norms, max_grad_norm)
    summed = {
        n: sum(w * grads[n] for w, grads in zip(weights, per_example, strict=True)) for n in params
    }
    return summed, norms


def check_against_oracle(model, inputs, targets, loss_fn=mse_per_example, max_grad_norm=0.5):
    """Compare with the oracle twice: per-example gradients formed, and ghost norms."""
    for materialize in (True, False):
        with mock.patch(
            "disparate.privacy.grad_sample.layers.prefer_materialized",
            lambda *shape, materialize=materialize: materialize,
        ):
            norms = _check_against_oracle(model, inputs, targets, loss_fn, max_grad_norm)
    return norms


def _check_against_oracle(model, inputs, targets, loss_fn, max_grad_norm):
    model = model.double()
    inputs = inputs.double() if inputs.is_floating_point() else inputs
    targets = targets.double()
    summed, norms = clipped_grad_sum(model, loss_fn, inputs, targets, max_grad_norm)
    expected_summed, expected_norms = oracle(model, loss_fn, inputs, targets, max_grad_norm)
    torch.testing.assert_close(norms, expected_norms, rtol=RTOL, atol=ATOL)
    assert set(summed) <= set(expected_summed)
    for name, expected in expected_summed.items():  # a parameter left out has gradient 0
        got = summed.get(name, torch.zeros_like(expected))
        torch.testing.assert_close(got, expected, rtol=RTOL, atol=ATOL)
    return norms


def targets_for(model, inputs):
    with torch.no_grad():
        return torch.randn_like(
            model.double()(inputs.double() if inputs.is_floating_point() else inputs)
        )


@HYPOTHESIS
@given(
    batch=st.integers(1, 5),
    seq=st.sampled_from([(), (3,), (2, 4)]),
    d_in=st.integers(1, 6),
    d_out=st.integers(1, 6),
    bias=st.booleans(),
)
def test_linear(batch, seq, d_in, d_out, bias):
    torch.manual_seed(0)
    model = nn.Linear(d_in, d_out, bias=bias)
    x = torch.randn(batch, *seq, d_in)
    check_against_oracle(model, x, targets_for(model, x))


@HYPOTHESIS
@given(
    batch=st.integers(1, 4),
    channels=st.sampled_from([(1, 3, 1), (2, 4, 2), (4, 4, 4), (3, 2, 1)]),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.sampled_from([0, 1, "same"]),
    dilation=st.integers(1, 2),
    padding_mode=st.sampled_from(["zeros", "reflect", "circular"]),
    two_d=st.booleans(),
)
def test_conv(batch, channels, kernel, stride, padding, dilation, padding_mode, two_d):
    c_in, c_out, groups = channels
    if padding == "same":
        stride = 1
    torch.manual_seed(0)
    conv = nn.Conv2d if two_d else nn.Conv1d
    model = conv(
        c_in,
        c_out,
        kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )
    x = torch.randn(batch, c_in, *([7, 6] if two_d else [9]))
    check_against_oracle(model, x, targets_for(model, x))


@pytest.mark.parametrize("chunk", [1, 2, 3])
@pytest.mark.parametrize("two_d", [True, False])
def test_conv_per_example_in_chunks_of_the_batch(chunk, two_d):
    """Patches formed a few examples at a time (the last chunk short) give the same result."""
    torch.manual_seed(0)
    if two_d:
        model = nn.Conv2d(4, 6, (2, 3), stride=(2, 1), dilation=(1, 2), padding=(1, 0),
                          groups=2, bias=False)
        x = torch.randn(5, 4, 7, 8)
    else:
        model = nn.Conv1d(4, 6, 3, stride=2, dilation=2, groups=2, padding_mode="reflect",
                          padding=1)
        x = torch.randn(5, 4, 11)
    steps = model(x)[0, 0].numel()
    per_example = chunk * model.groups * steps * model.weight[0].numel()  # elements
    with mock.patch("disparate.privacy.grad_sample.layers.PATCH_CHUNK", per_example):
        check_against_oracle(model, x, targets_for(model, x))


def test_conv_per_example_gradients_in_the_weight_layout():
    """Each example's gradient, read back in the weight's (O, C/G, kh, kw) layout, equals
    autograd's for that example alone (stride, dilation and an output that does not cover
    the last input rows and columns)."""
    from disparate.privacy.grad_sample.layers import conv_rule

    torch.manual_seed(0)
    model = nn.Conv2d(4, 6, (3, 2), stride=(2, 3), dilation=(2, 1), groups=2).double()
    x = torch.randn(3, 4, 10, 9, dtype=torch.float64)
    out = model(x)
    g = torch.randn_like(out)
    got = conv_rule(model, (x,), g)["weight"].materialize()
    for i in range(3):
        (expected,) = torch.autograd.grad(model(x[i : i + 1]), model.weight, g[i : i + 1])
        torch.testing.assert_close(got[i], expected, rtol=RTOL, atol=ATOL)


CONV_GEOMETRIES = {
    "2d strided dilated": lambda groups: nn.Conv2d(4, 6, (3, 2), stride=(2, 3), dilation=(2, 1),
                                                   groups=groups),
    "1d reflect": lambda groups: nn.Conv1d(4, 6, 3, stride=2, dilation=2, padding=1,
                                           padding_mode="reflect", groups=groups),
    "2d same circular": lambda groups: nn.Conv2d(2, 4, 3, padding="same",
                                                 padding_mode="circular", groups=groups),
    "1d zero-padded": lambda groups: nn.Conv1d(2, 4, 2, padding=1, groups=groups),
}


@pytest.mark.parametrize("kernel", ["_conv_weight_per_example", "_conv_weight_by_groups",
                                    "_conv_weight_by_patches"])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("geometry", list(CONV_GEOMETRIES))
def test_every_per_example_conv_kernel_gives_each_examples_gradient(kernel, groups, geometry):
    """The three ways of forming per-example conv weight gradients (the rule picks the
    fastest by shape) each give autograd's gradient of every example alone."""
    from disparate.privacy.grad_sample import layers

    if kernel == "_conv_weight_per_example" and groups > 1:
        pytest.skip("the convolution grouped by example is for groups=1")
    torch.manual_seed(0)
    model = CONV_GEOMETRIES[geometry](groups).double()
    x = torch.randn(3, model.in_channels, *([10, 9] if isinstance(model, nn.Conv2d) else [11]),
                    dtype=torch.float64)
    g = torch.randn_like(model(x))
    got = getattr(layers, kernel)(model, x, g).materialize()
    for i in range(3):
        (expected,) = torch.autograd.grad(model(x[i : i + 1]), model.weight, g[i : i + 1])
        torch.testing.assert_close(got[i], expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("geometry", [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=(3, 2), stride=(2, 1), dilation=(1, 2), padding=(1, 0)),
    dict(kernel_size=3, padding=2, padding_mode="reflect"),
    dict(kernel_size=1),
])
def test_the_conv_input_gram_from_pixels_is_the_gram_of_the_patches(geometry):
    """The inner products between output positions' input patches, summed from the padded
    input's pixel products over the kernel's offsets, equal those of the formed patches."""
    from disparate.privacy.grad_sample.layers import _conv_input_gram, _conv_patches

    torch.manual_seed(0)
    model = nn.Conv2d(3, 4, **geometry).double()
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    g = torch.randn_like(model(x))
    patches = _conv_patches(model, x, g)
    gram = _conv_input_gram(model, x, g)
    torch.testing.assert_close(gram, torch.bmm(patches, patches.transpose(1, 2)),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("conv, size, cheaper", [
    (nn.Conv2d(3, 4, 3, stride=3), (9, 9), False),  # 81 pixels, 9 positions of 9 offsets
    (nn.Conv2d(3, 4, 3, padding=1), (9, 9), True),  # 121 pixels, 81 positions
    (nn.Conv1d(3, 4, 3, padding=1), (9,), True),  # 11 pixels, 9 positions
])
def test_the_conv_input_gram_is_left_to_the_patches_where_it_costs_more(conv, size, cheaper):
    from disparate.privacy.grad_sample.layers import _pixel_gram_is_cheaper

    x = torch.randn(2, 3, *size)
    assert _pixel_gram_is_cheaper(conv, x, conv(x)) is cheaper


@pytest.mark.parametrize("groups", [1, 2])
def test_a_conv_of_16_channels_per_group_goes_through_the_grouped_weight_gradient(groups):
    from disparate.privacy.grad_sample import layers

    torch.manual_seed(0)
    model = nn.Conv2d(16 * groups, 16 * groups, 3, padding=1, groups=groups)
    x = torch.randn(3, 16 * groups, 4, 4)
    assert layers._grouped_weight_gradient_is_faster(model)
    assert not layers._grouped_weight_gradient_is_faster(nn.Conv2d(20, 50, 5))
    with mock.patch.object(layers, "_conv_weight_by_patches") as by_patches:
        check_against_oracle(model, x, targets_for(model, x))
    by_patches.assert_not_called()


@pytest.mark.parametrize("limit, kind", [(None, "Materialized"), (1, "Factored")])
def test_a_one_channel_conv_forms_its_gradients_only_within_the_materialize_limit(limit, kind):
    """The cost model decides for a one-input-channel layer too: above MATERIALIZE_LIMIT its
    per-example gradients are not formed (the ghost norm instead), and both are exact."""
    from disparate.privacy.grad_sample import contributions
    from disparate.privacy.grad_sample.layers import conv_rule

    torch.manual_seed(0)
    model = nn.Conv1d(1, 4, 3)
    x = torch.randn(3, 1, 12)
    limit = contributions.MATERIALIZE_LIMIT if limit is None else limit
    with mock.patch.object(contributions, "MATERIALIZE_LIMIT", limit):
        weight = conv_rule(model, (x,), torch.randn_like(model(x)))["weight"]
        assert type(weight).__name__ == kind
        check_against_oracle(model, x, targets_for(model, x))


class EmbeddingModel(nn.Module):
    def __init__(self, vocab: int, dim: int, padding_idx: int | None, tied: bool):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=padding_idx)
        self.decoder = nn.Linear(dim, vocab)
        if tied:
            self.decoder.weight = self.embedding.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.tanh(self.embedding(tokens)))


@HYPOTHESIS
@given(
    batch=st.integers(1, 4),
    seq=st.integers(1, 6),
    vocab=st.integers(2, 7),
    dim=st.integers(1, 4),
    padding_idx=st.sampled_from([None, 0]),
    tied=st.booleans(),
)
def test_embedding_and_tied_decoder(batch, seq, vocab, dim, padding_idx, tied):
    torch.manual_seed(0)
    model = EmbeddingModel(vocab, dim, padding_idx, tied)
    tokens = torch.randint(0, vocab, (batch, seq))
    check_against_oracle(model, tokens, targets_for(model, tokens))


@HYPOTHESIS
@given(
    batch=st.integers(1, 4), seq=st.integers(1, 4), dim=st.integers(2, 5), affine_bias=st.booleans()
)
def test_layer_norm(batch, seq, dim, affine_bias):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim, bias=affine_bias))
    with torch.no_grad():
        model[1].weight.normal_()
        if affine_bias:
            model[1].bias.normal_()
    x = torch.randn(batch, seq, dim)
    check_against_oracle(model, x, targets_for(model, x))


@HYPOTHESIS
@given(
    batch=st.integers(1, 4),
    groups=st.sampled_from([1, 2, 3]),
    spatial=st.sampled_from([(), (5,), (3, 4)]),
)
def test_group_norm(batch, groups, spatial):
    torch.manual_seed(0)
    model = nn.GroupNorm(groups, 6)
    with torch.no_grad():
        model.weight.normal_()
        model.bias.normal_()
    x = torch.randn(batch, 6, *spatial)
    if not spatial:
        x = x.unsqueeze(-1)
    check_against_oracle(model, x, targets_for(model, x))


class Scale(nn.Module):
    """A layer with its own parameters and no rule: takes the vmap path."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim))
        self.inner = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x * self.weight).sin()


@HYPOTHESIS
@given(batch=st.integers(1, 5), dim=st.integers(1, 5))
def test_fallback_vmap(batch, dim):
    torch.manual_seed(0)
    model = nn.Sequential(Scale(dim), nn.PReLU(dim), nn.Linear(dim, 2))
    x = torch.randn(batch, dim)
    check_against_oracle(model, x, targets_for(model, x))


class BilinearModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.bilinear = nn.Bilinear(4, 3, 2)

    def forward(self, x):
        return self.bilinear(self.a(x), x)


def test_fallback_with_two_inputs():
    torch.manual_seed(0)
    model = BilinearModel()
    x = torch.randn(5, 3)
    check_against_oracle(model, x, targets_for(model, x))


class Reused(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        return self.head(self.layer(torch.relu(self.layer(x))))


def test_layer_called_twice():
    torch.manual_seed(0)
    model = Reused()
    x = torch.randn(6, 4)
    check_against_oracle(model, x, targets_for(model, x))


class ReusedConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(torch.tanh(self.conv(x))).flatten(1)


def test_conv_called_twice():
    # the ghost form: the norms from both uses' patches, the sum by the convolution's own
    # weight gradient of each use
    torch.manual_seed(0)
    model = ReusedConv()
    x = torch.randn(4, 3, 5, 5)
    check_against_oracle(model, x, targets_for(model, x))


def test_frozen_layer_is_left_out():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    model[0].requires_grad_(False)
    x = torch.randn(4, 3)
    check_against_oracle(model, x, targets_for(model, x))
    summed, _ = clipped_grad_sum(model, mse_per_example, x.double(), targets_for(model, x), 1.0)
    assert set(summed) == {"2.weight", "2.bias"}


def test_paper_cnn_cross_entropy_batch_one_and_many():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 20, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(800, 500),
        nn.ReLU(inplace=True),
        nn.Linear(500, 10),
    )
    loss = nn.CrossEntropyLoss(reduction="none")
    for batch in (1, 7):
        x = torch.randn(batch, 1, 28, 28)
        y = torch.randint(0, 10, (batch,))
        model = model.double()
        summed, norms = clipped_grad_sum(model, loss, x.double(), y, 1.0)
        expected_summed, expected_norms = oracle(model, loss, x.double(), y, 1.0)
        torch.testing.assert_close(norms, expected_norms, rtol=RTOL, atol=ATOL)
        for name in summed:
            torch.testing.assert_close(summed[name], expected_summed[name], rtol=RTOL, atol=ATOL)


def test_weighted_sum_with_arbitrary_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 3, 2), nn.Flatten(), nn.Linear(15, 2)).double()
    x = torch.randn(4, 2, 6, dtype=torch.float64)
    y = torch.randn(4, 2, dtype=torch.float64)
    weights = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
    with GradSampleEngine(model) as engine:
        summed = engine.compute(mse_per_example, x, y).weighted_sum(weights)
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(4):
        model.zero_grad()
        mse_per_example(model(x[i : i + 1]), y[i : i + 1]).sum().backward()
        for n, p in model.named_parameters():
            expected[n] += weights[i] * p.grad
    for n in expected:
        torch.testing.assert_close(summed[n], expected[n], rtol=RTOL, atol=ATOL)


def test_clipped_examples_have_norm_at_most_s():
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    x = 10 * torch.randn(8, 3, dtype=torch.float64)
    y = torch.randn(8, 2, dtype=torch.float64)
    with GradSampleEngine(model) as engine:
        per_example = engine.compute(mse_per_example, x, y)
    weights = clip_factors(per_example.norms, 1.0)
    clipped_norms = weights * per_example.norms
    assert torch.all(clipped_norms <= 1.0 + 1e-12)
    assert torch.all((per_example.norms <= 1.0) == (weights == 1.0))


def test_batchnorm_in_training_mode_is_refused_with_the_fix():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sequential(nn.BatchNorm2d(4)))
    with pytest.raises(ValueError, match=r"1\.0 \(BatchNorm2d\).*GroupNorm.*frozen"):
        GradSampleEngine(model)


def test_loss_must_be_per_example():
    model = nn.Linear(3, 1)
    with GradSampleEngine(model) as engine, pytest.raises(ValueError) as error:
        engine.compute(lambda out, y: (out - y).pow(2).mean(), torch.randn(4, 3), torch.randn(4, 1))
    assert str(error.value) == LOSS_SHAPE_ERROR.format(batch=4, shape=())


def test_fallback_refuses_layers_without_batch_first():
    model = nn.GRU(3, 4, batch_first=True)
    x = torch.randn(2, 5, 3)  # its h_n comes out as (layers, B, H)
    with GradSampleEngine(model) as engine, pytest.raises(ValueError, match="Register a rule"):
        engine.compute(lambda out, y: out[0].sum((1, 2)), x, torch.zeros(2))


def test_a_rule_forward_needs_a_rule_that_cuts_the_graph():
    with pytest.raises(ValueError, match="cuts_graph=True"):
        register_rule(nn.Bilinear, forward=lambda module, args, kwargs: (None, None))


def test_duplicate_rule_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_rule(nn.Linear)(lambda module, inputs, grad: {})


def test_hooks_are_removed_on_close():
    model = nn.Linear(2, 2)
    engine = GradSampleEngine(model)
    engine.close()
    assert not model._forward_hooks and not model._forward_pre_hooks


class LSTMModel(nn.Module):
    """``pre``: a Linear before the LSTM, so that the LSTM's input needs a gradient and the
    engine cuts the graph there (the rule's input gradient reaches the Linear)."""

    def __init__(self, layers: int, bidirectional: bool, batch_first: bool, bias: bool,
                 pre: bool = False):
        super().__init__()
        self.batch_first = batch_first
        self.pre = nn.Linear(3, 3) if pre else nn.Identity()
        self.lstm = nn.LSTM(
            3, 4, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias
        )
        self.head = nn.Linear(4 * (2 if bidirectional else 1), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        directions = 2 if self.lstm.bidirectional else 1
        h0 = 0.1 * torch.ones(self.lstm.num_layers * directions, x.shape[0], 4, dtype=x.dtype)
        x = self.pre(x)
        if not self.batch_first:
            x = x.transpose(0, 1)
        out, (h_n, c_n) = self.lstm(x, (h0, h0.clone()))
        if not self.batch_first:
            out = out.transpose(0, 1)
        # uses the sequence output, the last hidden and the last cell state
        return self.head(out).mean(1) + h_n.sum(0).sum(-1, keepdim=True) * c_n[-1, :, :2]


@HYPOTHESIS
@given(
    batch=st.integers(1, 4),
    seq=st.integers(1, 5),
    layers=st.integers(1, 2),
    bidirectional=st.booleans(),
    batch_first=st.booleans(),
    bias=st.booleans(),
    pre=st.booleans(),
)
def test_lstm(batch, seq, layers, bidirectional, batch_first, bias, pre):
    torch.manual_seed(0)
    model = LSTMModel(layers, bidirectional, batch_first, bias, pre)
    x = torch.randn(batch, seq, 3)
    check_against_oracle(model, x, targets_for(model, x))


def test_lstm_cut_at_its_input_is_exact_and_skips_the_fused_backward():
    # The LSTM's input needs a gradient (a Linear before it): the graph is cut there. The
    # fused kernel's backward (float32: mkldnn) must not run, yet every per-example gradient,
    # the Linear's included, equals the oracle's (float64 below).
    torch.manual_seed(0)
    model = LSTMModel(2, True, True, True, pre=True)
    x = torch.randn(3, 4, 3)
    backward_ops = []
    for engine_on in (True, False):
        with GradSampleEngine(model) as engine, torch.profiler.profile() as prof:
            if engine_on:
                engine.compute(mse_per_example, x, torch.zeros(3, 2))
            else:
                mse_per_example(model(x), torch.zeros(3, 2)).sum().backward()
        backward_ops.append({e.name for e in prof.events()
                             if "rnn" in e.name.lower() and "backward" in e.name.lower()})
    assert backward_ops[1], "the control (autograd's backward) ran no fused LSTM backward"
    assert not backward_ops[0], backward_ops[0]
    # the fused forward builds no graph either, its input needing a gradient or not
    assert not _builds_graph(model, model.lstm, x, torch.zeros(3, 2))
    on_data = LSTMModel(2, True, True, True)
    assert not _builds_graph(on_data, on_data.lstm, x, torch.zeros(3, 2))
    check_against_oracle(model, x, targets_for(model, x))


def test_lstm_with_dropout_in_training_is_refused():
    model = nn.LSTM(3, 4, num_layers=2, dropout=0.5, batch_first=True)
    with GradSampleEngine(model) as engine, pytest.raises(ValueError, match="fused kernel"):
        engine.compute(lambda out, y: out[0].sum((1, 2)), torch.randn(2, 5, 3), torch.zeros(2))


class AttentionModel(nn.Module):
    """Self- or cross-attention through nn.MultiheadAttention, in either layout. ``pre``: a
    Linear before it, so that its input needs a gradient (self-attention: the engine cuts the
    graph there; cross-attention's key and value, another tensor needing one: it cannot)."""

    def __init__(self, batch_first: bool, packed: bool, bias_kv: bool, zero_attn: bool,
                 masks: bool, use_weights: bool, pre: bool = False):
        super().__init__()
        self.batch_first, self.masks, self.use_weights = batch_first, masks, use_weights
        self.pre = nn.Linear(4, 4) if pre else nn.Identity()
        kdim = None if packed else 3
        self.attn = nn.MultiheadAttention(4, 2, batch_first=batch_first, kdim=kdim, vdim=kdim,
                                          add_bias_kv=bias_kv, add_zero_attn=zero_attn)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, T, 4)
        x = self.pre(x)
        kv = x if self.attn._qkv_same_embed_dim else x[..., :3]
        length = x.shape[1]
        kwargs = {}
        if self.masks:
            kwargs["attn_mask"] = torch.triu(torch.ones(length, length, dtype=torch.bool), 1)
            padding = torch.zeros(x.shape[0], length, dtype=torch.bool)
            padding[:, -1] = length > 1
            kwargs["key_padding_mask"] = padding
        q, kv = (x, kv) if self.batch_first else (x.transpose(0, 1), kv.transpose(0, 1))
        out, weights = self.attn(q, kv, kv, need_weights=self.use_weights, **kwargs)
        if not self.batch_first:
            out = out.transpose(0, 1)
        y = self.head(out).sum(1)
        return y + weights.sum((1, 2)).unsqueeze(1) ** 2 if self.use_weights else y


@HYPOTHESIS
@given(
    batch=st.integers(1, 4),
    seq=st.integers(1, 4),
    batch_first=st.booleans(),
    packed=st.booleans(),
    bias_kv=st.booleans(),
    zero_attn=st.booleans(),
    masks=st.booleans(),
    use_weights=st.booleans(),
    pre=st.booleans(),
)
def test_multihead_attention(batch, seq, batch_first, packed, bias_kv, zero_attn, masks,
                             use_weights, pre):
    torch.manual_seed(0)
    model = AttentionModel(batch_first, packed, bias_kv, zero_attn, masks, use_weights, pre)
    x = torch.randn(batch, seq, 4)
    check_against_oracle(model, x, targets_for(model, x))


def _attention_backwards(model, x, targets) -> int:
    """How many attention backward kernels one engine.compute ran."""
    with GradSampleEngine(model) as engine, torch.profiler.profile() as prof:
        engine.compute(mse_per_example, x, targets)
    return sum("scaled_dot_product" in e.name and "backward" in e.name for e in prof.events()
               if e.name.startswith("aten::"))


def _builds_graph(model, attn, x, targets) -> bool:
    """Whether ``attn``'s forward ran with gradients enabled in one engine.compute."""
    seen = []
    with GradSampleEngine(model) as engine:  # the engine's hooks run first
        handle = attn.register_forward_pre_hook(lambda *_: seen.append(torch.is_grad_enabled()))
        engine.compute(mse_per_example, x, targets)
        handle.remove()
    assert torch.is_grad_enabled()
    return seen == [True]


def test_multihead_attention_cut_at_its_input_runs_attention_backward_once():
    # Self-attention whose input needs a gradient, or none: the module's forward builds no
    # graph and its backward never runs; the rule's replay is the one attention backward.
    # The same call with a key that needs a gradient of its own is not cut: two backwards.
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4)
    model = AttentionModel(True, True, False, False, False, False, pre=True)
    targets = targets_for(model, x).float()
    model.float()
    assert _attention_backwards(model, x, targets) == 1
    assert not _builds_graph(model, model.attn, x, targets)
    on_data = AttentionModel(True, True, False, False, False, False)
    assert not _builds_graph(on_data, on_data.attn, x, targets)
    cross = AttentionModel(True, False, False, False, False, False, pre=True)
    assert _attention_backwards(cross, x, targets) == 2
    assert _builds_graph(cross, cross.attn, x, targets)
    check_against_oracle(model, x, targets_for(model, x))


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("use_weights", [False, True])
def test_a_cut_attention_call_outputs_what_the_module_does(dtype, tol, use_weights):
    # its output comes from the rule's replay (projections, attention, out projection), not
    # from the module's forward: the same numbers, weights included
    torch.manual_seed(0)
    model = AttentionModel(True, True, True, False, True, use_weights, pre=True).to(dtype)
    with torch.no_grad():
        for p in model.parameters():  # the biases too (torch starts them at 0)
            p.copy_(0.5 * torch.randn_like(p))
    x = torch.randn(3, 5, 4, dtype=dtype)
    with GradSampleEngine(model) as engine:
        got = engine.compute(mse_per_example, x, torch.zeros(3, 2, dtype=dtype)).outputs
        assert "forward" not in model.attn.__dict__  # the module's own forward is back
    torch.testing.assert_close(got, model(x).detach(), rtol=tol, atol=tol)


def test_transformer_encoder_second_layer_is_cut_and_exact():
    # The second layer's self-attention gets the first layer's output (needing a gradient)
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.0, batch_first=True)
    model = nn.Sequential(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False),
                          nn.Flatten(), nn.Linear(12, 2))
    x = torch.randn(3, 3, 4)
    assert _attention_backwards(model, x, torch.zeros(3, 2)) == 2  # one per layer, not 3
    check_against_oracle(model, x, targets_for(model, x))


def test_self_attention_is_one_packed_projection():
    # query, key and value are one tensor (detached once): the packed (3E, E) weight is one
    # outer product sum of the (B, T, 3E) projection's gradient and that tensor, as torch's
    # own packed projection, not three row blocks (three Gram matrices of one input)
    torch.manual_seed(0)
    model = _SelfAttention(16, 16)  # 16 x 16 blocks over 3 steps: ghost norms (Factored)
    with GradSampleEngine(model) as engine:
        grads = engine.compute(mse_per_example, torch.randn(3, 3, 16), torch.zeros(3, 16))
    (contribution,) = grads._params["attn.in_proj_weight"]._factored
    assert contribution.u.shape == (3, 3, 48) and contribution.rows().shape == (3, 3, 16)


class _SelfAttention(nn.Module):
    def __init__(self, d_in: int, d_model: int):
        super().__init__()
        self.pre = nn.Linear(d_in, d_in)
        self.attn = nn.MultiheadAttention(d_model, 1, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        return self.attn(x, x, x, need_weights=False)[0].sum(1)


def test_grad_mode_is_restored_when_a_cut_call_raises():
    # the attention (cut: run without a graph) gets 3 features where it expects 4
    model = _SelfAttention(3, 4)
    with GradSampleEngine(model) as engine, pytest.raises((RuntimeError, AssertionError)):
        engine.compute(mse_per_example, torch.randn(2, 5, 3), torch.zeros(2, 4))
    assert torch.is_grad_enabled()


def test_multihead_attention_out_proj_is_counted():
    torch.manual_seed(0)
    model = AttentionModel(True, True, False, False, False, False).double()
    x = torch.randn(3, 2, 4, dtype=torch.float64)
    with GradSampleEngine(model) as engine:
        summed = engine.compute(mse_per_example, x, targets_for(model, x)).weighted_sum(
            torch.ones(3, dtype=torch.float64))
    assert {"attn.out_proj.weight", "attn.out_proj.bias"} <= set(summed)


def test_multihead_attention_with_dropout_in_training_is_refused():
    model = AttentionModel(True, True, False, False, False, False)
    model.attn.dropout = 0.1
    with GradSampleEngine(model) as engine, pytest.raises(ValueError, match="dropout=0"):
        engine.compute(mse_per_example, torch.randn(2, 3, 4), torch.zeros(2, 2))


def test_transformer_encoder_layer():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.0, batch_first=True),
        nn.Flatten(), nn.Linear(12, 2),
    )
    x = torch.randn(3, 3, 4)
    check_against_oracle(model, x, targets_for(model, x))


class SharedBlock(nn.Module):
    """One block registered under two names (a shared block, an alias), used twice."""

    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(3, 3), nn.Tanh())
        self.alias = self.block
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.alias(self.block(x)))


def test_module_under_two_names_is_counted_once_per_use():
    torch.manual_seed(0)
    model = SharedBlock()
    x = torch.randn(5, 3)
    check_against_oracle(model, x, targets_for(model, x))


class ChildWeightInParent(nn.Module):
    """A parent using its child's weight through F.linear, and an unused child."""

    def __init__(self, call_child: bool = False):
        super().__init__()
        self.call_child = call_child
        self.proj = nn.Linear(3, 3)
        self.unused = nn.Linear(3, 3)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        h = torch.tanh(nn.functional.linear(x, self.proj.weight, self.proj.bias))
        if self.call_child:  # the child also called as a module, within the same call
            h = self.proj(h)
        return self.head(h)


def test_child_weight_used_by_parent_through_f_linear():
    torch.manual_seed(0)
    model = ChildWeightInParent()
    x = torch.randn(4, 3)
    check_against_oracle(model, x, targets_for(model, x))


def test_child_weight_used_directly_and_as_module_in_one_call_is_refused():
    model = ChildWeightInParent(call_child=True)
    with GradSampleEngine(model) as engine, pytest.raises(
        ValueError, match=r"^proj\.weight is used by ChildWeightInParent directly .* by proj as"
    ):
        engine.compute(mse_per_example, torch.randn(2, 3), torch.zeros(2, 2))


class TiedAcrossCalls(nn.Module):
    """The embedding's weight reused by the parent's output layer (weight tying)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 3)
        self.mix = nn.Linear(3, 3)

    def forward(self, idx):
        h = self.mix(self.emb(idx)).mean(1)  # (B, 3)
        return nn.functional.linear(h, self.emb.weight)  # (B, 5)


def test_tied_weight_used_by_parent_and_by_an_earlier_call():
    torch.manual_seed(0)
    model = TiedAcrossCalls()
    idx = torch.randint(0, 5, (4, 3))
    with pytest.raises(ValueError, match=r"^emb\.weight is used by TiedAcrossCalls directly"):
        check_against_oracle(model, idx, targets_for(model, idx))


def test_unused_parameter_gets_no_fallback_call():
    model = ChildWeightInParent().double()
    with GradSampleEngine(model) as engine, mock.patch(
        "disparate.privacy.grad_sample.engine.vmap_contributions", wraps=vmap_contributions
    ) as fallback:
        engine.compute(mse_per_example, torch.randn(2, 3, dtype=torch.float64),
                       torch.zeros(2, 2, dtype=torch.float64))
    (call,) = fallback.call_args_list
    assert call.args[-1] == ["proj.weight", "proj.bias"]


def test_layout_that_leaves_the_batch_is_refused_naming_the_parameter():
    model = AttentionModel(True, True, False, False, False, False)
    model.attn.batch_first = False  # now fed (B, T, E) as if (T, B, E)
    with GradSampleEngine(model) as engine, pytest.raises(
        ValueError, match=r"attn\.in_proj_weight from attn \(MultiheadAttention\) came out "
                          r"for 3 examples, expected the batch \(2\)"
    ):
        engine.compute(mse_per_example, torch.randn(2, 3, 4), torch.zeros(2, 2))


class NonFinite(nn.Module):
    """Example 1's gradient is NaN (0 * inf in its forward)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 2)
        self.emb_like = nn.Linear(5, 3)
        self.head = nn.Linear(3 + 6, 2)

    def forward(self, x):
        h = torch.cat([self.emb_like(x), self.conv(x.unsqueeze(1)).flatten(1)[:, :6]], 1)
        return self.head(h)


@pytest.mark.parametrize("max_grad_norm", [0.5, None])
def test_example_with_nonfinite_gradient_is_dropped(max_grad_norm):
    torch.manual_seed(0)
    model = NonFinite().double()
    x = torch.randn(4, 5, dtype=torch.float64)
    y = targets_for(model, x)
    bad = x.clone()
    bad[1, 0] = float("nan")
    for materialize in (True, False):
        with mock.patch("disparate.privacy.grad_sample.layers.prefer_materialized",
                        lambda *shape, materialize=materialize: materialize), \
                GradSampleEngine(model) as engine:
            per_example = engine.compute(mse_per_example, bad, y)
            weights = clip_factors(per_example.norms, max_grad_norm)
            summed = per_example.weighted_sum(weights)
        assert not torch.isfinite(per_example.norms[1]) and weights[1] == 0
        keep = [0, 2, 3]
        expected, _ = oracle(model, mse_per_example, x[keep], y[keep], max_grad_norm or 1e300)
        for name in expected:
            torch.testing.assert_close(summed[name], expected[name], rtol=RTOL, atol=ATOL)


def test_weighted_sums_release_each_parameter_once_summed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    weights = torch.tensor([1.0, 0.5, 0.0, 2.0, 1.0], dtype=torch.float64)
    with GradSampleEngine(model) as engine:
        per_example = engine.compute(mse_per_example, x, y)
        expected = per_example.weighted_sum(weights)  # does not release: can sum again
        take = per_example.weighted_sums(weights)
        for name in reversed(list(expected)):  # any order
            torch.testing.assert_close(take(name), expected[name], rtol=0, atol=0)
            assert take(name) is None  # released: its per-example terms are gone
        assert per_example.weighted_sum(weights) == {}
