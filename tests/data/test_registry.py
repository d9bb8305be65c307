import dataclasses

import pytest

from disparate.config import ConfigError, load_experiment
from disparate.data import (
    DatasetSplits,
    get_dataset_builder,
    list_datasets,
    load_dataset,
    register_dataset,
)
from disparate.data import registry as registry_module
from disparate.data.registry import check_options, options_type


def test_builtin_datasets_registered():
    assert {"mnist", "fashion-mnist", "digits"} <= set(list_datasets())
    assert list_datasets() == sorted(list_datasets())


def test_unknown_dataset_names_choices():
    with pytest.raises(
        ValueError, match=r"dataset='cifar': unknown dataset; valid choices are \["
    ) as e:
        get_dataset_builder("cifar")
    assert "'mnist'" in str(e.value) and "'digits'" in str(e.value)


def test_duplicate_registration_raises(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    with pytest.raises(ValueError, match="'digits' is already registered"):

        @register_dataset("digits")
        def build(*, data_dir, download, seed):  # pragma: no cover
            raise AssertionError


def test_register_and_load(monkeypatch):
    # digits' module imported before the swap: imported inside it, its builder would register
    # in the copy only and be unknown to every later test of this process.
    get_dataset_builder("digits")
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    train, test = load_dataset("digits", seed=0)
    calls = []

    @register_dataset("toy")
    def build(*, data_dir, download, seed):
        calls.append((data_dir, download, seed))
        return DatasetSplits(train, test)

    assert "toy" in list_datasets()
    assert get_dataset_builder("toy") is build
    out = load_dataset("toy", data_dir="/x", download=True, seed=3)
    assert out.train is train and calls == [("/x", True, 3)]


def test_register_rejects_empty_name():
    with pytest.raises(ValueError, match="non-empty string"):
        register_dataset("")


# -- typed options, declared at registration ------------------------------------------------



def test_each_dataset_declares_a_frozen_options_class_with_the_builder_defaults():
    cls = options_type("tweets")
    options = cls()
    assert dataclasses.is_dataclass(options) and options.min_tokens == 3
    assert options.train_sizes == {"AAE": 1000, "SAE": 60000}
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.min_tokens = 4
    with pytest.raises(TypeError):
        cls(3)  # keyword-only
    assert check_options("faces", {"image_size": 64, "groups": "skin"}).image_size == 64
    assert [f.name for f in dataclasses.fields(options_type("mnist"))] == []


@pytest.mark.parametrize(("name", "options", "message"), [
    ("tweets", {"min_tokens": "3"}, "data.options.min_tokens='3': expected an integer, got str"),
    ("tweets", {"min_tokens": True}, "data.options.min_tokens=True: expected an integer, got bool"),
    ("tweets", {"train_sizes": {"AAE": 1.5}},
     "data.options.train_sizes={'AAE': 1.5}: expected a mapping of str to int, got dict"),
    ("image-folder", {"mean": [0.5, "x"]},
     "data.options.mean=[0.5, 'x']: expected a list of float or null, got list"),
    ("faces", {"cache_dir": 3}, "data.options.cache_dir=3: expected a string or null, got int"),
    ("faces", {"colour": 1}, "dataset 'faces': unknown option(s) ['colour']; valid options"),
])
def test_a_mistyped_or_unknown_option_is_refused_naming_key_value_and_type(name, options,
                                                                           message):
    with pytest.raises(ConfigError) as error:
        check_options(name, options)
    assert message in str(error.value)


def test_numbers_fit_float_options_and_null_fits_optional_ones():
    assert check_options("table", {"test_fraction": 1}).test_fraction == 1
    assert check_options("tweets", {"max_lines": None}).max_lines is None


def test_a_bad_dataset_option_fails_when_the_experiment_is_loaded():
    with pytest.raises(ConfigError, match=r"data.options.crop_size='big': expected an integer"):
        load_experiment("faces-gender", ["data.options.crop_size=big"])
    with pytest.raises(ConfigError, match=r"dataset 'digits': unknown option\(s\) \['size'\]"):
        load_experiment("digits-underrep", ["data.options.size=3"])


def test_a_bad_dataset_option_in_a_later_point_fails_at_study_expansion(tmp_path):
    from disparate.study import expand, load_study

    spec = tmp_path / "opts.yaml"
    spec.write_text("name: opts\nbase: faces-gender\n"
                    "grid: {data.options.image_size: [80, 96, 112, 128, 144, 160, big]}\n"
                    "figure: {kind: sweep, x: data.options.image_size}\nscales: {s: {}}\n")
    with pytest.raises(ConfigError, match="data.options.image_size='big'"):
        expand(load_study(str(spec), scale="s"), tmp_path)
