"""The whole experiment config: its sections, their check, and its plain-dict form."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from disparate.config.sections import (
    DataConfig,
    EvaluationConfig,
    ModelConfig,
    PrivacyConfig,
    TrainingConfig,
)
from disparate.federated.settings import FederatedConfig
from disparate.privacy.policies import MitigationConfig
from disparate.validation import (
    MSG_RANGE,
    ConfigError,
    check_str,
    thaw,
    type_error,
    unknown_key,
)

__all__ = [
    "MSG_MISSING",
    "OPTIONAL_SECTIONS",
    "SECTIONS",
    "TOP_KEYS",
    "ExperimentConfig",
    "field_names",
    "from_dict",
    "to_dict",
]

MSG_MISSING = "{key}: missing required key"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

#: Top-level section name -> section class; a new experiment kind adds a section here.
SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "privacy": PrivacyConfig,
    "training": TrainingConfig,
    "evaluation": EvaluationConfig,
    "federated": FederatedConfig,
    "mitigation": MitigationConfig,
}

#: Sections that may be absent (``None``); an absent one is left out of to_dict and the hash.
OPTIONAL_SECTIONS: tuple[str, ...] = ("federated", "mitigation")


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """One experiment: data and groups, model, privacy mechanism, training, evaluation.

    Attributes:
        name: Identifier used in run directories (letters, digits, ``.``, ``_``, ``-``).
        description: Free text (provenance, deviations from the paper). Not part of the hash.
        data: :class:`DataConfig`.
        model: :class:`ModelConfig`.
        privacy: :class:`PrivacyConfig`.
        training: :class:`TrainingConfig`.
        evaluation: :class:`EvaluationConfig` (defaults if omitted).
        federated: :class:`~disparate.federated.settings.FederatedConfig` for a federated
            (DP-FedAvg) run, else ``None`` (omitted from to_dict and the hash).
        mitigation: :class:`~disparate.privacy.policies.MitigationConfig`, the clipping policy
            of a run (``docs/mitigations.md``); ``None``: DP-SGD's flat clipping (omitted).
    """

    name: str
    description: str = ""
    data: DataConfig
    model: ModelConfig
    privacy: PrivacyConfig
    training: TrainingConfig
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    federated: FederatedConfig | None = None
    mitigation: MitigationConfig | None = None

    def __post_init__(self) -> None:
        check_str("name", self.name)
        if not _NAME_RE.match(self.name):
            raise ConfigError(MSG_RANGE.format(
                key="name", value=self.name,
                expected="letters, digits, '.', '_' or '-', starting with a letter or digit"))
        if not isinstance(self.description, str):
            raise type_error("description", self.description, "a string")
        for key, cls in SECTIONS.items():
            value = getattr(self, key)
            if value is None and key in OPTIONAL_SECTIONS:
                continue
            if not isinstance(value, cls):
                raise type_error(key, value, f"a {cls.__name__}")

    def with_mode(self, mode: str, **privacy_changes: Any) -> ExperimentConfig:
        """A copy whose privacy section is switched to ``mode`` (see PrivacyConfig.with_mode)."""
        return dataclasses.replace(self, privacy=self.privacy.with_mode(mode, **privacy_changes))

    def non_private(self) -> ExperimentConfig:
        """A copy in privacy mode ``non-private``; everything else unchanged."""
        return self.with_mode("non-private")


#: The top-level keys of a config (``name``, ``description`` and the sections).
TOP_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ExperimentConfig))


def field_names(cls: type) -> tuple[str, ...]:
    """The field names of a dataclass (the valid keys of a section), in order."""
    return tuple(f.name for f in dataclasses.fields(cls))


def _required(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls)
                 if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


def _section_from_dict(key: str, cls: type, data: Any) -> Any:
    if not isinstance(data, Mapping):
        raise type_error(key, data, f"a mapping of {key} keys")
    valid = field_names(cls)
    for k in data:
        if k not in valid:
            raise unknown_key(str(k), valid, prefix=f"{key}.")
    for k in _required(cls):
        if k not in data:
            raise ConfigError(MSG_MISSING.format(key=f"{key}.{k}"))
    return cls(**data)


def to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """The config as plain dicts, lists and scalars (JSON/YAML-safe); inverse of from_dict."""
    out: dict[str, Any] = {"name": config.name, "description": config.description}
    for key in SECTIONS:
        section = getattr(config, key)
        if section is None:  # an absent optional section
            continue
        out[key] = {f.name: thaw(getattr(section, f.name)) for f in dataclasses.fields(section)}
    return out


def from_dict(data: Mapping[str, Any]) -> ExperimentConfig:
    """Build and validate an ExperimentConfig from nested mappings (e.g. parsed YAML)."""
    if not isinstance(data, Mapping):
        raise type_error("config", data, "a mapping with keys " + ", ".join(TOP_KEYS))
    for k in data:
        if k not in TOP_KEYS:
            raise unknown_key(str(k), TOP_KEYS)
    for k in _required(ExperimentConfig):
        if k not in data:
            raise ConfigError(MSG_MISSING.format(key=k))
    kwargs: dict[str, Any] = {}
    for k, v in data.items():
        if k in OPTIONAL_SECTIONS and v is None:
            kwargs[k] = None
        elif k in SECTIONS:
            kwargs[k] = _section_from_dict(k, SECTIONS[k], v if v is not None else {})
        elif k == "description" and v is None:
            kwargs[k] = ""
        else:
            kwargs[k] = v
    return ExperimentConfig(**kwargs)


