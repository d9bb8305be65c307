"""Your datasets and models in ``disparate list`` and configs: plugin modules.

A plugin is a module that registers builders when imported::

    # my_project/disparate_plugin.py
    from disparate.data import register_dataset
    from disparate.models import register_model

    @register_dataset("my-data")
    def build(*, data_dir=None, download=False, seed=0): ...

Two ways to have it imported before any lookup in the registries:

* the environment variable ``DISPARATE_PLUGINS``: module names separated by commas,
  e.g. ``DISPARATE_PLUGINS=my_project.disparate_plugin``;
* an entry point of group ``disparate.plugins`` in the plugin's package metadata
  (``pyproject.toml``: ``[project.entry-points."disparate.plugins"] my = "my_project.plugin"``).

Each module is imported once per process; a module that fails to import is an error
naming it.
"""

from __future__ import annotations

import functools
import importlib
import os
from importlib import metadata

__all__ = ["ENTRY_POINT_GROUP", "ENV_VAR", "load_plugins"]

ENV_VAR = "DISPARATE_PLUGINS"
ENTRY_POINT_GROUP = "disparate.plugins"
ERR_IMPORT = "{source}: cannot import plugin module {module!r} ({error})"

_loaded: set[str] = set()
_loading = False


@functools.cache
def _entry_points() -> list[tuple[str, str]]:  # installed packages: scanned once
    return [(f"entry point {ep.name!r} of group {ENTRY_POINT_GROUP!r}", ep.value)
            for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]


def load_plugins() -> list[str]:
    """Import the plugin modules not imported yet; return all loaded so far, sorted."""
    global _loading
    if _loading:  # a plugin's own imports reach the registries again
        return sorted(_loaded)
    wanted = [(f"${ENV_VAR}", m.strip())
              for m in os.environ.get(ENV_VAR, "").split(",") if m.strip()]
    wanted += _entry_points()
    _loading = True
    try:
        for source, module in wanted:
            if module in _loaded:
                continue
            try:
                importlib.import_module(module.split(":")[0])
            except ImportError as e:
                raise ValueError(ERR_IMPORT.format(source=source, module=module, error=e)) from e
            _loaded.add(module)
    finally:
        _loading = False
    return sorted(_loaded)
