"""Compressed Reddit dumps are read to their verified end or refused with the file named
(issue #18, point 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from disparate.federated.reddit import iter_comments, open_dump
from disparate.fileio import CorruptFileError
from disparate.synthetic.reddit import default_population, write_dump

zstandard = pytest.importorskip("zstandard")


def _dump(tmp_path: Path, suffix: str) -> Path:
    return write_dump(tmp_path / f"RC_2017-11{suffix}", default_population(6, seed=1), seed=2)


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("suffix", [".zst", ".gz", ".bz2"])
def test_a_truncated_dump_is_refused_with_its_name(tmp_path: Path, suffix: str) -> None:
    path = _dump(tmp_path, suffix)
    complete = sum(1 for _ in iter_comments([path]))
    assert complete > 0
    _truncate(path)
    with pytest.raises(CorruptFileError, match=rf"RC_2017-11\{suffix}: .*truncated or corrupt"):
        list(iter_comments([path]))


def test_corrupt_zst_data_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "RC_2017-11.zst"
    path.write_bytes(b"this is not zstd at all\n" * 10)
    with pytest.raises(CorruptFileError, match=r"RC_2017-11\.zst: not valid zstd data"):
        list(iter_comments([path]))


def test_a_multi_frame_zst_reads_every_frame(tmp_path: Path) -> None:
    lines = [f'{{"author": "a{i}", "body": "hello {i}"}}\n' for i in range(10)]
    frames = b"".join(zstandard.ZstdCompressor().compress("".join(lines[i:i + 3]).encode())
                      for i in range(0, 10, 3))
    path = tmp_path / "multi.zst"
    path.write_bytes(frames)
    with open_dump(path) as f:
        assert f.read() == "".join(lines)
