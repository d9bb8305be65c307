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


def grouped_setup(n=64):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
    data = TensorDataset(torch.randn(n, 5), torch.randint(0, 2, (n,)), torch.arange(n) % 2)
    return model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(data, batch_size=16)


def test_a_clipping_policy_by_name_is_composed_into_the_calibration_and_the_statement():
    model, optimizer, loader = grouped_setup()
    private = make_private(model, optimizer, loader, target_epsilon=3.0, target_delta=1e-5,
                           epochs=2, max_grad_norm=1.0, clipping_policy="dpsgd-f",
                           policy_options={"count_noise_std": 4.0}, num_groups=2, noise_seed=0)
    acc = private.accountant
    assert acc.aux_noise_multipliers == (4.0,)  # count noise 4 over sensitivity 1
    criterion = nn.CrossEntropyLoss()
    for _ in range(2):
        for x, y, g in private.data_loader:
            private.optimizer.zero_grad()
            criterion(private.model(x), y).backward()
            private.optimizer.step(groups=g)
    assert acc.steps == 8
    want = compute_epsilon(dataset_size=64, batch_size=16, noise_multiplier=acc.noise_multiplier,
                           steps=8, delta=1e-5, aux_noise_multipliers=(4.0,)).epsilon
    assert acc.get_epsilon(1e-5) == want and 2.97 < want <= 3.0
    assert compute_epsilon(dataset_size=64, batch_size=16, noise_multiplier=acc.noise_multiplier,
                           steps=8, delta=1e-5).epsilon < 2.9  # the counts cost budget
    statement = acc.statement(1e-5)
    assert "Clipping policy: DPSGD-F (Xu et al. 2021)" in statement
    assert ("per-group counts of examples over and not over C0=1 (4 counts, one Gaussian): "
            "noise std 4, sensitivity 1, noise multiplier 4") in statement
    assert "one PoissonSampledDpEvent over a ComposedDpEvent" in statement


def test_flat_clipping_by_name_or_object_is_todays_dp_sgd_bit_for_bit():
    from disparate.privacy.policies.flat import FlatClipping

    params = []
    for policy in ({}, {"clipping_policy": "dpsgd"},
                   {"clipping_policy": FlatClipping(1.0)}):
        model, optimizer, loader = setup()
        batches = DPDataLoader.from_data_loader(  # the same Poisson batches
            loader, generator=torch.Generator().manual_seed(1))
        private = make_private(model, optimizer, batches, noise_multiplier=1.0,
                               max_grad_norm=1.0, noise_seed=3, **policy)
        for x, y in private.data_loader:
            private.optimizer.zero_grad()
            nn.CrossEntropyLoss()(private.model(x), y).backward()
            private.optimizer.step()
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        assert "Clipping policy" not in private.accountant.statement(1e-5)
    assert torch.equal(params[0], params[1]) and torch.equal(params[0], params[2])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"clipping_policy": "fair"}, "mitigation.method='fair': expected one of 'dpsgd', "
     "'dpsgd-f', 'dpsgd-global', 'dpsgd-global-adapt', 'adaptive-clip'"),
    ({"clipping_policy": "dpsgd-f", "num_groups": 2, "policy_options": {"count_noise_std": -1}},
     "mitigation.options.count_noise_std=-1: expected a finite number > 0"),
    ({"clipping_policy": "dpsgd-f", "policy_options": {"noise": 1}, "num_groups": 2},
     "mitigation.options.noise: unknown option of method 'dpsgd-f'; valid options: "
     "count_noise_std"),
    ({"clipping_policy": "dpsgd-f"}, "mitigation.method='dpsgd-f' clips by group and needs the "
     "group labels of the training data; this dataset has no group labels"),
    ({"clipping_policy": 3}, "clipping_policy=3: expected a method name"),
])
def test_bad_clipping_policy_arguments_fail_with_the_configs_messages(kwargs, message):
    model, optimizer, loader = grouped_setup()
    with pytest.raises(ValueError) as e:
        make_private(model, optimizer, loader, noise_multiplier=1.0, max_grad_norm=1.0, **kwargs)
    assert message in str(e.value)


def test_a_policy_object_takes_no_options():
    from disparate.privacy.policies.flat import FlatClipping

    model, optimizer, loader = setup()
    with pytest.raises(ValueError, match="policy_options=.* with a ClippingPolicy object"):
        make_private(model, optimizer, loader, noise_multiplier=1.0, max_grad_norm=1.0,
                     clipping_policy=FlatClipping(1.0), policy_options={"x": 1})
