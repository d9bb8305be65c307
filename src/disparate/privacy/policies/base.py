"""The clipping-policy interface (after Opacus' optimizer template methods).

Per step, :class:`~disparate.privacy.optimizer.DPOptimizer` calls ``weights(norms, groups,
generator)``: the policy computes (and noises, from the secret noise generator) its auxiliary
statistics of the batch, returns one weight per example, and sets ``sensitivity``, the largest
norm a weighted example can have; the optimizer adds ``N(0, (z * sensitivity)^2)`` to the
weighted sum. Statistics that steer later steps (an adaptive bound) are updated after the
weights of the batch, so the weights of a step depend only on earlier noisy releases and this
step's.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from disparate.privacy.noise import add_gaussian_noise

__all__ = ["AuxStatistic", "ClippingPolicy", "check_options", "noisy"]

ERR_OPTION_RANGE = "mitigation.options.{name}={value!r}: expected {expected}"
ERR_UNKNOWN_OPTION = (
    "mitigation.options.{name}: unknown option of method {method!r}; valid options: {valid}"
)
ERR_NEEDS_GROUPS = (
    "mitigation.method={method!r} clips by group and needs the group labels of the training "
    "data; this {what} has {groups}"
)


@dataclass(frozen=True)
class AuxStatistic:
    """One private auxiliary statistic released every step: a Gaussian mechanism.

    ``noise_multiplier`` (std over L2 sensitivity) is what the accountant composes.
    """

    name: str
    noise_std: float
    sensitivity: float

    @property
    def noise_multiplier(self) -> float:
        return self.noise_std / self.sensitivity

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "noise_multiplier": self.noise_multiplier}


def check_options(method: str, options_cls: type, options: Mapping[str, Any], **defaults: Any
                  ) -> Any:
    """``options_cls(**defaults, **options)``, refusing unknown option names."""
    valid = [f.name for f in dataclasses.fields(options_cls)]
    for name in options:
        if name not in valid:
            raise ValueError(ERR_UNKNOWN_OPTION.format(name=name, method=method,
                                                       valid=", ".join(valid) or "(none)"))
    return options_cls(**{**defaults, **options})


def positive(name: str, value: Any, *, minimum: float = 0.0, inclusive: bool = False) -> float:
    """``value`` as a finite float > ``minimum`` (>= if ``inclusive``), else ValueError."""
    expected = f"a finite number {'>=' if inclusive else '>'} {minimum:g}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(ERR_OPTION_RANGE.format(name=name, value=value,
                                                 expected=expected)) from None
    if isinstance(value, bool) or not math.isfinite(v) or v < minimum or (
            v == minimum and not inclusive):
        raise ValueError(ERR_OPTION_RANGE.format(name=name, value=value, expected=expected))
    return v


def noisy(values: Tensor, std: float, generator: torch.Generator) -> Tensor:
    """``values + N(0, std^2)`` per entry, drawn from the noise generator."""
    return add_gaussian_noise(values, std, generator)


class ClippingPolicy(ABC):
    """Per-example weights of the clipped sum; see the module docstring."""

    #: The method's name in :data:`~disparate.privacy.policies.POLICIES`.
    name: ClassVar[str]
    #: Whether ``weights`` needs the examples' group labels.
    needs_groups: ClassVar[bool] = False

    def __init__(self) -> None:
        self.sensitivity = math.nan  # set by weights()

    @classmethod
    @abstractmethod
    def from_options(cls, options: Mapping[str, Any], *, max_grad_norm: float,
                     expected_batch_size: float, num_groups: int | None) -> ClippingPolicy:
        """The policy with ``options`` over the run's bound S, expected batch and groups."""

    @property
    def statistics(self) -> tuple[AuxStatistic, ...]:
        """The private statistics released every step (none for flat clipping)."""
        return ()

    @abstractmethod
    def weights(self, norms: Tensor, groups: Tensor | None, generator: torch.Generator
                ) -> Tensor:
        """Weights (B,) of the examples with gradient norms ``norms`` (B,); sets
        ``sensitivity``. A non-finite norm gets weight 0."""

    @abstractmethod
    def describe(self) -> str:
        """One line: the method and its parameters."""

    def settings(self) -> dict[str, Any]:
        """The method's parameters as saved in results.json."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep (an adaptive bound); empty if stateless."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027 (stateless)
        """Restore :meth:`state_dict`."""


def finite_norms(norms: Tensor) -> tuple[Tensor, Tensor]:
    """(mask of finite norms, norms with non-finite ones replaced by +inf)."""
    finite = torch.isfinite(norms)
    return finite, torch.where(finite, norms, torch.full_like(norms, math.inf))
