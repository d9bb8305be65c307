"""Datasets as (input, label, group) triples, a registry of builders, and imbalance helpers.

The built-in datasets: ``mnist``, ``fashion-mnist``, ``digits``, ``faces`` (UTKFace / FairFace
/ Diversity in Faces, see ``docs/faces.md``), ``tweets`` (TwitterAAE sentiment by dialect,
see ``docs/tweets.md``), ``inaturalist`` (super-categories of iNaturalist 2017 / 2018, see
``docs/inaturalist.md``), and for your own data ``image-folder`` and ``table`` (see
``docs/library.md``); each is imported when first built (:data:`registry.BUILTIN`). Plugins
registered through :mod:`disparate.plugins` appear alongside.

Attributes are imported on first use, so that listing the datasets and checking a config's
options import no torch.
"""

from __future__ import annotations

from disparate.lazy import lazy_exports

_EXPORTS = {
    "DatasetNotFoundError": "disparate.data.grouped",
    "DatasetSplits": "disparate.data.grouped",
    "GroupedDataset": "disparate.data.grouped",
    "default_data_dir": "disparate.data.grouped",
    "IdxFormatError": "disparate.data.idx",
    "read_idx": "disparate.data.idx",
    "write_idx": "disparate.data.idx",
    "Augmentation": "disparate.data.images",
    "ImageGroupedDataset": "disparate.data.images",
    "apply_imbalance": "disparate.data.imbalance",
    "reduce_groups": "disparate.data.imbalance",
    "subsample": "disparate.data.imbalance",
    "DatasetBuilder": "disparate.data.registry",
    "dataset_options": "disparate.data.registry",
    "get_dataset_builder": "disparate.data.registry",
    "list_datasets": "disparate.data.registry",
    "load_dataset": "disparate.data.registry",
    "register_dataset": "disparate.data.registry",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
