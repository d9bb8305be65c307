import numpy as np
import pytest
import torch

from disparate.data import (
    DatasetSplits,
    GroupedDataset,
    apply_imbalance,
    load_dataset,
    reduce_groups,
    subsample,
)


def toy(sizes=(50, 40, 30)) -> GroupedDataset:
    labels = torch.cat([torch.full((n,), g) for g, n in enumerate(sizes)])
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    labels = labels[perm]
    inputs = torch.arange(len(labels), dtype=torch.float32).unsqueeze(1)  # input = row id
    return GroupedDataset.from_class_labels(inputs, labels, num_classes=len(sizes), name="toy")


def test_reduce_to_count_keeps_others_whole():
    ds = toy()
    out = reduce_groups(ds, {"1": 10}, seed=0)
    assert out.group_sizes() == {"0": 50, "1": 10, "2": 30}
    assert len(out) == 90
    ids = out.inputs[:, 0]
    assert torch.all(ids[1:] > ids[:-1]), "original order is kept"


def test_deterministic_by_seed():
    ds = toy()
    a = reduce_groups(ds, {"1": 10}, seed=5)
    b = reduce_groups(ds, {1: 10}, seed=5)
    c = reduce_groups(ds, {"1": 10}, seed=6)
    assert torch.equal(a.inputs, b.inputs)
    assert not torch.equal(a.inputs, c.inputs)


def test_selection_independent_of_other_groups_and_nested():
    ds = toy()
    alone = reduce_groups(ds, {"1": 10}, seed=1)
    both = reduce_groups(ds, {"1": 10, "2": 0.5}, seed=1)
    pick = lambda d: set(d.inputs[d.groups == 1, 0].tolist())  # noqa: E731
    assert pick(alone) == pick(both)
    assert both.group_sizes() == {"0": 50, "1": 10, "2": 15}
    small = reduce_groups(ds, {"1": 3}, seed=1)
    assert pick(small) <= pick(alone)


def test_fractions_and_edge_sizes():
    ds = toy()
    assert reduce_groups(ds, {"0": 0.1}, seed=0).group_sizes()["0"] == 5
    assert reduce_groups(ds, {"0": 1.0}, seed=0).group_sizes()["0"] == 50
    assert reduce_groups(ds, {"0": 50}, seed=0).group_sizes()["0"] == 50
    assert reduce_groups(ds, {"0": 0}, seed=0).group_sizes()["0"] == 0
    assert len(reduce_groups(ds, {}, seed=0)) == len(ds)


@pytest.mark.parametrize(
    "reductions, match",
    [
        ({"1": 41}, r"reductions\['1'\]=41: expected 0 <= n <= 40"),
        ({"1": -1}, "expected 0 <= n <= 40"),
        ({"1": 1.5}, r"expected a fraction in \(0, 1\]"),
        ({"1": 0.0}, r"expected a fraction in \(0, 1\]"),
        ({"1": True}, "expected an int count or a float fraction"),
        ({"9": 3}, r"unknown group '9'.*valid choices are \['0', '1', '2'\]"),
        ({"1": 3, 1: 4}, "given twice"),
    ],
)
def test_errors(reductions, match):
    with pytest.raises(ValueError, match=match):
        reduce_groups(toy(), reductions, seed=0)


def test_bad_seed():
    with pytest.raises(ValueError, match="seed=-2"):
        reduce_groups(toy(), {"1": 3}, seed=-2)


def test_apply_imbalance_keeps_test_unless_asked():
    train, test = load_dataset("digits", seed=0)
    splits = apply_imbalance(DatasetSplits(train, test), {"8": 20}, seed=0)
    assert splits.train.group_sizes()["8"] == 20
    assert splits.test is test
    both = apply_imbalance(DatasetSplits(train, test), {"8": 0.5}, seed=0, reduce_test=True)
    assert both.test.group_sizes()["8"] == round(test.group_sizes()["8"] * 0.5)


def test_subsample_stratified_exact_total():
    ds = toy()
    out = subsample(ds, 24, seed=0)
    assert len(out) == 24
    assert out.group_sizes() == {"0": 10, "1": 8, "2": 6}
    frac = subsample(ds, 0.5, seed=0)
    assert frac.group_sizes() == {"0": 25, "1": 20, "2": 15}
    odd = subsample(ds, 7, seed=3)
    assert len(odd) == 7
    assert torch.equal(subsample(ds, 7, seed=3).inputs, odd.inputs)


def test_subsample_unstratified_and_errors():
    ds = toy()
    a = subsample(ds, 30, seed=1, stratified=False)
    assert len(a) == 30 and torch.equal(
        a.inputs, subsample(ds, 30, seed=1, stratified=False).inputs
    )
    assert np.all(np.diff(a.inputs[:, 0].numpy()) > 0)
    with pytest.raises(ValueError, match="size=121: expected 0 <= n <= 120"):
        subsample(ds, 121, seed=0)
