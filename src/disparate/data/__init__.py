"""Datasets as (input, label, group) triples, a registry of builders, and imbalance helpers.

Importing this package registers the built-in datasets: ``mnist``, ``fashion-mnist``, ``digits``,
``faces`` (UTKFace / FairFace / Diversity in Faces, see ``docs/faces.md``), ``tweets``
(TwitterAAE sentiment by dialect, see ``docs/tweets.md``), ``inaturalist`` (super-categories
of iNaturalist 2017 / 2018, see ``docs/inaturalist.md``), and for your own data
``image-folder`` and ``table`` (see ``docs/library.md``). Plugins registered through
:mod:`disparate.plugins` appear alongside.
"""

from disparate.data import digits as _digits  # noqa: F401  (registers "digits")
from disparate.data import faces as _faces  # noqa: F401  (registers "faces")
from disparate.data import inaturalist as _inaturalist  # noqa: F401  (registers "inaturalist")
from disparate.data import mnist as _mnist  # noqa: F401  (registers "mnist", "fashion-mnist")
from disparate.data import own as _own  # noqa: F401  (registers "image-folder", "table")
from disparate.data import tweets as _tweets  # noqa: F401  (registers "tweets")
from disparate.data.grouped import (
    DatasetNotFoundError,
    DatasetSplits,
    GroupedDataset,
    default_data_dir,
)
from disparate.data.idx import IdxFormatError, read_idx, write_idx
from disparate.data.images import Augmentation, ImageGroupedDataset
from disparate.data.imbalance import apply_imbalance, reduce_groups, subsample
from disparate.data.registry import (
    DatasetBuilder,
    dataset_options,
    get_dataset_builder,
    list_datasets,
    load_dataset,
    register_dataset,
)

__all__ = [
    "Augmentation",
    "DatasetBuilder",
    "DatasetNotFoundError",
    "DatasetSplits",
    "GroupedDataset",
    "IdxFormatError",
    "ImageGroupedDataset",
    "apply_imbalance",
    "dataset_options",
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
