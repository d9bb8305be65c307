import pytest

from disparate.data import (
    DatasetSplits,
    get_dataset_builder,
    list_datasets,
    load_dataset,
    register_dataset,
)
from disparate.data import registry as registry_module


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
