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
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import re
import warnings
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from disparate import fileio
from disparate.federated.settings import FederatedConfig
from disparate.privacy.choices import SAMPLINGS, SHUFFLE_ACCOUNTINGS
from disparate.privacy.policies import MitigationConfig
from disparate.validation import (
    MAX_SEED,
    MSG_CHOICE,
    MSG_DUPLICATE_KEY,
    MSG_RANGE,
    MSG_TYPE,
    ConfigError,
    FrozenMap,
    check_bool,
    check_choice,
    check_count_or_fraction,
    check_float,
    check_int,
    check_range,
    check_str,
    choices_text,
    freeze,
    frozen_map,
    thaw,
    type_error,
)

__all__ = [
    "ACCOUNTANTS",
    "CALIBRATION_METHODS",
    "MODES",
    "OPTIMIZERS",
    "SAMPLINGS",
    "SECTIONS",
    "SHUFFLE_ACCOUNTINGS",
    "ConfigError",
    "DataConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "FrozenMap",
    "HASH_DEFAULTED_KEYS",
    "HASH_EXCLUDED_KEYS",
    "MAX_SEED",
    "MSG_CHOICE",
    "MSG_DUPLICATE_KEY",
    "MSG_RANGE",
    "MSG_TYPE",
    "ModelConfig",
    "PrivacyConfig",
    "TrainingConfig",
    "apply_overrides",
    "check_dataset_options",
    "check_registered",
    "config_hash",
    "config_hashes",
    "from_dict",
    "list_presets",
    "load_experiment",
    "parse_override",
    "save_config",
    "to_dict",
]

# --------------------------------------------------------------------------------------------
# Choices and message templates (tests assert these texts)
# --------------------------------------------------------------------------------------------

MODES: tuple[str, ...] = ("dp", "clip-only", "noise-only", "non-private")
ACCOUNTANTS: tuple[str, ...] = ("rdp", "pld")
#: Methods that may calibrate the noise multiplier to ``target_epsilon`` (privacy.calibrate_with).
CALIBRATION_METHODS: tuple[str, ...] = ("rdp", "rdp_classic", "pld")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")

MSG_MISSING = "{key}: missing required key"
#: ``{hint}``: " (did you mean 'x'?)" or "", ``{valid}``: comma-separated valid keys.
MSG_UNKNOWN_KEY = "unknown key {key!r}{hint}; valid keys: {valid}"
MSG_DID_YOU_MEAN = " (did you mean {suggestion!r}?)"
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

# Privacy-mode rules. ``{mode}`` is the mode the flags select.
MSG_DP_ZERO_NOISE = (
    "privacy.noise_multiplier=0.0: clipping and noise are on but the noise multiplier is 0, "
    "which gives no privacy; to clip without noise use mode 'clip-only' "
    "(privacy.noise=false, privacy.noise_multiplier=null)"
)
MSG_DP_NEEDS_NOISE = (
    "privacy: mode 'dp' (clipping and noise on) needs privacy.noise_multiplier (> 0) or "
    "privacy.target_epsilon (> 0); both are null"
)
MSG_CALIBRATE_WITHOUT_TARGET = (
    "privacy.calibrate_with={value!r}: names the method that calibrates the noise to "
    "privacy.target_epsilon, which is null; set privacy.target_epsilon (mode 'dp') or "
    "privacy.calibrate_with=null"
)
MSG_DP_BOTH = (
    "privacy.target_epsilon={target!r}: the noise multiplier is calibrated at run time to reach "
    "the target epsilon, so privacy.noise_multiplier must be null (got {z!r})"
)
MSG_UNUSED_IN_MODE = (
    "{key}={value!r}: only used in mode {used_in}, but this config is in mode {mode!r} "
    "(privacy.clipping={clipping}, privacy.noise={noise}); set it to null"
)
MSG_NOISE_STD_REQUIRED = (
    "privacy.noise_std=None: mode 'noise-only' (noise without clipping) needs privacy.noise_std "
    "(> 0), the std of the noise added to the summed gradients; without clipping there is no "
    "sensitivity bound S, so a noise multiplier z*S is meaningless"
)
MSG_NOISE_ONLY_MULTIPLIER = (
    "privacy.noise_multiplier={value!r}: without clipping there is no sensitivity bound S, so "
    "z*S is meaningless; set privacy.noise_multiplier=null and privacy.noise_std to the noise std"
)
MSG_SHUFFLE_ACCOUNTING_REQUIRED = (
    "privacy.shuffle_accounting=None: private training with privacy.sampling='shuffle' must say "
    "how epsilon is accounted; expected one of {choices} ('poisson' treats the shuffled batches "
    "as Poisson-sampled, an approximation that is not a proven guarantee)"
)
MSG_SHUFFLE_ACCOUNTING_UNUSED = (
    "privacy.shuffle_accounting={value!r}: only used with privacy.sampling='shuffle' "
    "(got privacy.sampling='poisson'); set it to null"
)
MSG_MOMENTUM_ADAM = (
    "training.momentum={value!r}: momentum is only used with training.optimizer='sgd' "
    "(got 'adam'); expected 0"
)


def _hint(key: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return MSG_DID_YOU_MEAN.format(suggestion=close[0]) if close else ""


def _unknown_key(key: str, valid: Sequence[str], *, prefix: str = "") -> ConfigError:
    full = [prefix + v for v in valid]
    return ConfigError(
        MSG_UNKNOWN_KEY.format(
            key=prefix + key, hint=_hint(prefix + key, full), valid=", ".join(valid)
        )
    )


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Which data to train and evaluate on, and how its groups are (re)balanced.

    Attributes:
        dataset: Name in the dataset registry (``disparate.data``), e.g. ``"mnist"``,
            ``"digits"``. The registered dataset also defines the groups (for MNIST and digits
            the classes ``"0"`` .. ``"9"``); a different group definition of the same data is
            registered under its own name. Only checked to be non-empty here; the registry
            checks the name when the dataset is built (or call :func:`check_registered`).
        data_dir: Directory holding (or receiving) the raw data; ``None``: the registry's
            default location. Not part of :func:`config_hash`.
        download: Whether the registry may download missing data. Not part of the hash.
        reduce: Group name -> how many training examples of that group to keep: an ``int``
            count (>= 0) or a ``float`` fraction in (0, 1]. E.g. ``{"8": 500}`` keeps 500 of
            MNIST's 5,851 training "8"s. Integer keys (YAML ``{8: 500}``) become strings.
            Stored as a :class:`FrozenMap`. The test set is never reduced.
        subsample: For quick studies: keep a seeded random subset of the (already reduced)
            training set, stratified so each group keeps its share: an ``int`` count (>= 1)
            or a ``float`` fraction in (0, 1]; ``None`` keeps all.
        seed: Seed (>= 0) of the random choices made when building the data (any random
            train/test split, which examples ``reduce`` and ``subsample`` keep).
        options: Extra keyword arguments for the dataset builder (dataset-specific), stored
            as a :class:`FrozenMap`.
    """

    dataset: str
    data_dir: str | None = None
    download: bool = False
    reduce: Mapping[str, int | float] = field(default_factory=FrozenMap)
    subsample: int | float | None = None
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        check_str("data.dataset", self.dataset)
        check_str("data.data_dir", self.data_dir, optional=True)
        check_bool("data.download", self.download)
        reduction = functools.partial(check_count_or_fraction, min_count=0)
        _set(self, "reduce", frozen_map("data.reduce", self.reduce, reduction, int_keys=True))
        check_count_or_fraction("data.subsample", self.subsample, optional=True)
        check_int("data.seed", self.seed, minimum=0, maximum=MAX_SEED)
        _set(self, "options", frozen_map("data.options", self.options, freeze))


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Which model to train.

    Attributes:
        name: Name in the model registry (``disparate.models``), e.g. ``"mnist-cnn"``.
        options: Extra keyword arguments for the model builder, stored as a
            :class:`FrozenMap` (nested lists become tuples).
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        check_str("model.name", self.name)
        _set(self, "options", frozen_map("model.options", self.options, freeze))


_MODE_FLAGS: dict[str, tuple[bool, bool]] = {
    "dp": (True, True),
    "clip-only": (True, False),
    "noise-only": (False, True),
    "non-private": (False, False),
}


@dataclass(frozen=True, kw_only=True)
class PrivacyConfig:
    """The DP-SGD mechanism (paper Section 3.2, Algorithm 1) and how its privacy is accounted.

    The two switches select the mode (see the module docstring): ``dp`` (both), ``clip-only``,
    ``noise-only``, ``non-private`` (neither -- the paper's baseline is DP-SGD's loop without
    clipping or noise). Noise parameters are allowed only in the modes that use them.

    Attributes:
        clipping: Clip each per-example gradient to L2 norm ``max_grad_norm``.
        noise: Add Gaussian noise to the sum of (clipped) per-example gradients.
        max_grad_norm: Clipping bound ``S`` (> 0); used only when ``clipping`` is on.
        noise_multiplier: ``z`` (> 0) with noise std ``sigma = z * S``; only in mode ``dp``,
            where exactly one of ``noise_multiplier`` and ``target_epsilon`` is set.
            ``0`` is rejected: clipping without noise is mode ``clip-only``.
        noise_std: Std of the noise added to the summed gradients in mode ``noise-only`` --
            required there (``z * S`` is meaningless without clipping) and forbidden otherwise.
        delta: The ``delta`` of (epsilon, delta)-DP, in (0, 1); used only when private.
        sampling: How batches are drawn: ``"poisson"`` (each example independently with
            probability ``q = batch_size / N``, as DP-SGD's analysis assumes) or ``"shuffle"``
            (a shuffled pass in fixed-size batches). Applies in every mode, so that baselines
            train with the same batches.
        shuffle_accounting: With ``sampling="shuffle"``, how epsilon is accounted:
            ``"poisson"`` (as if Poisson-sampled; an approximation, not a proven guarantee) or
            ``"without_replacement"`` (fixed-size sampling without replacement). Required for
            private runs with shuffling, forbidden with Poisson sampling.
        accountant: ``"rdp"`` (Renyi DP, as in the paper) or ``"pld"`` (privacy loss
            distributions); used only when private.
        target_epsilon: If set (> 0, mode ``dp`` only), the noise multiplier is calibrated at
            run time to reach this epsilon at ``delta`` after the configured epochs; then
            ``noise_multiplier`` must be null.
        calibrate_with: With ``target_epsilon``: the method that calibrates the noise,
            ``"rdp"``, ``"rdp_classic"`` (the 2019 conversion the paper used, which needs more
            noise for the same epsilon) or ``"pld"``; null calibrates with ``accountant``.
            Epsilon is still reported by ``accountant`` (and by every method at the end).
        reproducible_noise: Mode ``dp`` only draws its batch sampling and noise from a secret
            root taken from the operating system's entropy (kept only in the checkpoint); with
            ``true`` they are seeded from ``training.seed`` instead -- bit-exact runs for
            research and tests, but not private against anyone who has the seed, and every
            privacy statement says so. The other modes are always seeded from
            ``training.seed``. See ``docs/privacy.md``.
    """

    clipping: bool = True
    noise: bool = True
    max_grad_norm: float = 1.0
    noise_multiplier: float | None = None
    noise_std: float | None = None
    delta: float = 1e-6
    sampling: str = "poisson"
    shuffle_accounting: str | None = None
    accountant: str = "rdp"
    target_epsilon: float | None = None
    calibrate_with: str | None = None
    reproducible_noise: bool = False

    def __post_init__(self) -> None:
        check_bool("privacy.clipping", self.clipping)
        check_bool("privacy.reproducible_noise", self.reproducible_noise)
        check_bool("privacy.noise", self.noise)
        _set(self, "max_grad_norm", check_float("privacy.max_grad_norm", self.max_grad_norm))
        check_range("privacy.max_grad_norm", self.max_grad_norm, gt=0.0, expected="> 0")
        z = check_float("privacy.noise_multiplier", self.noise_multiplier, optional=True)
        _set(self, "noise_multiplier", z)
        check_range("privacy.noise_multiplier", z, ge=0.0, expected=">= 0")
        std = check_float("privacy.noise_std", self.noise_std, optional=True)
        _set(self, "noise_std", std)
        check_range("privacy.noise_std", std, gt=0.0, expected="> 0")
        _set(self, "delta", check_float("privacy.delta", self.delta))
        check_range("privacy.delta", self.delta, gt=0.0, lt=1.0, expected="in (0, 1)")
        if self.delta > MAX_MEANINGFUL_DELTA:
            warnings.warn(f"privacy.delta={self.delta:g}: a delta above "
                          f"{MAX_MEANINGFUL_DELTA:g} allows the mechanism to fail outright with "
                          "that probability; use delta well below 1/N (the paper: 1e-5, 1e-6)",
                          stacklevel=2)
        check_choice("privacy.sampling", self.sampling, SAMPLINGS)
        check_choice("privacy.shuffle_accounting", self.shuffle_accounting,
                      SHUFFLE_ACCOUNTINGS, optional=True)
        check_choice("privacy.accountant", self.accountant, ACCOUNTANTS)
        eps = check_float("privacy.target_epsilon", self.target_epsilon, optional=True)
        _set(self, "target_epsilon", eps)
        check_range("privacy.target_epsilon", eps, gt=0.0, expected="> 0")
        check_choice("privacy.calibrate_with", self.calibrate_with, CALIBRATION_METHODS,
                      optional=True)
        if self.calibrate_with is not None and eps is None:
            raise ConfigError(MSG_CALIBRATE_WITHOUT_TARGET.format(value=self.calibrate_with))
        self._check_mode()

    def _check_mode(self) -> None:
        mode = self.mode
        z, eps, std = self.noise_multiplier, self.target_epsilon, self.noise_std

        def unused(key: str, value: Any, used_in: str) -> ConfigError:
            return ConfigError(MSG_UNUSED_IN_MODE.format(
                key=key, value=value, used_in=used_in, mode=mode,
                clipping=str(self.clipping).lower(), noise=str(self.noise).lower()))

        if mode == "dp":
            if z == 0.0:
                raise ConfigError(MSG_DP_ZERO_NOISE)
            if z is not None and eps is not None:
                raise ConfigError(MSG_DP_BOTH.format(target=eps, z=z))
            if z is None and eps is None:
                raise ConfigError(MSG_DP_NEEDS_NOISE)
            if std is not None:
                raise unused("privacy.noise_std", std, "'noise-only'")
            if self.sampling == "shuffle" and self.shuffle_accounting is None:
                raise ConfigError(MSG_SHUFFLE_ACCOUNTING_REQUIRED.format(
                    choices=choices_text(SHUFFLE_ACCOUNTINGS)))
        else:
            if z is not None:
                if mode == "noise-only":
                    raise ConfigError(MSG_NOISE_ONLY_MULTIPLIER.format(value=z))
                raise unused("privacy.noise_multiplier", z, "'dp'")
            if eps is not None:
                raise unused("privacy.target_epsilon", eps, "'dp'")
            if mode == "noise-only" and std is None:
                raise ConfigError(MSG_NOISE_STD_REQUIRED)
            if mode != "noise-only" and std is not None:
                raise unused("privacy.noise_std", std, "'noise-only'")
        if self.sampling == "poisson" and self.shuffle_accounting is not None:
            raise ConfigError(MSG_SHUFFLE_ACCOUNTING_UNUSED.format(value=self.shuffle_accounting))

    @property
    def mode(self) -> str:
        """``"dp"``, ``"clip-only"``, ``"noise-only"`` or ``"non-private"``."""
        for mode, flags in _MODE_FLAGS.items():
            if flags == (self.clipping, self.noise):
                return mode
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def is_private(self) -> bool:
        """True only with clipping and noise on and a positive (or calibrated) noise multiplier.

        Only then is an (epsilon, delta) guarantee computed and reported.
        """
        return (self.clipping and self.noise
                and ((self.noise_multiplier or 0.0) > 0.0 or self.target_epsilon is not None))

    @property
    def sigma(self) -> float | None:
        """Std of the noise added to the summed gradients.

        ``z * S`` in mode ``dp`` (``None`` while ``target_epsilon`` awaits calibration),
        ``noise_std`` in mode ``noise-only``, ``0.0`` otherwise.
        """
        if self.mode == "dp":
            if self.noise_multiplier is None:
                return None
            return self.noise_multiplier * self.max_grad_norm
        if self.mode == "noise-only":
            return self.noise_std
        return 0.0

    def with_mode(self, mode: str, **changes: Any) -> PrivacyConfig:
        """A copy switched to ``mode``; ``changes`` are further fields to replace.

        Noise parameters the new mode does not use are dropped. Switching to ``"noise-only"``
        from mode ``dp`` keeps the same noise (``noise_std = z * S``) unless ``noise_std`` is
        given; switching to ``"dp"`` from another mode needs ``noise_multiplier=`` or
        ``target_epsilon=`` in ``changes``.
        """
        check_choice("privacy.mode", mode, MODES)
        clipping, noise = _MODE_FLAGS[mode]
        new: dict[str, Any] = {"clipping": clipping, "noise": noise}
        if mode != "dp":
            new.update(noise_multiplier=None, target_epsilon=None, calibrate_with=None)
        if mode == "noise-only":
            new["noise_std"] = self.sigma if self.sigma else None
        else:
            new["noise_std"] = None
        new.update(changes)
        return dataclasses.replace(self, **new)

    def non_private(self) -> PrivacyConfig:
        """A copy in mode ``non-private`` (no clipping, no noise; sampling unchanged)."""
        return self.with_mode("non-private")

    def describe(self) -> str:
        """One line saying what the mechanism is, e.g. for report headers."""
        if self.mode == "dp":
            noise = (f"z={self.noise_multiplier:g}" if self.noise_multiplier is not None
                     else f"z calibrated to epsilon={self.target_epsilon:g}"
                     + (f" by {self.calibrate_with}" if self.calibrate_with else ""))
            sampling = self.sampling + (
                f" (accounted as {self.shuffle_accounting})" if self.sampling == "shuffle" else ""
            )
            return (f"DP-SGD: S={self.max_grad_norm:g}, {noise}, delta={self.delta:g}, "
                    f"{sampling} sampling, {self.accountant} accountant")
        if self.mode == "clip-only":
            return f"clipping only (S={self.max_grad_norm:g}, no noise; not private)"
        if self.mode == "noise-only":
            return f"noise only (std={self.noise_std:g}, no clipping; not private)"
        return "non-private (no clipping, no noise)"


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """The optimisation settings of the one training loop.

    Attributes:
        optimizer: ``"sgd"`` or ``"adam"`` (wrapped by the DP optimizer when private).
        lr: Learning rate (> 0).
        momentum: SGD momentum in [0, 1); must be 0 with Adam.
        batch_size: Batch size ``b`` (>= 1); with Poisson sampling the expected batch size,
            ``q = b / N``.
        epochs: Training epochs ``T`` (>= 1); ``K = T * N / b`` steps.
        seed: Seed (>= 0) of model initialisation and augmentation, and of batch sampling and
            noise unless the run is DP without ``privacy.reproducible_noise`` (then those are
            secret); see :mod:`disparate.randomness`.
        num_threads: ``torch.set_num_threads`` value (>= 1); ``None`` leaves torch's default.
        eval_batch_size: Batch size for evaluation (>= 1); does not affect results.
        per_example_stats: Measure per-example gradient norms (``group_grad_norm``) also in
            the modes that do not clip (``non-private``, ``noise-only``). ``False``: those
            runs take a plain forward and backward (faster, less memory) and record no norms
            (``None``; results say so); the clipping modes measure them anyway.
    """

    optimizer: str = "sgd"
    lr: float
    momentum: float = 0.0
    batch_size: int
    epochs: int
    seed: int = 0
    num_threads: int | None = None
    eval_batch_size: int = 1024
    per_example_stats: bool = True

    def __post_init__(self) -> None:
        check_choice("training.optimizer", self.optimizer, OPTIMIZERS)
        _set(self, "lr", check_float("training.lr", self.lr))
        check_range("training.lr", self.lr, gt=0.0, expected="> 0")
        _set(self, "momentum", check_float("training.momentum", self.momentum))
        check_range("training.momentum", self.momentum, ge=0.0, lt=1.0, expected="in [0, 1)")
        if self.optimizer == "adam" and self.momentum != 0.0:
            raise ConfigError(MSG_MOMENTUM_ADAM.format(value=self.momentum))
        check_int("training.batch_size", self.batch_size, minimum=1)
        check_int("training.epochs", self.epochs, minimum=1)
        check_int("training.seed", self.seed, minimum=0, maximum=MAX_SEED)
        check_int("training.num_threads", self.num_threads, minimum=1, optional=True)
        check_int("training.eval_batch_size", self.eval_batch_size, minimum=1)
        check_bool("training.per_example_stats", self.per_example_stats)


@dataclass(frozen=True, kw_only=True)
class EvaluationConfig:
    """What the per-group evaluation emphasises.

    Attributes:
        highlight: Group names to highlight in tables and plots, e.g. ``("8", "2")`` (the
            under-represented class and a well-represented, independent one). Integers
            (YAML ``[8, 2]``) become strings; names must be unique.
        min_group_test_size: Groups with fewer test examples (>= 0) are flagged as
            unreliable in results -- flagged, never hidden.
    """

    highlight: tuple[str, ...] = ()
    min_group_test_size: int = 50

    def __post_init__(self) -> None:
        value = self.highlight
        if value is None:
            value = ()
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise type_error("evaluation.highlight", value, "a list of group names")
        names: list[str] = []
        for i, name in enumerate(value):
            if isinstance(name, int) and not isinstance(name, bool):
                name = str(name)
            check_str(f"evaluation.highlight[{i}]", name)
            if name in names:
                raise ConfigError(MSG_DUPLICATE_KEY.format(key="evaluation.highlight", sub=name))
            names.append(name)
        _set(self, "highlight", tuple(names))
        check_int("evaluation.min_group_test_size", self.min_group_test_size, minimum=0)


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


# --------------------------------------------------------------------------------------------
# dict <-> config
# --------------------------------------------------------------------------------------------

_TOP_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ExperimentConfig))

#: A delta above this draws a warning (it lets the mechanism fail with that probability).
MAX_MEANINGFUL_DELTA = 1e-2


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


def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _required(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls)
                 if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


def _section_from_dict(key: str, cls: type, data: Any) -> Any:
    if not isinstance(data, Mapping):
        raise type_error(key, data, f"a mapping of {key} keys")
    valid = _field_names(cls)
    for k in data:
        if k not in valid:
            raise _unknown_key(str(k), valid, prefix=f"{key}.")
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
        raise type_error("config", data, "a mapping with keys " + ", ".join(_TOP_KEYS))
    for k in data:
        if k not in _TOP_KEYS:
            raise _unknown_key(str(k), _TOP_KEYS)
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


# --------------------------------------------------------------------------------------------
# YAML, presets, overrides
# --------------------------------------------------------------------------------------------


#: Most aliases (``*name``) a YAML document may use: a few nested aliases expand to billions
#: of nodes (an "alias bomb"); configs need none or a handful.
MAX_YAML_ALIASES = 100

_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 numbers and two refusals.

    Numbers: integers are decimal, ``0x..`` or ``0o..`` only (YAML 1.1 read ``8:10`` as the
    sexagesimal 490 and ``010`` as octal 8); floats include exponent floats without a dot
    (``1e-6``). Refused: a key given twice in one mapping (YAML 1.1 keeps the last one) and
    more than :data:`MAX_YAML_ALIASES` aliases.
    """

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise yaml.constructor.ConstructorError(
                    None, None, f"more than {MAX_YAML_ALIASES} aliases (*name): refused, a "
                    "few nested aliases can expand to billions of values",
                    self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"key {key!r} is given twice (first {seen[key]}); keep one of them",
                    key_node.start_mark)
            if isinstance(key, Hashable):
                seen[key] = f"line {key_node.start_mark.line + 1}"
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader: _Loader, node: Any) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    sign, digits = (-1, text[1:]) if text[0] == "-" else (1, text.lstrip("+"))
    base = {"0x": 16, "0o": 8}.get(digits[:2].lower(), 10)
    return sign * int(digits[2:] if base != 10 else digits, base)


_Loader.add_constructor(_INT, _construct_int)
_Loader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9][0-9_]*|[-+]?0x[0-9a-fA-F_]+|[-+]?0o[0-7_]+)$"),
    list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?
                |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader


def _yaml_error(exc: yaml.YAMLError) -> str:
    """One line: ``line L, column C: problem`` (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(problem).split())


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
            name=name_or_path, hint=_hint(name_or_path, presets), available=", ".join(presets)))
    return (_presets_dir() / f"{name_or_path}.yaml").read_text(encoding="utf-8"), name_or_path


def parse_override(override: str) -> tuple[list[str], Any]:
    """Split ``"a.b=value"`` into (``["a", "b"]``, value parsed as YAML)."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(MSG_OVERRIDE_SYNTAX.format(override=override))
    try:
        value = _yaml_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: value is not valid YAML: "
                          f"{_yaml_error(exc)}") from exc
    return key.split("."), value


def _apply_override(data: dict[str, Any], override: str) -> None:
    path, value = parse_override(override)
    top = path[0]
    if top not in _TOP_KEYS:
        raise _unknown_key(top, _TOP_KEYS)
    if top not in SECTIONS:
        if len(path) > 1:
            raise ConfigError(MSG_OVERRIDE_NOT_MAPPING.format(
                override=override, key=top, sub=".".join(path[1:])))
        data[top] = value
        return
    if len(path) == 1:
        raise ConfigError(MSG_OVERRIDE_SECTION.format(
            override=override, key=top, example=_field_names(SECTIONS[top])[0]))
    section = data.get(top)
    if not isinstance(section, dict):
        section = dict(section) if isinstance(section, Mapping) else {}
        data[top] = section
    valid = _field_names(SECTIONS[top])
    name = path[1]
    if name not in valid:
        raise _unknown_key(name, valid, prefix=f"{top}.")
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
        data = _yaml_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name_or_path}: not valid YAML: {_yaml_error(exc)}") from exc
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise type_error(name_or_path, data, "a YAML mapping with keys " + ", ".join(_TOP_KEYS))
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
                key=key, value=value, hint=_hint(value, names), valid=", ".join(names)))
