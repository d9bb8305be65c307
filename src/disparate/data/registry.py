"""Dataset registry: ``@register_dataset("name")`` on a builder function.

A builder has the signature::

    build(*, data_dir: str | Path | None, download: bool, seed: int, **options) -> DatasetSplits

and returns ``DatasetSplits(train, test)`` of :class:`GroupedDataset`. ``data_dir`` is where
the files are (``None``: :func:`default_data_dir`); ``download`` allows fetching them;
``seed`` fixes any random split (datasets with a fixed split ignore it). Dataset-specific
options (``data.options`` of a config) are further keyword arguments with defaults and type
hints. At registration they become the dataset's options class, a frozen keyword-only
dataclass (:func:`options_type`) whose ``__post_init__`` checks every value against its type
hint; :func:`check_options` builds it, so :func:`disparate.config.load_experiment` refuses an
unknown or mistyped option when the experiment is loaded, before any data is read.

The built-in datasets are a table (:data:`BUILTIN`) imported on first use: their names, and
the options :func:`check_option_values` checks, come from the table and the builders' source
(:mod:`disparate.registration`), so listing them or loading a config imports no torch.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from disparate import registration
from disparate.plugins import load_plugins
from disparate.validation import ConfigError, type_error

if TYPE_CHECKING:
    from disparate.data.grouped import DatasetSplits

__all__ = [
    "BUILTIN",
    "DatasetBuilder",
    "check_option_values",
    "check_options",
    "dataset_options",
    "get_dataset_builder",
    "list_datasets",
    "load_dataset",
    "options_type",
    "register_dataset",
]


class DatasetBuilder(Protocol):
    def __call__(
        self, *, data_dir: str | Path | None, download: bool, seed: int
    ) -> DatasetSplits: ...


#: The built-in datasets: name -> "module:builder" (the module registers it when imported).
BUILTIN: dict[str, str] = {
    "digits": "disparate.data.digits:build_digits",
    "faces": "disparate.data.faces.dataset:build_faces",
    "fashion-mnist": "disparate.data.mnist:build_fashion_mnist",
    "image-folder": "disparate.data.own:build_image_folder",
    "inaturalist": "disparate.data.inaturalist:build_inaturalist",
    "mnist": "disparate.data.mnist:build_mnist",
    "table": "disparate.data.own:build_table",
    "tweets": "disparate.data.tweets:build_tweets",
}

_REGISTRY: dict[str, DatasetBuilder] = {}
_OPTIONS: dict[str, type] = {}
_RESERVED = ("data_dir", "download", "seed")


def _hint_text(hint: Any, *, article: bool = True) -> str:
    """``int | None`` -> "an integer or null"; ``Sequence[str]`` -> "a list of str"."""
    if hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_hint_text(h, article=article) for h in typing.get_args(hint))
    if origin is Sequence:
        return "a list of " + _hint_text(typing.get_args(hint)[0], article=False)
    if origin is Mapping:
        key, item = (_hint_text(h, article=False) for h in typing.get_args(hint))
        return f"a mapping of {key} to {item}"
    name = getattr(hint, "__name__", str(hint))
    if not article:
        return name
    return {int: "an integer", float: "a number", bool: "a boolean", str: "a string"}.get(
        hint, name)


def _matches(value: Any, hint: Any) -> bool:
    """Whether a YAML-like value fits a builder's type hint (``Any`` fits everything)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if origin is Sequence:
        (item,) = typing.get_args(hint)
        return (isinstance(value, list | tuple)
                and all(_matches(v, item) for v in value))
    if origin is Mapping:
        key, item = typing.get_args(hint)
        return isinstance(value, Mapping) and all(
            _matches(k, key) and _matches(v, item) for k, v in value.items())
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _check_value(name: str, value: Any, hint: Any) -> None:
    if not _matches(value, hint):
        raise type_error(f"data.options.{name}", value, _hint_text(hint))


def _options_class(name: str, builder: DatasetBuilder) -> type:
    """The frozen options dataclass of ``builder``'s keyword options (name, hint, default)."""
    hints = typing.get_type_hints(builder)
    fields = []
    for p in inspect.signature(builder).parameters.values():
        if p.name in _RESERVED or p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            continue
        default = p.default
        spec = (dataclasses.field(default_factory=lambda d=default: d)
                if isinstance(default, dict | list) else dataclasses.field(default=default))
        fields.append((p.name, hints.get(p.name, Any), spec))

    def __post_init__(self: Any) -> None:
        for f in dataclasses.fields(self):
            _check_value(f.name, getattr(self, f.name), f.type)

    title = "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
    return dataclasses.make_dataclass(
        f"{title}Options", fields, frozen=True, kw_only=True,
        namespace={"__post_init__": __post_init__,
                   "__doc__": f"Options (data.options) of dataset {name!r}."})


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
        if name in BUILTIN and not registration.registers(BUILTIN[name], builder):
            raise ValueError(f"dataset {name!r} is already registered (by "
                             f"{BUILTIN[name].replace(':', '.')})")
        _OPTIONS[name] = _options_class(name, builder)
        _REGISTRY[name] = builder
        return builder

    return decorator


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted."""
    load_plugins()
    return sorted({*_REGISTRY, *BUILTIN})


def get_dataset_builder(name: str) -> DatasetBuilder:
    """The builder registered as ``name``; a ValueError names the valid choices otherwise."""
    load_plugins()
    if isinstance(name, str) and name not in _REGISTRY and name in BUILTIN:
        registration.load(BUILTIN[name])
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"dataset={name!r}: unknown dataset; valid choices are {list_datasets()}"
        ) from None


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
    check_options(name, options)
    return builder(data_dir=data_dir, download=download, seed=seed, **options)


def options_type(name: str) -> type:
    """The frozen options dataclass of dataset ``name``, declared when it was registered."""
    get_dataset_builder(name)
    return _OPTIONS[name]


def check_options(name: str, options: Mapping[str, Any]) -> Any:
    """The options of dataset ``name`` as its options class; an unknown option or a value of
    the wrong type raises :class:`~disparate.validation.ConfigError` naming the valid ones.

    A builder that takes ``**options`` accepts any further option unchecked.
    """
    builder = get_dataset_builder(name)
    cls = _OPTIONS[name]
    params = inspect.signature(builder).parameters.values()
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    _refuse_unknown(name, hints, any(p.kind is p.VAR_KEYWORD for p in params), options)
    return cls(**{k: v for k, v in options.items() if k in hints})


def check_option_values(name: str, options: Mapping[str, Any]) -> None:
    """Refuse an unknown or mistyped option of dataset ``name`` as :func:`check_options`
    does, reading a built-in builder's options from its source if it is not imported yet."""
    if name in _REGISTRY or name not in BUILTIN:
        check_options(name, options)
        return
    signature = registration.source_options(BUILTIN[name])
    hints = {o.name: o.hint for o in signature.options if o.name not in _RESERVED}
    _refuse_unknown(name, hints, signature.var_keyword, options)
    for key, value in options.items():
        if key in hints:
            _check_value(key, value, hints[key])


def _refuse_unknown(name: str, valid: Collection[str], var_keyword: bool,
                    options: Mapping[str, Any]) -> None:
    if var_keyword:
        return
    unknown = sorted(k for k in options if k not in valid)
    if unknown:
        raise ConfigError(
            f"dataset {name!r}: unknown option(s) {unknown}; valid options are "
            f"{sorted(valid) or 'none'}"
        )
