"""make_private: the Opacus-style switch in three lines, one returned object."""

import dataclasses

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from disparate.privacy import DPDataLoader, DPOptimizer, PrivateTraining, make_private
from disparate.privacy.accounting import compute_epsilon
from disparate.privacy.private import ERR_NOISE_XOR_TARGET


def setup(n=64):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
    data = TensorDataset(torch.randn(n, 5), torch.randint(0, 2, (n,)))
    return model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(data, batch_size=16)


def test_three_lines_and_the_usual_loop_count_steps_for_the_accountant():
    model, optimizer, loader = setup()
    private = make_private(model, optimizer, loader, noise_multiplier=1.0, max_grad_norm=1.0,
                           noise_seed=0)
    model, optimizer, loader = private.model, private.optimizer, private.data_loader
    assert isinstance(private, PrivateTraining) and isinstance(optimizer, DPOptimizer)
    assert isinstance(loader, DPDataLoader) and len(loader) == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        private.model = None
    criterion = nn.CrossEntropyLoss()
    for _ in range(2):
        for x, y in loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
    assert private.accountant.steps == 8
    want = compute_epsilon(dataset_size=64, batch_size=16, noise_multiplier=1.0, steps=8,
                           delta=1e-5).epsilon
    assert private.accountant.get_epsilon(1e-5) == want


def test_target_epsilon_is_reached_after_the_planned_epochs():
    model, optimizer, loader = setup()
    private = make_private(model, optimizer, loader, target_epsilon=3.0, target_delta=1e-5,
                           epochs=5, max_grad_norm=1.0)
    private.accountant.step(5 * len(private.data_loader))
    assert 2.99 < private.accountant.get_epsilon(1e-5) <= 3.0


def test_kept_shuffled_loader_needs_shuffle_accounting():
    model, optimizer, _ = setup()
    data = TensorDataset(torch.randn(64, 5), torch.randint(0, 2, (64,)))
    shuffled = DataLoader(data, batch_size=16, shuffle=True)
    with pytest.raises(ValueError, match="shuffle_accounting='poisson'"):
        make_private(model, optimizer, shuffled, noise_multiplier=1.0, max_grad_norm=1.0,
                     poisson_sampling=False)
    private = make_private(model, optimizer, shuffled, noise_multiplier=1.0, max_grad_norm=1.0,
                           poisson_sampling=False, shuffle_accounting="without_replacement")
    assert private.data_loader is shuffled and private.accountant.sampling == "shuffle"


def test_noise_or_target_exactly_one():
    model, optimizer, loader = setup()
    with pytest.raises(ValueError) as e:
        make_private(model, optimizer, loader, max_grad_norm=1.0)
    assert str(e.value) == ERR_NOISE_XOR_TARGET.format(z=None, eps=None)
