"""DPDataLoader: Poisson batch sizes ~ Binomial(N, q), inclusion rate q, empty batches."""

import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.data import DataLoader, TensorDataset

from disparate.privacy import DPDataLoader, PoissonBatchSampler
from disparate.privacy.data_loader import ERR_LOADER_SAMPLING, sampling_of


def test_batch_sizes_follow_binomial_and_each_index_has_rate_q():
    # N=200, q=0.1, 4000 batches. Mean batch size: s.e. sqrt(200*.1*.9/4000)=0.067, tolerance
    # 0.35 (5 s.e.); chi-square of the size histogram against Binomial(200, 0.1) (sizes
    # pooled into 8..32 plus both tails) refused only at p < 1e-6: flake rate ~1e-6 per seed.
    n, b, steps = 200, 20, 4000
    sampler = PoissonBatchSampler(n, b, steps=steps, generator=torch.Generator().manual_seed(0))
    batches = list(sampler)
    sizes = np.array([len(x) for x in batches])
    assert len(batches) == len(sampler) == steps
    assert abs(sizes.mean() - 20) < 0.35
    edges = np.arange(8, 33)
    observed = [np.sum(sizes < 8)] + [np.sum(sizes == k) for k in edges] + [np.sum(sizes > 32)]
    pmf = stats.binom(n, 0.1)
    expected = [pmf.cdf(7)] + [pmf.pmf(k) for k in edges] + [pmf.sf(32)]
    assert stats.chisquare(observed, np.array(expected) * steps).pvalue > 1e-6
    counts = np.bincount(np.concatenate(batches), minlength=n)
    # each index: Binomial(4000, 0.1), s.d. 19; within 6 s.d. of 400 for all 200 indices
    assert np.all(np.abs(counts - 400) < 6 * 19)
    assert all(len(set(x)) == len(x) for x in batches)  # no index twice in a batch


def test_empty_batches_keep_the_structure_with_batch_dimension_zero():
    data = TensorDataset(torch.randn(3, 4, 5), torch.arange(3))
    loader = DPDataLoader(data, 1, steps=200, generator=torch.Generator().manual_seed(1))
    seen = list(loader)
    empty = [x for x in seen if x[1].numel() == 0]
    assert empty, "with q=1/3 and 200 steps, some batches are empty ((2/3)^3 each)"
    x, y = empty[0]
    assert x.shape == (0, 4, 5) and y.shape == (0,) and y.dtype == torch.long
    assert len(loader) == 200 and loader.sample_rate == pytest.approx(1 / 3)


def test_from_data_loader_keeps_dataset_and_expected_batch_size():
    data = TensorDataset(torch.randn(50, 2), torch.arange(50))
    dp = DPDataLoader.from_data_loader(DataLoader(data, batch_size=10, shuffle=True))
    assert dp.dataset is data and dp.expected_batch_size == 10 and len(dp) == 5
    assert sampling_of(dp) == "poisson"
    assert sampling_of(DataLoader(data, batch_size=10, shuffle=True)) == "shuffle"
    with pytest.raises(ValueError) as e:
        sampling_of(DataLoader(data, batch_size=10))
    assert str(e.value) == ERR_LOADER_SAMPLING.format(sampler="SequentialSampler",
                                                      batch_sampler="BatchSampler")
