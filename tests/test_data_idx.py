"""The IDX parser: round trips through the tests' writer, and corrupt input -> ValueError."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from advlib.data.idx import gunzip, parse_idx, read_idx
from data_helpers import write_idx

DTYPES = [np.uint8, np.int8, ">i2", "<i4", np.float32, np.float64]
idx_arrays = arrays(
    dtype=st.sampled_from(DTYPES),
    shape=array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
)


def _native(array: np.ndarray) -> np.ndarray:
    return array.astype(array.dtype.newbyteorder("="))


@settings(max_examples=150, deadline=None)
@given(idx_arrays)
def test_round_trip(array):
    parsed = parse_idx(write_idx(array))
    assert parsed.shape == array.shape
    assert parsed.dtype == array.dtype.newbyteorder("=")
    assert parsed.dtype.isnative
    assert parsed.tobytes() == _native(array).tobytes()  # bitwise, so NaN payloads count too


@settings(max_examples=150, deadline=None)
@given(idx_arrays, st.data())
def test_truncation_raises(array, data):
    encoded = write_idx(array)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(ValueError):
        parse_idx(encoded[:cut])


@settings(max_examples=100, deadline=None)
@given(idx_arrays, st.binary(min_size=1, max_size=20))
def test_trailing_bytes_raise(array, extra):
    with pytest.raises(ValueError, match="trailing"):
        parse_idx(write_idx(array) + extra)


@settings(max_examples=300, deadline=None)
@given(idx_arrays, st.data())
def test_corruption_raises_or_stays_consistent(array, data):
    """Changing one byte gives a ValueError or an array that exactly fills the payload."""
    encoded = bytearray(write_idx(array))
    position = data.draw(st.integers(0, len(encoded) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != encoded[position]))
    encoded[position] = value
    try:
        parsed = parse_idx(bytes(encoded))
    except ValueError:
        return
    header = 4 + 4 * encoded[3]
    assert encoded[0] == encoded[1] == 0
    assert parsed.ndim == encoded[3]
    assert parsed.nbytes == len(encoded) - header
    dims = [int.from_bytes(encoded[4 + 4 * i : 8 + 4 * i], "big") for i in range(parsed.ndim)]
    assert list(parsed.shape) == dims


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_never_crash_otherwise(blob):
    try:
        parsed = parse_idx(blob)
    except ValueError:
        return
    assert parsed.nbytes == len(blob) - 4 - 4 * blob[3]


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01" + bytes(4), "magic"),
        (b"\x00\x00\x07\x01" + bytes(4), "dtype code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03" + bytes(8), "header cut short"),
        (b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + b"\x01\x02", "truncated"),
        (b"\x00\x00\x0c\x01" + (1).to_bytes(4, "big") + bytes(5), "trailing"),
    ],
)
def test_clear_messages(blob, message):
    with pytest.raises(ValueError, match=message):
        parse_idx(blob, "demo")


def test_huge_dimensions_do_not_allocate():
    blob = b"\x00\x00\x0e\x03" + (2**32 - 1).to_bytes(4, "big") * 3
    with pytest.raises(ValueError, match="truncated"):
        parse_idx(blob)


def test_big_endian_values():
    blob = b"\x00\x00\x0b\x01" + (2).to_bytes(4, "big") + b"\x01\x02\xff\xfe"
    assert parse_idx(blob).tolist() == [258, -2]


def test_read_idx_plain_gzip_and_bad_gzip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(write_idx(array))
    (tmp_path / "a.gz").write_bytes(gzip.compress(write_idx(array)))
    assert np.array_equal(read_idx(tmp_path / "a"), array)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), array)
    compressed = gzip.compress(write_idx(array))
    (tmp_path / "cut.gz").write_bytes(compressed[: len(compressed) - 6])
    with pytest.raises(ValueError, match="cut.gz: not a valid gzip"):
        read_idx(tmp_path / "cut.gz")
    with pytest.raises(ValueError, match="gzip"):
        gunzip(b"\x1f\x8b\x08\x00garbage", "x.gz")
