"""The names of torchvision's image classifiers, read from its source without importing it
(torchvision imports torch): the functions that ``torchvision/models/*.py`` -- not its
detection, segmentation, video, optical-flow or quantized subpackages -- decorate with
``@register_model()``, i.e. ``torchvision.models.list_models(module=torchvision.models)``.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

__all__ = ["PREFIX", "classifier_names"]

#: Registered model name of torchvision classifier ``x``: ``PREFIX + x``.
PREFIX = "torchvision:"


def _registered_name(node: ast.FunctionDef) -> str | None:
    """The name ``@register_model(...)`` gives ``node`` (None: not decorated with it)."""
    for decorator in node.decorator_list:
        call = decorator if isinstance(decorator, ast.Call) else None
        func = call.func if call is not None else decorator
        if not (isinstance(func, ast.Name) and func.id == "register_model"):
            continue
        if call is None:
            return node.name
        given = [*call.args[:1], *(k.value for k in call.keywords if k.arg == "name")]
        return ast.literal_eval(given[0]) if given else node.name
    return None


@functools.cache
def classifier_names() -> list[str]:
    """torchvision's classifiers, sorted (``[]`` if torchvision is not installed)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return []
    names = []
    for path in sorted((Path(spec.origin).parent / "models").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names += [name for node in tree.body if isinstance(node, ast.FunctionDef)
                  and (name := _registered_name(node)) is not None]
    return sorted(names)
