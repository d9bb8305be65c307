"""The plain step of runs without clipping (training.plain_step) against DPOptimizer."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from disparate.privacy import DPOptimizer
from disparate.privacy.noise import make_generator
from disparate.training import plain_step


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5), nn.Tanh(),
        nn.Linear(5, 3),
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("noise_std", [0.0, 0.7])  # non-private, noise-only
def test_plain_step_gives_the_numbers_of_dp_optimizer_without_clipping(
        dtype: torch.dtype, noise_std: float) -> None:
    torch.manual_seed(0)
    engine_model = _model().to(dtype)
    plain_model = copy.deepcopy(engine_model)
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    dp = DPOptimizer(torch.optim.SGD(engine_model.parameters(), lr=0.3, momentum=0.9), engine_model,
                     expected_batch_size=6.0, max_grad_norm=None, noise_std=noise_std,
                     noise_seed=11)
    sgd = torch.optim.SGD(plain_model.parameters(), lr=0.3, momentum=0.9)
    generator = make_generator(11)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for step in range(4):
        x = torch.randn(5 + step, 1, 6, 6, dtype=dtype)  # batch size differs from expected
        y = torch.randint(3, (5 + step,))
        result = dp.step(loss_fn, x, y)
        losses, outputs = plain_step(plain_model, sgd, loss_fn, x, y, expected_batch_size=6.0,
                                     noise_std=noise_std, generator=generator)
        torch.testing.assert_close(losses, result.losses, rtol=tol, atol=tol)
        torch.testing.assert_close(outputs, result.outputs, rtol=tol, atol=tol)
        for (name, p), q in zip(engine_model.named_parameters(), plain_model.parameters(),
                                strict=True):
            torch.testing.assert_close(q, p, rtol=tol, atol=tol, msg=f"step {step} {name}")
    # the same draws: both generators are at the same place
    assert torch.equal(generator.get_state(), dp.noise_generator.get_state())
    dp.close()
