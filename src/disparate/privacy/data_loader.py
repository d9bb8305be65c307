"""Poisson-sampled batches from any map-style dataset, as a torch ``DataLoader``.

Each step, every example joins the batch independently with probability q = b / N
(b the expected batch size): the sampling under which the accountants' amplification
by subsampling holds. Batch sizes follow Binomial(N, q) and may be 0; an empty batch
is collated into tensors with a batch dimension of 0, so the training loop needs no
special case (:class:`~disparate.privacy.DPOptimizer` then adds noise only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils._pytree import tree_map
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler
from torch.utils.data._utils.collate import default_collate

from disparate import distributed
from disparate.privacy.accounting import steps_per_epoch
from disparate.randomness import secret_generator

__all__ = ["DPDataLoader", "PoissonBatchSampler", "sampling_of"]

ERR_LOADER_SAMPLING = (
    "data loader with sampler {sampler} and batch_sampler {batch_sampler}: its batches "
    "are neither Poisson sampled nor shuffled without replacement, so no accountant "
    "applies; use disparate.privacy.DPDataLoader (or make_private(..., poisson_sampling=True))"
)


class PoissonBatchSampler(Sampler[list[int]]):
    """``steps`` batches of indices, each index in each with probability batch_size / N.

    ``steps`` defaults to ceil(N / batch_size), one epoch's worth in expectation. Without a
    ``generator`` the batches are drawn from a fresh secret of the OS (pass a seeded one to
    reproduce them; the batch membership is then not secret against whoever has the seed). In a
    process group every rank draws the global batch from rank 0's generator state and yields
    its own shard (:func:`disparate.distributed.shard`).
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ):
        self.steps = steps_per_epoch(num_samples, batch_size) if steps is None else steps
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps={steps!r}: expected an integer >= 1")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.sample_rate = batch_size / num_samples
        generator = generator or secret_generator()
        if distributed.world_size() > 1:  # one global batch: every rank draws rank 0's stream
            generator.set_state(distributed.share(generator.get_state()))
        self.generator = generator

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            mask = torch.rand(self.num_samples, generator=self.generator) < self.sample_rate
            yield distributed.shard(mask.nonzero().squeeze(1))[0].tolist()  # this rank's part


class DPDataLoader(DataLoader):
    """A ``DataLoader`` of Poisson-sampled batches of expected size ``batch_size``."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
    ):
        sampler = PoissonBatchSampler(len(dataset), batch_size, steps=steps, generator=generator)
        self._collate = collate_fn or default_collate
        self._empty: Any = None
        super().__init__(dataset, batch_sampler=sampler, collate_fn=self._collate_or_empty,
                         num_workers=num_workers, pin_memory=pin_memory)
        self.expected_batch_size = batch_size
        self.sample_rate = sampler.sample_rate

    def _collate_or_empty(self, batch: list[Any]) -> Any:
        if batch:
            return self._collate(batch)
        if self._empty is None:  # the structure of one example, batch dimension 0
            one = self._collate([self.dataset[0]])
            self._empty = tree_map(lambda t: t[:0] if isinstance(t, torch.Tensor) else t, one)
        return self._empty

    @classmethod
    def from_data_loader(
        cls, loader: DataLoader, *, generator: torch.Generator | None = None
    ) -> DPDataLoader:
        """The Poisson counterpart of ``loader``: same dataset, expected batch size, collate."""
        batch_size = loader.batch_size or getattr(loader.batch_sampler, "batch_size", None)
        if batch_size is None:
            raise ValueError(
                f"loader with batch_sampler {type(loader.batch_sampler).__name__}: no "
                "batch_size to take as the expected batch size; build DPDataLoader(dataset, "
                "batch_size) directly")
        return cls(loader.dataset, batch_size, generator=generator,
                   collate_fn=loader.collate_fn, num_workers=loader.num_workers,
                   pin_memory=loader.pin_memory)


def sampling_of(loader: DataLoader) -> str:
    """'poisson' or 'shuffle' (fixed-size batches of a random permutation), else ValueError."""
    batch_sampler = loader.batch_sampler
    if isinstance(batch_sampler, PoissonBatchSampler):
        return "poisson"
    if (isinstance(batch_sampler, BatchSampler) and isinstance(loader.sampler, RandomSampler)
            and not loader.sampler.replacement):
        return "shuffle"
    raise ValueError(ERR_LOADER_SAMPLING.format(sampler=type(loader.sampler).__name__,
                                                batch_sampler=type(batch_sampler).__name__))
