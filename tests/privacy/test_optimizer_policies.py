"""DPOptimizer with a clipping policy: weights from the policy, noise scaled to its bound."""

import math

import torch
from torch import nn

from disparate.privacy.optimizer import DPOptimizer
from disparate.privacy.policies import build_policy


def test_noise_is_z_times_the_policy_bound_and_the_sum_uses_its_weights():
    # Per-example loss <w, x_i> * t_i: the gradient of example i is t_i x_i, of norm |t_i|.
    d, z = 20_000, 0.5
    model = nn.Linear(d, 1, bias=False)
    x = torch.zeros(2, d)
    x[0, 0] = x[1, 1] = 1.0
    targets = torch.tensor([5.0, 0.5])  # norms 5 (group 0, over C0 = 1) and 0.5 (group 1)
    groups = torch.tensor([0, 1])
    policy = build_policy("dpsgd-f", {"count_noise_std": 1e-9}, max_grad_norm=1.0,
                          expected_batch_size=2, num_groups=2)
    opt = DPOptimizer(torch.optim.SGD(model.parameters(), lr=1.0), model, expected_batch_size=2,
                      max_grad_norm=1.0, noise_multiplier=z, noise_seed=0, policy=policy)
    result = opt.step(lambda out, t: out.squeeze(1) * t, x, targets, groups=groups)
    # b_0 = 1, b_1 = 0: C_0 = 2, C_1 = 1; weights min(1, 2/5) and 1; sensitivity max C_k = 2
    torch.testing.assert_close(result.clip_weights, torch.tensor([0.4, 1.0]), rtol=0, atol=1e-6)
    grad = model.weight.grad[0] * 2  # (sum + noise), undoing the division by the batch of 2
    assert grad[0].item() != 2.0  # noise is there
    noise = grad[2:]  # coordinates where no example has a gradient
    # std of 20,000 draws: relative s.e. 0.5%; 3% is 6 s.e. (flake rate 2e-9, fixed seed)
    assert abs(noise.std().item() / (z * 2.0) - 1) < 0.03
    assert math.isclose(policy.sensitivity, 2.0, abs_tol=1e-6)
