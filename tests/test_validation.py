"""Tests of disparate.validation's key helpers: the did-you-mean hint and the unknown-key error."""

from __future__ import annotations

from disparate.validation import ConfigError, did_you_mean, unknown_key


def test_did_you_mean_names_the_closest_valid_name_or_nothing() -> None:
    assert did_you_mean("batchsize", ["lr", "batch_size", "epochs"]) == (
        " (did you mean 'batch_size'?)")
    assert did_you_mean("zzz", ["lr", "batch_size", "epochs"]) == ""


def test_unknown_key_names_the_dotted_key_the_closest_and_every_valid_key() -> None:
    error = unknown_key("epoch", ("lr", "epochs"), prefix="training.")
    assert isinstance(error, ConfigError)
    assert str(error) == ("unknown key 'training.epoch' (did you mean 'training.epochs'?); "
                          "valid keys: lr, epochs")
    assert str(unknown_key("qqq", ("data", "model"))) == (
        "unknown key 'qqq'; valid keys: data, model")
