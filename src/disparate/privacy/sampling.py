"""Which examples form each step's batch.

``poisson``: every example joins each step's batch independently with probability
q = b / N (batch sizes vary, may be 0) — the sampling that the accountants'
privacy amplification assumes. ``shuffle``: the paper's fixed-size batches of a
shuffled epoch (the last one smaller). Both give ceil(N / b) steps per epoch, and the
batches of an epoch are a function of (root, epoch) alone -- the ``sampling`` stream of
:mod:`disparate.randomness` -- so a resumed run repeats them.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from disparate.privacy.accounting import SAMPLINGS, steps_per_epoch
from disparate.randomness import SeedTree

Sampling = Literal["poisson", "shuffle"]


def epoch_batches(
    sampling: Sampling, dataset_size: int, batch_size: int, seed: int | SeedTree, epoch: int
) -> list[Tensor]:
    """Index tensors of the batches of epoch ``epoch`` (0-based), drawn from the ``sampling``
    stream of the run's seed tree (rooted in its secret for a DP run; an int is the
    reproducible tree ``SeedTree(seed)``)."""
    if sampling not in SAMPLINGS:
        raise ValueError(
            f"sampling={sampling!r}: expected one of {', '.join(map(repr, SAMPLINGS))}"
        )
    steps = steps_per_epoch(dataset_size, batch_size)
    tree = seed if isinstance(seed, SeedTree) else SeedTree(seed)
    generator = tree.generator("sampling", epoch)
    if sampling == "shuffle":
        return list(torch.randperm(dataset_size, generator=generator).split(batch_size))
    rate = batch_size / dataset_size
    return [
        (torch.rand(dataset_size, generator=generator) < rate).nonzero().squeeze(1)
        for _ in range(steps)
    ]
