"""The DP plan: composed accounting against dp-accounting, calibration round trip, equal
budget across methods, bad input before training."""

import math

import dp_accounting
import pytest
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

from disparate.config import PrivacyConfig
from disparate.privacy.accounting import compute_epsilon
from disparate.privacy.plan import DPPlan, build_plan
from disparate.privacy.policies import POLICIES, MitigationConfig

# The digits demo: N = 1,145, b = 128, 60 epochs = 540 steps, delta = 1e-5.
N, B, EPOCHS, STEPS, DELTA = 1145, 128, 60, 540, 1e-5


def _privacy(**changes):
    base = {"max_grad_norm": 1.0, "noise_multiplier": None, "target_epsilon": 3.0,
            "delta": DELTA}
    return PrivacyConfig(**{**base, **changes})


def _plan(method, options=None, **privacy):
    return build_plan(_privacy(**privacy), dataset_size=N, batch_size=B, epochs=EPOCHS,
                      mitigation=MitigationConfig(method=method, options=options or {}),
                      num_groups=10)


def _rdp(event):
    accountant = rdp_privacy_accountant.RdpAccountant()
    accountant.compose(event)
    return accountant.get_epsilon(DELTA)


@pytest.mark.parametrize(("method", "options", "aux"), [
    ("dpsgd-f", {"count_noise_std": 4.0}, 4.0),            # counts: sensitivity 1
    ("adaptive-clip", {"count_noise_std": 4.0}, 8.0),      # centred count: sensitivity 1/2
    ("dpsgd-global-adapt", {"count_noise_std": 4.0}, 4.0),
])
def test_composed_epsilon_equals_dp_accounting_called_directly(method, options, aux):
    plan = _plan(method, options, target_epsilon=None, noise_multiplier=2.0)
    assert plan.aux_noise_multipliers == (aux,)
    event = dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
        B / N, dp_accounting.ComposedDpEvent([dp_accounting.GaussianDpEvent(2.0),
                                              dp_accounting.GaussianDpEvent(aux)])), STEPS)
    direct = _rdp(event)
    eps, approximate = plan.epsilon(STEPS)
    assert eps == pytest.approx(direct, rel=1e-12) and approximate is False
    # one Gaussian of noise multiplier (z^-2 + a^-2)^(-1/2): the same event, and more than DP-SGD
    z_eff = (2.0 ** -2 + aux ** -2) ** -0.5
    equivalent = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(B / N, dp_accounting.GaussianDpEvent(z_eff)), STEPS)
    assert direct == pytest.approx(_rdp(equivalent), rel=1e-9)
    flat = compute_epsilon(dataset_size=N, batch_size=B, noise_multiplier=2.0, steps=STEPS,
                           delta=DELTA).epsilon
    assert direct > flat * 1.01
    # the PLD accountant (Gaussian only) gets the equivalent Gaussian
    pld = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-4)
    pld.compose(equivalent)
    reports, _ = plan.reports(STEPS, ("rdp", "pld"))
    assert reports["pld"].epsilon == pytest.approx(pld.get_epsilon(DELTA), rel=1e-9)
    assert reports["rdp"].aux_noise_multipliers == (aux,)
    assert reports["rdp"].to_dict()["aux_noise_multipliers"] == [aux]
    assert plan.dp_event(STEPS) == event


def test_flat_plan_is_dp_sgd_and_its_report_keeps_the_format():
    plan = _plan("dpsgd", target_epsilon=None, noise_multiplier=2.65)
    assert plan.aux_noise_multipliers == ()
    reports, _ = plan.reports(STEPS, ("rdp",))
    assert "aux_noise_multipliers" not in reports["rdp"].to_dict()
    assert reports["rdp"].epsilon == pytest.approx(4.96, abs=0.005)  # the digits preset


@pytest.mark.parametrize("method", list(POLICIES))
def test_every_method_meets_the_same_target_within_one_percent_never_above(method):
    target = 3.0
    plan = _plan(method, {"upper_bound": 5.0} if method.startswith("dpsgd-global") else {})
    eps, _ = plan.epsilon(STEPS)
    assert target * 0.99 <= eps <= target
    assert plan.calibration["target_epsilon"] == target
    assert plan.calibration["noise_multiplier"] == plan.noise_multiplier
    # recomputed from scratch by dp-accounting, composed
    inner = [dp_accounting.GaussianDpEvent(plan.noise_multiplier),
             *(dp_accounting.GaussianDpEvent(a) for a in plan.aux_noise_multipliers)]
    event = dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
        B / N, dp_accounting.ComposedDpEvent(inner)), STEPS)
    assert _rdp(event) == pytest.approx(eps, rel=1e-12)


def test_statistics_cost_budget_so_the_gradient_gets_more_noise():
    flat, dpsgd_f = _plan("dpsgd"), _plan("dpsgd-f", {"count_noise_std": 6.4})
    assert dpsgd_f.noise_multiplier > flat.noise_multiplier
    assert dpsgd_f.epsilon(STEPS)[0] == pytest.approx(flat.epsilon(STEPS)[0], rel=0.01)


def test_a_target_the_statistics_alone_exceed_fails_naming_them():
    with pytest.raises(ValueError, match=r"target_epsilon=0.5 cannot be reached .* auxiliary "
                       r"statistics alone \(noise multipliers \[0.2\]\)"):
        _plan("dpsgd-f", {"count_noise_std": 0.2}, target_epsilon=0.5)


def test_statistics_refuse_sampling_without_replacement():
    with pytest.raises(ValueError, match=r"shuffle_accounting='without_replacement'"):
        _plan("adaptive-clip", sampling="shuffle", shuffle_accounting="without_replacement")


def test_ablation_settings_of_one_plan():
    clip_only = build_plan(PrivacyConfig(noise=False), dataset_size=N, batch_size=B, epochs=1,
                           mitigation=MitigationConfig(method="dpsgd-f"), num_groups=10)
    assert clip_only.setting == "clip-only" and clip_only.method == "dpsgd-f"
    assert clip_only.epsilon(STEPS) == (None, None) and clip_only.z is None
    non_private = build_plan(PrivacyConfig(clipping=False, noise=False), dataset_size=N,
                             batch_size=B, epochs=1,
                             mitigation=MitigationConfig(method="dpsgd-f"), num_groups=10)
    assert non_private.method == "dpsgd" and non_private.policy() is None  # weights 1
    with pytest.raises(ValueError, match=r"setting='sgd': expected one of 'dp', 'clip-only'"):
        DPPlan(setting="sgd", dataset_size=N, batch_size=B)
    with pytest.raises(ValueError, match=r"method='dpsgd-f' clips by group and needs the "
                       r"group labels of the training data; this dataset has no group labels"):
        DPPlan(setting="clip-only", dataset_size=N, batch_size=B, max_grad_norm=1.0,
               method="dpsgd-f")


def test_statement_lists_each_component_and_the_group_labels():
    plan = _plan("dpsgd-f", {"count_noise_std": 6.4})
    text = plan.statement_extra()
    assert f"noise multiplier {plan.noise_multiplier:g}" in text
    assert "noise std 6.4, sensitivity 1, noise multiplier 6.4" in text
    assert "treated as private" in text
    mech = plan.mechanism()
    assert [c["noise_multiplier"] for c in mech["components"]] == [plan.noise_multiplier, 6.4]
    assert math.isfinite(plan.noise_multiplier)
