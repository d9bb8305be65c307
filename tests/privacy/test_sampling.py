"""Batch sampling: Poisson rate, shuffle coverage, determinism by (seed, epoch)."""

import pytest
import torch

from disparate.privacy.sampling import epoch_batches, steps_per_epoch


def test_shuffle_covers_every_example_once_per_epoch():
    batches = epoch_batches("shuffle", 103, 10, seed=0, epoch=0)
    assert len(batches) == steps_per_epoch(103, 10) == 11
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert sorted(torch.cat(batches).tolist()) == list(range(103))


def test_poisson_inclusion_rate():
    # 235 steps x 60000 examples x q = 256/60000: the mean batch size over 235 steps has
    # s.e. sqrt(256 (1-q) / 235) ~ 1.04; tolerance 5 (about 5 s.e.).
    batches = epoch_batches("poisson", 60_000, 256, seed=1, epoch=0)
    assert len(batches) == 235
    sizes = torch.tensor([len(b) for b in batches], dtype=torch.float64)
    assert abs(sizes.mean().item() - 256) < 5
    for b in batches[:5]:
        assert len(set(b.tolist())) == len(b)


def test_batches_depend_only_on_seed_and_epoch():
    for sampling in ("poisson", "shuffle"):
        a = epoch_batches(sampling, 50, 8, seed=3, epoch=2)
        torch.manual_seed(99)
        b = epoch_batches(sampling, 50, 8, seed=3, epoch=2)
        c = epoch_batches(sampling, 50, 8, seed=3, epoch=1)
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
        assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=False))


def test_bad_arguments():
    with pytest.raises(
        ValueError, match=r"sampling='uniform': expected one of 'poisson', 'shuffle'"
    ):
        epoch_batches("uniform", 10, 2, seed=0, epoch=0)
    with pytest.raises(ValueError, match=r"batch_size=11: expected <= dataset_size=10"):
        epoch_batches("poisson", 10, 11, seed=0, epoch=0)
