"""Tests of disparate.config: presets, round trips, overrides, validation, privacy modes, hash."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from disparate import config as C
from disparate.config import (
    ConfigError,
    DataConfig,
    EvaluationConfig,
    ExperimentConfig,
    FrozenMap,
    ModelConfig,
    PrivacyConfig,
    TrainingConfig,
    apply_overrides,
    check_registered,
    config_hash,
    experiment,
    from_dict,
    hashing,
    list_presets,
    load_experiment,
    loading,
    save_config,
    sections,
    to_dict,
    yaml_loader,
)

PRESETS = list_presets()


def error_text(func, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        func(*args, **kwargs)
    return str(info.value)


def mnist(*overrides: str) -> ExperimentConfig:
    return load_experiment("mnist-underrep", overrides)


# --------------------------------------------------------------------------------------------
# Presets and round trips
# --------------------------------------------------------------------------------------------


def test_shipped_presets_are_listed() -> None:
    assert {"mnist-underrep", "digits-underrep"} <= set(PRESETS)
    assert PRESETS == sorted(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_and_round_trips(name: str, tmp_path: Path) -> None:
    cfg = load_experiment(name)
    assert cfg.name == name
    assert cfg.description.strip()
    data = to_dict(cfg)
    assert json.loads(json.dumps(data)) == data  # JSON-serialisable
    assert from_dict(data) == cfg
    assert from_dict(yaml.safe_load(yaml.safe_dump(data))) == cfg
    path = save_config(cfg, tmp_path / "sub" / "resolved.yaml")
    again = load_experiment(str(path))
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)
    assert hash(cfg) == hash(again)  # frozen and hashable all the way down


def test_mnist_preset_is_the_papers_section_5_setting() -> None:
    cfg = mnist()
    assert cfg.data.dataset == "mnist"
    assert cfg.data.reduce == {"8": 500}
    assert cfg.model.name == "mnist-cnn"
    p = cfg.privacy
    assert (p.mode, p.is_private) == ("dp", True)
    assert (p.noise_multiplier, p.max_grad_norm, p.delta) == (0.8, 1.0, 1e-6)
    assert (p.sampling, p.accountant) == ("poisson", "rdp")
    t = cfg.training
    assert (t.optimizer, t.lr, t.momentum, t.batch_size, t.epochs) == ("sgd", 0.05, 0.0, 256, 60)
    assert cfg.evaluation.highlight == ("8", "2")
    for text in ("54,649", "60,000", "0.01", "momentum 0.5"):
        assert text in cfg.description


def test_digits_preset() -> None:
    cfg = load_experiment("digits-underrep")
    assert (cfg.data.dataset, cfg.model.name) == ("digits", "digits-cnn")
    assert cfg.data.reduce == {"8": 10}
    assert (cfg.training.batch_size, cfg.training.epochs, cfg.training.lr) == (128, 60, 0.3)
    assert (cfg.privacy.noise_multiplier, cfg.privacy.max_grad_norm) == (2.65, 1.0)
    assert cfg.evaluation.highlight == ("8", "2")


def test_file_without_name_takes_its_stem(tmp_path: Path) -> None:
    data = to_dict(mnist())
    del data["name"]
    path = tmp_path / "my-exp.yml"
    path.write_text(yaml.safe_dump(data))
    assert load_experiment(str(path)).name == "my-exp"


def test_configs_are_frozen() -> None:
    cfg = mnist()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.privacy.noise_multiplier = 0.1  # type: ignore[misc]
    assert isinstance(cfg.data.reduce, FrozenMap)
    with pytest.raises(TypeError):
        cfg.data.reduce["8"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        PrivacyConfig(True, True)  # type: ignore[misc]  # keyword-only


def test_model_options_are_frozen_and_thawed() -> None:
    cfg = mnist("model.options={widths: [8, 16], extra: {a: 1}}")
    assert cfg.model.options["widths"] == (8, 16)
    assert cfg.model.options["extra"] == {"a": 1}
    hash(cfg)
    assert to_dict(cfg)["model"]["options"] == {"extra": {"a": 1}, "widths": [8, 16]}
    assert from_dict(to_dict(cfg)) == cfg


# --------------------------------------------------------------------------------------------
# Overrides
# --------------------------------------------------------------------------------------------


def test_overrides_change_values_with_the_right_type() -> None:
    cfg = mnist(
        "privacy.noise_multiplier=0.7",
        "data.reduce={8: 250, 3: 0.5}",
        "training.lr=1",
        "privacy.delta=1e-5",
        "training.num_threads=4",
        "evaluation.highlight=[3, 5]",
        "data.data_dir=/tmp/data",
        "name=other",
    )
    assert cfg.privacy.noise_multiplier == 0.7
    assert cfg.data.reduce == {"8": 250, "3": 0.5}
    assert type(cfg.data.reduce["8"]) is int and type(cfg.data.reduce["3"]) is float
    assert cfg.training.lr == 1.0 and type(cfg.training.lr) is float
    assert cfg.privacy.delta == 1e-5 and type(cfg.privacy.delta) is float
    assert cfg.training.num_threads == 4
    assert cfg.evaluation.highlight == ("3", "5")
    assert cfg.data.data_dir == "/tmp/data"
    assert cfg.name == "other"


def test_nested_override_sets_one_mapping_entry() -> None:
    cfg = mnist("data.reduce.8=50", "data.reduce.2=0.25", "model.options.width=32")
    assert cfg.data.reduce == {"8": 50, "2": 0.25}
    assert cfg.model.options == {"width": 32}


def test_overrides_apply_in_order_and_null_clears() -> None:
    cfg = mnist("privacy.noise_multiplier=null", "privacy.target_epsilon=3")
    assert cfg.privacy.noise_multiplier is None and cfg.privacy.target_epsilon == 3.0
    assert cfg.privacy.is_private and cfg.privacy.sigma is None
    assert mnist("training.epochs=5", "training.epochs=7").training.epochs == 7


def test_apply_overrides_to_a_config() -> None:
    cfg = mnist()
    assert apply_overrides(cfg, ["training.batch_size=512"]).training.batch_size == 512
    assert cfg.training.batch_size == 256


@settings(max_examples=30, deadline=None)
@given(st.floats(min_value=1e-3, max_value=100.0, allow_nan=False))
def test_float_override_round_trips(z: float) -> None:
    cfg = mnist(f"privacy.noise_multiplier={z!r}")
    assert cfg.privacy.noise_multiplier == z
    assert from_dict(to_dict(cfg)) == cfg


# --------------------------------------------------------------------------------------------
# Unknown keys and bad values
# --------------------------------------------------------------------------------------------


def test_unknown_key_names_key_suggestion_and_valid_keys() -> None:
    text = error_text(mnist, "privacy.noise_multiplyer=1")
    assert text.startswith("unknown key 'privacy.noise_multiplyer'")
    assert "(did you mean 'privacy.noise_multiplier'?)" in text
    assert "valid keys: clipping, noise, max_grad_norm, noise_multiplier" in text


def test_unknown_section() -> None:
    text = error_text(mnist, "trainig.lr=0.1")
    assert text == (
        "unknown key 'trainig' (did you mean 'training'?); "
        "valid keys: name, description, data, model, privacy, training, evaluation, federated, "
        "mitigation"
    )


def test_unknown_key_in_yaml_file(tmp_path: Path) -> None:
    data = to_dict(mnist())
    data["training"]["batchsize"] = 3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    text = error_text(load_experiment, str(path))
    assert "unknown key 'training.batchsize' (did you mean 'training.batch_size'?)" in text


def test_unknown_preset_and_missing_file(tmp_path: Path) -> None:
    text = error_text(load_experiment, "mnist-underep")
    assert "unknown preset 'mnist-underep' (did you mean 'mnist-underrep'?)" in text
    assert ", ".join(list_presets()) in text
    missing = str(tmp_path / "nope.yaml")
    assert error_text(load_experiment, missing) == C.MSG_NO_FILE.format(path=missing)


def test_bad_choice_message() -> None:
    assert error_text(mnist, "privacy.sampling=poison") == (
        "privacy.sampling='poison': expected one of 'poisson', 'shuffle'"
    )
    assert error_text(mnist, "training.optimizer=rmsprop") == (
        "training.optimizer='rmsprop': expected one of 'sgd', 'adam'"
    )
    assert error_text(mnist, "privacy.accountant=moments") == C.MSG_CHOICE.format(
        key="privacy.accountant", value="moments", choices="'rdp', 'pld'"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.lr=abc", "training.lr='abc': expected a number (float), got str"),
        ("training.lr=-0.1", "training.lr=-0.1: expected > 0"),
        ("training.lr=.nan", "training.lr=nan: expected a finite number"),
        ("training.batch_size=2.5", "training.batch_size=2.5: expected an integer, got float"),
        ("training.batch_size=true", "training.batch_size=True: expected an integer, got bool"),
        ("training.epochs=0", "training.epochs=0: expected >= 1"),
        ("training.momentum=1.0", "training.momentum=1.0: expected in [0, 1)"),
        ("privacy.delta=1.5", "privacy.delta=1.5: expected in (0, 1)"),
        ("privacy.delta=0", "privacy.delta=0.0: expected in (0, 1)"),
        ("privacy.max_grad_norm=0", "privacy.max_grad_norm=0.0: expected > 0"),
        ("privacy.noise_multiplier=-1", "privacy.noise_multiplier=-1.0: expected >= 0"),
        ("privacy.clipping=yes please",
         "privacy.clipping='yes please': expected a boolean (true/false), got str"),
        ("data.reduce={8: 1.5}",
         "data.reduce.8=1.5: expected an int count >= 0 or a float fraction in (0, 1]"),
        ("data.reduce={8: -1}",
         "data.reduce.8=-1: expected an int count >= 0 or a float fraction in (0, 1]"),
        ("data.subsample=0",
         "data.subsample=0: expected an int count >= 1 or a float fraction in (0, 1]"),
        ("data.seed=-1", "data.seed=-1: expected >= 0"),
        ("data.dataset=''", "data.dataset='': expected a non-empty string"),
        ("data.reduce=[8]", "data.reduce=[8]: expected a mapping, got list"),
        ("evaluation.highlight=[8, 8]",
         "evaluation.highlight: duplicate key '8' (keys are compared as strings)"),
        ("evaluation.min_group_test_size=-3",
         "evaluation.min_group_test_size=-3: expected >= 0"),
        ("name=has space",
         "name='has space': expected letters, digits, '.', '_' or '-', "
         "starting with a letter or digit"),
    ],
)
def test_bad_values_name_key_value_and_range(override: str, message: str) -> None:
    assert error_text(mnist, override) == message


def test_momentum_only_with_sgd() -> None:
    assert error_text(mnist, "training.optimizer=adam", "training.momentum=0.5") == (
        C.MSG_MOMENTUM_ADAM.format(value=0.5)
    )
    assert mnist("training.optimizer=adam").training.optimizer == "adam"


def test_reduce_int_and_str_keys_collide() -> None:
    text = error_text(DataConfig, dataset="mnist", reduce={8: 1, "8": 2})
    assert text == "data.reduce: duplicate key '8' (keys are compared as strings)"


def test_missing_required_key() -> None:
    data = to_dict(mnist())
    del data["training"]["lr"]
    assert error_text(from_dict, data) == "training.lr: missing required key"
    data = to_dict(mnist())
    del data["privacy"]
    assert error_text(from_dict, data) == "privacy: missing required key"


def test_override_syntax_errors() -> None:
    assert error_text(mnist, "privacy.noise_multiplier") == C.MSG_OVERRIDE_SYNTAX.format(
        override="privacy.noise_multiplier"
    )
    assert "'privacy' is a section" in error_text(mnist, "privacy={}")
    assert "is not a mapping" in error_text(mnist, "privacy.delta.x=1")


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_check_registered() -> None:
    cfg = mnist()
    check_registered(cfg, datasets=["mnist", "digits"], models=["mnist-cnn"])
    text = error_text(check_registered, cfg, datasets=["mnistt", "digits"])
    assert text == (
        "data.dataset='mnist': not registered (did you mean 'mnistt'?); registered: digits, mnistt"
    )


# --------------------------------------------------------------------------------------------
# Privacy modes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "mode", "private", "sigma"),
    [
        ({"noise_multiplier": 0.8, "max_grad_norm": 2.0}, "dp", True, 1.6),
        ({"target_epsilon": 5.0}, "dp", True, None),
        ({"noise": False}, "clip-only", False, 0.0),
        ({"clipping": False, "noise_std": 0.8}, "noise-only", False, 0.8),
        ({"clipping": False, "noise": False}, "non-private", False, 0.0),
    ],
)
def test_modes(kwargs: dict, mode: str, private: bool, sigma: float | None) -> None:
    p = PrivacyConfig(**kwargs)
    assert (p.mode, p.is_private, p.sigma) == (mode, private, sigma)
    assert p.describe()


def test_zero_noise_with_clipping_is_rejected_pointing_to_clip_only() -> None:
    text = error_text(PrivacyConfig, noise_multiplier=0.0)
    assert text == C.MSG_DP_ZERO_NOISE
    assert "clip-only" in text
    assert "clip-only" in error_text(mnist, "privacy.noise_multiplier=0")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, C.MSG_DP_NEEDS_NOISE),
        ({"noise_multiplier": 0.8, "target_epsilon": 3.0},
         C.MSG_DP_BOTH.format(target=3.0, z=0.8)),
        ({"noise_multiplier": 0.8, "noise_std": 1.0},
         "privacy.noise_std=1.0: only used in mode 'noise-only', but this config is in mode "
         "'dp' (privacy.clipping=true, privacy.noise=true); set it to null"),
        ({"noise": False, "noise_multiplier": 0.8},
         "privacy.noise_multiplier=0.8: only used in mode 'dp', but this config is in mode "
         "'clip-only' (privacy.clipping=true, privacy.noise=false); set it to null"),
        ({"noise": False, "noise_multiplier": 0.0},
         "privacy.noise_multiplier=0.0: only used in mode 'dp', but this config is in mode "
         "'clip-only' (privacy.clipping=true, privacy.noise=false); set it to null"),
        ({"clipping": False, "noise": False, "target_epsilon": 2.0},
         "privacy.target_epsilon=2.0: only used in mode 'dp', but this config is in mode "
         "'non-private' (privacy.clipping=false, privacy.noise=false); set it to null"),
        ({"clipping": False, "noise": False, "noise_std": 1.0},
         "privacy.noise_std=1.0: only used in mode 'noise-only', but this config is in mode "
         "'non-private' (privacy.clipping=false, privacy.noise=false); set it to null"),
        ({"clipping": False}, C.MSG_NOISE_STD_REQUIRED),
        ({"clipping": False, "noise_multiplier": 0.8},
         C.MSG_NOISE_ONLY_MULTIPLIER.format(value=0.8)),
        ({"noise_multiplier": 0.8, "sampling": "shuffle"},
         C.MSG_SHUFFLE_ACCOUNTING_REQUIRED.format(choices="'poisson', 'without_replacement'")),
        ({"noise_multiplier": 0.8, "shuffle_accounting": "poisson"},
         C.MSG_SHUFFLE_ACCOUNTING_UNUSED.format(value="poisson")),
        ({"noise_multiplier": 0.8, "target_epsilon": -1.0},
         "privacy.target_epsilon=-1.0: expected > 0"),
        ({"noise_multiplier": 0.8, "calibrate_with": "rdp_classic"},
         C.MSG_CALIBRATE_WITHOUT_TARGET.format(value="rdp_classic")),
        ({"target_epsilon": 3.0, "calibrate_with": "tight"},
         "privacy.calibrate_with='tight': expected one of 'rdp', 'rdp_classic', 'pld' or null"),
    ],
)
def test_impossible_privacy_combinations_are_rejected(kwargs: dict, message: str) -> None:
    assert error_text(PrivacyConfig, **kwargs) == message


def test_shuffle_sampling_with_explicit_accounting() -> None:
    p = PrivacyConfig(noise_multiplier=1.0, sampling="shuffle",
                      shuffle_accounting="without_replacement")
    assert p.is_private and "without_replacement" in p.describe()
    # Not private: accounting is optional, the sampler still applies.
    assert PrivacyConfig(clipping=False, noise=False, sampling="shuffle").mode == "non-private"


def test_with_mode_derives_consistent_configs() -> None:
    dp = mnist().privacy
    clip = dp.with_mode("clip-only")
    assert (clip.mode, clip.noise_multiplier, clip.is_private) == ("clip-only", None, False)
    assert clip.max_grad_norm == dp.max_grad_norm and clip.delta == dp.delta
    noise = dp.with_mode("noise-only")
    assert (noise.mode, noise.noise_std, noise.noise_multiplier) == ("noise-only", 0.8, None)
    assert dp.with_mode("noise-only", noise_std=2.0).noise_std == 2.0
    assert dp.non_private() == dp.with_mode("non-private")
    assert dp.non_private().mode == "non-private"
    assert dp.with_mode("dp") == dp
    assert clip.with_mode("dp", noise_multiplier=0.8) == dp
    assert error_text(clip.with_mode, "dp") == C.MSG_DP_NEEDS_NOISE
    calibrated = PrivacyConfig(target_epsilon=3.0, calibrate_with="rdp_classic")
    assert "z calibrated to epsilon=3 by rdp_classic" in calibrated.describe()
    assert calibrated.non_private().calibrate_with is None
    assert error_text(dp.with_mode, "private") == (
        "privacy.mode='private': expected one of 'dp', 'clip-only', 'noise-only', 'non-private'"
    )


def test_experiment_with_mode() -> None:
    cfg = mnist()
    base = cfg.non_private()
    assert base.privacy.mode == "non-private" and base.training == cfg.training
    assert cfg.with_mode("clip-only").privacy.mode == "clip-only"
    assert config_hash(base) != config_hash(cfg)


# --------------------------------------------------------------------------------------------
# config_hash
# --------------------------------------------------------------------------------------------


def test_config_hash_is_short_hex_and_stable_under_key_order(tmp_path: Path) -> None:
    cfg = mnist()
    h = config_hash(cfg)
    assert re.fullmatch(r"[0-9a-f]{12}", h)
    data = to_dict(cfg)
    reordered = {k: (dict(reversed(list(v.items()))) if isinstance(v, dict) else v)
                 for k, v in reversed(list(data.items()))}
    path = tmp_path / "reordered.yaml"
    path.write_text(yaml.safe_dump(reordered, sort_keys=False))
    assert config_hash(load_experiment(str(path))) == h
    # An int where a float is expected is the same value.
    assert config_hash(mnist("training.lr=1")) == config_hash(mnist("training.lr=1.0"))
    # Reduction given with int or str keys, in any order.
    a = mnist("data.reduce={8: 500, 2: 100}")
    b = mnist("data.reduce={'2': 100, '8': 500}")
    assert a == b and config_hash(a) == config_hash(b)


@pytest.mark.parametrize(
    "override",
    [
        "name=mnist-other",
        "data.dataset=fashion-mnist",
        "data.reduce={8: 499}",
        "data.reduce={8: 500, 2: 500}",
        "data.subsample=0.5",
        "data.seed=1",
        "model.name=mlp",
        "model.options={width: 3}",
        "privacy.noise_multiplier=0.81",
        "privacy.max_grad_norm=2",
        "privacy.delta=1e-5",
        "privacy.accountant=pld",
        "training.optimizer=adam",
        "training.lr=0.01",
        "training.momentum=0.5",
        "training.batch_size=128",
        "training.epochs=59",
        "training.seed=1",
        "evaluation.highlight=[8]",
        "evaluation.min_group_test_size=1",
    ],
)
def test_config_hash_changes_with_any_value(override: str) -> None:
    assert config_hash(mnist(override)) != config_hash(mnist())


def test_config_hash_changes_with_the_dataset_options() -> None:
    # mnist declares no options, so load_experiment refuses one; the hash still covers them.
    cfg = mnist()
    other = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, options={"x": 1}))
    assert config_hash(other) != config_hash(cfg)


@pytest.mark.parametrize("override", ["training.num_threads=2", "training.eval_batch_size=10"])
def test_config_hash_ignores_settings_that_do_not_change_results(override: str) -> None:
    assert config_hash(mnist(override)) == config_hash(mnist())


def test_config_hash_ignores_documentation_and_data_location() -> None:
    h = config_hash(mnist())
    assert config_hash(mnist("description=changed")) == h
    assert config_hash(mnist("data.data_dir=/elsewhere", "data.download=false")) == h


def test_direct_construction_matches_loading() -> None:
    cfg = ExperimentConfig(
        name="mnist-underrep",
        description=mnist().description,
        data=DataConfig(dataset="mnist", download=True, reduce={8: 500}),
        model=ModelConfig(name="mnist-cnn"),
        privacy=PrivacyConfig(noise_multiplier=0.8, delta=1e-6),
        training=TrainingConfig(lr=0.05, batch_size=256, epochs=60, eval_batch_size=1000),
        evaluation=EvaluationConfig(highlight=("8", "2")),
    )
    assert cfg == mnist()
    assert config_hash(cfg) == config_hash(mnist())


#: An epsilon figure: "(4.96, 1e-5)-DP", "epsilon = 3.87", "epsilon of about 8.4", "ε = 5".
EPSILON_FIGURE = re.compile(
    r"\(\s*\d[\d.]*\s*,\s*\d[\d.e-]*\s*\)\s*-?\s*DP|(epsilon|ε)\W{0,3}(\w+\W+){0,3}\d", re.I)


@pytest.mark.parametrize("text", ["which is (4.96, 1e-5)-DP by RDP", "epsilon = 3.87",
                                  "give epsilon of about 8.4 (RDP)", "Epsilon: 3.95 (RDP)",
                                  "ε = 5", "the paper reports (6.23, 1e-6)-DP"])
def test_epsilon_figure_pattern_catches_the_old_descriptions(text: str) -> None:
    assert EPSILON_FIGURE.search(text)


@pytest.mark.parametrize("name", list_presets())
def test_no_preset_description_states_an_epsilon(name: str) -> None:
    # A description is prose about the preset's defaults; a run's guarantee depends on the
    # settings it used and is stated by its privacy statement alone.
    description = load_experiment(name).description
    match = EPSILON_FIGURE.search(description)
    assert match is None, f"{name}: {match.group(0)!r}"


def test_reproducible_noise_is_a_validated_boolean() -> None:
    assert load_experiment("digits-underrep").privacy.reproducible_noise is False
    cfg = load_experiment("digits-underrep", ["privacy.reproducible_noise=true"])
    assert cfg.privacy.reproducible_noise is True
    assert cfg.non_private().privacy.reproducible_noise is True  # kept across modes
    with pytest.raises(ConfigError, match="privacy.reproducible_noise='yes please'"):
        load_experiment("digits-underrep", ["privacy.reproducible_noise=yes please"])


def test_per_example_stats_changes_the_hash_only_when_switched_off() -> None:
    h = config_hash(mnist())
    assert config_hash(mnist("training.per_example_stats=true")) == h  # hashes as before
    assert config_hash(mnist("training.per_example_stats=false")) != h
    with pytest.raises(ConfigError, match=r"training.per_example_stats.*boolean"):
        mnist("training.per_example_stats=1")


def test_the_package_exports_every_public_name_of_its_modules() -> None:
    for module in (sections, experiment, hashing, loading):
        for name in module.__all__:
            assert name in C.__all__ and getattr(C, name) is getattr(module, name), name
    assert C.MAX_YAML_ALIASES == yaml_loader.MAX_YAML_ALIASES == 100
    assert [n for n in C.__all__ if not hasattr(C, n)] == []
