"""Configs from shipped presets or YAML files, ``KEY=VALUE`` overrides, checks against the
registries, and the resolved config written back as YAML."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from disparate import fileio
from disparate.config.experiment import (
    SECTIONS,
    TOP_KEYS,
    ExperimentConfig,
    field_names,
    from_dict,
    to_dict,
)
from disparate.config.hashing import config_hash
from disparate.config.yaml_loader import yaml_error, yaml_load
from disparate.validation import ConfigError, did_you_mean, type_error, unknown_key

__all__ = [
    "MSG_NO_FILE",
    "MSG_NOT_REGISTERED",
    "MSG_OVERRIDE_NOT_MAPPING",
    "MSG_OVERRIDE_SECTION",
    "MSG_OVERRIDE_SYNTAX",
    "MSG_UNKNOWN_PRESET",
    "apply_overrides",
    "check_dataset_options",
    "check_registered",
    "list_presets",
    "load_experiment",
    "parse_override",
    "save_config",
]

MSG_OVERRIDE_SYNTAX = (
    "override {override!r}: expected KEY=VALUE, e.g. privacy.noise_multiplier=0.7"
)
MSG_OVERRIDE_SECTION = (
    "override {override!r}: {key!r} is a section; set one of its keys, e.g. {key}.{example}=..."
)
MSG_OVERRIDE_NOT_MAPPING = (
    "override {override!r}: {key!r} is not a mapping, so it has no key {sub!r}"
)
MSG_UNKNOWN_PRESET = (
    "unknown preset {name!r}{hint}; available presets: {available} "
    "(or give a path to a .yaml file)"
)
MSG_NO_FILE = "config file {path!r} does not exist"
MSG_NOT_REGISTERED = "{key}={value!r}: not registered{hint}; registered: {valid}"


def _presets_dir() -> Any:
    return resources.files("disparate") / "presets"


def list_presets() -> list[str]:
    """Names of the shipped presets (``src/disparate/presets/*.yaml``), sorted."""
    directory = _presets_dir()
    if not directory.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in directory.iterdir()
                  if p.name.endswith(".yaml"))


def _read_source(name_or_path: str) -> tuple[str, str]:
    """Return (YAML text, default name) of a preset name or a .yaml/.yml path."""
    is_path = name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path or (
        "\\" in name_or_path)
    if is_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(MSG_NO_FILE.format(path=name_or_path))
        try:
            return path.read_text(encoding="utf-8"), path.stem
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                              "save it as UTF-8") from None
    presets = list_presets()
    if name_or_path not in presets:
        raise ConfigError(MSG_UNKNOWN_PRESET.format(
            name=name_or_path, hint=did_you_mean(name_or_path, presets),
            available=", ".join(presets)))
    return (_presets_dir() / f"{name_or_path}.yaml").read_text(encoding="utf-8"), name_or_path


def parse_override(override: str) -> tuple[list[str], Any]:
    """Split ``"a.b=value"`` into (``["a", "b"]``, value parsed as YAML)."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(MSG_OVERRIDE_SYNTAX.format(override=override))
    try:
        value = yaml_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: value is not valid YAML: "
                          f"{yaml_error(exc)}") from exc
    return key.split("."), value


def _apply_override(data: dict[str, Any], override: str) -> None:
    path, value = parse_override(override)
    top = path[0]
    if top not in TOP_KEYS:
        raise unknown_key(top, TOP_KEYS)
    if top not in SECTIONS:
        if len(path) > 1:
            raise ConfigError(MSG_OVERRIDE_NOT_MAPPING.format(
                override=override, key=top, sub=".".join(path[1:])))
        data[top] = value
        return
    if len(path) == 1:
        raise ConfigError(MSG_OVERRIDE_SECTION.format(
            override=override, key=top, example=field_names(SECTIONS[top])[0]))
    section = data.get(top)
    if not isinstance(section, dict):
        section = dict(section) if isinstance(section, Mapping) else {}
        data[top] = section
    valid = field_names(SECTIONS[top])
    name = path[1]
    if name not in valid:
        raise unknown_key(name, valid, prefix=f"{top}.")
    if len(path) == 2:
        section[name] = value
        return
    # Deeper keys address entries of a mapping field (data.reduce.8=250, model.options.x=1).
    node = section.get(name)
    node = dict(node) if isinstance(node, Mapping) else ({} if node is None else node)
    if not isinstance(node, dict):
        raise ConfigError(MSG_OVERRIDE_NOT_MAPPING.format(
            override=override, key=f"{top}.{name}", sub=".".join(path[2:])))
    section[name] = node
    for i, part in enumerate(path[2:], start=2):
        for existing in [k for k in node if str(k) == part and k != part]:
            node[part] = node.pop(existing)  # YAML int keys ({8: 500}) match "8"
        if i == len(path) - 1:
            node[part] = value
            break
        child = node.get(part)
        child = dict(child) if isinstance(child, Mapping) else ({} if child is None else child)
        if not isinstance(child, dict):
            raise ConfigError(MSG_OVERRIDE_NOT_MAPPING.format(
                override=override, key=".".join(path[: i + 1]), sub=".".join(path[i + 1:])))
        node[part] = child
        node = child


def _apply_all(data: Mapping[str, Any], overrides: Sequence[str]) -> ExperimentConfig:
    if isinstance(overrides, str):
        overrides = [overrides]
    merged = dict(data)
    for override in overrides:
        _apply_override(merged, override)
    config = from_dict(merged)
    check_dataset_options(config)
    return config


def check_dataset_options(config: ExperimentConfig) -> None:
    """Raise ConfigError if ``data.options`` has an option the registered dataset does not
    declare, or a value of the wrong type (an unregistered name is left to the registry).

    A federated run's data (``reddit``) checks its own options (``RedditOptions``).
    """
    if config.federated is not None:
        return
    # Imported here, not at the top: the registry loads plugins (which may import torch).
    from disparate.data import registry

    if config.data.dataset in registry.list_datasets():
        registry.check_option_values(config.data.dataset, config.data.options)


def apply_overrides(config: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """A copy of ``config`` with ``KEY=VALUE`` overrides applied (as in load_experiment)."""
    return _apply_all(to_dict(config), overrides)


def load_experiment(name_or_path: str, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Load a shipped preset by name, or a YAML file by path, and apply ``--set`` overrides.

    A value ending in ``.yaml``/``.yml`` or containing a path separator is a path; anything
    else is a preset name (see :func:`list_presets`). A file without ``name`` takes its stem.
    Overrides are ``"section.key=value"`` with ``value`` parsed as YAML
    (``"privacy.noise_multiplier=0.7"``, ``"data.reduce={8: 500}"``,
    ``"privacy.target_epsilon=null"``); a deeper key sets one entry of a mapping field
    (``"data.reduce.8=250"``, ``"model.options.width=32"``). Overrides apply in order.
    """
    text, default_name = _read_source(name_or_path)
    try:
        data = yaml_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name_or_path}: not valid YAML: {yaml_error(exc)}") from exc
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise type_error(name_or_path, data, "a YAML mapping with keys " + ", ".join(TOP_KEYS))
    data = dict(data)
    data.setdefault("name", default_name)
    return _apply_all(data, overrides)


def save_config(config: ExperimentConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (loadable by load_experiment); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Resolved experiment config {config.name!r}, config_hash {config_hash(config)}.\n"
              f"# Privacy: {config.privacy.describe()}\n")
    body = yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=False,
                          allow_unicode=True, width=100)
    return fileio.write_text(path, header + body)


def check_registered(config: ExperimentConfig, *, datasets: Collection[str] | None = None,
                     models: Collection[str] | None = None) -> None:
    """Raise ConfigError if the dataset or model name is not among the registered names."""
    for key, value, valid in (("data.dataset", config.data.dataset, datasets),
                              ("model.name", config.model.name, models)):
        if valid is not None and value not in valid:
            names = sorted(valid)
            raise ConfigError(MSG_NOT_REGISTERED.format(
                key=key, value=value, hint=did_you_mean(value, names), valid=", ".join(names)))
