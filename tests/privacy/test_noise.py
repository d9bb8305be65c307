"""The added noise has the stated standard deviation and is reproducible by seed."""

import math

import pytest
import torch

from disparate.privacy.noise import add_gaussian_noise, make_generator


def test_noise_has_the_stated_std_and_zero_mean():
    # n = 2e6 draws: the sample std has relative s.e. 1/sqrt(2n) = 5e-4 and the mean
    # s.e. std/sqrt(n) = 7e-4*std; tolerances of 3e-3 are > 4 s.e. (flake rate < 1e-4 each,
    # and the seed is fixed, so the test is deterministic on a given torch build).
    std = 0.8
    noise = add_gaussian_noise(torch.zeros(2_000_000), std, make_generator(0))
    assert abs(noise.std().item() / std - 1) < 3e-3
    assert abs(noise.mean().item()) < 3e-3 * std
    # Gaussian, not just the right variance: P(|Z| > 2 sigma) = 4.55%
    tail = (noise.abs() > 2 * std).float().mean().item()
    assert abs(tail - math.erfc(2 / math.sqrt(2))) < 1e-3


def test_noise_is_reproducible_and_separate_from_global_rng():
    a = add_gaussian_noise(torch.zeros(10), 1.0, make_generator(7))
    torch.manual_seed(123)
    b = add_gaussian_noise(torch.zeros(10), 1.0, make_generator(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_zero_std_adds_nothing_and_negative_is_refused():
    x = torch.ones(3)
    assert add_gaussian_noise(x, 0.0, make_generator(0)) is x
    with pytest.raises(ValueError, match=r"std=-1\.0: expected >= 0"):
        add_gaussian_noise(x, -1.0, make_generator(0))
