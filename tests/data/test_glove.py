"""GloVe text format (tokens with spaces, headers, .gz/.zip), embedding initialisation, cache
and the dataset -> model hand-off. Every file is generated here in the real format."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pytest

from disparate.data import glove as glove_module
from disparate.data.glove import (
    EmbeddingInit,
    GloveFormatError,
    embedding_matrix,
    glove_embedding_matrix,
    read_glove,
)

DIM = 4


def vec(i: int) -> list[float]:
    return [round(0.1 * i + 0.01 * j, 4) for j in range(DIM)]


def line(word: str, values: list[float]) -> str:
    return word + " " + " ".join(repr(v) for v in values) + "\n"


# 840B-style: cased entries, a token with spaces whose first part is a wanted word, an email
# token with a space, a trailing space, a malformed line.
LINES = [
    line(",", vec(1)),
    line("The", vec(2)),          # cased first (more frequent), then the exact lowercase
    line("the", vec(3)),
    line("Hello", vec(4)),        # only cased: the lowercase fallback gives "hello" this one
    line("HELLO", vec(5)),
    line(". . .", vec(6)),        # token with spaces: first field "." is wanted too
    line(".", vec(7)),
    line("at name@domain.com", vec(8)),
    line("love", vec(9)).replace("\n", " \n"),  # trailing space
    "broken 1.0 2.0\n",           # too few values
    line("😂", vec(10)),
    line("skipped", vec(11)),
]


def write(path: Path, lines: list[str] = LINES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.writelines(lines)
    elif path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(path.name[:-4] + ".txt", "".join(lines))
    else:
        path.write_text("".join(lines), encoding="utf-8")
    return path


WANTED = ["the", "hello", ".", "love", "😂", "broken", "absent", ". . ."]


def test_reads_only_wanted_words_takes_last_d_fields_and_prefers_exact_case(tmp_path):
    g = read_glove(write(tmp_path / "g.txt"), WANTED)
    assert g.dim == DIM  # inferred from the first line
    assert set(g.vectors) == {"the", "hello", ".", "love", "😂", ". . ."}
    np.testing.assert_allclose(g.vectors["the"], vec(3))      # exact beats the earlier "The"
    np.testing.assert_allclose(g.vectors["hello"], vec(4))    # first casing in file order
    np.testing.assert_allclose(g.vectors["."], vec(7))        # not the ". . ." line's values
    np.testing.assert_allclose(g.vectors[". . ."], vec(6))
    np.testing.assert_allclose(g.vectors["love"], vec(9))
    assert g.malformed == 1 and g.lines == len(LINES)
    assert g.lowercase_matches == 1  # "hello" (the "The" match was replaced by "the")
    assert all(v.dtype == np.float32 for v in g.vectors.values())


def test_without_lowercase_fallback_and_with_all_words(tmp_path):
    path = write(tmp_path / "g.txt")
    assert "hello" not in read_glove(path, WANTED, lowercase_fallback=False).vectors
    every = read_glove(path, None, dim=DIM)
    assert {"The", "HELLO", "at name@domain.com", "skipped"} <= set(every.vectors)
    assert "broken" not in every.vectors


@pytest.mark.parametrize("name", ["g.txt.gz", "glove.tiny.4d.zip"])
def test_gz_and_zip_read_the_same(tmp_path, name):
    plain = read_glove(write(tmp_path / "g.txt"), WANTED)
    packed = read_glove(write(tmp_path / name), WANTED)
    assert set(packed.vectors) == set(plain.vectors)
    for w in plain.vectors:
        np.testing.assert_array_equal(packed.vectors[w], plain.vectors[w])


def test_header_line_is_skipped_and_dim_is_checked(tmp_path):
    g = read_glove(write(tmp_path / "h.txt", ["3 4\n"] + LINES[:3]), ["the"])
    np.testing.assert_allclose(g.vectors["the"], vec(3))
    with pytest.raises(GloveFormatError, match="expected dim=8"):
        glove_embedding_matrix(tmp_path / "h.txt", ["<pad>", "the"], dim=8)


def test_format_errors(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("word,1.0,2.0\nother,3,4\n")
    with pytest.raises(GloveFormatError, match="not 'word v1"):
        read_glove(bad, ["word"])
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(GloveFormatError, match="no vectors"):
        read_glove(tmp_path / "empty.txt", ["x"])
    with pytest.raises(FileNotFoundError):
        read_glove(tmp_path / "missing.txt", ["x"])
    with pytest.raises(ValueError, match="dim=0"):
        read_glove(bad, ["x"], dim=0)


def test_embedding_matrix_rows_padding_and_missing_std():
    vectors = {"a": np.full(DIM, 1.0, np.float32), "b": np.full(DIM, -1.0, np.float32)}
    vocab = ["<pad>", "<unk>", "a", "b", "zzz"]
    m, found, std = embedding_matrix(vocab, vectors, DIM, seed=3)
    assert m.shape == (5, DIM) and m.dtype == np.float32
    assert found.tolist() == [False, False, True, True, False]
    assert std == pytest.approx(1.0)  # std of all found values (+1 and -1)
    np.testing.assert_array_equal(m[0], 0.0)
    np.testing.assert_array_equal(m[2], 1.0)
    assert np.abs(m[[1, 4]]).max() > 0  # drawn
    again, _, _ = embedding_matrix(vocab, vectors, DIM, seed=3)
    np.testing.assert_array_equal(again, m)  # seeded
    other, _, _ = embedding_matrix(vocab, vectors, DIM, seed=4)
    assert not np.array_equal(other[1], m[1])


def test_embedding_matrix_draws_missing_rows_at_the_glove_scale():
    rng = np.random.default_rng(0)
    vectors = {f"w{i}": (rng.standard_normal(50) * 0.3).astype(np.float32) for i in range(400)}
    vocab = ["<pad>"] + list(vectors) + [f"missing{i}" for i in range(400)]
    m, found, std = embedding_matrix(vocab, vectors, 50, seed=0)
    assert std == pytest.approx(0.3, rel=0.05)
    assert m[~found][1:].std() == pytest.approx(std, rel=0.05)
    with pytest.warns(UserWarning, match="no word"):
        _, _, fallback = embedding_matrix(["<pad>", "x"], {}, 3, seed=0)
    assert fallback == glove_module.FALLBACK_STD


def test_glove_embedding_matrix_is_cached(tmp_path, monkeypatch):
    path = write(tmp_path / "glove.tiny.4d.txt")
    vocab = ["<pad>", "<unk>", "the", "hello", "absent"]
    first = glove_embedding_matrix(path, vocab, dim=DIM, seed=1, cache_dir=tmp_path / "c")
    assert first.stats["found"] == 2 and first.coverage == pytest.approx(2 / 5)
    np.testing.assert_allclose(first.matrix[2], vec(3))
    assert len(list((tmp_path / "c").glob("glove-*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(glove_module, "read_glove", fail)
    again = glove_embedding_matrix(path, vocab, dim=DIM, seed=1, cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(again.matrix, first.matrix)
    np.testing.assert_array_equal(again.found, first.found)
    assert again.stats == first.stats
    with pytest.raises(AssertionError, match="cache was not used"):  # another vocabulary
        glove_embedding_matrix(path, vocab + ["love"], dim=DIM, seed=1,
                               cache_dir=tmp_path / "c")


def test_embedding_init():
    init = EmbeddingInit(vocabulary=("<pad>", "a"), vectors=np.zeros((2, 3), np.float32),
                         padding_idx=0, source="test")
    assert init.dim == 3
    assert len(init.fingerprint) == 12
    with pytest.raises(ValueError, match="one row per vocabulary entry"):
        EmbeddingInit(vocabulary=("a",), vectors=np.zeros((2, 3)), padding_idx=0, source="x")
