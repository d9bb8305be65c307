"""The DP mechanism of a run as one object (after jax_privacy's ``DPExecutionPlan``).

A :class:`DPPlan` holds everything that must agree for the privacy statement to be true: the
batch sampler, the clipping policy (with its private auxiliary statistics), the Gaussian noise
and the dp-accounting event that exactly this combination realises -- every step one
``PoissonSampledDpEvent`` over a ``ComposedDpEvent`` of the gradient's Gaussian and the
statistics' Gaussians (:mod:`disparate.privacy.accounting`). :func:`build_plan` builds it from a
config (calibrating the gradient's noise multiplier so that the TOTAL epsilon meets
``privacy.target_epsilon``); the training loop, the federated loop and ``disparate epsilon``
take their optimizer, batches and epsilons from it.

The four ablation modes are named settings of the same plan::

    setting       weights              noise                     accounted
    dp            the policy's         z * policy sensitivity    yes
    clip-only     the policy's         none                      no
    noise-only    1 (no clipping)      noise_std                 no
    non-private   1                    none                      no
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from disparate.privacy.accounting import (
    AccountantBoundError,
    EpsilonReport,
    bounded_epsilons,
    calibrate_noise_multiplier,
    compute_epsilon,
    steps_per_epoch,
    supported_methods,
)
from disparate.privacy.policies import build_policy, policy_class

__all__ = ["SETTINGS", "DPPlan", "build_plan"]

#: The named settings of a plan (``PrivacyConfig.mode``).
SETTINGS: tuple[str, ...] = ("dp", "clip-only", "noise-only", "non-private")

ERR_SETTING = "setting={value!r}: expected one of {choices}"
ERR_POLICY_WITHOUT_CLIPPING = (
    "method={method!r} is a clipping policy, but setting {mode!r} does not clip "
    "(max_grad_norm=None); expected setting 'dp' or 'clip-only', or method='dpsgd'"
)
GROUPS_NOTE = (
    "The group labels used by the clipping policy are attributes of the training data and are "
    "treated as private: they enter only through the noisy statistics listed, whose cost is "
    "included in epsilon."
)


@functools.lru_cache(maxsize=4096)
def _cached_epsilon(**kwargs: Any) -> tuple[float, bool]:
    # Runs of a comparison or a sweep share (N, b, z, steps, ...): each epsilon once.
    try:
        report = compute_epsilon(**kwargs)
    except AccountantBoundError:  # per-epoch progress only; results.json states the fallback
        report = compute_epsilon(**{**kwargs, "method": "rdp"})
    return report.epsilon, report.approximate


@functools.lru_cache(maxsize=256)
def _cached_calibration(**kwargs: Any) -> float:
    # The seeds and methods of a comparison, a mitigation or a sweep share their calibrations.
    return calibrate_noise_multiplier(**kwargs)


@functools.lru_cache(maxsize=256)
def _cached_reports(methods: tuple[str, ...], **kwargs: Any
                    ) -> tuple[dict[str, EpsilonReport], dict[str, str]]:
    return bounded_epsilons(methods=methods, **kwargs)


@dataclass(frozen=True, kw_only=True)
class DPPlan:
    """Sampler, clipping policy, noise and accounting of one run; see the module docstring.

    ``noise_multiplier`` is the gradient's z (0 unless ``setting == "dp"``); ``noise_std`` the
    fixed std of ``noise-only``; ``calibration`` says how z was solved for a target epsilon.
    """

    setting: str
    dataset_size: int
    batch_size: int
    sampling: str = "poisson"
    shuffle_accounting: str | None = None
    delta: float = 1e-6
    accountant: str = "rdp"
    max_grad_norm: float | None = None
    noise_multiplier: float = 0.0
    noise_std: float | None = None
    method: str = "dpsgd"
    method_options: Mapping[str, Any] = field(default_factory=dict)
    num_groups: int | None = None
    calibration: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.setting not in SETTINGS:
            raise ValueError(ERR_SETTING.format(value=self.setting,
                                                choices=", ".join(map(repr, SETTINGS))))
        if self.method != "dpsgd" and self.max_grad_norm is None:
            raise ValueError(ERR_POLICY_WITHOUT_CLIPPING.format(method=self.method,
                                                                mode=self.setting))
        self.policy()  # validates the method's options (and its need of groups) before training

    # ----------------------------------------------------------------------- the mechanism

    @property
    def is_private(self) -> bool:
        return self.setting == "dp"

    @property
    def z(self) -> float | None:
        """The gradient's noise multiplier of a ``dp`` plan, else ``None``."""
        return self.noise_multiplier if self.is_private else None

    def policy(self) -> Any:
        """A fresh clipping policy (``None`` without clipping)."""
        if self.max_grad_norm is None:
            return None
        return build_policy(self.method, self.method_options, max_grad_norm=self.max_grad_norm,
                            expected_batch_size=self.batch_size, num_groups=self.num_groups)

    @property
    def aux_noise_multipliers(self) -> tuple[float, ...]:
        """Noise multipliers of the policy's statistics, composed into every step's event."""
        policy = self.policy()
        return tuple(s.noise_multiplier for s in policy.statistics) if policy else ()

    def optimizer(self, base: Any, model: Any, *, noise_generator: Any) -> Any:
        """The :class:`~disparate.privacy.optimizer.DPOptimizer` realising this plan."""
        from disparate.privacy.optimizer import DPOptimizer

        return DPOptimizer(base, model, expected_batch_size=self.batch_size,
                           max_grad_norm=self.max_grad_norm,
                           noise_multiplier=self.noise_multiplier, noise_std=self.noise_std,
                           noise_generator=noise_generator, policy=self.policy())

    def batches(self, seeds: Any, epoch: int) -> list[Any]:
        """The index tensors of epoch ``epoch``'s batches, from the sampling stream of the
        :class:`~disparate.randomness.SeedTree` ``seeds``."""
        from disparate.privacy.sampling import epoch_batches

        return epoch_batches(self.sampling, self.dataset_size, self.batch_size, seeds, epoch)

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.dataset_size, self.batch_size)

    # ----------------------------------------------------------------------- accounting

    def accounting_args(self) -> dict[str, Any]:
        """The keyword arguments of :mod:`~disparate.privacy.accounting` for this plan."""
        args: dict[str, Any] = {
            "dataset_size": self.dataset_size,
            "batch_size": self.batch_size,
            "delta": self.delta,
            "sampling": self.sampling,
            "shuffle_accounting": self.shuffle_accounting or "poisson",
        }
        aux = self.aux_noise_multipliers if self.is_private else ()
        if aux:  # DP-SGD's calls (and their caches) stay as they were
            args["aux_noise_multipliers"] = aux
        return args

    def epsilon(self, steps: int, method: str | None = None) -> tuple[float | None, bool | None]:
        """(epsilon after ``steps`` steps by ``method`` (default: the plan's accountant), whether
        it is approximate); ``(None, None)`` if not private. PLD beyond its bound: RDP."""
        if not self.is_private or steps < 1:
            return None, None
        return _cached_epsilon(noise_multiplier=self.noise_multiplier, steps=steps,
                               method=method or self.accountant, **self.accounting_args())

    def reports(self, steps: int, methods: Sequence[str]
                ) -> tuple[dict[str, EpsilonReport] | None, dict[str, str]]:
        """Epsilon by each of ``methods`` the sampling supports, and the methods left out
        beyond the accountant's bound with the reason; ``(None, {})`` if not private."""
        if not self.is_private:
            return None, {}
        args = self.accounting_args()
        supported = supported_methods(args["sampling"], args["shuffle_accounting"])
        reports, skipped = _cached_reports(tuple(m for m in methods if m in supported),
                                           noise_multiplier=self.noise_multiplier, steps=steps,
                                           **args)
        return dict(reports), dict(skipped)

    def dp_event(self, steps: int) -> Any:
        """The dp-accounting event of ``steps`` Poisson-sampled steps (``dp`` plans)."""
        import dp_accounting

        inner = [dp_accounting.GaussianDpEvent(self.noise_multiplier),
                 *(dp_accounting.GaussianDpEvent(a) for a in self.aux_noise_multipliers)]
        step = dp_accounting.PoissonSampledDpEvent(
            self.batch_size / self.dataset_size,
            inner[0] if len(inner) == 1 else dp_accounting.ComposedDpEvent(inner))
        return dp_accounting.SelfComposedDpEvent(step, steps)

    # ----------------------------------------------------------------------- statements

    def mechanism(self) -> dict[str, Any]:
        """The components of the mechanism for results.json: the policy and each Gaussian with
        its noise multiplier (``None`` components are off)."""
        policy = self.policy()
        components = []
        if self.is_private:
            components.append({"name": "sum of weighted per-example gradients",
                               "noise_multiplier": self.noise_multiplier,
                               "sensitivity": "the policy's bound on one weighted gradient"})
        if policy is not None:
            components += [s.to_dict() for s in policy.statistics]
        return {
            "method": self.method,
            "policy": policy.describe() if policy is not None else "no clipping",
            "policy_settings": policy.settings() if policy is not None else {},
            "components": components,
            "group_labels": GROUPS_NOTE if policy is not None and policy.needs_groups else None,
        }

    def statement_extra(self) -> str:
        """What the statement of a plan with a policy other than flat clipping adds."""
        if self.method == "dpsgd":
            return ""
        policy = self.policy()
        parts = [f"Clipping policy: {policy.describe()}"]
        if self.is_private and policy.statistics:
            stats = "; ".join(f"{s.name}: noise std {s.noise_std:g}, sensitivity "
                              f"{s.sensitivity:g}, noise multiplier {s.noise_multiplier:g}"
                              for s in policy.statistics)
            parts.append("Each step composes the gradient's Gaussian (noise multiplier "
                         f"{self.noise_multiplier:g} on the policy's bound) with the auxiliary "
                         f"statistics' Gaussians ({stats}) on the same Poisson-sampled batch, "
                         "accounted by dp_accounting as one PoissonSampledDpEvent over a "
                         "ComposedDpEvent")
        if policy.needs_groups:
            parts.append(GROUPS_NOTE.rstrip("."))
        return ". ".join(parts)


def build_plan(privacy: Any, *, dataset_size: int, batch_size: int, epochs: int,
               mitigation: Any = None, num_groups: int | None = None) -> DPPlan:
    """The plan of a ``privacy`` config section (and ``mitigation`` section, if any).

    A ``mitigation`` policy applies where the setting clips (``dp``, ``clip-only``); the settings
without clipping weight every example 1 whatever the policy. With ``privacy.target_epsilon``
the gradient's z is calibrated here, by
    ``privacy.calibrate_with`` (default: the accountant), for ``epochs * ceil(N / b)`` steps of
    the COMPOSED mechanism: every method meets the same total epsilon.
    """
    mode = privacy.mode
    method = mitigation.method if mitigation is not None else "dpsgd"
    options = dict(mitigation.options) if mitigation is not None else {}
    policy_class(method)  # a clear error for an unknown name
    if not privacy.clipping:  # the settings without clipping weight every example 1
        method, options = "dpsgd", {}
    base = DPPlan(
        setting=mode, dataset_size=dataset_size, batch_size=batch_size,
        sampling=privacy.sampling, shuffle_accounting=privacy.shuffle_accounting,
        delta=privacy.delta, accountant=privacy.accountant,
        max_grad_norm=privacy.max_grad_norm if privacy.clipping else None,
        noise_std=privacy.noise_std if mode == "noise-only" else None,
        method=method, method_options=options, num_groups=num_groups)
    if mode != "dp":
        return base
    args = base.accounting_args()
    if privacy.accountant not in supported_methods(args["sampling"], args["shuffle_accounting"]):
        compute_epsilon(noise_multiplier=1.0, steps=1, method=privacy.accountant, **args)  # raises
    if privacy.noise_multiplier is not None:
        return dataclasses.replace(base, noise_multiplier=privacy.noise_multiplier)
    steps = epochs * steps_per_epoch(dataset_size, batch_size)
    calibrate_with = privacy.calibrate_with or privacy.accountant
    z = _cached_calibration(target_epsilon=privacy.target_epsilon, steps=steps,
                            method=calibrate_with, **args)
    calibration = {"target_epsilon": privacy.target_epsilon, "method": calibrate_with,
                   "steps": steps, "noise_multiplier": z}
    if "aux_noise_multipliers" in args:
        calibration["aux_noise_multipliers"] = list(args["aux_noise_multipliers"])
    return dataclasses.replace(base, noise_multiplier=z, calibration=calibration)
