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


class _Shifted(GroupedDataset):
    """A subclass that adds a transform and an attribute, and re-implements nothing else."""

    def __init__(self, *args, shift: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.shift = shift
        self.notes = {"made": "here"}

    def train_transform(self, inputs, generator=None):
        return inputs + self.shift


def _shifted(n=6):
    base = make(n)
    return _Shifted(base.inputs, base.labels, base.groups, group_names=base.group_names,
                    num_classes=2, name="shifted", shift=100.0)


def test_a_subclass_inherits_subset_and_to_with_its_transform_and_attributes():
    ds = _shifted()
    for derived in (ds.subset([4, 1]), ds.subset(torch.tensor([4, 1])).to("cpu")):
        assert type(derived) is _Shifted and derived.shift == 100.0
        assert derived.notes == {"made": "here"}
        assert torch.equal(derived.train_transform(derived.inputs),
                           ds.inputs[[4, 1]] + 100.0)
        assert derived.labels.tolist() == ds.labels[[4, 1]].tolist()
        assert derived.groups.tolist() == ds.groups[[4, 1]].tolist()
    sub = ds.subset([0], name="one")
    assert sub.name == "one" and len(sub) == 1 and len(ds) == 6
    sub.notes["made"] = "there"
    assert ds.notes == {"made": "here"}  # the copy's dict is its own


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def test_no_dataset_class_of_disparate_re_implements_subset_or_to():
    import disparate.data  # noqa: F401  (imports every built-in dataset class)

    classes = [c for c in _all_subclasses(GroupedDataset) if c.__module__.startswith("disparate")]
    assert {c.__name__ for c in classes} >= {"ImageGroupedDataset", "TextGroupedDataset"}
    for cls in classes:
        assert "subset" not in vars(cls) and "to" not in vars(cls), cls


def test_an_image_dataset_subset_keeps_its_augmentation():
    from disparate.data.images import Augmentation, ImageGroupedDataset

    images = torch.arange(4 * 3 * 10 * 10, dtype=torch.int64).remainder(256).to(torch.uint8)
    ds = ImageGroupedDataset(images.reshape(4, 3, 10, 10), torch.tensor([0, 1, 0, 1]),
                             torch.tensor([0, 1, 1, 0]), group_names=["a", "b"], num_classes=2,
                             crop_size=8, augmentation=Augmentation(rotation=10, crop=True,
                                                                    flip=True),
                             info={"sources": 1})
    sub = ds.subset([2, 3])
    assert sub.augmentation == ds.augmentation and sub.crop_size == 8
    assert sub.info == {"sources": 1}
    got = sub.train_transform(sub.inputs, torch.Generator().manual_seed(5))
    want = ds.train_transform(ds.inputs[[2, 3]], torch.Generator().manual_seed(5))
    assert torch.equal(got, want)
    assert not torch.equal(got, sub.eval_transform(sub.inputs))  # augmented, not centre crop
