"""Who is a member, a non-member, a canary and a reference-model example in an audit.

Everything is drawn from the dataset's *training* split, per group and seeded; the test split
stays what it is for the experiment: accuracy only.

For a seed ``s`` and an experiment whose data steps (``data.reduce``, ``data.subsample``)
keep the training set ``E`` of the full training split ``U``, and ``D = U \\ E`` (the
examples those steps left out), per group ``g``:

- ``holdout_fraction`` of ``E_g`` (rounded, seeded) is held out; the rest are the
  **members** -- the examples the audited model trains on, so the under-represented group
  keeps its ratio to the others.
- **canaries** are ``canaries_g`` images drawn from the held-out ``E_g`` and ``D_g``, each
  given a uniformly random *wrong* label (a mislabeled example is the most memorable kind of
  real example), each included in training independently with probability 1/2. The canary's
  group is its image's group.
- **non-members** are the remaining held-out ``E_g`` and ``D_g`` examples, with their true
  labels: same distribution as the members, never trained on.
- **reference sets** for offline LiRA come in complementary pairs: members and non-members of
  each group are permuted and the first ``n_g`` go to model A, the next ``n_g`` to model B,
  with ``n_g`` proportional to the group's member count (the largest common scale that fits),
  so reference models see the target's group ratios and every example is out of at least one
  of each pair. Reference models never see canaries.
- the **overall** attack compares all members with ``balanced_nonmembers``: each group's
  non-members cut to the members' group proportions. Otherwise a group that is rare among
  members but common among non-members (the under-represented class, whose left-out
  examples are non-members) would give the attack a signal that is about groups, not
  membership.

The audited training set is the members plus the included canaries, so its size N (and the
run's accounted epsilon) counts the included canaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from disparate.config import ExperimentConfig
from disparate.data import GroupedDataset, reduce_groups, subsample

__all__ = ["AuditData", "build_audit_data", "check_counts", "experiment_indices", "split_canaries"]

ERR_HOLDOUT = "holdout_fraction={value!r}: expected a number in (0, 1)"
ERR_CANARIES = "canaries={value!r}: expected an integer >= 0"
ERR_TOO_MANY_CANARIES = (
    "canaries={value}: group {group!r} would need {need} canary images but has only {have} "
    "held-out training examples (at least one must stay a non-member); use at most {most} "
    "canaries or a larger holdout_fraction"
)
ERR_REFERENCE_MODELS = "reference_models={value!r}: expected an even integer >= 2"
ERR_TRANSFORM = (
    "dataset {name!r} augments its training inputs (train_transform); the audit scores stored "
    "inputs and supports only datasets without augmentation"
)
_STREAM_HOLDOUT, _STREAM_CANARY, _STREAM_LABEL, _STREAM_INCLUDE, _STREAM_REFERENCE = range(5)


def check_counts(*, canaries: int, holdout_fraction: float, reference_models: int) -> None:
    """Raise ``ValueError`` naming the first bad argument."""
    if not (isinstance(holdout_fraction, (int, float)) and 0 < holdout_fraction < 1):
        raise ValueError(ERR_HOLDOUT.format(value=holdout_fraction))
    if isinstance(canaries, bool) or not isinstance(canaries, int) or canaries < 0:
        raise ValueError(ERR_CANARIES.format(value=canaries))
    if (isinstance(reference_models, bool) or not isinstance(reference_models, int)
            or reference_models < 2 or reference_models % 2):
        raise ValueError(ERR_REFERENCE_MODELS.format(value=reference_models))


def experiment_indices(config: ExperimentConfig, full_train: GroupedDataset) -> np.ndarray:
    """Indices into ``full_train`` of the examples ``data.reduce`` and ``data.subsample`` keep.

    Both steps choose examples from groups and the seed only, so running them on a dataset of
    indices gives exactly the examples :func:`disparate.training.prepare_data` keeps.
    """
    ids = GroupedDataset(torch.arange(len(full_train)), full_train.labels, full_train.groups,
                         group_names=full_train.group_names, num_classes=full_train.num_classes)
    dc = config.data
    if dc.reduce:
        ids = reduce_groups(ids, dict(dc.reduce), seed=dc.seed)
    if dc.subsample is not None:
        ids = subsample(ids, dc.subsample, seed=dc.seed)
    return ids.inputs.numpy()


def split_canaries(total: int, groups: int) -> list[int]:
    """``total`` canaries over ``groups`` groups as evenly as possible (first groups get more)."""
    return [total // groups + (1 if g < total % groups else 0) for g in range(groups)]


@dataclass(frozen=True)
class AuditData:
    """The audit's examples; index arrays point into ``pool`` (the full training split)."""

    pool: GroupedDataset
    members: np.ndarray
    nonmembers: np.ndarray
    canary_index: np.ndarray  # (M,) pool index of each canary's image
    canary_labels: np.ndarray  # (M,) its wrong label
    included: np.ndarray  # (M,) bool
    reference_sets: tuple[np.ndarray, ...]  # pool indices each reference model trains on
    balanced_nonmembers: np.ndarray  # the non-members the overall attack uses (see below)

    def canaries(self) -> GroupedDataset:
        """The M canaries (image, wrong label, image's group)."""
        idx = torch.as_tensor(self.canary_index, dtype=torch.long)
        return GroupedDataset(self.pool.inputs[idx], torch.as_tensor(self.canary_labels),
                              self.pool.groups[idx], group_names=self.pool.group_names,
                              num_classes=self.pool.num_classes, name="audit/canaries")

    def training_set(self) -> GroupedDataset:
        """Members followed by the included canaries: what the audited model trains on."""
        members = self.pool.subset(self.members)
        canaries = self.canaries().subset(np.nonzero(self.included)[0])
        return GroupedDataset(torch.cat([members.inputs, canaries.inputs]),
                              torch.cat([members.labels, canaries.labels]),
                              torch.cat([members.groups, canaries.groups]),
                              group_names=self.pool.group_names,
                              num_classes=self.pool.num_classes, name="audit/train")


def build_audit_data(config: ExperimentConfig, full_train: GroupedDataset, *, seed: int,
                     canaries: int, holdout_fraction: float = 0.3, reference_models: int = 2
                     ) -> AuditData:
    """Draw members, non-members, canaries and reference sets (module docstring) for ``seed``."""
    check_counts(canaries=canaries, holdout_fraction=holdout_fraction,
                 reference_models=reference_models)
    if full_train.train_transform is not None:
        raise ValueError(ERR_TRANSFORM.format(name=full_train.name))
    kept = np.zeros(len(full_train), dtype=bool)
    kept[experiment_indices(config, full_train)] = True
    groups = full_train.groups.numpy()
    per_group = split_canaries(canaries, full_train.num_groups)
    members, nonmembers, canary_index = [], [], []
    spare: list[int] = []
    for g in range(full_train.num_groups):
        rng = np.random.default_rng([seed, g, _STREAM_HOLDOUT])
        in_e = rng.permutation(np.nonzero(kept & (groups == g))[0])
        n_hold = int(round(holdout_fraction * in_e.size))
        members.append(in_e[n_hold:])
        rest = np.concatenate([in_e[:n_hold], np.nonzero(~kept & (groups == g))[0]])
        rest = np.random.default_rng([seed, g, _STREAM_CANARY]).permutation(rest)
        spare.append(rest.size - 1)
        canary_index.append(rest[:per_group[g]])
        nonmembers.append(rest[per_group[g]:])
    for g, need in enumerate(per_group):
        if need > spare[g]:
            most = min(s * full_train.num_groups for s in spare)
            raise ValueError(ERR_TOO_MANY_CANARIES.format(
                value=canaries, group=full_train.group_names[g], need=need,
                have=spare[g] + 1, most=max(most, 0)))
    c_idx = np.concatenate(canary_index).astype(np.int64)
    true = full_train.labels.numpy()[c_idx]
    shift = np.random.default_rng([seed, _STREAM_LABEL]).integers(
        1, full_train.num_classes, size=c_idx.size)
    wrong = (true + shift) % full_train.num_classes  # uniform over the other classes
    included = np.random.default_rng([seed, _STREAM_INCLUDE]).random(c_idx.size) < 0.5
    member_arr = np.sort(np.concatenate(members)).astype(np.int64)
    nonmember_arr = np.sort(np.concatenate(nonmembers)).astype(np.int64)
    return AuditData(pool=full_train, members=member_arr, nonmembers=nonmember_arr,
                     canary_index=c_idx, canary_labels=wrong.astype(np.int64), included=included,
                     reference_sets=_reference_sets(groups, member_arr, nonmember_arr,
                                                    full_train.num_groups, seed,
                                                    reference_models // 2),
                     balanced_nonmembers=_balanced(groups, [len(m) for m in members],
                                                   nonmembers))


def _balanced(groups: np.ndarray, n_members: list[int], nonmembers: list[np.ndarray]
              ) -> np.ndarray:
    """Non-members with the members' group proportions (the first of each group's permuted
    non-members), so that the overall attack cannot win by recognising a group."""
    fits = [len(nm) / n for nm, n in zip(nonmembers, n_members, strict=True) if n]
    scale = min(fits) if fits else 0.0
    chosen = [nm[:int(math.floor(scale * n + 1e-9))] for nm, n in
              zip(nonmembers, n_members, strict=True)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _reference_sets(groups: np.ndarray, members: np.ndarray, nonmembers: np.ndarray,
                    num_groups: int, seed: int, pairs: int) -> tuple[np.ndarray, ...]:
    population = np.concatenate([members, nonmembers])
    by_group = [population[groups[population] == g] for g in range(num_groups)]
    n_members = np.bincount(groups[members], minlength=num_groups)
    fits = [len(p) // 2 / n for p, n in zip(by_group, n_members, strict=True) if n]
    scale = min([1.0, *fits])
    sizes = [int(round(scale * n)) for n in n_members]
    sets: list[np.ndarray] = []
    for pair in range(pairs):
        a, b = [], []
        for g, pop in enumerate(by_group):
            perm = np.random.default_rng([seed, g, _STREAM_REFERENCE, pair]).permutation(pop)
            a.append(perm[:sizes[g]])
            b.append(perm[sizes[g]:2 * sizes[g]])
        sets += [np.sort(np.concatenate(a)), np.sort(np.concatenate(b))]
    return tuple(s.astype(np.int64) for s in sets)
