import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from disparate.data.idx import IdxFormatError, read_idx, write_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_uint8_images(tmp_path, suffix):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    path = write_idx(tmp_path / f"imgs-idx3-ubyte{suffix}", images)
    raw = path.read_bytes()
    if suffix:
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)
    # header: magic 0x00000803, then the three sizes, big-endian
    assert raw[:4] == bytes([0, 0, 0x08, 3])
    assert struct.unpack(">3I", raw[4:16]) == (7, 28, 28)
    assert len(raw) == 16 + 7 * 28 * 28
    out = read_idx(path, expected_ndim=3, expected_dtype=np.uint8)
    assert out.dtype == np.uint8 and out.shape == (7, 28, 28)
    np.testing.assert_array_equal(out, images)
    assert out.flags.writeable


def test_gzip_detected_by_content_not_name(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    path = write_idx(tmp_path / "labels-idx1-ubyte", labels, compress=True)
    np.testing.assert_array_equal(read_idx(path), labels)


@settings(max_examples=25, deadline=None)
@given(
    arr=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    ),
    compress=st.booleans(),
)
def test_round_trip_property(tmp_path_factory, arr, compress):
    path = tmp_path_factory.mktemp("idx") / "a.idx"
    write_idx(path, arr, compress=compress)
    out = read_idx(path)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_missing_file_names_path(tmp_path):
    path = tmp_path / "nope-idx3-ubyte"
    with pytest.raises(IdxFormatError, match="nope-idx3-ubyte: file not found"):
        read_idx(path)


def test_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(IdxFormatError, match=r"bad\b.*bad IDX magic number 0x12340801"):
        read_idx(path)


def test_unknown_dtype_code(tmp_path):
    path = tmp_path / "code"
    path.write_bytes(bytes([0, 0, 0x07, 1]) + struct.pack(">I", 0))
    with pytest.raises(IdxFormatError, match="dtype code"):
        read_idx(path)


def test_truncated_data_says_expected_size(tmp_path):
    path = write_idx(tmp_path / "t-idx3-ubyte", np.zeros((2, 3, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(
        IdxFormatError, match=r"has 17 bytes; expected 18 bytes for shape \(2, 3, 3\)"
    ):
        read_idx(path)


def test_truncated_header_and_tiny_file(tmp_path):
    path = tmp_path / "h"
    path.write_bytes(bytes([0, 0, 8, 3]) + b"\x00\x00")
    with pytest.raises(IdxFormatError, match="truncated IDX header"):
        read_idx(path)
    path.write_bytes(b"\x00")
    with pytest.raises(IdxFormatError, match="expected at least a 4-byte IDX magic number"):
        read_idx(path)


def test_corrupt_gzip(tmp_path):
    path = write_idx(tmp_path / "c.gz", np.zeros((4, 4), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IdxFormatError, match=r"c\.gz: corrupt gzip data"):
        read_idx(path)


def test_expected_ndim_and_dtype(tmp_path):
    path = write_idx(tmp_path / "l", np.zeros(5, dtype=np.int32))
    with pytest.raises(IdxFormatError, match="has 1 dimensions; expected 3"):
        read_idx(path, expected_ndim=3)
    with pytest.raises(IdxFormatError, match="data type is int32; expected uint8"):
        read_idx(path, expected_dtype=np.uint8)


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="expected one of uint8"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint16))
