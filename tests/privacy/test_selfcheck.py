"""The step-1 self-check: each bad model of issue #11 is refused naming its part; good ones pass
and leave the model, its buffers, its gradients and the RNG streams as they were."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from disparate.privacy import SelfCheckError, self_check
from disparate.privacy.grad_sample import register_rule
from disparate.privacy.grad_sample.contributions import Materialized
from disparate.privacy.grad_sample.layers import _RULES

CE = nn.CrossEntropyLoss(reduction="none")


def batch(n: int = 6, d: int = 4, classes: int = 3):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_good_model_with_dropout_passes_and_leaves_everything_as_it_was():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.ReLU(), nn.LayerNorm(8),
                          nn.Linear(8, 3))
    model[0].register_buffer("constant", torch.ones(2))
    x, y = batch()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    result = self_check(model, CE, x, y)
    assert result.passed and result.independence == "checked" and result.examples == 6
    assert result.max_grad_sum_error <= result.grad_sum_rtol == 5e-3
    assert result.seconds > 0
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert all(p.grad is None for p in model.parameters())


def test_float64_tolerance_is_tight():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3)).double()
    x, y = batch()
    result = self_check(model, CE, x.double(), y)
    assert result.grad_sum_rtol == 1e-9 and result.max_grad_sum_error <= 1e-9


class FunctionalBatchNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return nn.functional.batch_norm(self.fc(x), None, None, training=True)


class Centering(nn.Module):
    def forward(self, x):
        return x - x.mean(0, keepdim=True)


@pytest.mark.parametrize(
    ("model", "named"),
    [
        (FunctionalBatchNorm(), r"FunctionalBatchNorm \(FunctionalBatchNorm\)"),
        (nn.Sequential(nn.Linear(4, 4), Centering(), nn.Linear(4, 3)), r"1 \(Centering\)"),
    ],
)
def test_model_mixing_examples_is_refused_naming_the_module(model, named):
    x, y = batch()
    with pytest.raises(SelfCheckError, match=named + " mixes the examples.*example 1"):
        self_check(model, CE, x, y)


class WrongLayout(nn.Module):
    """A sequence-first MultiheadAttention fed (B, T, E) with B == T: attends over the batch."""

    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2)
        self.head = nn.Linear(4, 3)

    def forward(self, x):  # x: (B, T, 4)
        return self.head(self.attn(x, x, x, need_weights=False)[0].mean(1))


def test_attention_fed_the_wrong_layout_is_refused_with_the_layout_hint():
    x = torch.randn(3, 3, 4)
    with pytest.raises(SelfCheckError, match=r"attn \(MultiheadAttention\) mixes.*"
                                             r"batch_first=False: feed it \(T, B, E\)"):
        self_check(WrongLayout(), CE, x, torch.tensor([0, 1, 2]))


class MixingLoss:
    def __call__(self, out, y):
        return CE(out, y) - CE(out, y).mean()


def test_loss_mixing_examples_is_refused():
    x, y = batch()
    with pytest.raises(SelfCheckError, match="the model's loss_fn mixes.*the loss of example 1"):
        self_check(nn.Linear(4, 3), MixingLoss(), x, y)


class RunningMean(nn.Module):
    """Stores a private example exactly in a buffer during training."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.register_buffer("last", torch.zeros(4))

    def forward(self, x):
        if self.training:
            self.last.copy_(x[0].detach())
        return self.fc(x)


def test_buffer_written_from_the_data_is_refused_and_restored():
    model = nn.Sequential(RunningMean())
    x, y = batch()
    with pytest.raises(SelfCheckError, match=r"buffer 0\.last of 0 \(RunningMean\) changed"):
        self_check(model, CE, x, y)
    assert torch.equal(model[0].last, torch.zeros(4))


class Scaled(nn.Module):
    """A layer whose hand-written rule forgets its bias: the engine misses a parameter."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(4))
        self.bias = nn.Parameter(torch.zeros(4))

    def forward(self, x):
        return x * self.weight + self.bias


@pytest.fixture
def incomplete_rule():
    @register_rule(Scaled)
    def rule(module, inputs, grad_out):
        return {"weight": Materialized(grad_out * inputs[0])}

    yield
    del _RULES[Scaled]


def test_parameter_missed_by_a_rule_is_refused_naming_it(incomplete_rule):
    model = nn.Sequential(Scaled(), nn.Linear(4, 3))
    x, y = batch()
    with pytest.raises(SelfCheckError, match=r"parameter 0\.bias: .* by 1 \(relative.*missing"):
        self_check(model, CE, x, y)


@pytest.fixture
def doubling_rule():
    @register_rule(Scaled)
    def rule(module, inputs, grad_out):
        return {"weight": Materialized(2 * grad_out * inputs[0]), "bias": Materialized(grad_out)}

    yield
    del _RULES[Scaled]


def test_parameter_counted_twice_is_refused_naming_it(doubling_rule):
    model = nn.Sequential(Scaled(), nn.Linear(4, 3))
    x, y = batch()
    with pytest.raises(SelfCheckError, match=r"parameter 0\.weight: .*counted twice"):
        self_check(model, CE, x, y)


def test_embedding_with_max_norm_is_refused():
    model = nn.Sequential(nn.Embedding(5, 3, max_norm=1.0), nn.Flatten(), nn.Linear(6, 3))
    with pytest.raises(ValueError, match=r"0 \(Embedding\) has max_norm=1\.0.*max_norm=None"):
        self_check(model, CE, torch.randint(0, 5, (4, 2)), torch.zeros(4, dtype=torch.long))


def test_attention_both_layouts_and_shared_block_pass():
    torch.manual_seed(0)

    class Model(nn.Module):
        def __init__(self, batch_first: bool):
            super().__init__()
            self.batch_first = batch_first
            self.attn = nn.MultiheadAttention(4, 2, batch_first=batch_first)
            self.block = nn.Linear(4, 4)
            self.alias = self.block
            self.head = nn.Linear(4, 3)

        def forward(self, x):  # (B, T, 4)
            h = self.alias(self.block(x))
            h = h if self.batch_first else h.transpose(0, 1)
            out = self.attn(h, h, h)[0]
            out = out if self.batch_first else out.transpose(0, 1)
            return self.head(out.mean(1))

    x = torch.randn(5, 3, 4)
    y = torch.randint(0, 3, (5,))
    for batch_first in (True, False):
        assert self_check(Model(batch_first), CE, x, y).passed


def test_nonfinite_example_is_left_out_of_the_comparison():
    x, y = batch()
    x[2, 0] = float("nan")
    assert self_check(nn.Linear(4, 3), CE, x, y).passed


def test_integer_batch_of_equal_examples_skips_independence():
    model = nn.Sequential(nn.Embedding(5, 3), nn.Flatten(), nn.Linear(6, 3))
    result = self_check(model, CE, torch.ones(4, 2, dtype=torch.long),
                        torch.zeros(4, dtype=torch.long))
    assert result.independence == "skipped: all examples of the batch are equal"
