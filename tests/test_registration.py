"""The lazy registration tables: what the builders' source says equals what importing them
gives, and the checks read from the source refuse what the imported ones refuse."""

from __future__ import annotations

import ast
import inspect
import typing

import pytest
import torchvision

from disparate import registration
from disparate.config import ConfigError
from disparate.data import registry as data_registry
from disparate.models import registry as model_registry
from disparate.models import torchvision_names


def _keyword_options(builder, reserved):
    return [p for p in inspect.signature(builder).parameters.values()
            if p.kind is p.KEYWORD_ONLY and p.name not in reserved]


@pytest.mark.parametrize("name", sorted(data_registry.BUILTIN))
def test_a_dataset_builders_source_gives_its_options_hints_and_literal_defaults(name):
    builder = data_registry.get_dataset_builder(name)
    hints = typing.get_type_hints(builder)
    read = registration.source_options(data_registry.BUILTIN[name])
    assert not read.var_keyword
    assert [o.name for o in read.options] == [p.name for p in _keyword_options(builder, ())]
    for option, param in zip(read.options, _keyword_options(builder, ()), strict=True):
        assert option.hint == hints[param.name]
        assert option.default is registration.NOT_LITERAL or option.default == param.default


@pytest.mark.parametrize("name", [*sorted(model_registry.BUILTIN), "torchvision:alexnet"])
def test_a_models_options_from_its_source_are_those_of_the_imported_builder(name,
                                                                         monkeypatch):
    builder = model_registry._get(name)
    expected = {p.name: p.default for p in _keyword_options(
        builder, model_registry._RESERVED + model_registry.DATASET_INPUTS)}
    assert model_registry.model_options(name) == expected
    monkeypatch.setattr(model_registry, "_REGISTRY", {})  # as before the first import
    assert model_registry.model_options(name) == expected


def test_the_classifier_names_read_from_torchvisions_source_are_its_list():
    assert torchvision_names.classifier_names() == sorted(
        torchvision.models.list_models(module=torchvision.models))
    assert len(torchvision_names.classifier_names()) > 50


def test_registered_name_follows_register_model():
    tree = ast.parse("@register_model()\ndef a(): ...\n@register_model(name='b')\ndef x(): ...\n"
                     "@register_model\ndef c(): ...\n@other()\ndef d(): ...\n")
    names = [torchvision_names._registered_name(node) for node in tree.body]
    assert names == ["a", "b", "c", None]


@pytest.mark.parametrize(("name", "options", "message"), [
    ("tweets", {"min_tokens": "3"}, "data.options.min_tokens='3': expected an integer, got str"),
    ("tweets", {"train_sizes": {"AAE": 1.5}},
     "data.options.train_sizes={'AAE': 1.5}: expected a mapping of str to int, got dict"),
    ("image-folder", {"mean": [0.5, "x"]},
     "data.options.mean=[0.5, 'x']: expected a list of float or null, got list"),
    ("faces", {"colour": 1}, "dataset 'faces': unknown option(s) ['colour']; valid options"),
    ("mnist", {"size": 1}, "dataset 'mnist': unknown option(s) ['size']; valid options are none"),
])
def test_options_checked_from_the_source_are_refused_as_when_imported(name, options, message,
                                                                      monkeypatch):
    with pytest.raises(ConfigError) as imported:
        data_registry.check_options(name, options)
    monkeypatch.setattr(data_registry, "_REGISTRY", {})  # as before the first import
    with pytest.raises(ConfigError) as read:
        data_registry.check_option_values(name, options)
    assert message in str(read.value) and str(read.value) == str(imported.value)
    data_registry.check_option_values(name, {})


def test_a_builtin_name_cannot_be_taken_before_its_module_is_imported(monkeypatch):
    monkeypatch.setattr(data_registry, "_REGISTRY", {})
    monkeypatch.setattr(model_registry, "_REGISTRY", {})
    with pytest.raises(ValueError, match=r"'tweets' is already registered \(by "
                                         r"disparate\.data\.tweets\.build_tweets\)"):
        data_registry.register_dataset("tweets")(lambda **kwargs: None)
    with pytest.raises(ValueError, match=r"'torchvision:alexnet' is already registered"):
        model_registry.register_model("torchvision:alexnet")(
            lambda *, num_classes, input_shape: None)


def test_a_target_outside_the_package_or_missing_is_refused():
    with pytest.raises(ValueError, match="expected a module inside disparate"):
        registration.source_options("numpy:zeros")
    with pytest.raises(ValueError, match="defines no function 'nope'"):
        registration.source_options("disparate.data.mnist:nope")
