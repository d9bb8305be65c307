"""Who is a member, a non-member, a canary: disjoint, seeded, with the experiment's ratios."""

import dataclasses

import numpy as np
import pytest
import torch

from disparate.audit.canaries import build_audit_data, experiment_indices, split_canaries
from disparate.config import load_experiment
from disparate.data import load_dataset
from disparate.training import prepare_data


@pytest.fixture(scope="module")
def setup():
    config = load_experiment("digits-underrep")
    full = load_dataset("digits", seed=0).train
    return config, full


def test_experiment_indices_are_prepare_datas_training_set(setup):
    config, full = setup
    for cfg in (config, dataclasses.replace(config, data=dataclasses.replace(
            config.data, subsample=600))):
        kept = full.subset(experiment_indices(cfg, full))
        expected = prepare_data(cfg).train
        torch.testing.assert_close(kept.inputs, expected.inputs)
        torch.testing.assert_close(kept.labels, expected.labels)


def test_split_canaries():
    assert split_canaries(23, 10) == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert sum(split_canaries(1000, 7)) == 1000


def test_roles_are_disjoint_and_sized(setup):
    config, full = setup
    data = build_audit_data(config, full, seed=0, canaries=100, holdout_fraction=0.3,
                            reference_models=4)
    kept = set(experiment_indices(config, full).tolist())
    members, nonmembers = set(data.members.tolist()), set(data.nonmembers.tolist())
    canaries = set(data.canary_index.tolist())
    assert not members & nonmembers and not members & canaries and not nonmembers & canaries
    assert members <= kept
    assert len(members | nonmembers | canaries) == len(full)  # every example has a role
    groups = full.groups.numpy()
    # 8 keeps 10 in the experiment; 0.3 of them (3) held out -> 7 members
    assert np.bincount(groups[data.members], minlength=10)[8] == 7
    assert np.bincount(groups[data.canary_index], minlength=10).tolist() == [10] * 10
    # canaries carry a wrong label, and the training set is members + included canaries
    assert (data.canary_labels != full.labels.numpy()[data.canary_index]).all()
    train = data.training_set()
    assert len(train) == data.members.size + int(data.included.sum())
    assert 30 < int(data.included.sum()) < 70


def test_reference_sets_keep_the_members_ratios_and_pairs_are_disjoint(setup):
    config, full = setup
    data = build_audit_data(config, full, seed=1, canaries=50, reference_models=4)
    groups = full.groups.numpy()
    members = np.bincount(groups[data.members], minlength=10)
    assert len(data.reference_sets) == 4
    for a, b in (data.reference_sets[0:2], data.reference_sets[2:4]):
        assert not set(a.tolist()) & set(b.tolist())
        sizes = np.bincount(groups[a], minlength=10)
        ratio = sizes / members
        assert ratio.max() - ratio.min() < 0.1  # the same scale for every group
        assert not set(a.tolist()) & set(data.canary_index.tolist())
    # overall non-members have the members' group proportions
    balanced = np.bincount(groups[data.balanced_nonmembers], minlength=10) / members
    assert balanced.max() - balanced.min() < 0.1


def test_seeded(setup):
    config, full = setup
    a = build_audit_data(config, full, seed=3, canaries=40)
    b = build_audit_data(config, full, seed=3, canaries=40)
    c = build_audit_data(config, full, seed=4, canaries=40)
    assert (a.included == b.included).all() and (a.members == b.members).all()
    assert not (a.canary_index == c.canary_index).all()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"canaries": 1000}, "canaries=1000: group '0' would need 100 canary images but has only"),
    ({"canaries": -1}, "canaries=-1: expected an integer >= 0"),
    ({"canaries": 10, "holdout_fraction": 1.0}, "holdout_fraction=1.0: expected a number in"),
    ({"canaries": 10, "reference_models": 3}, "reference_models=3: expected an even integer"),
])
def test_errors_name_the_argument(setup, kwargs, message):
    config, full = setup
    with pytest.raises(ValueError, match=message):
        build_audit_data(config, full, seed=0, **kwargs)
