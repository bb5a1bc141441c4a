"""A small, strict parser for the IDX format of the MNIST files.

Format: two zero bytes, one dtype code, one byte with the number of dimensions, then each
dimension as a big-endian uint32, then the values, big-endian, in C order. Nothing may follow.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

#: IDX dtype code -> numpy dtype (big-endian where it matters).
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse IDX bytes into a native-endian numpy array.

    Raises ``ValueError`` naming ``name`` on a bad magic number, an unknown dtype code, a header
    cut short, or a payload that is shorter or longer than the dimensions say.
    Used from chapter 1 onward (through the MNIST loaders).
    """
    data = memoryview(bytes(data))
    if len(data) < 4:
        raise ValueError(f"{name}: {len(data)} bytes is too short for an IDX header")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"{name}: bad IDX magic number (first two bytes must be zero)")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise ValueError(f"{name}: unknown IDX dtype code 0x{code:02X}")
    if ndim == 0:
        raise ValueError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: IDX header cut short ({len(data)} of {header} bytes)")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[code]
    expected = header + int(np.prod(dims, dtype=object)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(
            f"{name}: IDX payload {what}: {len(data)} bytes, header {dims} says {expected}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def gunzip(data: bytes, name: str = "file") -> bytes:
    """Decompress gzip bytes; a bad or truncated stream raises ``ValueError`` naming ``name``."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{name}: not a valid gzip file ({exc})") from exc


def read_raw(path: str | Path) -> bytes:
    """The uncompressed bytes of ``path``; gzip is detected by its magic bytes, not the name."""
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        return gunzip(data, path.name)
    return data


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, plain or gzip-compressed. Used from chapter 1 onward."""
    path = Path(path)
    return parse_idx(read_raw(path), path.name)
