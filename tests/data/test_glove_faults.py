"""Corrupt GloVe files are refused with the file and line named (issue #18, point 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from disparate.data.glove import GloveFormatError, read_glove


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("bad", ["nan", "1e39", "-inf"])
def test_a_non_finite_value_after_the_first_line_is_refused(tmp_path: Path, bad: str) -> None:
    f = _write(tmp_path / "g.txt", ["the 0.1 0.2 0.3", f"cat 0.4 {bad} 0.6", "dog 1 2 3"])
    with pytest.raises(GloveFormatError, match=r"g\.txt: line 2: the vector of 'cat' has a "
                                               r"non-finite value"):
        read_glove(f, ["cat", "dog"])


def test_a_file_of_another_dimension_is_refused(tmp_path: Path) -> None:
    f = _write(tmp_path / "g300.txt", ["the " + " ".join(["0.5"] * 300), "cat " + " ".join(
        ["0.1"] * 300)])
    with pytest.raises(GloveFormatError, match="line 1 has 300 values after the word: "
                                               "expected dim=8; set the dimension to 300"):
        read_glove(f, ["cat"], dim=8)
