"""Experiment configuration: frozen dataclass configs, YAML presets and ``--set`` overrides.

An experiment is a config naming a dataset (and its group definition), a model, the privacy
mechanism, the training settings and what to highlight in the evaluation -- not a copy of a
training loop. A config is built from a shipped preset (``src/disparate/presets/*.yaml``) or a
YAML file, then ``KEY=VALUE`` overrides are applied (values parsed as YAML)::

    cfg = load_experiment("mnist-underrep", ["privacy.noise_multiplier=0.7",
                                             "data.reduce={8: 250}"])

Every config is frozen, keyword-only and validated in ``__post_init__``; every problem raises
:class:`ConfigError` whose text names the dotted key, the bad value and what was expected, e.g.
``privacy.sampling='poison': expected one of 'poisson', 'shuffle'``.

Privacy modes (``PrivacyConfig.mode``), after the paper's Section 5 ablation::

    mode          clipping  noise  noise parameters
    dp            on        on     exactly one of noise_multiplier (> 0) / target_epsilon
    clip-only     on        off    none
    noise-only    off       on     noise_std (> 0); z*S is meaningless without clipping
    non-private   off       off    none

A noise parameter given in a mode that does not use it is an error, so a saved config never
shows a noise multiplier for a run that added no noise. Only mode ``dp`` is private
(``is_private``); ``delta``, ``accountant`` and ``shuffle_accounting`` are used only then.

Modules: :mod:`~disparate.config.sections` (the sections' dataclasses),
:mod:`~disparate.config.experiment` (the whole config and its dict form),
:mod:`~disparate.config.hashing` (config hashes), :mod:`~disparate.config.yaml_loader`
(the YAML reader), :mod:`~disparate.config.loading` (presets, files, overrides, saving);
every public name is importable from ``disparate.config``.
"""

from __future__ import annotations

from disparate.config.experiment import (
    MSG_MISSING,
    OPTIONAL_SECTIONS,
    SECTIONS,
    TOP_KEYS,
    ExperimentConfig,
    field_names,
    from_dict,
    to_dict,
)
from disparate.config.hashing import (
    HASH_DEFAULTED_KEYS,
    HASH_EXCLUDED_KEYS,
    HASH_OMITTED_AT_DEFAULT,
    config_hash,
    config_hashes,
)
from disparate.config.loading import (
    MSG_NO_FILE,
    MSG_NOT_REGISTERED,
    MSG_OVERRIDE_NOT_MAPPING,
    MSG_OVERRIDE_SECTION,
    MSG_OVERRIDE_SYNTAX,
    MSG_UNKNOWN_PRESET,
    apply_overrides,
    check_dataset_options,
    check_registered,
    list_presets,
    load_experiment,
    parse_override,
    save_config,
)
from disparate.config.sections import (
    ACCOUNTANTS,
    CALIBRATION_METHODS,
    MAX_MEANINGFUL_DELTA,
    MODES,
    MSG_CALIBRATE_WITHOUT_TARGET,
    MSG_DP_BOTH,
    MSG_DP_NEEDS_NOISE,
    MSG_DP_ZERO_NOISE,
    MSG_MOMENTUM_ADAM,
    MSG_NOISE_ONLY_MULTIPLIER,
    MSG_NOISE_STD_REQUIRED,
    MSG_SHUFFLE_ACCOUNTING_REQUIRED,
    MSG_SHUFFLE_ACCOUNTING_UNUSED,
    MSG_UNUSED_IN_MODE,
    OPTIMIZERS,
    DataConfig,
    EvaluationConfig,
    ModelConfig,
    PrivacyConfig,
    TrainingConfig,
)
from disparate.config.yaml_loader import MAX_YAML_ALIASES
from disparate.privacy.choices import SAMPLINGS, SHUFFLE_ACCOUNTINGS
from disparate.validation import (
    MAX_SEED,
    MSG_CHOICE,
    MSG_DID_YOU_MEAN,
    MSG_DUPLICATE_KEY,
    MSG_RANGE,
    MSG_TYPE,
    MSG_UNKNOWN_KEY,
    ConfigError,
    FrozenMap,
)

__all__ = [
    "ACCOUNTANTS",
    "CALIBRATION_METHODS",
    "ConfigError",
    "DataConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "FrozenMap",
    "HASH_DEFAULTED_KEYS",
    "HASH_EXCLUDED_KEYS",
    "HASH_OMITTED_AT_DEFAULT",
    "MAX_MEANINGFUL_DELTA",
    "MAX_SEED",
    "MAX_YAML_ALIASES",
    "MODES",
    "MSG_CALIBRATE_WITHOUT_TARGET",
    "MSG_CHOICE",
    "MSG_DID_YOU_MEAN",
    "MSG_DP_BOTH",
    "MSG_DP_NEEDS_NOISE",
    "MSG_DP_ZERO_NOISE",
    "MSG_DUPLICATE_KEY",
    "MSG_MISSING",
    "MSG_MOMENTUM_ADAM",
    "MSG_NOISE_ONLY_MULTIPLIER",
    "MSG_NOISE_STD_REQUIRED",
    "MSG_NOT_REGISTERED",
    "MSG_NO_FILE",
    "MSG_OVERRIDE_NOT_MAPPING",
    "MSG_OVERRIDE_SECTION",
    "MSG_OVERRIDE_SYNTAX",
    "MSG_RANGE",
    "MSG_SHUFFLE_ACCOUNTING_REQUIRED",
    "MSG_SHUFFLE_ACCOUNTING_UNUSED",
    "MSG_TYPE",
    "MSG_UNKNOWN_KEY",
    "MSG_UNKNOWN_PRESET",
    "MSG_UNUSED_IN_MODE",
    "ModelConfig",
    "OPTIMIZERS",
    "OPTIONAL_SECTIONS",
    "PrivacyConfig",
    "SAMPLINGS",
    "SECTIONS",
    "SHUFFLE_ACCOUNTINGS",
    "TOP_KEYS",
    "TrainingConfig",
    "apply_overrides",
    "check_dataset_options",
    "check_registered",
    "config_hash",
    "config_hashes",
    "field_names",
    "from_dict",
    "list_presets",
    "load_experiment",
    "parse_override",
    "save_config",
    "to_dict",
]
