"""Hostile YAML and values are refused with the key named (issue #18, point 7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from disparate.config import ConfigError, load_experiment, parse_override


def _yaml(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "exp.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_key_given_twice_is_refused_with_its_line(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "data:\n  dataset: digits\ntraining:\n  lr: 0.1\n  lr: 0.5\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml: not valid YAML: line 5, column 3: key "
                                          r"'lr' is given twice \(first line 4\)"):
        load_experiment(path)


def test_an_alias_bomb_is_refused(tmp_path: Path) -> None:
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
        for i in range(12))
    with pytest.raises(ConfigError, match="more than 100 aliases"):
        load_experiment(_yaml(tmp_path, bomb))


def test_numbers_are_yaml_1_2() -> None:
    assert parse_override("data.reduce={8: 10}")[1] == {8: 10}
    assert parse_override("data.reduce={8:10}")[1] == {"8:10": None}  # never 490
    assert parse_override("x=010")[1] == 10 and parse_override("x=0x1f")[1] == 31
    assert parse_override("x=1e-6")[1] == 1e-6


def test_a_seed_beyond_63_bits_names_its_key() -> None:
    with pytest.raises(ConfigError, match=r"training\.seed=100000000000000000000: expected "
                                          r"<= 9223372036854775807"):
        load_experiment("digits-underrep", ["training.seed=100000000000000000000"])


def test_a_meaningless_delta_warns() -> None:
    with pytest.warns(UserWarning, match=r"privacy\.delta=0\.999999: a delta above 0\.01"):
        load_experiment("digits-underrep", ["privacy.delta=0.999999"])


def test_non_utf8_yaml_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"exp\.yaml: not UTF-8 text"):
        load_experiment(_yaml(tmp_path, b"name: caf\xe9\n"))
