"""PrivacyAccountant: the epsilon of the steps taken equals compute_epsilon's."""

import pytest

from disparate.privacy import PrivacyAccountant, compute_epsilon
from disparate.privacy.accountant import ERR_SHUFFLE_UNDECLARED


def test_epsilon_of_the_steps_taken_equals_compute_epsilon():
    acc = PrivacyAccountant(noise_multiplier=1.1, dataset_size=60000, batch_size=256)
    assert acc.get_epsilon(1e-5) == 0.0
    acc.step()
    acc.step(233)
    for method in ("rdp", "rdp_classic", "pld"):
        want = compute_epsilon(dataset_size=60000, batch_size=256, noise_multiplier=1.1,
                               steps=234, delta=1e-5, method=method).epsilon
        assert acc.get_epsilon(1e-5, method) == want
    text = acc.statement(1e-5)
    assert text.startswith(f"({acc.get_epsilon(1e-5):.3g}, 1e-05)-DP after 234 steps")
    assert "Poisson sampling" in text and "add or remove one example" in text


def test_a_shuffled_loader_is_accounted_only_when_the_user_says_how():
    with pytest.raises(ValueError) as e:
        PrivacyAccountant(noise_multiplier=1.0, dataset_size=100, batch_size=10,
                          sampling="shuffle")
    assert str(e.value) == ERR_SHUFFLE_UNDECLARED
    acc = PrivacyAccountant(noise_multiplier=1.0, dataset_size=100, batch_size=10,
                            sampling="shuffle", shuffle_accounting="poisson")
    acc.step(10)
    report = acc.report(1e-5)
    assert report.approximate and "APPROXIMATION" in acc.statement(1e-5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="method='moments': expected one of 'rdp'"):
        PrivacyAccountant(noise_multiplier=1.0, dataset_size=100, batch_size=10,
                          method="moments")
    acc = PrivacyAccountant(noise_multiplier=1.0, dataset_size=100, batch_size=10)
    with pytest.raises(ValueError, match="steps=-1: expected an integer >= 0"):
        acc.step(-1)
