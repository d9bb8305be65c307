"""Reader and writer for the IDX format of MNIST-like files, raw or gzip-compressed.

Layout (big-endian): two zero bytes, a dtype code, the number of dimensions ``ndim``, then
``ndim`` uint32 sizes, then the data in C order. Gzip is detected by content, not by name.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IdxFormatError", "read_idx", "write_idx"]

# IDX dtype code -> numpy dtype (big-endian as stored).
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KIND_TO_CODE: dict[tuple[str, int], int] = {
    (dt.kind, dt.itemsize): code for code, dt in _CODE_TO_DTYPE.items()
}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(ValueError):
    """An IDX file is missing, truncated or not in the expected format."""


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IdxFormatError(f"{path}: file not found (expected an IDX file)") from None
    except IsADirectoryError:
        raise IdxFormatError(f"{path}: is a directory (expected an IDX file)") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise IdxFormatError(
                f"{path}: corrupt gzip data ({exc}); expected a gzip-compressed IDX file"
            ) from None
    return raw


def read_idx(
    path: str | Path,
    *,
    expected_ndim: int | None = None,
    expected_dtype: np.dtype | type | str | None = None,
) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian numpy array.

    Raises IdxFormatError naming the path and what was expected when the file is missing,
    the magic number or dtype code is wrong, the sizes disagree with the data length, or the
    dimensions/dtype differ from ``expected_ndim``/``expected_dtype``.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise IdxFormatError(
            f"{path}: file has {len(raw)} bytes; expected at least a 4-byte IDX magic number"
        )
    zero0, zero1, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0 or code not in _CODE_TO_DTYPE:
        raise IdxFormatError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()}; expected 0x0000TTDD with dtype "
            f"code TT in {{{', '.join(f'{c:02x}' for c in _CODE_TO_DTYPE)}}}"
        )
    if ndim == 0:
        raise IdxFormatError(f"{path}: IDX header declares 0 dimensions; expected >= 1")
    dtype = _CODE_TO_DTYPE[code]
    if expected_ndim is not None and ndim != expected_ndim:
        raise IdxFormatError(f"{path}: IDX file has {ndim} dimensions; expected {expected_ndim}")
    if expected_dtype is not None and dtype.newbyteorder("=") != np.dtype(expected_dtype):
        raise IdxFormatError(
            f"{path}: IDX data type is {dtype.newbyteorder('=')}; "
            f"expected {np.dtype(expected_dtype)}"
        )
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise IdxFormatError(
            f"{path}: truncated IDX header ({len(raw)} bytes); expected {header_len} bytes "
            f"for {ndim} dimensions"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])
    count = int(np.prod(dims, dtype=np.int64))
    expected_len = header_len + count * dtype.itemsize
    if len(raw) != expected_len:
        raise IdxFormatError(
            f"{path}: IDX data has {len(raw) - header_len} bytes; expected "
            f"{count * dtype.itemsize} bytes for shape {tuple(dims)} of {dtype.newbyteorder('=')}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header_len).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file; gzip it if ``compress`` (default: name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    key = (array.dtype.kind, array.dtype.itemsize)
    if key not in _KIND_TO_CODE:
        raise ValueError(
            f"array dtype {array.dtype}: expected one of "
            "uint8, int8, int16, int32, float32, float64"
        )
    if array.ndim < 1 or array.ndim > 255:
        raise ValueError(f"array has {array.ndim} dimensions: expected 1..255")
    code = _KIND_TO_CODE[key]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=_CODE_TO_DTYPE[code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path
