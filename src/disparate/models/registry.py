"""Model registry: ``@register_model("name")`` on a builder function.

A builder has the signature ``build(*, num_classes: int, input_shape: tuple[int, ...],
**options) -> nn.Module`` and returns a module on CPU that maps a batch (B, *input_shape) to
logits (B, num_classes). Parameters are initialised from torch's global RNG, so the caller
seeds (``torch.manual_seed``) before :func:`build_model`.

A dataset can hand the model what only the data knows (a text dataset's vocabulary and
pre-trained vectors): ``GroupedDataset.model_inputs()`` -> ``build_model(...,
dataset_inputs=...)``; a builder receives those of its keyword arguments it declares.

The built-in models are a table (:data:`BUILTIN`, and the ``torchvision:<name>`` family of
:data:`FAMILIES`) imported on first use: their names and options come from the table and the
builders' source (:mod:`disparate.registration`), so ``disparate list`` imports no torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from disparate import registration
from disparate.models import torchvision_names
from disparate.plugins import load_plugins

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "BUILTIN",
    "FAMILIES",
    "ModelBuilder",
    "build_model",
    "count_parameters",
    "list_models",
    "model_options",
    "register_model",
]

ModelBuilder = Callable[..., "nn.Module"]

#: The built-in models: name -> "module:builder" (the module registers it when imported).
BUILTIN: dict[str, str] = {
    "digits-cnn": "disparate.models.cnn:build_digits_cnn",
    "mlp": "disparate.models.mlp:build_mlp",
    "mnist-cnn": "disparate.models.cnn:build_mnist_cnn",
    "resnet18": "disparate.models.torchvision_models:build_torchvision_classifier",
    "text-lstm": "disparate.models.text:build_text_lstm",
}
#: Built-in families: prefix -> ("module:builder" of every member, the members' names).
FAMILIES: dict[str, tuple[str, Callable[[], list[str]]]] = {
    torchvision_names.PREFIX: (BUILTIN["resnet18"], torchvision_names.classifier_names),
}

_REGISTRY: dict[str, ModelBuilder] = {}
_RESERVED = ("num_classes", "input_shape")
#: Builder arguments that datasets provide (``GroupedDataset.model_inputs``), not users.
DATASET_INPUTS = ("embedding_init",)


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering a model builder under ``name``; duplicate names raise."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name={name!r}: expected a non-empty string")

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            prev = _REGISTRY[name]
            raise ValueError(
                f"model {name!r} is already registered (by {prev.__module__}."
                f"{getattr(prev, '__qualname__', prev)})"
            )
        target = _builtin_target(name)
        if target is not None and not registration.registers(target, builder):
            raise ValueError(f"model {name!r} is already registered (by "
                             f"{target.replace(':', '.')})")
        params = inspect.signature(builder).parameters
        missing = [p for p in _RESERVED if p not in params]
        if missing:
            raise ValueError(
                f"model builder {name!r} lacks keyword arguments {missing}: expected "
                f"build(*, num_classes, input_shape, **options)"
            )
        _REGISTRY[name] = builder
        return builder

    return decorator


def _builtin_names() -> list[str]:
    return [*BUILTIN, *(prefix + member for prefix, (_, members) in FAMILIES.items()
                        for member in members())]


def _builtin_target(name: str) -> str | None:
    """The "module:builder" of built-in model ``name`` (None: not a built-in)."""
    if name in BUILTIN:
        return BUILTIN[name]
    prefix, sep, member = name.partition(":")
    family = FAMILIES.get(prefix + sep)
    return family[0] if family is not None and member in family[1]() else None


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    load_plugins()
    return sorted({*_REGISTRY, *_builtin_names()})


def model_options(name: str) -> dict[str, Any]:
    """The extra keyword options of model ``name`` and their defaults (read from a built-in
    builder's source while it is not imported)."""
    load_plugins()
    target = _builtin_target(name) if name not in _REGISTRY else None
    if target is not None:
        options = {o.name: o.default for o in registration.source_options(target).options
                   if o.name not in _RESERVED + DATASET_INPUTS}
        if registration.NOT_LITERAL not in options.values():
            return options
    builder = _get(name)
    return {
        p.name: p.default
        for p in inspect.signature(builder).parameters.values()
        if p.name not in _RESERVED + DATASET_INPUTS
        and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def _get(name: str) -> ModelBuilder:
    load_plugins()
    target = _builtin_target(name) if isinstance(name, str) and name not in _REGISTRY else None
    if target is not None:
        registration.load(target)
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"model={name!r}: unknown model; valid choices are {list_models()}"
        ) from None


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ValueError(
            f"input_shape={input_shape!r}: expected a tuple of positive ints, e.g. (1, 28, 28)"
        ) from None
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(
            f"input_shape={input_shape!r}: expected a tuple of positive ints, e.g. (1, 28, 28)"
        )
    return shape


def build_model(
    name: str,
    *,
    num_classes: int,
    input_shape: Sequence[int],
    dataset_inputs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build model ``name`` for inputs of shape ``input_shape`` (no batch dim), on CPU.

    Unknown names and unknown keyword options raise a ValueError naming the valid choices.
    ``dataset_inputs`` are passed on where the builder declares them (see the module doc).
    """
    builder = _get(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r}: expected an int >= 1")
    shape = _check_shape(input_shape)
    valid = model_options(name)
    unknown = sorted(k for k in kwargs if k not in valid)
    if unknown:
        raise ValueError(
            f"model {name!r}: unknown option(s) {unknown}; valid options are "
            f"{sorted(valid) or 'none'}"
        )
    accepted = inspect.signature(builder).parameters
    provided = {k: v for k, v in (dataset_inputs or {}).items() if k in accepted}
    return builder(num_classes=num_classes, input_shape=shape, **provided, **kwargs)


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
