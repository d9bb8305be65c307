"""Deterministic imbalance and subsampling of a :class:`GroupedDataset`.

Selection is seeded per group: the examples kept from a group depend only on ``seed``, the
group index and the group's examples -- not on which other groups are reduced -- and the
kept examples are a prefix of one seeded permutation, so with the same seed reducing class
"8" to 50 keeps a subset of the 500 kept when reducing it to 500. Kept examples stay in
their original order.

Sizes: an ``int`` ``n`` keeps exactly ``n`` examples (``0 <= n <= size``); a ``float`` in
``(0, 1]`` keeps ``round(fraction * size)`` examples.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from disparate.data.grouped import DatasetSplits, GroupedDataset
from disparate.randomness import data_generator
from disparate.validation import check_seed

__all__ = ["apply_imbalance", "reduce_groups", "subsample"]

SizeSpec = int | float


def _group_permutation(dataset: GroupedDataset, group: int, seed: int) -> np.ndarray:
    members = torch.nonzero(dataset.groups == group, as_tuple=True)[0].cpu().numpy()
    rng = data_generator(seed, "data_reduce", group)
    return members[rng.permutation(members.shape[0])]


def _target_size(spec: SizeSpec, size: int, what: str) -> int:
    if isinstance(spec, (bool, np.bool_)) or not isinstance(
        spec, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"{what}={spec!r}: expected an int count or a float fraction in (0, 1]")
    if isinstance(spec, (int, np.integer)):
        n = int(spec)
        if n < 0 or n > size:
            raise ValueError(f"{what}={n}: expected 0 <= n <= {size} (the group's size)")
        return n
    frac = float(spec)
    if not (0.0 < frac <= 1.0):
        raise ValueError(f"{what}={spec!r}: expected a fraction in (0, 1] (or an int count)")
    return int(round(frac * size))


def reduce_groups(
    dataset: GroupedDataset, reductions: Mapping[str | int, SizeSpec], *, seed: int
) -> GroupedDataset:
    """Keep ``n`` (int) or a ``fraction`` (float) of the examples of each group in ``reductions``.

    Keys are group names (``"8"``) or indices (``8``); other groups are kept whole. E.g.
    ``reduce_groups(mnist_train, {"8": 500}, seed=0)`` has 54,649 examples. Errors name the
    valid group choices and the group's size.
    """
    if not isinstance(reductions, Mapping):
        raise ValueError(f"reductions={reductions!r}: expected a mapping {{group: n or fraction}}")
    seed = check_seed(seed)
    keep = torch.ones(len(dataset), dtype=torch.bool)
    seen: dict[int, str | int] = {}
    for key, spec in reductions.items():
        g = dataset.group_index(key)
        if g in seen:
            raise ValueError(
                f"group {key!r} given twice in reductions (also as {seen[g]!r}); "
                f"group {dataset.group_names[g]!r} must appear once"
            )
        seen[g] = key
        perm = _group_permutation(dataset, g, seed)
        n = _target_size(spec, perm.shape[0], f"reductions[{key!r}]")
        dropped = torch.as_tensor(perm[n:], dtype=torch.long)
        keep[dropped] = False
    return dataset.subset(keep)


def apply_imbalance(
    splits: DatasetSplits,
    reductions: Mapping[str | int, SizeSpec],
    *,
    seed: int,
    reduce_test: bool = False,
) -> DatasetSplits:
    """:func:`reduce_groups` on the training split; the test split too if ``reduce_test``."""
    train = reduce_groups(splits.train, reductions, seed=seed)
    test = reduce_groups(splits.test, reductions, seed=seed) if reduce_test else splits.test
    return DatasetSplits(train, test)


def _largest_remainder(sizes: np.ndarray, total: int) -> np.ndarray:
    """Integer allocation of ``total`` proportional to ``sizes`` (each <= its size)."""
    n = int(sizes.sum())
    exact = sizes * (total / n)
    alloc = np.floor(exact).astype(np.int64)
    remainder = total - int(alloc.sum())
    order = np.argsort(-(exact - alloc), kind="stable")
    alloc[order[:remainder]] += 1
    return np.minimum(alloc, sizes)


def subsample(
    dataset: GroupedDataset, size: SizeSpec, *, seed: int, stratified: bool = True
) -> GroupedDataset:
    """A seeded random subset of ``size`` examples (int) or of a fraction (float in (0, 1]).

    ``stratified`` keeps each group's share (largest-remainder rounding, so the total is exact);
    otherwise examples are drawn uniformly. Kept examples stay in their original order.
    """
    seed = check_seed(seed)
    n_total = len(dataset)
    n = _target_size(size, n_total, "size")
    if not stratified:
        rng = data_generator(seed, "data_subsample")
        chosen = np.sort(rng.permutation(n_total)[:n])
        return dataset.subset(chosen)
    perms = [_group_permutation(dataset, g, seed) for g in range(dataset.num_groups)]
    sizes = np.array([p.shape[0] for p in perms], dtype=np.int64)
    alloc = _largest_remainder(sizes, n) if n_total else sizes
    chosen = np.sort(np.concatenate([p[:k] for p, k in zip(perms, alloc, strict=True)]))
    return dataset.subset(chosen.astype(np.int64))
