"""DPOptimizer as a torch optimizer: loss.backward(); step() equals the per-example oracle."""

import pytest
import torch
from torch import nn

from disparate.privacy import DPOptimizer
from disparate.privacy.grad_sample.engine import ACCUMULATION_ERROR, INPUTS_ERROR
from disparate.privacy.optimizer import ERR_NO_BACKWARD

S = 0.7


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).double()


class TwoInputs(nn.Module):
    """model(image=..., extra=...) or model(image, extra): two branches summed."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.a = nn.Linear(6, 3).double()
        self.b = nn.Linear(2, 3).double()

    def forward(self, image, extra):
        return self.a(image) + torch.tanh(self.b(extra))


def batch(n=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g, dtype=torch.float64) * 3
    extra = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x, extra, torch.randint(0, 3, (n,), generator=g)


def oracle_clipped_sum(model, call, n, y):
    """float64 loop over examples: each one's gradient, clipped to S, summed."""
    total = [torch.zeros_like(p) for p in model.parameters()]
    for i in range(n):
        model.zero_grad()
        nn.functional.cross_entropy(call(i), y[i : i + 1]).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        norm = torch.sqrt(sum(g.square().sum() for g in grads))
        factor = min(1.0, S / float(norm))
        total = [t + factor * g for t, g in zip(total, grads, strict=True)]
    model.zero_grad()
    return total


def dp(model, reduction="mean", expected=10):
    sgd = torch.optim.SGD(model.parameters(), lr=0.0)
    return DPOptimizer(sgd, model, expected_batch_size=expected, max_grad_norm=S,
                       loss_reduction=reduction)


def grads_times(model, expected):
    return [p.grad * expected for p in model.parameters()]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_backward_flow_equals_oracle_and_step_with_loss_fn(reduction):
    x, _, y = batch()
    model = mlp()
    expected = oracle_clipped_sum(model, lambda i: model(x[i : i + 1]), len(y), y)
    opt = dp(model, reduction)
    loss = nn.functional.cross_entropy(model(x), y, reduction=reduction)
    loss.backward()
    result = opt.step()
    backward_sum = grads_times(model, 10)
    for got, want in zip(backward_sum, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert result.losses is None and result.norms.shape == (12,)
    opt.step(nn.CrossEntropyLoss(reduction="none"), x, y)
    for got, want in zip(grads_times(model, 10), backward_sum, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    opt.close()


@pytest.mark.parametrize("as_dict", [True, False])
def test_dict_and_tuple_inputs_are_oracle_exact(as_dict):
    x, extra, y = batch()
    model = TwoInputs()
    expected = oracle_clipped_sum(model, lambda i: model(x[i : i + 1], extra[i : i + 1]),
                                  len(y), y)
    opt = dp(model)
    inputs = {"image": x, "extra": extra} if as_dict else (x, extra)
    out = model(**inputs) if as_dict else model(*inputs)
    nn.functional.cross_entropy(out, y).backward()
    opt.step()
    for got, want in zip(grads_times(model, 10), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    opt.step(nn.CrossEntropyLoss(reduction="none"), inputs, y)
    for got, want in zip(grads_times(model, 10), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_is_a_torch_optimizer_lr_scheduler_steps_and_state_is_shared():
    model = mlp()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt = DPOptimizer(sgd, model, expected_batch_size=4, max_grad_norm=1.0)
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups is sgd.param_groups and opt.state is sgd.state
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    x, _, y = batch(4)
    for _ in range(2):
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        scheduler.step()
    assert sgd.param_groups[0]["lr"] == pytest.approx(0.025)
    assert len(sgd.state) == 4  # momentum buffers of the wrapped SGD
    assert set(opt.state_dict()) == {"optimizer", "noise_generator"}


def test_empty_batch_backward_flow_adds_only_noise():
    model = mlp()
    opt = dp(model)
    x, _, y = batch(0)
    nn.functional.cross_entropy(model(x), y).backward()  # nan loss of an empty batch
    result = opt.step()
    assert result.norms.numel() == 0
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in model.parameters())


def test_step_without_backward_says_what_to_do():
    model = mlp()
    opt = dp(model)
    with pytest.raises(ValueError) as e:
        opt.step()
    assert str(e.value) == ERR_NO_BACKWARD
    x, _, y = batch(4)
    model(x)  # a forward pass that is never backwarded does not count either
    with pytest.raises(ValueError, match="needs loss.backward"):
        opt.step()


def test_two_backward_passes_before_a_step_are_refused():
    model = mlp()
    opt = dp(model)
    x, _, y = batch(4)
    for _ in range(2):
        nn.functional.cross_entropy(model(x), y).backward()
    with pytest.raises(ValueError) as e:
        opt.step()
    assert str(e.value) == ACCUMULATION_ERROR.format(passes=2)


def test_inputs_of_a_wrong_type_are_named():
    opt = dp(mlp())
    with pytest.raises(ValueError) as e:
        opt.step(nn.CrossEntropyLoss(reduction="none"), "text", torch.zeros(1))
    assert str(e.value) == INPUTS_ERROR.format(kind="str")
    with pytest.raises(ValueError, match="loss_reduction='avg': expected one of 'mean', 'sum'"):
        DPOptimizer(torch.optim.SGD(mlp().parameters(), lr=0.1), mlp(), expected_batch_size=1,
                    max_grad_norm=1.0, loss_reduction="avg")
