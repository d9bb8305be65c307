"""Dataset registry: ``@register_dataset("name")`` on a builder function.

A builder has the signature::

    build(*, data_dir: str | Path | None, download: bool, seed: int, **options) -> DatasetSplits

and returns ``DatasetSplits(train, test)`` of :class:`GroupedDataset`. ``data_dir`` is where
the files are (``None``: :func:`default_data_dir`); ``download`` allows fetching them;
``seed`` fixes any random split (datasets with a fixed split ignore it). Dataset-specific
options (``data.options`` of a config) are further keyword arguments with defaults;
:func:`load_dataset` refuses options a builder does not declare, naming the valid ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from disparate.data.grouped import DatasetSplits
from disparate.plugins import load_plugins

__all__ = [
    "DatasetBuilder",
    "dataset_options",
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
    load_plugins()
    return sorted(_REGISTRY)


def get_dataset_builder(name: str) -> DatasetBuilder:
    """The builder registered as ``name``; a ValueError names the valid choices otherwise."""
    load_plugins()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"dataset={name!r}: unknown dataset; valid choices are {list_datasets()}"
        ) from None


_RESERVED = ("data_dir", "download", "seed")


def dataset_options(name: str) -> dict[str, Any]:
    """The extra keyword options of dataset ``name`` and their defaults (``{}``: none)."""
    return {
        p.name: p.default
        for p in inspect.signature(get_dataset_builder(name)).parameters.values()
        if p.name not in _RESERVED and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    seed: int = 0,
    **options: Any,
) -> DatasetSplits:
    """Build the (train, test) splits of dataset ``name``; ``options`` go to its builder.

    An option the builder does not declare raises a ValueError naming the valid options.
    """
    builder = get_dataset_builder(name)
    if options:
        params = inspect.signature(builder).parameters.values()
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            valid = dataset_options(name)
            unknown = sorted(k for k in options if k not in valid)
            if unknown:
                raise ValueError(
                    f"dataset {name!r}: unknown option(s) {unknown}; valid options are "
                    f"{sorted(valid) or 'none'}"
                )
    return builder(data_dir=data_dir, download=download, seed=seed, **options)
