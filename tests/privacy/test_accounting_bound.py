"""The PLD accountant under a memory/time bound (issue #18, point 1): a configuration whose
privacy-loss distribution would be huge is refused before it is built, and every reporting
path falls back to RDP with the reason stated."""

from __future__ import annotations

import time

import dp_accounting
import pytest
from dp_accounting.pld import pld_privacy_accountant

from disparate.privacy import accounting as acc

ARGS = {"dataset_size": 60_000, "batch_size": 256, "delta": 1e-6}


def _real_points(z: float, q: float, steps: int) -> int:
    accountant = pld_privacy_accountant.PLDAccountant(
        value_discretization_interval=acc.PLD_VALUE_DISCRETIZATION)
    accountant.compose(dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), steps))
    pld = accountant._pld
    return max(len(pld._pmf_remove._probs), len(pld._pmf_add._probs))


def test_pld_size_estimate_is_close_to_the_real_size() -> None:
    estimate = acc.pld_points(1.0, 0.01, 100)
    real = _real_points(1.0, 0.01, 100)
    assert 0.5 * real <= estimate <= 2 * real


@pytest.mark.parametrize("z", [1e-6, 0.01, 0.1])
def test_pld_beyond_the_bound_is_refused_at_once(z: float) -> None:
    started = time.perf_counter()
    with pytest.raises(acc.AccountantBoundError, match="MAX_PLD_POINTS") as info:
        acc.compute_epsilon(noise_multiplier=z, steps=14_100, method="pld", **ARGS)
    assert time.perf_counter() - started < 5
    assert f"noise_multiplier={z:g}" in str(info.value) and "method='rdp'" in str(info.value)


def test_bounded_epsilons_skip_the_pld_with_the_reason() -> None:
    reports, skipped = acc.bounded_epsilons(noise_multiplier=0.05, steps=14_100, **ARGS)
    assert set(reports) == {"rdp", "rdp_classic"}
    assert set(skipped) == {"pld"}
    assert skipped["pld"].startswith("not computed: method='pld'")
    assert "RDP bounds are valid upper bounds" in skipped["pld"]


def test_the_paper_setting_is_within_the_bound() -> None:
    reports, skipped = acc.bounded_epsilons(noise_multiplier=0.8, steps=14_100, **ARGS)
    assert not skipped and reports["pld"].epsilon == pytest.approx(5.153, abs=0.01)
