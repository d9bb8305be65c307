"""Dataset registry: ``@register_dataset("name")`` on a builder function.

A builder has the signature::

    build(*, data_dir: str | Path | None, download: bool, seed: int) -> DatasetSplits

and returns ``DatasetSplits(train, test)`` of :class:`GroupedDataset`. ``data_dir`` is where
the files are (``None``: :func:`default_data_dir`); ``download`` allows fetching them;
``seed`` fixes any random split (datasets with a fixed split ignore it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from disparate.data.grouped import DatasetSplits

__all__ = [
    "DatasetBuilder",
    "get_dataset_builder",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]


class DatasetBuilder(Protocol):
    def __call__(
        self, *, data_dir: str | Path | None, download: bool, seed: int
    ) -> DatasetSplits: ...


_REGISTRY: dict[str, DatasetBuilder] = {}


def register_dataset(name: str) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Decorator registering a dataset builder under ``name``; duplicate names raise."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset name={name!r}: expected a non-empty string")

    def decorator(builder: DatasetBuilder) -> DatasetBuilder:
        if name in _REGISTRY:
            raise ValueError(
                f"dataset {name!r} is already registered (by {_REGISTRY[name].__module__}."
                f"{getattr(_REGISTRY[name], '__qualname__', _REGISTRY[name])})"
            )
        _REGISTRY[name] = builder
        return builder

    return decorator


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted."""
    return sorted(_REGISTRY)


def get_dataset_builder(name: str) -> DatasetBuilder:
    """The builder registered as ``name``; a ValueError names the valid choices otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"dataset={name!r}: unknown dataset; valid choices are {list_datasets()}"
        ) from None


def load_dataset(
    name: str, *, data_dir: str | Path | None = None, download: bool = False, seed: int = 0
) -> DatasetSplits:
    """Build the (train, test) splits of dataset ``name``."""
    return get_dataset_builder(name)(data_dir=data_dir, download=download, seed=seed)
