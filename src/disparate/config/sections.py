"""The sections of an experiment config: data, model, privacy mechanism, training, evaluation."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from disparate.privacy.choices import SAMPLINGS, SHUFFLE_ACCOUNTINGS
from disparate.validation import (
    MAX_SEED,
    MSG_DUPLICATE_KEY,
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
    type_error,
)

__all__ = [
    "ACCOUNTANTS",
    "CALIBRATION_METHODS",
    "MAX_MEANINGFUL_DELTA",
    "MODES",
    "OPTIMIZERS",
    "DataConfig",
    "EvaluationConfig",
    "ModelConfig",
    "PrivacyConfig",
    "TrainingConfig",
]

MODES: tuple[str, ...] = ("dp", "clip-only", "noise-only", "non-private")
ACCOUNTANTS: tuple[str, ...] = ("rdp", "pld")
#: Methods that may calibrate the noise multiplier to ``target_epsilon`` (privacy.calibrate_with).
CALIBRATION_METHODS: tuple[str, ...] = ("rdp", "rdp_classic", "pld")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")

#: A delta above this draws a warning (it lets the mechanism fail with that probability).
MAX_MEANINGFUL_DELTA = 1e-2

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


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


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

