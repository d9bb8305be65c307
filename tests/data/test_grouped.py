import numpy as np
import pytest
import torch

from disparate.data import DatasetSplits, GroupedDataset


def make(n=12, num_groups=3):
    inputs = torch.arange(n * 4, dtype=torch.float32).reshape(n, 1, 2, 2)
    labels = torch.arange(n) % 2
    groups = torch.arange(n) % num_groups
    return GroupedDataset(
        inputs,
        labels,
        groups,
        group_names=["a", "b", "c"][:num_groups],
        num_classes=2,
        name="toy",
    )


def test_getitem_returns_triples_and_batches():
    ds = make()
    x, y, g = ds[4]
    assert x.shape == (1, 2, 2) and int(y) == 0 and int(g) == 1
    xb, yb, gb = ds[torch.tensor([0, 5])]
    assert xb.shape == (2, 1, 2, 2)
    assert yb.tolist() == [0, 1] and gb.tolist() == [0, 2]
    assert len(ds) == 12 and ds.input_shape == (1, 2, 2) and ds.num_groups == 3


def test_group_and_class_sizes():
    ds = make(n=10)
    assert ds.group_sizes() == {"a": 4, "b": 3, "c": 3}
    assert ds.class_sizes() == {"0": 5, "1": 5}
    assert list(ds.subset([0, 3]).group_sizes().items()) == [("a", 2), ("b", 0), ("c", 0)]


def test_subset_indices_and_mask():
    ds = make()
    sub = ds.subset(np.array([3, 1]))
    assert sub.labels.tolist() == [1, 1] and sub.groups.tolist() == [0, 1]
    assert sub.group_names == ds.group_names and sub.num_classes == 2 and sub.name == "toy"
    mask = ds.groups == 2
    assert len(ds.subset(mask)) == 4
    assert len(ds.subset([])) == 0
    with pytest.raises(ValueError, match="expected 0 <= index < 12"):
        ds.subset([12])
    with pytest.raises(ValueError, match="boolean mask has shape"):
        ds.subset(torch.ones(3, dtype=torch.bool))


def test_from_class_labels_groups_are_classes():
    ds = GroupedDataset.from_class_labels(
        torch.zeros(4, 3), torch.tensor([0, 2, 2, 1]), num_classes=3
    )
    assert ds.group_names == ["0", "1", "2"]
    assert torch.equal(ds.groups, ds.labels)
    assert ds.group_sizes() == {"0": 1, "1": 1, "2": 2}


def test_group_index_errors_name_choices():
    ds = make()
    assert ds.group_index("b") == 1 and ds.group_index(2) == 2
    with pytest.raises(ValueError, match=r"unknown group 'z'.*\['a', 'b', 'c'\]"):
        ds.group_index("z")
    with pytest.raises(ValueError, match="unknown group 5"):
        ds.group_index(5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"labels": torch.zeros(3, dtype=torch.long)}, "labels has shape"),
        ({"groups": torch.zeros(12)}, "groups has dtype"),
        ({"labels": torch.full((12,), 2)}, "num_classes=2"),
        ({"groups": torch.full((12,), 3)}, "expected 0 <= group < 3"),
        ({"group_names": ["a", "a", "b"]}, "must be unique"),
        ({"num_classes": 0}, "num_classes=0"),
        ({"class_names": ["x"]}, "class_names has 1 entries"),
    ],
)
def test_validation(kwargs, match):
    args = {
        "inputs": torch.zeros(12, 2),
        "labels": torch.zeros(12, dtype=torch.long),
        "groups": torch.zeros(12, dtype=torch.long),
        "group_names": ["a", "b", "c"],
        "num_classes": 2,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        GroupedDataset(args.pop("inputs"), args.pop("labels"), args.pop("groups"), **args)


def test_splits_unpack_and_to():
    ds = make()
    train, test = DatasetSplits(ds, ds.subset([0]))
    assert len(train) == 12 and len(test) == 1
    moved = ds.to("cpu")
    assert torch.equal(moved.inputs, ds.inputs) and moved.group_names == ds.group_names
    assert "toy" in repr(ds)
