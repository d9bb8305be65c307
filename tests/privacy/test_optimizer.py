"""DP-SGD / DP-Adam: the update is (sum of clipped gradients + noise) / expected batch."""

import copy

import pytest
import torch
from torch import nn

from disparate.privacy import DPOptimizer, clipped_grad_sum

LOSS = nn.CrossEntropyLoss(reduction="none")


def make(seed=0, width=20):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, width), nn.Tanh(), nn.Linear(width, 3)).double()


def data(n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 10, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


def params_vector(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_clip_only_update_is_the_mean_clipped_gradient():
    model, x_y = make(), data()
    reference = make()
    summed, _ = clipped_grad_sum(reference, LOSS, *x_y, 0.5)
    opt = DPOptimizer(
        torch.optim.SGD(model.parameters(), lr=1.0),
        model,
        expected_batch_size=32,
        max_grad_norm=0.5,
    )
    assert opt.mode == "clip-only" and not opt.is_private
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = opt.step(LOSS, *x_y)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[n] - summed[n] / 32, rtol=1e-12, atol=1e-12)
    assert torch.all(result.clip_weights * result.norms <= 0.5 + 1e-12)


def test_noise_has_std_z_s_over_batch():
    # 20,443 coordinates; the sample std of the difference has relative s.e. ~0.5%;
    # tolerance 3% (6 s.e.).
    x, y = data()
    clip = make(width=2000)
    noisy = make(width=2000)
    z, s, b = 1.3, 0.7, 64
    opt_clip = DPOptimizer(
        torch.optim.SGD(clip.parameters(), lr=1.0), clip, expected_batch_size=b, max_grad_norm=s
    )
    opt_noisy = DPOptimizer(
        torch.optim.SGD(noisy.parameters(), lr=1.0),
        noisy,
        expected_batch_size=b,
        max_grad_norm=s,
        noise_multiplier=z,
        noise_seed=5,
    )
    assert opt_noisy.mode == "dp" and opt_noisy.is_private
    opt_clip.step(LOSS, x, y)
    opt_noisy.step(LOSS, x, y)
    diff = params_vector(clip) - params_vector(noisy)
    assert abs(diff.std().item() / (z * s / b) - 1) < 0.03


@pytest.mark.parametrize("at_once", [False, True])
def test_the_noise_is_drawn_parameter_by_parameter_or_at_once_above_parallel_min(
        at_once, monkeypatch):
    # the step's gradient minus the clipped sum is the noise: in parameter order, exactly the
    # generator's draws of each parameter's size, or (more than PARALLEL_MIN coordinates in
    # all) one draw of all the coordinates, each parameter its own slice
    from disparate.privacy import noise as noise_module
    from disparate.privacy.noise import gaussian_noise_, make_generator

    if at_once:
        monkeypatch.setattr(noise_module, "PARALLEL_MIN", 100)
    model, (x, y) = make(width=30), data()
    summed, _ = clipped_grad_sum(make(width=30), LOSS, x, y, 0.5)
    opt = DPOptimizer(torch.optim.SGD(model.parameters(), lr=0.0), model, expected_batch_size=16,
                      max_grad_norm=0.5, noise_multiplier=2.0, noise_seed=11)
    opt.step(LOSS, x, y)
    noise = [(p.grad - summed[n] / 16).flatten() for n, p in model.named_parameters()]
    sizes = [n.numel() for n in noise]
    generator, std = make_generator(11), 2.0 * 0.5 / 16
    draws = ([gaussian_noise_(torch.empty(sum(sizes), dtype=torch.float64), std, generator)]
             if at_once else
             [gaussian_noise_(torch.empty(n, dtype=torch.float64), std, generator) for n in sizes])
    torch.testing.assert_close(torch.cat(noise), torch.cat(draws), rtol=0, atol=1e-12)


def test_same_noise_seed_same_model_and_different_seed_differs():
    x, y = data()
    models = [make() for _ in range(3)]
    for model, seed in zip(models, (1, 1, 2), strict=True):
        opt = DPOptimizer(
            torch.optim.Adam(model.parameters(), lr=0.01),
            model,
            expected_batch_size=16,
            max_grad_norm=1.0,
            noise_multiplier=1.0,
            noise_seed=seed,
        )
        for _ in range(3):
            opt.step(LOSS, x, y)
    assert torch.equal(params_vector(models[0]), params_vector(models[1]))
    assert not torch.equal(params_vector(models[0]), params_vector(models[2]))


def test_noise_only_does_not_clip_and_is_not_private():
    model = make()
    x, y = data()
    opt = DPOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1),
        model,
        expected_batch_size=16,
        max_grad_norm=None,
        noise_std=0.3,
    )
    assert opt.mode == "noise-only" and not opt.is_private and opt.noise_std == 0.3
    result = opt.step(LOSS, x, y)
    assert torch.all(result.clip_weights == 1)


def test_non_private_equals_plain_sgd_on_the_mean_loss():
    x, y = data()
    a, b = make(), make()
    opt = DPOptimizer(
        torch.optim.SGD(a.parameters(), lr=0.5), a, expected_batch_size=16, max_grad_norm=None
    )
    assert opt.mode == "non-private"
    opt.step(LOSS, x, y)
    plain = torch.optim.SGD(b.parameters(), lr=0.5)
    LOSS(b(x), y).mean().backward()
    plain.step()
    torch.testing.assert_close(params_vector(a), params_vector(b), rtol=1e-12, atol=1e-12)


def test_empty_poisson_batch_still_adds_noise():
    model = make()
    before = params_vector(model)
    opt = DPOptimizer(
        torch.optim.SGD(model.parameters(), lr=1.0),
        model,
        expected_batch_size=8,
        max_grad_norm=1.0,
        noise_multiplier=1.0,
    )
    result = opt.step(
        LOSS, torch.zeros(0, 10, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
    )
    assert result.norms.numel() == 0
    assert not torch.equal(before, params_vector(model))


def test_state_dict_restores_noise_stream():
    x, y = data()
    a, b = make(), make()
    kwargs = dict(expected_batch_size=16, max_grad_norm=1.0, noise_multiplier=1.0, noise_seed=3)
    opt_a = DPOptimizer(torch.optim.Adam(a.parameters(), lr=0.01), a, **kwargs)
    opt_a.step(LOSS, x, y)
    state = copy.deepcopy(opt_a.state_dict())  # as a checkpoint file would hold it
    b.load_state_dict(a.state_dict())
    opt_b = DPOptimizer(torch.optim.Adam(b.parameters(), lr=0.01), b, **kwargs)
    opt_b.load_state_dict(state)
    opt_a.step(LOSS, x, y)
    opt_b.step(LOSS, x, y)
    assert torch.equal(params_vector(a), params_vector(b))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(max_grad_norm=0.0), r"max_grad_norm=0\.0: expected > 0"),
        (dict(max_grad_norm=1.0, noise_multiplier=-1.0), r"noise_multiplier=-1\.0: expected >= 0"),
        (dict(max_grad_norm=None, noise_multiplier=1.0), "without clipping"),
        (dict(max_grad_norm=1.0, noise_std=0.5), "give noise_std only without clipping"),
        (dict(max_grad_norm=None, noise_std=-0.5), r"noise_std=-0\.5: expected >= 0"),
    ],
)
def test_bad_configurations_are_refused(kwargs, message):
    model = make()
    with pytest.raises(ValueError, match=message):
        DPOptimizer(
            torch.optim.SGD(model.parameters(), lr=0.1), model, expected_batch_size=8, **kwargs
        )
