"""Clipping policies: how each example's gradient is weighted before the noisy sum.

A policy maps the per-example gradient norms (and group labels) of a batch to per-example
weights (``weights(norms, groups)``), bounds what one weighted example adds (its
``sensitivity``, which the gradient noise is scaled to), may keep private auxiliary statistics
of the batch (Gaussian mechanisms whose cost the plan composes with the gradient's:
``statistics``), and has a state for checkpoints. The registry maps a method name to its
class; a new method is one module, one line of :data:`POLICIES` and its tests.

This module imports nothing heavy (``disparate.config`` imports it): the classes are loaded on
use.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from disparate.validation import check_choice, freeze, frozen_map

if TYPE_CHECKING:
    from disparate.privacy.policies.base import ClippingPolicy

__all__ = ["ERR_UNKNOWN_METHOD", "POLICIES", "MitigationConfig", "build_policy", "policy_class"]

#: Method name -> "module:class" of its clipping policy.
POLICIES: dict[str, str] = {
    "dpsgd": "disparate.privacy.policies.flat:FlatClipping",
    "dpsgd-f": "disparate.privacy.policies.dpsgd_f:DPSGDF",
    "dpsgd-global": "disparate.privacy.policies.dpsgd_global:DPSGDGlobal",
    "dpsgd-global-adapt": "disparate.privacy.policies.dpsgd_global:DPSGDGlobalAdapt",
    "adaptive-clip": "disparate.privacy.policies.adaptive_clip:AdaptiveQuantileClipping",
}

ERR_UNKNOWN_METHOD = "{key}={value!r}: expected one of {choices}"


def policy_class(name: str, key: str = "mitigation.method") -> type[ClippingPolicy]:
    """The policy class registered as ``name`` (ValueError naming ``key`` otherwise)."""
    if name not in POLICIES:
        raise ValueError(ERR_UNKNOWN_METHOD.format(
            key=key, value=name, choices=", ".join(map(repr, POLICIES))))
    module, cls = POLICIES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_policy(name: str, options: Mapping[str, Any], *, max_grad_norm: float,
                 expected_batch_size: float, num_groups: int | None) -> ClippingPolicy:
    """A fresh policy ``name`` with ``options`` (validated: ValueError naming the option)."""
    return policy_class(name).from_options(
        dict(options), max_grad_norm=max_grad_norm, expected_batch_size=expected_batch_size,
        num_groups=num_groups)


@dataclass(frozen=True, kw_only=True)
class MitigationConfig:
    """The ``mitigation`` section: which clipping policy a DP run uses.

    Attributes:
        method: A name of :data:`POLICIES` (``dpsgd``: DP-SGD's flat clipping, as without the
            section).
        options: The policy's own parameters (see ``docs/mitigations.md``); checked when the
            run's mechanism is built, before any training.
    """

    method: str = "dpsgd"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("mitigation.method", self.method, tuple(POLICIES))
        object.__setattr__(self, "options",
                           frozen_map("mitigation.options", self.options, freeze))
