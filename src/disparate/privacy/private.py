"""One call from a model, its optimizer and its data loader to DP-SGD training."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from disparate.privacy.accountant import PrivacyAccountant
from disparate.privacy.accounting import calibrate_noise_multiplier
from disparate.privacy.data_loader import DPDataLoader, sampling_of
from disparate.privacy.grad_sample.engine import LossReduction
from disparate.privacy.optimizer import DPOptimizer

__all__ = ["PrivateTraining", "make_private"]

ERR_NOISE_XOR_TARGET = (
    "noise_multiplier={z!r}, target_epsilon={eps!r}: give exactly one of them"
)
ERR_TARGET_NEEDS = (
    "target_epsilon={eps!r} needs target_delta and epochs to calibrate the noise; got "
    "target_delta={delta!r}, epochs={epochs!r}"
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
) -> PrivateTraining:
    """DP-SGD for ``model``: Poisson batches, per-example clipping, noise and an accountant.

    Give ``noise_multiplier``, or ``target_epsilon`` with ``target_delta`` and ``epochs``
    (z calibrated by ``accountant`` for ``epochs * len(data_loader)`` steps). With
    ``poisson_sampling=False`` the user's loader is kept and must be shuffled; then
    ``shuffle_accounting`` must say how it is accounted. ``loss_reduction`` is that of the
    loss given to ``loss.backward()``. Without ``noise_seed`` the noise comes from a fresh
    128-bit secret of the OS. The accountant counts every ``optimizer.step()``.
    """
    if (noise_multiplier is None) == (target_epsilon is None):
        raise ValueError(ERR_NOISE_XOR_TARGET.format(z=noise_multiplier, eps=target_epsilon))
    if poisson_sampling and not isinstance(data_loader, DPDataLoader):
        data_loader = DPDataLoader.from_data_loader(data_loader)
    sampling = sampling_of(data_loader)
    dataset_size = len(data_loader.dataset)
    batch_size = (data_loader.expected_batch_size if isinstance(data_loader, DPDataLoader)
                  else data_loader.batch_size)
    if target_epsilon is not None:
        if target_delta is None or epochs is None:
            raise ValueError(ERR_TARGET_NEEDS.format(eps=target_epsilon, delta=target_delta,
                                                     epochs=epochs))
        noise_multiplier = calibrate_noise_multiplier(
            target_epsilon=target_epsilon, dataset_size=dataset_size, batch_size=batch_size,
            steps=epochs * len(data_loader), delta=target_delta, method=accountant,
            sampling=sampling, shuffle_accounting=shuffle_accounting or "poisson")
    counter = PrivacyAccountant(
        noise_multiplier=noise_multiplier, dataset_size=dataset_size, batch_size=batch_size,
        sampling=sampling, shuffle_accounting=shuffle_accounting, method=accountant)
    dp_optimizer = DPOptimizer(
        optimizer, model, expected_batch_size=batch_size, max_grad_norm=max_grad_norm,
        noise_multiplier=noise_multiplier, loss_reduction=loss_reduction,
        noise_seed=noise_seed)
    dp_optimizer.register_step_post_hook(lambda *_: counter.step())
    return PrivateTraining(model=model, optimizer=dp_optimizer, data_loader=data_loader,
                           accountant=counter)
