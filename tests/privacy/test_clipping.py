"""Clip weights: min(1, S/||g||), and 0 for a non-finite norm in every mode; a step whose every
example is dropped still adds its noise."""

from __future__ import annotations

import math

import torch
from torch import nn

from disparate.privacy import DPOptimizer, clip_factors
from disparate.privacy.noise import add_gaussian_noise, make_generator

INF, NAN = math.inf, math.nan


def test_clip_factors_drop_nonfinite_norms():
    norms = torch.tensor([0.0, 0.5, 2.0, INF, NAN, -INF], dtype=torch.float64)
    assert clip_factors(norms, 1.0).tolist() == [1.0, 1.0, 0.5, 0.0, 0.0, 0.0]
    assert clip_factors(norms, None).tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


class AllNaN(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x) * float("nan")


def test_step_with_every_example_dropped_adds_only_its_noise():
    torch.manual_seed(0)
    model = AllNaN().double()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    z, s, b = 1.5, 0.8, 4
    opt = DPOptimizer(torch.optim.SGD(model.parameters(), lr=1.0), model,
                      expected_batch_size=b, max_grad_norm=s, noise_multiplier=z, noise_seed=3)
    x = torch.randn(4, 3, dtype=torch.float64)
    result = opt.step(nn.CrossEntropyLoss(reduction="none"), x, torch.zeros(4, dtype=torch.long))
    assert result.clip_weights.tolist() == [0.0] * 4
    generator = make_generator(3)  # the same noise, added to a zero sum
    for n, p in model.named_parameters():
        noise = add_gaussian_noise(torch.zeros_like(p), z * s, generator)
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p.detach(), before[n] - noise / b, rtol=1e-12, atol=1e-12)
