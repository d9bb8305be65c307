"""Clipping policies: weights against hand computations, the noise of their statistics,
their options and state."""

import math

import pytest
import torch

from disparate.privacy.noise import make_generator
from disparate.privacy.policies import POLICIES, build_policy, policy_class

TINY = 1e-9  # a count noise std small enough to leave the hand computation exact to 1e-6


def _policy(name, options=None, *, s=1.0, b=4.0, k=2):
    return build_policy(name, options or {}, max_grad_norm=s, expected_batch_size=b,
                        num_groups=k)


def test_flat_is_min_one_s_over_norm_and_drops_non_finite():
    policy = _policy("dpsgd", s=2.0)
    norms = torch.tensor([1.0, 4.0, 8.0, math.nan, math.inf])
    w = policy.weights(norms, None, make_generator(0))
    torch.testing.assert_close(w, torch.tensor([1.0, 0.5, 0.25, 0.0, 0.0]))
    assert policy.sensitivity == 2.0 and policy.statistics == ()


def test_dpsgd_f_bounds_and_weights_by_hand():
    # group 0: norms 0.5 | 2, 4 over C0=1 -> b0 = 2/3; group 1: 0.8 | 3 -> b1 = 1/2
    # C_k = C0 (1 + b_k / (b0 + b1)): C_0 = 1 + 4/7 = 11/7, C_1 = 1 + 3/7 = 10/7
    policy = _policy("dpsgd-f", {"count_noise_std": TINY})
    norms = torch.tensor([0.5, 2.0, 4.0, 0.8, 3.0, math.nan])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    w = policy.weights(norms, groups, make_generator(0))
    expected = torch.tensor([1.0, 11 / 14, 11 / 28, 1.0, 10 / 21, 0.0])
    torch.testing.assert_close(w, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(policy.bounds, torch.tensor([11 / 7, 10 / 7]), rtol=0, atol=1e-6)
    assert policy.sensitivity == pytest.approx(11 / 7, abs=1e-6)
    # the NaN example is in no count: (over, not over) per group
    torch.testing.assert_close(policy.noisy_counts, torch.tensor([[2.0, 1.0], [1.0, 1.0]]),
                               rtol=0, atol=1e-6)
    (stat,) = policy.statistics
    assert stat.sensitivity == 1.0 and stat.noise_multiplier == TINY


def test_dpsgd_f_needs_groups():
    with pytest.raises(ValueError, match=r"mitigation.method='dpsgd-f' clips by group"):
        build_policy("dpsgd-f", {}, max_grad_norm=1.0, expected_batch_size=4, num_groups=None)
    with pytest.raises(ValueError, match=r"groups=None"):
        _policy("dpsgd-f").weights(torch.ones(2), None, make_generator(0))


def test_dpsgd_global_scales_by_c_over_z_and_drops_above_z():
    policy = _policy("dpsgd-global", {"upper_bound": 3.0})
    w = policy.weights(torch.tensor([0.5, 2.0, 3.0, 4.0, math.nan]), None, make_generator(0))
    torch.testing.assert_close(w, torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0, 0.0]))
    assert policy.sensitivity == 1.0


def test_dpsgd_global_adapt_weights_and_update_by_hand():
    policy = _policy("dpsgd-global-adapt", {"upper_bound": 3.0, "count_noise_std": TINY,
                                            "target_fraction": 0.01, "learning_rate": 1.0})
    w = policy.weights(torch.tensor([0.5, 2.0, 4.0, 5.0]), None, make_generator(0))
    # <= Z: C/Z; above: clipped to C (not dropped)
    torch.testing.assert_close(w, torch.tensor([1 / 3, 1 / 3, 1 / 4, 1 / 5]))
    # 2 of the expected 4 exceed tau*Z = 3: Z <- 3 exp(1 * (0.5 - 0.01))
    assert policy.upper_bound == pytest.approx(3 * math.exp(0.49), rel=1e-6)
    assert policy.state_dict() == {"upper_bound": policy.upper_bound}


def test_adaptive_clip_weights_and_geometric_update_by_hand():
    policy = _policy("adaptive-clip", {"count_noise_std": TINY, "target_quantile": 0.5,
                                       "learning_rate": 0.2})
    w = policy.weights(torch.tensor([0.5, 2.0, 0.4, 0.25]), None, make_generator(0))
    torch.testing.assert_close(w, torch.tensor([1.0, 0.5, 1.0, 1.0]))
    # 3 of 4 below C=1: centred sum 3 - 4/2 = 1, b = 1/4 + 1/2 = 0.75, C <- exp(-0.2 * 0.25)
    assert policy.bound == pytest.approx(math.exp(-0.05), rel=1e-6)
    assert policy.sensitivity == 1.0  # this step's C
    (stat,) = policy.statistics
    assert stat.sensitivity == 0.5 and stat.noise_multiplier == pytest.approx(2 * TINY)
    restored = _policy("adaptive-clip")
    restored.load_state_dict(policy.state_dict())
    assert restored.bound == policy.bound


N_DRAWS = 20_000


def _check_gaussian(noise: torch.Tensor, std: float) -> None:
    # n = 20,000 draws: the sample std has relative s.e. 1/sqrt(2n) = 0.5%, so 3% is 6 s.e.
    # (flake rate 2e-9); the mean's s.e. is std/sqrt(n), 5 s.e. (flake rate 6e-7). The
    # generator is seeded, so the test is deterministic on a given torch build.
    assert abs(noise.std().item() / std - 1) < 0.03
    assert abs(noise.mean().item()) < 5 * std / math.sqrt(len(noise))


def test_dpsgd_f_counts_carry_the_stated_noise_once_per_step():
    policy = _policy("dpsgd-f", {"count_noise_std": 2.5}, k=3)
    norms, groups = torch.tensor([0.5, 2.0, 3.0]), torch.tensor([0, 0, 2])
    true = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    gen = make_generator(1)
    draws = []
    for _ in range(N_DRAWS // 6):
        state = gen.get_state()
        policy.weights(norms, groups, gen)
        draws.append((policy.noisy_counts - true).flatten())
        # one release of the 6 counts per step, and nothing else drawn: 6 normals
        replay = torch.Generator().set_state(state)
        torch.randn(6, generator=replay)
        assert torch.equal(replay.get_state(), gen.get_state())
    _check_gaussian(torch.cat(draws), 2.5)


def test_global_adapt_count_carries_the_stated_noise():
    b, sigma = 64.0, 3.2
    policy = _policy("dpsgd-global-adapt", {"count_noise_std": sigma, "upper_bound": 2.0},
                     b=b)
    norms = torch.tensor([0.5, 3.0, 4.0])  # 2 above tau*Z while Z stays near 2
    gen = make_generator(2)
    noise = []
    for _ in range(N_DRAWS):
        policy.upper_bound = 2.0
        policy.weights(norms, None, gen)
        fraction = math.log(policy.upper_bound / 2.0) + 0.01  # eta = 1, gamma = 0.01
        noise.append(fraction * b - 2)
    _check_gaussian(torch.tensor(noise, dtype=torch.float64), sigma)


def test_adaptive_clip_count_carries_the_stated_noise():
    b, sigma = 64.0, 3.2
    policy = _policy("adaptive-clip", {"count_noise_std": sigma}, b=b)
    norms = torch.tensor([0.5, 0.7, 3.0])  # centred sum (1 + 1 + 0) - 3/2 = 0.5 at C = 1
    gen = make_generator(3)
    noise = []
    for _ in range(N_DRAWS):
        policy.bound = 1.0
        policy.weights(norms, None, gen)
        below = -math.log(policy.bound) / 0.2 + 0.5  # b estimate
        noise.append((below - 0.5) * b - 0.5)
    _check_gaussian(torch.tensor(noise, dtype=torch.float64), sigma)


@pytest.mark.parametrize(("name", "options", "message"), [
    ("dpsgd-f", {"count_noise_std": 0}, r"mitigation.options.count_noise_std=0: expected a "
     r"finite number > 0"),
    ("dpsgd-f", {"noise": 1}, r"mitigation.options.noise: unknown option of method 'dpsgd-f'; "
     r"valid options: count_noise_std"),
    ("dpsgd", {"upper_bound": 2}, r"valid options: \(none\)"),
    ("dpsgd-global", {"upper_bound": 0.5}, r"upper_bound=0.5: expected >= "
     r"privacy.max_grad_norm=1"),
    ("dpsgd-global-adapt", {"target_fraction": 1.0}, r"target_fraction=1.0: expected in "
     r"\[0, 1\)"),
    ("adaptive-clip", {"target_quantile": 1.5}, r"target_quantile=1.5: expected in \(0, 1\)"),
    ("adaptive-clip", {"learning_rate": math.nan}, r"learning_rate=nan: expected a finite"),
])
def test_bad_options_name_the_option_value_and_valid_range(name, options, message):
    with pytest.raises(ValueError, match=message):
        _policy(name, options)


def test_unknown_method_lists_the_choices():
    with pytest.raises(ValueError, match=r"mitigation.method='dpsgd-x': expected one of "
                       r"'dpsgd', 'dpsgd-f', 'dpsgd-global', 'dpsgd-global-adapt', "
                       r"'adaptive-clip'"):
        policy_class("dpsgd-x")


@pytest.mark.parametrize("name", list(POLICIES))
def test_every_registered_policy_loads_under_its_name(name):
    assert policy_class(name).name == name
