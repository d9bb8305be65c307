"""A stateful accountant: counts the steps taken and turns them into an epsilon.

It is built on :mod:`disparate.privacy.accounting` (every epsilon is a
:class:`~disparate.privacy.accounting.EpsilonReport`) and knows which sampling fed the
steps. A shuffled loader is not Poisson sampled: it is accounted only when
``shuffle_accounting`` says how ("poisson": the paper's approximation, or
"without_replacement").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from disparate.privacy.accounting import (
    METHODS,
    SAMPLINGS,
    SHUFFLE_ACCOUNTINGS,
    EpsilonReport,
    compute_epsilon,
)

__all__ = ["ERR_SHUFFLE_UNDECLARED", "PrivacyAccountant"]

ERR_SHUFFLE_UNDECLARED = (
    "sampling='shuffle' (fixed-size batches of a shuffled loader) is not Poisson sampling, "
    "which the accountants assume; say how to account it: shuffle_accounting='poisson' "
    "(an approximation, as in the paper) or 'without_replacement' (replace-one relation), "
    "or train with disparate.privacy.DPDataLoader"
)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(map(repr, choices))}")
    return value


class PrivacyAccountant:
    """Epsilon of the DP-SGD steps taken so far: call :meth:`step` after each step.

    ``batch_size`` is the (expected) batch size b, ``dataset_size`` N; ``method`` is the
    default of :meth:`get_epsilon` ("rdp", "rdp_classic" or "pld"). ``statistics``: the
    auxiliary statistics a clipping policy releases every step (``name``, ``noise_std``,
    ``sensitivity``, ``noise_multiplier``), composed with the gradient's Gaussian in every
    step; ``policy``: the clipping policy in words (for the statement).
    """

    def __init__(
        self,
        *,
        noise_multiplier: float,
        dataset_size: int,
        batch_size: int,
        sampling: str = "poisson",
        shuffle_accounting: str | None = None,
        method: str = "rdp",
        statistics: Sequence[Any] = (),
        policy: str | None = None,
    ):
        _choice("sampling", sampling, SAMPLINGS)
        _choice("method", method, METHODS)
        if sampling == "shuffle" and shuffle_accounting is None:
            raise ValueError(ERR_SHUFFLE_UNDECLARED)
        if shuffle_accounting is not None:
            _choice("shuffle_accounting", shuffle_accounting, SHUFFLE_ACCOUNTINGS)
        self.noise_multiplier = float(noise_multiplier)
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.sampling = sampling
        self.shuffle_accounting = shuffle_accounting
        self.method = method
        self.statistics = tuple(statistics)
        self.policy = policy
        self.steps = 0

    @property
    def aux_noise_multipliers(self) -> tuple[float, ...]:
        """Noise multipliers of the auxiliary statistics, composed into every step."""
        return tuple(float(s.noise_multiplier) for s in self.statistics)

    def step(self, steps: int = 1) -> None:
        """Record ``steps`` more steps."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps={steps!r}: expected an integer >= 0")
        self.steps += steps

    def report(self, delta: float, method: str | None = None) -> EpsilonReport:
        """The full report for the steps so far (ValueError before the first step)."""
        if self.steps == 0:
            raise ValueError("steps=0: no step taken yet, nothing to account")
        return compute_epsilon(
            dataset_size=self.dataset_size,
            batch_size=self.batch_size,
            noise_multiplier=self.noise_multiplier,
            steps=self.steps,
            delta=delta,
            method=method or self.method,
            sampling=self.sampling,
            shuffle_accounting=self.shuffle_accounting or "poisson",
            aux_noise_multipliers=self.aux_noise_multipliers,
        )

    def get_epsilon(self, delta: float, method: str | None = None) -> float:
        """Epsilon spent so far at ``delta`` (0.0 before the first step)."""
        return 0.0 if self.steps == 0 else self.report(delta, method).epsilon

    def statement(self, delta: float, method: str | None = None) -> str:
        """One sentence saying what was guaranteed and how it was computed."""
        if self.steps == 0:
            return "No DP-SGD step taken yet: nothing spent."
        r = self.report(delta, method)
        text = (f"({r.epsilon:.3g}, {r.delta:g})-DP after {r.steps} steps of DP-SGD with "
                f"noise multiplier {r.noise_multiplier:g} on N={r.dataset_size} examples: "
                f"{r.sampling}; {r.accountant}, {r.conversion}; neighbouring relation: "
                f"{r.neighboring_relation}.")
        if self.policy is not None:
            text += f" Clipping policy: {self.policy}."
        if self.statistics:
            stats = "; ".join(f"{s.name}: noise std {s.noise_std:g}, sensitivity "
                              f"{s.sensitivity:g}, noise multiplier {s.noise_multiplier:g}"
                              for s in self.statistics)
            text += (" Each step composes the gradient's Gaussian (noise multiplier "
                     f"{r.noise_multiplier:g} on the policy's bound) with the auxiliary "
                     f"statistics' Gaussians ({stats}) on the same batch, accounted by "
                     "dp_accounting as one PoissonSampledDpEvent over a ComposedDpEvent.")
        return text + (f" {r.note}" if r.note else "")

    def state_dict(self) -> dict[str, int]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.steps = int(state["steps"])
