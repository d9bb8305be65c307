"""The in-memory container every dataset is turned into: (input, label, group) triples.

A :class:`GroupedDataset` holds three aligned tensors -- ``inputs`` (N, ...), ``labels`` (N,)
and ``groups`` (N,) -- plus the names of the groups. The *group* is the unit accuracy parity
is measured over: the class itself for MNIST and digits, an attribute (skin colour, dialect)
for later datasets. Small datasets are kept entirely as tensors, so a training loop can index a
batch directly (``ds.inputs[idx]``) instead of going through a ``DataLoader``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "DatasetNotFoundError",
    "DatasetSplits",
    "GroupedDataset",
    "default_data_dir",
]

IndexLike = Sequence[int] | np.ndarray | torch.Tensor
_Dataset = TypeVar("_Dataset", bound="GroupedDataset")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not on disk and downloading was not requested."""


def default_data_dir() -> Path:
    """Where datasets live when no ``data_dir`` is given.

    ``$DISPARATE_DATA_DIR`` if set, else ``~/.cache/disparate/data``.
    """
    env = os.environ.get("DISPARATE_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "disparate" / "data"


def _as_index_tensor(indices: IndexLike, n: int) -> torch.Tensor:
    idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices)
    if idx.dtype == torch.bool:
        if idx.shape != (n,):
            raise ValueError(f"boolean mask has shape {tuple(idx.shape)}: expected ({n},)")
        return idx.nonzero(as_tuple=True)[0]
    if idx.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    if idx.dtype.is_floating_point or idx.dtype.is_complex:
        raise ValueError(f"indices have dtype {idx.dtype}: expected integers or a boolean mask")
    idx = idx.reshape(-1).long()
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= n:
        raise ValueError(f"indices out of range [{lo}, {hi}]: expected 0 <= index < {n}")
    return idx


class GroupedDataset(Dataset):
    """Aligned tensors ``inputs`` (N, ...), ``labels`` (N,) long, ``groups`` (N,) long.

    Args:
        inputs: model inputs, first dimension N (any dtype: images are float32, text may be ids).
        labels: class labels in ``[0, num_classes)``.
        groups: group indices in ``[0, len(group_names))``.
        group_names: display/config name of each group, e.g. ``["0", ..., "9"]``.
        num_classes: number of classes the model predicts.
        class_names: optional readable class names (defaults to ``"0"``, ``"1"``, ...).
        name: short description, e.g. ``"mnist/train"``.

    ``ds[i]`` returns ``(x, y, g)``; a tensor of indices returns batched tensors.

    ``subset`` and ``to`` keep the class and every attribute of a subclass, so a subclass need
    not re-implement them.

    ``train_transform``: ``None`` here (inputs are stored model-ready). A dataset that stores
    raw inputs and augments them (e.g. :class:`disparate.data.images.ImageGroupedDataset`)
    sets it to a callable ``(inputs[idx], generator) -> model inputs`` that the training loop
    applies to every training batch; ``ds[idx]`` then returns evaluation-ready inputs.
    """

    train_transform: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None

    def __init__(
        self,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        groups: torch.Tensor,
        *,
        group_names: Sequence[str],
        num_classes: int,
        class_names: Sequence[str] | None = None,
        name: str = "",
    ) -> None:
        inputs = torch.as_tensor(inputs)
        labels = torch.as_tensor(labels)
        groups = torch.as_tensor(groups)
        if inputs.dim() < 1:
            raise ValueError("inputs must have a first (example) dimension")
        n = inputs.shape[0]
        for what, t in (("labels", labels), ("groups", groups)):
            if t.dim() != 1 or t.shape[0] != n:
                raise ValueError(
                    f"{what} has shape {tuple(t.shape)}: expected ({n},) to match inputs"
                )
            if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
                raise ValueError(f"{what} has dtype {t.dtype}: expected an integer dtype")
        group_names = [str(g) for g in group_names]
        if not group_names:
            raise ValueError("group_names is empty: expected at least one group")
        if len(set(group_names)) != len(group_names):
            raise ValueError(f"group_names={group_names}: names must be unique")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes={num_classes!r}: expected an int >= 1")
        labels = labels.long()
        groups = groups.long()
        if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(
                f"labels span [{int(labels.min())}, {int(labels.max())}]: "
                f"expected 0 <= label < num_classes={num_classes}"
            )
        if n and (int(groups.min()) < 0 or int(groups.max()) >= len(group_names)):
            raise ValueError(
                f"groups span [{int(groups.min())}, {int(groups.max())}]: "
                f"expected 0 <= group < {len(group_names)} (len(group_names))"
            )
        if class_names is None:
            class_names = [str(c) for c in range(num_classes)]
        class_names = [str(c) for c in class_names]
        if len(class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(class_names)} entries: expected num_classes={num_classes}"
            )
        self.inputs = inputs
        self.labels = labels
        self.groups = groups
        self.group_names: list[str] = group_names
        self.num_classes: int = num_classes
        self.class_names: list[str] = class_names
        self.name = name

    @classmethod
    def from_class_labels(
        cls,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        *,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        name: str = "",
    ) -> GroupedDataset:
        """A dataset whose groups are its classes, named by ``class_names`` (default ``"0"``,
        ``"1"``, ...)."""
        labels = torch.as_tensor(labels).long()
        return cls(
            inputs,
            labels,
            labels.clone(),
            group_names=list(class_names or [str(c) for c in range(num_classes)]),
            num_classes=num_classes,
            class_names=class_names,
            name=name,
        )

    # -- torch Dataset protocol -------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(
        self, idx: int | slice | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input, label, group)`` for an int; batched tensors for a slice or index tensor."""
        return self.inputs[idx], self.labels[idx], self.groups[idx]

    def __repr__(self) -> str:
        return (
            f"GroupedDataset(name={self.name!r}, n={len(self)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"groups={self.group_sizes()})"
        )

    # -- queries ----------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. ``(1, 28, 28)``."""
        return tuple(self.inputs.shape[1:])

    @property
    def num_groups(self) -> int:
        return len(self.group_names)

    def group_index(self, group: str | int) -> int:
        """Index of a group given by name (``"8"``) or index (``8``); errors name valid choices."""
        if isinstance(group, str):
            if group in self.group_names:
                return self.group_names.index(group)
        elif isinstance(group, (int, np.integer)) and not isinstance(group, bool):
            if 0 <= int(group) < len(self.group_names):
                return int(group)
        raise ValueError(
            f"unknown group {group!r} in dataset {self.name or '<unnamed>'}: "
            f"valid choices are {self.group_names} (or an index 0..{len(self.group_names) - 1})"
        )

    def model_inputs(self) -> dict[str, Any]:
        """What the model builder needs from this data (none here; see models.registry)."""
        return {}

    def group_sizes(self) -> dict[str, int]:
        """Number of examples per group, in ``group_names`` order (zeros included)."""
        counts = torch.bincount(self.groups, minlength=len(self.group_names)).tolist()
        return dict(zip(self.group_names, (int(c) for c in counts), strict=True))

    def class_sizes(self) -> dict[str, int]:
        """Number of examples per class, keyed by ``class_names``."""
        counts = torch.bincount(self.labels, minlength=self.num_classes).tolist()
        return dict(zip(self.class_names, (int(c) for c in counts), strict=True))

    # -- derived datasets -------------------------------------------------------------------
    def _with_tensors(self: _Dataset, inputs: torch.Tensor, labels: torch.Tensor,
                      groups: torch.Tensor, name: str) -> _Dataset:
        """A copy of this dataset -- of its class, with every attribute a subclass added (its
        transform, vocabulary, provenance) -- holding other tensors of the same examples'
        kind; lists and dicts are copied, so changing the copy's leaves this one's alone."""
        like = copy.copy(self)
        for key, value in vars(self).items():
            if isinstance(value, list | dict):
                setattr(like, key, copy.copy(value))
        like.inputs, like.labels, like.groups, like.name = inputs, labels, groups, name
        return like

    def subset(self: _Dataset, indices: IndexLike, *, name: str | None = None) -> _Dataset:
        """The examples at ``indices`` (ints or a boolean mask), in that order."""
        idx = _as_index_tensor(indices, len(self))
        return self._with_tensors(self.inputs[idx], self.labels[idx], self.groups[idx],
                                  self.name if name is None else name)

    def to(self: _Dataset, device: torch.device | str) -> _Dataset:
        """A copy with all tensors on ``device`` (for fast batch indexing on a GPU)."""
        return self._with_tensors(self.inputs.to(device), self.labels.to(device),
                                  self.groups.to(device), self.name)


class DatasetSplits(NamedTuple):
    """What a dataset builder returns; unpacks as ``train, test = splits``."""

    train: GroupedDataset
    test: GroupedDataset
