"""Tests of disparate.privacy.accounting (epsilon via dp_accounting, calibration)."""

from __future__ import annotations

import dataclasses
import logging
import math
import re

import dp_accounting
import pytest
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant
from hypothesis import given, settings
from hypothesis import strategies as st

from disparate.privacy import accounting as acc
from disparate.privacy.accounting import (
    METHODS,
    PLD_VALUE_DISCRETIZATION,
    TF_PRIVACY_2019_ORDERS,
    EpsilonReport,
    calibrate_noise_multiplier,
    compute_epsilon,
    compute_epsilons,
    steps_per_epoch,
    supported_methods,
    total_steps,
)

# The paper's MNIST setting (Section 5): N=60000, b=256, z=0.8, 60 epochs, delta=1e-6.
PAPER = {
    "dataset_size": 60000,
    "batch_size": 256,
    "noise_multiplier": 0.8,
    "steps": 235 * 60,
    "delta": 1e-6,
}
# A small setting for the many-call tests.
SMALL = {
    "dataset_size": 1000,
    "batch_size": 50,
    "noise_multiplier": 1.0,
    "steps": 200,
    "delta": 1e-5,
}


def _poisson_event(n: int, b: int, z: float, steps: int) -> dp_accounting.DpEvent:
    step = dp_accounting.PoissonSampledDpEvent(b / n, dp_accounting.GaussianDpEvent(z))
    return dp_accounting.SelfComposedDpEvent(step, steps)


@pytest.fixture(scope="module")
def paper_reports() -> dict[str, EpsilonReport]:
    return compute_epsilons(**PAPER)


# --------------------------------------------------------------------------- steps


def test_steps_per_epoch_is_ceil() -> None:
    assert steps_per_epoch(60000, 256) == 235
    assert steps_per_epoch(10, 5) == 2
    assert steps_per_epoch(10, 3) == 4
    assert steps_per_epoch(7, 7) == 1
    assert total_steps(60000, 256, 60) == 14100
    assert total_steps(10, 3, 2) == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 1), acc.ERR_INTEGER.format(name="dataset_size", value=0, minimum=1)),
        ((10, 0), acc.ERR_INTEGER.format(name="batch_size", value=0, minimum=1)),
        ((10, 11), acc.ERR_BATCH_GT_DATASET.format(batch_size=11, dataset_size=10)),
        ((10.5, 2), acc.ERR_INTEGER.format(name="dataset_size", value=10.5, minimum=1)),
    ],
)
def test_steps_per_epoch_rejects_bad_sizes(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        steps_per_epoch(*args)


def test_total_steps_rejects_bad_epochs() -> None:
    message = acc.ERR_INTEGER.format(name="epochs", value=0, minimum=1)
    with pytest.raises(ValueError, match=re.escape(message)):
        total_steps(100, 10, 0)


# --------------------------------------------------------------------------- reference numbers


def test_rdp_classic_reproduces_paper(paper_reports: dict[str, EpsilonReport]) -> None:
    report = paper_reports["rdp_classic"]
    assert round(report.epsilon, 2) == 6.23
    assert not report.approximate
    assert "TF Privacy 2019" in report.accountant
    assert "log(1/delta)/(a-1)" in report.conversion


def test_rdp_classic_matches_direct_classic_formula() -> None:
    accountant = rdp_privacy_accountant.RdpAccountant(orders=list(TF_PRIVACY_2019_ORDERS))
    accountant.compose(_poisson_event(60000, 256, 0.8, 14100))
    expected = min(
        r + math.log(1 / 1e-6) / (a - 1)
        for r, a in zip(accountant.rdp, accountant.orders, strict=True)
    )
    assert compute_epsilon(**PAPER, method="rdp_classic").epsilon == pytest.approx(
        expected, rel=1e-12
    )


def test_rdp_matches_direct_dp_accounting(paper_reports: dict[str, EpsilonReport]) -> None:
    accountant = rdp_privacy_accountant.RdpAccountant()
    accountant.compose(_poisson_event(60000, 256, 0.8, 14100))
    expected = accountant.get_epsilon(1e-6)
    report = paper_reports["rdp"]
    assert report.epsilon == pytest.approx(expected, rel=1e-12)
    assert round(report.epsilon, 2) == 5.61
    assert report.optimal_order is not None


def test_pld_matches_direct_dp_accounting(paper_reports: dict[str, EpsilonReport]) -> None:
    accountant = pld_privacy_accountant.PLDAccountant(
        value_discretization_interval=PLD_VALUE_DISCRETIZATION
    )
    accountant.compose(_poisson_event(60000, 256, 0.8, 14100))
    expected = accountant.get_epsilon(1e-6)
    report = paper_reports["pld"]
    assert report.epsilon == pytest.approx(expected, rel=1e-9)
    assert round(report.epsilon, 2) == 5.15
    assert "PLDAccountant" in report.accountant


def test_tightness_order(paper_reports: dict[str, EpsilonReport]) -> None:
    eps = {m: r.epsilon for m, r in paper_reports.items()}
    assert eps["pld"] < eps["rdp"] < eps["rdp_classic"]


def test_report_describes_computation(paper_reports: dict[str, EpsilonReport]) -> None:
    report = paper_reports["rdp"]
    data = report.to_dict()
    for key in (
        "epsilon",
        "delta",
        "method",
        "accountant",
        "conversion",
        "sampling",
        "steps",
        "dataset_size",
        "batch_size",
        "noise_multiplier",
        "approximate",
        "note",
    ):
        assert key in data
    assert data["steps"] == 14100 and data["delta"] == 1e-6 and data["method"] == "rdp"
    assert "Poisson" in data["sampling"]
    assert data["neighboring_relation"] == "add or remove one example"
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.epsilon = 1.0  # type: ignore[misc]


def test_compute_epsilons_has_all_methods(paper_reports: dict[str, EpsilonReport]) -> None:
    assert list(paper_reports) == list(METHODS)
    assert all(r.method == m for m, r in paper_reports.items())


# --------------------------------------------------------------------------- sampling


def test_shuffle_with_poisson_accounting_is_flagged_approximate() -> None:
    poisson = compute_epsilon(**SMALL)
    shuffle = compute_epsilon(**SMALL, sampling="shuffle")
    assert shuffle.epsilon == poisson.epsilon
    assert shuffle.approximate and not poisson.approximate
    assert "APPROXIMATION" in shuffle.note and poisson.note == ""
    assert "shuffled" in shuffle.sampling


def test_shuffle_full_batch_is_exact() -> None:
    report = compute_epsilon(**{**SMALL, "batch_size": SMALL["dataset_size"]}, sampling="shuffle")
    assert not report.approximate


def test_shuffle_without_replacement_uses_replace_one() -> None:
    report = compute_epsilon(**SMALL, sampling="shuffle", shuffle_accounting="without_replacement")
    accountant = rdp_privacy_accountant.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE
    )
    # replace-one: the sum of clipped gradients moves by up to 2S, so z/2 against it
    step = dp_accounting.SampledWithoutReplacementDpEvent(
        1000, 50, dp_accounting.GaussianDpEvent(SMALL["noise_multiplier"] / 2)
    )
    accountant.compose(dp_accounting.SelfComposedDpEvent(step, 200))
    assert report.epsilon == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-12)
    assert report.neighboring_relation == "replace one example"
    assert report.approximate
    assert "Replace-one" in report.note
    classic = compute_epsilon(
        **SMALL,
        method="rdp_classic",
        sampling="shuffle",
        shuffle_accounting="without_replacement",
    )
    assert classic.epsilon >= report.epsilon


def test_pld_without_replacement_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=re.escape(acc.ERR_PLD_WITHOUT_REPLACEMENT)):
        compute_epsilon(
            **SMALL, method="pld", sampling="shuffle", shuffle_accounting="without_replacement"
        )
    assert supported_methods("shuffle", "without_replacement") == ("rdp", "rdp_classic")
    reports = compute_epsilons(
        **SMALL, sampling="shuffle", shuffle_accounting="without_replacement"
    )
    assert list(reports) == ["rdp", "rdp_classic"]


def test_shuffle_accounting_ignored_for_poisson_sampling() -> None:
    a = compute_epsilon(**SMALL, shuffle_accounting="without_replacement")
    assert a == compute_epsilon(**SMALL)


# --------------------------------------------------------------------------- monotonicity


@settings(max_examples=20, deadline=None)
@given(
    method=st.sampled_from(["rdp", "rdp_classic"]),
    steps=st.integers(1, 500),
    extra=st.integers(1, 500),
)
def test_rdp_epsilon_grows_with_steps(method: str, steps: int, extra: int) -> None:
    base = {**SMALL, "method": method}
    e1 = compute_epsilon(**{**base, "steps": steps}).epsilon
    e2 = compute_epsilon(**{**base, "steps": steps + extra}).epsilon
    assert e2 >= e1


@settings(max_examples=20, deadline=None)
@given(
    method=st.sampled_from(["rdp", "rdp_classic"]),
    batch=st.integers(1, 400),
    extra=st.integers(1, 400),
)
def test_rdp_epsilon_grows_with_sampling_rate(method: str, batch: int, extra: int) -> None:
    base = {**SMALL, "method": method}
    e1 = compute_epsilon(**{**base, "batch_size": batch}).epsilon
    e2 = compute_epsilon(**{**base, "batch_size": batch + extra}).epsilon
    assert e2 >= e1


@settings(max_examples=20, deadline=None)
@given(
    method=st.sampled_from(["rdp", "rdp_classic"]),
    z=st.floats(0.5, 5.0),
    factor=st.floats(1.01, 3.0),
)
def test_rdp_epsilon_shrinks_with_noise(method: str, z: float, factor: float) -> None:
    base = {**SMALL, "method": method}
    e1 = compute_epsilon(**{**base, "noise_multiplier": z}).epsilon
    e2 = compute_epsilon(**{**base, "noise_multiplier": z * factor}).epsilon
    assert e2 <= e1


@pytest.mark.parametrize("method", METHODS)
def test_epsilon_monotone_for_every_method(method: str) -> None:
    def eps(**override: float) -> float:
        return compute_epsilon(
            **{**SMALL, **override}, method=method, pld_discretization=1e-3
        ).epsilon

    assert eps(steps=100) < eps(steps=200) < eps(steps=400)
    assert eps(batch_size=25) < eps(batch_size=50) < eps(batch_size=100)
    assert eps(noise_multiplier=2.0) < eps(noise_multiplier=1.0) < eps(noise_multiplier=0.7)


# --------------------------------------------------------------------------- calibration


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("target", [1.0, 4.0])
def test_calibration_round_trip(method: str, target: float) -> None:
    kwargs = {k: v for k, v in SMALL.items() if k != "noise_multiplier"}
    tolerance = 1e-3
    z = calibrate_noise_multiplier(
        target_epsilon=target,
        method=method,
        tolerance=tolerance,
        pld_discretization=1e-3,
        **kwargs,
    )

    def eps(noise: float) -> float:
        return compute_epsilon(
            noise_multiplier=noise, method=method, pld_discretization=1e-3, **kwargs
        ).epsilon

    assert eps(z) <= target
    assert eps(z) == pytest.approx(target, rel=0.02)
    assert eps(z - tolerance) > target  # smallest within tolerance


def test_calibration_paper_rdp_classic() -> None:
    kwargs = {k: v for k, v in PAPER.items() if k != "noise_multiplier"}
    z = calibrate_noise_multiplier(target_epsilon=6.23, method="rdp_classic", **kwargs)
    assert z == pytest.approx(0.8, abs=1e-3)


def test_calibration_unreachable_target() -> None:
    kwargs = {k: v for k, v in SMALL.items() if k != "noise_multiplier"}
    # The classic conversion is at least log(1/delta) / (63 - 1) ~ 0.186 for delta=1e-5.
    with pytest.raises(ValueError, match=r"target_epsilon=0\.1 cannot be reached"):
        calibrate_noise_multiplier(target_epsilon=0.1, method="rdp_classic", **kwargs)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"target_epsilon": 0}, acc.ERR_TARGET_EPSILON.format(value=0)),
        ({"target_epsilon": -1.0}, acc.ERR_TARGET_EPSILON.format(value=-1.0)),
        ({"target_epsilon": math.inf}, acc.ERR_TARGET_EPSILON.format(value=math.inf)),
        ({"tolerance": 0.0}, acc.ERR_TOLERANCE.format(value=0.0)),
        ({"batch_size": 2000}, acc.ERR_BATCH_GT_DATASET.format(batch_size=2000, dataset_size=1000)),
        (
            {"method": "moments"},
            acc.ERR_CHOICE.format(name="method", value="moments", choices=list(METHODS)),
        ),
    ],
)
def test_calibration_rejects_bad_arguments(override: dict, message: str) -> None:
    kwargs = {k: v for k, v in SMALL.items() if k != "noise_multiplier"}
    with pytest.raises(ValueError, match=re.escape(message)):
        calibrate_noise_multiplier(**{"target_epsilon": 2.0, **kwargs, **override})


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"batch_size": 1001}, acc.ERR_BATCH_GT_DATASET.format(batch_size=1001, dataset_size=1000)),
        ({"batch_size": 0}, acc.ERR_INTEGER.format(name="batch_size", value=0, minimum=1)),
        ({"batch_size": True}, acc.ERR_INTEGER.format(name="batch_size", value=True, minimum=1)),
        ({"dataset_size": 0}, acc.ERR_INTEGER.format(name="dataset_size", value=0, minimum=1)),
        ({"noise_multiplier": -1.0}, acc.ERR_NOISE_NEGATIVE.format(value=-1.0)),
        ({"noise_multiplier": math.nan}, acc.ERR_NOISE_NEGATIVE.format(value=math.nan)),
        ({"noise_multiplier": 0.0}, acc.ERR_NOT_DP),
        ({"noise_multiplier": 0}, acc.ERR_NOT_DP),
        ({"delta": 0.0}, acc.ERR_DELTA.format(value=0.0)),
        ({"delta": 1.0}, acc.ERR_DELTA.format(value=1.0)),
        ({"delta": -1e-6}, acc.ERR_DELTA.format(value=-1e-6)),
        ({"delta": math.nan}, acc.ERR_DELTA.format(value=math.nan)),
        ({"steps": 0}, acc.ERR_INTEGER.format(name="steps", value=0, minimum=1)),
        ({"steps": 1.5}, acc.ERR_INTEGER.format(name="steps", value=1.5, minimum=1)),
        (
            {"method": "moments"},
            acc.ERR_CHOICE.format(name="method", value="moments", choices=list(METHODS)),
        ),
        (
            {"sampling": "uniform"},
            acc.ERR_CHOICE.format(name="sampling", value="uniform", choices=["poisson", "shuffle"]),
        ),
        (
            {"shuffle_accounting": "exact"},
            acc.ERR_CHOICE.format(
                name="shuffle_accounting",
                value="exact",
                choices=["poisson", "without_replacement"],
            ),
        ),
        ({"pld_discretization": 0.0}, acc.ERR_DISCRETIZATION.format(value=0.0)),
    ],
)
def test_compute_epsilon_rejects_bad_arguments(override: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        compute_epsilon(**{**SMALL, **override})


def test_error_texts_name_argument_value_and_range() -> None:
    with pytest.raises(ValueError) as info:
        compute_epsilon(**{**SMALL, "batch_size": 1001})
    text = str(info.value)
    assert "batch_size=1001" in text and "dataset_size=1000" in text
    with pytest.raises(ValueError, match="epsilon is infinite"):
        compute_epsilon(**{**SMALL, "noise_multiplier": 0.0})
    with pytest.raises(ValueError, match=r"noise_multiplier=-1\.0: expected a finite number >= 0"):
        compute_epsilon(**{**SMALL, "noise_multiplier": -1.0})


# A setting whose lowest fractional orders do not converge in dp_accounting (q = 0.107, z < 1):
# those orders are left out (inf) and the library logs one absl warning for each.
SLOW = dict(dataset_size=1500, batch_size=160, noise_multiplier=0.95, steps=30, delta=1e-5)


@pytest.mark.parametrize("method", ["rdp", "rdp_classic"])
def test_cached_rdp_equals_a_fresh_accountant_bit_for_bit(method: str, monkeypatch) -> None:
    monkeypatch.setattr(acc, "_STEP_RDP", {})
    orders = None if method == "rdp" else list(TF_PRIVACY_2019_ORDERS)
    accountant = rdp_privacy_accountant.RdpAccountant(orders=orders)
    accountant.compose(_poisson_event(1500, 160, 0.95, 30))
    if method == "rdp":
        expected = accountant.get_epsilon(1e-5)
    else:
        expected = min(r + math.log(1e5) / (a - 1)
                       for r, a in zip(accountant.rdp, accountant.orders, strict=True)
                       if not math.isnan(r))
    first = compute_epsilon(**SLOW, method=method).epsilon
    again = compute_epsilon(**SLOW, method=method).epsilon  # from the cache
    assert first == again == expected  # exactly: the cache changes no bit


def test_the_rdp_cache_computes_each_order_of_a_step_once(monkeypatch) -> None:
    monkeypatch.setattr(acc, "_STEP_RDP", {})
    calls = []
    real = rdp_privacy_accountant._compute_log_a
    monkeypatch.setattr(rdp_privacy_accountant, "_compute_log_a",
                        lambda q, z, a: calls.append(a) or real(q, z, a))
    compute_epsilon(**SLOW, method="rdp")
    assert len(calls) == len(set(calls)) == len(rdp_privacy_accountant.RdpAccountant().orders)
    # the classic orders below 11 are the default ones: only 12..63 are new; more steps: none
    compute_epsilon(**SLOW, method="rdp_classic")
    compute_epsilon(**{**SLOW, "steps": 300}, method="rdp")
    assert len(calls) == len(set(calls)) == len(
        set(rdp_privacy_accountant.RdpAccountant().orders) | set(TF_PRIVACY_2019_ORDERS))


def test_orders_left_out_by_dp_accounting_log_nothing(monkeypatch, caplog) -> None:
    monkeypatch.setattr(acc, "_STEP_RDP", {})
    absl = logging.getLogger("absl")
    level = absl.level
    with caplog.at_level(logging.WARNING):
        report = compute_epsilon(**SLOW, method="rdp")
    assert math.isfinite(report.epsilon)
    assert math.isinf(acc._step_rdp(_poisson_event(1500, 160, 0.95, 1).event,
                                    dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE, 1.1))
    assert not [r for r in caplog.records if r.name == "absl"]
    assert absl.level == level  # restored
