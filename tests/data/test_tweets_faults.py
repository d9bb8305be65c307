"""TwitterAAE proportions must be numbers in [0, 1] (issue #18, point 7)."""

from __future__ import annotations

import pytest

from disparate.data.tweets import parse_line

FIELDS = ["1", "Mon", "u", "[0, 0]", "bg", "so happy :)"]


@pytest.mark.parametrize("bad", ["inf", "nan", "-0.5", "1.5"])
def test_a_proportion_outside_zero_one_is_malformed(bad: str) -> None:
    assert parse_line("\t".join([*FIELDS, bad, "0", "0", "0"])) is None
    assert parse_line("\t".join([*FIELDS, "0.9", "0", "0", "0.1"])) is not None
