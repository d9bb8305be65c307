import pytest
import torch

from disparate.data import load_dataset


def test_shapes_split_and_groups():
    train, test = load_dataset("digits", seed=0)
    assert len(train) == 1257 and len(test) == 540
    assert train.inputs.shape == (1257, 1, 8, 8) and train.inputs.dtype == torch.float32
    assert train.labels.dtype == torch.long and train.groups.dtype == torch.long
    assert train.group_names == [str(i) for i in range(10)] and train.num_classes == 10
    assert torch.equal(train.groups, train.labels)
    # stratified: every class has ~30% of its images in the test set
    total = {k: train.group_sizes()[k] + v for k, v in test.group_sizes().items()}
    for k, v in test.group_sizes().items():
        assert abs(v - 0.3 * total[k]) <= 1
    # normalised with whole-dataset constants: roughly zero mean, unit std
    both = torch.cat([train.inputs, test.inputs])
    assert abs(float(both.mean())) < 0.01 and abs(float(both.std()) - 1) < 0.01


def test_split_deterministic_by_seed_and_disjoint():
    a_train, a_test = load_dataset("digits", seed=3)
    b_train, b_test = load_dataset("digits", seed=3)
    c_train, _ = load_dataset("digits", seed=4)
    assert torch.equal(a_train.inputs, b_train.inputs) and torch.equal(a_test.labels, b_test.labels)
    assert not torch.equal(a_train.inputs, c_train.inputs)
    # no image is in both splits (compare flattened rows; digits has few exact duplicates)
    train_rows = {tuple(r.tolist()) for r in a_train.inputs.flatten(1)}
    overlap = sum(tuple(r.tolist()) in train_rows for r in a_test.inputs.flatten(1))
    assert overlap <= 5


def test_bad_seed():
    with pytest.raises(ValueError, match="seed=-1"):
        load_dataset("digits", seed=-1)
