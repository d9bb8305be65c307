"""Datasets as (input, label, group) triples, a registry of builders, and imbalance helpers.

Importing this package registers the built-in datasets: ``mnist``, ``fashion-mnist``, ``digits``.
"""

from disparate.data import digits as _digits  # noqa: F401  (registers "digits")
from disparate.data import mnist as _mnist  # noqa: F401  (registers "mnist", "fashion-mnist")
from disparate.data.grouped import (
    DatasetNotFoundError,
    DatasetSplits,
    GroupedDataset,
    default_data_dir,
)
from disparate.data.idx import IdxFormatError, read_idx, write_idx
from disparate.data.imbalance import apply_imbalance, reduce_groups, subsample
from disparate.data.registry import (
    DatasetBuilder,
    get_dataset_builder,
    list_datasets,
    load_dataset,
    register_dataset,
)

__all__ = [
    "DatasetBuilder",
    "DatasetNotFoundError",
    "DatasetSplits",
    "GroupedDataset",
    "IdxFormatError",
    "apply_imbalance",
    "default_data_dir",
    "get_dataset_builder",
    "list_datasets",
    "load_dataset",
    "read_idx",
    "reduce_groups",
    "register_dataset",
    "subsample",
    "write_idx",
]
