"""Lazy registration tables: a built-in builder is named ``"module:function"`` and imported
on first use; until then its keyword options (name, type hint, default) are read from its
source, so ``disparate list`` and loading a config import neither torch nor the builder.

A registry keeps its table (``name -> "module:function"``); :func:`source_options` reads the
options of an entry, :func:`load` imports it (the module registers its builders when
imported), :func:`registers` says whether a builder comes from an entry's module.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["NOT_LITERAL", "SourceOption", "SourceSignature", "load", "registers",
           "source_options"]

_PACKAGE = Path(__file__).resolve().parent
#: The names a type hint of a built-in builder may use (its module imports them).
_HINT_NAMES: dict[str, Any] = {"Any": Any, "Sequence": Sequence, "Mapping": Mapping,
                               "Path": Path, "Callable": Callable}
_HINT_BUILTINS = {t.__name__: t for t in (int, float, str, bool, tuple, list, dict)}


class _NotLiteral:
    def __repr__(self) -> str:
        return "NOT_LITERAL"


#: The default of an option whose default is a name or an expression, not a literal.
NOT_LITERAL: Any = _NotLiteral()


@dataclasses.dataclass(frozen=True, kw_only=True)
class SourceOption:
    """One keyword-only parameter of a builder, as written in its source."""

    name: str
    annotation: str | None  # as written; None where there is none
    default: Any  # the literal default, or NOT_LITERAL

    @property
    def hint(self) -> Any:
        """The annotation evaluated (``Any`` where there is none)."""
        if self.annotation is None:
            return Any
        return eval(self.annotation, {"__builtins__": _HINT_BUILTINS}, _HINT_NAMES)  # noqa: S307


@dataclasses.dataclass(frozen=True, kw_only=True)
class SourceSignature:
    """A builder's keyword-only parameters and whether it takes ``**options``."""

    options: tuple[SourceOption, ...]
    var_keyword: bool


def _module_path(module: str) -> Path:
    top, *parts = module.split(".")
    if top != _PACKAGE.name or not parts:
        raise ValueError(f"target module {module!r}: expected a module inside {_PACKAGE.name}")
    base = _PACKAGE.joinpath(*parts)
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _default(node: ast.expr | None) -> Any:
    try:
        return ast.literal_eval(node) if node is not None else NOT_LITERAL
    except ValueError:
        return NOT_LITERAL


@functools.cache
def source_options(target: str) -> SourceSignature:
    """The keyword-only parameters of the function ``target`` (``"module:function"``, a
    top-level function of a module of this package), read from its source file."""
    module, _, name = target.partition(":")
    tree = ast.parse(_module_path(module).read_text(encoding="utf-8"))
    function = next((node for node in tree.body
                     if isinstance(node, ast.FunctionDef) and node.name == name), None)
    if function is None:
        raise ValueError(f"target {target!r}: {module} defines no function {name!r}")
    args = function.args
    options = tuple(SourceOption(
        name=a.arg, annotation=ast.unparse(a.annotation) if a.annotation else None,
        default=_default(d))
                    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True))
    return SourceSignature(options=options, var_keyword=args.kwarg is not None)


def load(target: str) -> None:
    """Import the module of ``target`` (which registers its builders)."""
    importlib.import_module(target.partition(":")[0])


def registers(target: str, builder: Callable[..., Any]) -> bool:
    """Whether ``builder`` is defined in the module of ``target``."""
    return getattr(builder, "__module__", None) == target.partition(":")[0]
