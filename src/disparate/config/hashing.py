"""The config hash that keys run directories and run stores, and the legacy hash it accepts."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from disparate.config.experiment import ExperimentConfig, to_dict
from disparate.config.sections import TrainingConfig

__all__ = [
    "HASH_DEFAULTED_KEYS",
    "HASH_EXCLUDED_KEYS",
    "HASH_OMITTED_AT_DEFAULT",
    "config_hash",
    "config_hashes",
]

#: Dotted keys left out of :func:`config_hash`: documentation and data location only.
HASH_EXCLUDED_KEYS: tuple[str, ...] = ("description", "data.data_dir", "data.download")

#: Settings that do not change results (how many threads, how large the evaluation batches):
#: :func:`config_hash` hashes them at their defaults, so a run resumes with another thread
#: count, and every config that keeps the defaults hashes as before (existing run
#: directories of studies, keyed by hash, stay valid; the hash of a config that set them,
#: before they were defaulted, is still accepted: :func:`config_hashes`).
HASH_DEFAULTED_KEYS: dict[str, Any] = {
    f"training.{f.name}": f.default for f in dataclasses.fields(TrainingConfig)
    if f.name in ("num_threads", "eval_batch_size")}

#: Settings added after run stores existed: left out of :func:`config_hash` at their default,
#: so every config that keeps it hashes as before.
HASH_OMITTED_AT_DEFAULT: dict[str, Any] = {"training.per_example_stats": True}


def config_hashes(config: ExperimentConfig) -> tuple[str, ...]:
    """The hash of ``config`` and, if it differs, the one it had before HASH_DEFAULTED_KEYS
    were hashed at their defaults: saved results and checkpoints of either are its own."""
    return tuple(dict.fromkeys((config_hash(config), config_hash(config, legacy=True))))


def config_hash(config: ExperimentConfig, length: int = 12, *, legacy: bool = False) -> str:
    """Stable short hex hash of the resolved config (sorted keys; HASH_EXCLUDED_KEYS left out,
    HASH_DEFAULTED_KEYS at their defaults).

    Two configs that train the same thing hash equal however their YAML was ordered or
    where their data lives; any other value change changes the hash.
    """
    data = to_dict(config)
    for dotted in HASH_EXCLUDED_KEYS:
        *parents, last = dotted.split(".")
        node = data
        for p in parents:
            node = node[p]
        node.pop(last, None)
    for dotted, default in HASH_OMITTED_AT_DEFAULT.items():
        section, key = dotted.split(".")
        if data[section].get(key, default) == default:
            data[section].pop(key, None)
    for dotted, default in ({} if legacy else HASH_DEFAULTED_KEYS).items():
        section, key = dotted.split(".")
        data[section][key] = default
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]

