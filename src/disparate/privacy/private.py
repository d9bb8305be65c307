"""One call from a model, its optimizer and its data loader to DP-SGD training."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from disparate.privacy.accountant import PrivacyAccountant
from disparate.privacy.accounting import calibrate_noise_multiplier
from disparate.privacy.data_loader import DPDataLoader, sampling_of
from disparate.privacy.grad_sample.engine import LossReduction
from disparate.privacy.optimizer import DPOptimizer
from disparate.privacy.policies import MitigationConfig, build_policy
from disparate.privacy.policies.base import ClippingPolicy

__all__ = ["PrivateTraining", "make_private"]

ERR_NOISE_XOR_TARGET = (
    "noise_multiplier={z!r}, target_epsilon={eps!r}: give exactly one of them"
)
ERR_TARGET_NEEDS = (
    "target_epsilon={eps!r} needs target_delta and epochs to calibrate the noise; got "
    "target_delta={delta!r}, epochs={epochs!r}"
)
ERR_POLICY_OPTIONS = (
    "policy_options={options!r} with a ClippingPolicy object: its options are set; give the "
    "policy by name to pass options"
)
ERR_POLICY_TYPE = (
    "clipping_policy={value!r}: expected a method name of disparate.privacy.policies.POLICIES "
    "or a ClippingPolicy"
)


@dataclass(frozen=True)
class PrivateTraining:
    """What :func:`make_private` returns: train with these four instead of the originals."""

    model: nn.Module
    optimizer: DPOptimizer
    data_loader: DataLoader
    accountant: PrivacyAccountant


def make_private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_loader: DataLoader,
    *,
    max_grad_norm: float,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    target_delta: float | None = None,
    epochs: int | None = None,
    accountant: str = "rdp",
    poisson_sampling: bool = True,
    shuffle_accounting: str | None = None,
    loss_reduction: LossReduction = "mean",
    noise_seed: int | None = None,
    clipping_policy: str | ClippingPolicy = "dpsgd",
    policy_options: Mapping[str, Any] | None = None,
    num_groups: int | None = None,
) -> PrivateTraining:
    """DP-SGD for ``model``: Poisson batches, per-example clipping, noise and an accountant.

    Give ``noise_multiplier``, or ``target_epsilon`` with ``target_delta`` and ``epochs``
    (z calibrated by ``accountant`` for ``epochs * len(data_loader)`` steps). With
    ``poisson_sampling=False`` the user's loader is kept and must be shuffled; then
    ``shuffle_accounting`` must say how it is accounted. ``loss_reduction`` is that of the
    loss given to ``loss.backward()``. Without ``noise_seed`` the noise comes from a fresh
    128-bit secret of the OS. The accountant counts every ``optimizer.step()``.

    ``clipping_policy`` weights the examples (``docs/mitigations.md``): a method name with its
    ``policy_options`` (checked as the config's ``mitigation`` section is; ``num_groups`` for a
    policy that clips by group, whose ``optimizer.step(groups=g)`` then takes the batch's group
    labels), or a :class:`~disparate.privacy.policies.base.ClippingPolicy`. Its private
    statistics are composed with the gradient's Gaussian in the accountant (and in the
    calibration of ``target_epsilon``), and the statement lists each of them.
    """
    if (noise_multiplier is None) == (target_epsilon is None):
        raise ValueError(ERR_NOISE_XOR_TARGET.format(z=noise_multiplier, eps=target_epsilon))
    if poisson_sampling and not isinstance(data_loader, DPDataLoader):
        data_loader = DPDataLoader.from_data_loader(data_loader)
    sampling = sampling_of(data_loader)
    dataset_size = len(data_loader.dataset)
    batch_size = (data_loader.expected_batch_size if isinstance(data_loader, DPDataLoader)
                  else data_loader.batch_size)
    if isinstance(clipping_policy, ClippingPolicy):
        if policy_options is not None:
            raise ValueError(ERR_POLICY_OPTIONS.format(options=policy_options))
        policy = clipping_policy
    elif isinstance(clipping_policy, str):
        section = MitigationConfig(method=clipping_policy, options=policy_options or {})
        policy = build_policy(section.method, section.options, max_grad_norm=max_grad_norm,
                              expected_batch_size=batch_size, num_groups=num_groups)
    else:
        raise ValueError(ERR_POLICY_TYPE.format(value=clipping_policy))
    aux = tuple(s.noise_multiplier for s in policy.statistics)
    if target_epsilon is not None:
        if target_delta is None or epochs is None:
            raise ValueError(ERR_TARGET_NEEDS.format(eps=target_epsilon, delta=target_delta,
                                                     epochs=epochs))
        noise_multiplier = calibrate_noise_multiplier(
            target_epsilon=target_epsilon, dataset_size=dataset_size, batch_size=batch_size,
            steps=epochs * len(data_loader), delta=target_delta, method=accountant,
            sampling=sampling, shuffle_accounting=shuffle_accounting or "poisson",
            aux_noise_multipliers=aux)
    flat = policy.name == "dpsgd"
    counter = PrivacyAccountant(
        noise_multiplier=noise_multiplier, dataset_size=dataset_size, batch_size=batch_size,
        sampling=sampling, shuffle_accounting=shuffle_accounting, method=accountant,
        statistics=policy.statistics, policy=None if flat else policy.describe())
    dp_optimizer = DPOptimizer(
        optimizer, model, expected_batch_size=batch_size, max_grad_norm=max_grad_norm,
        noise_multiplier=noise_multiplier, loss_reduction=loss_reduction,
        noise_seed=noise_seed, policy=policy)
    dp_optimizer.register_step_post_hook(lambda *_: counter.step())
    return PrivateTraining(model=model, optimizer=dp_optimizer, data_loader=data_loader,
                           accountant=counter)
