"""Streamed encapsulated Pixel Data: item sizes, the written layout, and reading it back."""

from __future__ import annotations

import io
import random
import struct
from pathlib import Path

import pytest
from pydicom.encaps import encapsulate, generate_fragments

from vid2dcm.writing import encapsulation as enc
from vid2dcm.writing.encapsulation import (
    PIXEL_DATA_HEADER,
    SEQUENCE_DELIMITER,
    Fragment,
    FragmentReader,
    PixelDataLayout,
    fragment_lengths,
    item_header,
    read_layout,
    write_pixel_data,
)

HEADER = len(PIXEL_DATA_HEADER)


@pytest.mark.parametrize(("total", "max_item"), [
    (1, 2), (2, 2), (3, 2), (10, 4), (8, 4), (9, 5), (9, 4), (11, 5), (1000, 1000),
    (1001, 1000), (999, 1000), (1001, 999), (12345, 100), (2**32 - 1, 2**32 - 2),
    (3 * (2**32 - 2) + 7, 2**32 - 2), (2**32 - 2, 2**32 - 2), (7, 3),
])
def test_fragment_lengths(total: int, max_item: int) -> None:
    lengths = fragment_lengths(total, max_item)
    assert sum(lengths) == total
    assert all(0 < n <= max_item for n in lengths)
    assert all(n % 2 == 0 for n in lengths[:-1]), "only the last piece may be odd"
    # padded, the last one still fits an item
    assert lengths[-1] + lengths[-1] % 2 <= max_item
    # as few items as possible with even pieces
    step = max_item - max_item % 2
    assert len(lengths) == -(-total // step)


def test_fragment_lengths_examples() -> None:
    assert fragment_lengths(10, 4) == [4, 4, 2]
    assert fragment_lengths(9, 5) == [4, 4, 1]
    assert fragment_lengths(5, 100) == [5]
    assert fragment_lengths(2**32 - 1, 2**32 - 2) == [2**32 - 2, 1]


@pytest.mark.parametrize("total", [0, -1])
def test_fragment_lengths_rejects_an_empty_stream(total: int) -> None:
    with pytest.raises(ValueError, match="empty"):
        fragment_lengths(total, 100)


def make_source(tmp_path: Path, size: int, seed: int = 0) -> tuple[Path, bytes]:
    data = random.Random(seed).randbytes(size)
    path = tmp_path / f"stream-{size}-{seed}.bin"
    path.write_bytes(data)
    return path, data


def encapsulated(tmp_path: Path, data_path: Path, max_item: int,
                 prefix: bytes = b"") -> tuple[Path, int]:
    out = tmp_path / "out.dcm"
    with out.open("wb") as fp:
        fp.write(prefix)
        written = write_pixel_data(fp, data_path, max_item)
    return out, written


def test_single_even_fragment_bytes(tmp_path: Path) -> None:
    src, data = make_source(tmp_path, 10)
    out, written = encapsulated(tmp_path, src, enc.CHUNK)
    assert written == 10
    expected = (PIXEL_DATA_HEADER + b"\xfe\xff\x00\xe0" + b"\x00\x00\x00\x00"
                + b"\xfe\xff\x00\xe0" + struct.pack("<I", 10) + data
                + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    assert out.read_bytes() == expected


def test_odd_length_gets_one_pad_byte(tmp_path: Path) -> None:
    src, data = make_source(tmp_path, 11)
    out, written = encapsulated(tmp_path, src, 1000)
    assert written == 11
    raw = out.read_bytes()
    assert raw[HEADER:HEADER + 8] == item_header(0)
    assert raw[HEADER + 8:HEADER + 16] == item_header(12)
    assert raw[HEADER + 16:HEADER + 27] == data
    assert raw[HEADER + 27:HEADER + 28] == b"\x00"
    assert raw[HEADER + 28:] == SEQUENCE_DELIMITER
    assert len(raw) == HEADER + 8 + 8 + 12 + 8


def test_pixel_data_header_is_ob_undefined_length() -> None:
    assert PIXEL_DATA_HEADER[:4] == b"\xe0\x7f\x10\x00"
    assert PIXEL_DATA_HEADER[4:6] == b"OB"
    assert PIXEL_DATA_HEADER[6:8] == b"\x00\x00"
    assert PIXEL_DATA_HEADER[8:] == b"\xff\xff\xff\xff"


ROUND_TRIPS = [(1, 2), (2, 2), (11, 1000), (10, 4), (1001, 100), (1000, 100), (4097, 1024),
               (5000, 999), (3 * 4096 + 1, 4096)]


@pytest.mark.parametrize(("size", "max_item"), ROUND_TRIPS)
def test_write_then_read_layout(tmp_path: Path, size: int, max_item: int) -> None:
    src, data = make_source(tmp_path, size)
    prefix = b"P" * 132  # stands for a preamble and header before Pixel Data
    out, written = encapsulated(tmp_path, src, max_item, prefix)
    assert written == size
    expected_lengths = fragment_lengths(size, max_item)
    with out.open("rb") as fp:
        layout = read_layout(fp, len(prefix) + HEADER)
    assert layout.basic_offset_table_length == 0
    assert layout.terminated is True
    assert [f.length for f in layout.fragments] == [n + n % 2 for n in expected_lengths]
    assert layout.stored_length == size + size % 2
    raw = out.read_bytes()
    pieces = [raw[f.offset:f.offset + f.length] for f in layout.fragments]
    joined = b"".join(pieces)
    assert joined[:size] == data
    assert joined[size:] == b"\x00" * (size % 2)
    for f in layout.fragments:
        assert f.length % 2 == 0
        assert f.length <= max_item
        assert raw[f.offset - 8:f.offset - 4] == b"\xfe\xff\x00\xe0"
    assert raw.endswith(SEQUENCE_DELIMITER)
    assert len(raw) == (len(prefix) + HEADER + 8 + sum(8 + f.length for f in layout.fragments)
                        + len(SEQUENCE_DELIMITER))


@pytest.mark.parametrize(("size", "max_item"), ROUND_TRIPS)
def test_pydicom_agrees_with_the_items(tmp_path: Path, size: int, max_item: int) -> None:
    src, data = make_source(tmp_path, size)
    out, _ = encapsulated(tmp_path, src, max_item)
    raw = out.read_bytes()
    items = list(generate_fragments(raw[HEADER:]))
    assert items[0] == b"", "the Basic Offset Table item is empty"
    with out.open("rb") as fp:
        layout = read_layout(fp, HEADER)
    fragments = items[1:]
    assert [len(x) for x in fragments] == [f.length for f in layout.fragments]
    assert b"".join(fragments)[:size] == data
    # generate_fragments stops at the Sequence Delimitation Item: nothing follows it
    assert sum(8 + len(x) for x in items) + len(SEQUENCE_DELIMITER) == len(raw) - HEADER


@pytest.mark.parametrize("size", [1, 2, 11, 4096, 4097])
def test_single_fragment_matches_pydicom_encapsulate(tmp_path: Path, size: int) -> None:
    src, data = make_source(tmp_path, size)
    out, _ = encapsulated(tmp_path, src, enc.CHUNK)
    ours = out.read_bytes()[HEADER:-len(SEQUENCE_DELIMITER)]
    assert ours == encapsulate([data], fragments_per_frame=1, has_bot=False)


def test_chunked_copy_across_chunk_boundaries(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(enc, "CHUNK", 7)
    src, data = make_source(tmp_path, 101)
    out, _ = encapsulated(tmp_path, src, 30)
    with out.open("rb") as fp:
        layout = read_layout(fp, HEADER)
    with FragmentReader(out, layout, 101) as reader:
        assert reader.read() == data


def test_read_layout_with_a_filled_bot_and_no_delimiter() -> None:
    raw = (item_header(4) + b"\x00\x00\x00\x00" + item_header(6) + b"abcdef"
           + item_header(2) + b"gh")
    layout = read_layout(io.BytesIO(b"xx" + raw), 2)
    assert layout.basic_offset_table_length == 4
    assert layout.fragments == (Fragment(2 + 8 + 4 + 8, 6), Fragment(2 + 8 + 4 + 8 + 6 + 8, 2))
    assert layout.terminated is False


def test_read_layout_with_only_a_bot() -> None:
    layout = read_layout(io.BytesIO(item_header(0) + SEQUENCE_DELIMITER), 0)
    assert layout == PixelDataLayout(0, (), True)
    assert layout.stored_length == 0


def test_read_layout_rejects_a_foreign_tag() -> None:
    raw = item_header(0) + b"\xe0\x7f\x10\x00" + b"\x00\x00\x00\x00"
    with pytest.raises(ValueError, match="unexpected tag"):
        read_layout(io.BytesIO(raw), 0)


# --- FragmentReader -------------------------------------------------------------------------

@pytest.fixture(params=[(1, 2), (11, 1000), (1001, 100), (5000, 998), (4097, 64)],
                ids=lambda p: f"{p[0]}B-max{p[1]}")
def written(request: pytest.FixtureRequest, tmp_path: Path
            ) -> tuple[Path, PixelDataLayout, bytes]:
    size, max_item = request.param
    src, data = make_source(tmp_path, size, seed=size)
    out, _ = encapsulated(tmp_path, src, max_item, prefix=b"\x00" * 64)
    with out.open("rb") as fp:
        layout = read_layout(fp, 64 + HEADER)
    return out, layout, data


def test_reader_reads_everything_without_the_pad(
        written: tuple[Path, PixelDataLayout, bytes]) -> None:
    path, layout, data = written
    with FragmentReader(path, layout, len(data)) as reader:
        assert reader.readable() and reader.seekable()
        assert reader.read() == data
        assert reader.read() == b""
        assert reader.tell() == len(data)


def test_reader_without_length_shows_the_stored_bytes(
        written: tuple[Path, PixelDataLayout, bytes]) -> None:
    path, layout, data = written
    with FragmentReader(path, layout) as reader:
        assert reader.read() == data + b"\x00" * (len(data) % 2)


@pytest.mark.parametrize("seed", range(8))
def test_reader_random_seeks_and_reads(written: tuple[Path, PixelDataLayout, bytes],
                                       seed: int) -> None:
    path, layout, data = written
    rng = random.Random(seed)
    expected = io.BytesIO(data)
    with FragmentReader(path, layout, len(data)) as reader:
        for _ in range(200):
            op = rng.random()
            if op < 0.4:
                whence = rng.choice([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END])
                offset = rng.randrange(-len(data) - 5, len(data) + 5)
                target = {io.SEEK_SET: 0, io.SEEK_CUR: expected.tell(),
                          io.SEEK_END: len(data)}[whence] + offset
                if target < 0:
                    continue  # BytesIO refuses a negative position
                assert reader.seek(offset, whence) == expected.seek(offset, whence)
            else:
                n = rng.choice([0, 1, 2, 3, rng.randrange(1, 300), len(data) + 10])
                assert reader.read(n) == expected.read(n)
            assert reader.tell() == expected.tell()


def test_reader_readinto_and_buffered_wrapper(
        written: tuple[Path, PixelDataLayout, bytes]) -> None:
    path, layout, data = written
    raw = FragmentReader(path, layout, len(data))
    buffer = bytearray(len(data) + 16)
    assert raw.readinto(memoryview(buffer)) == len(data)
    assert bytes(buffer[:len(data)]) == data
    raw.seek(0)
    with io.BufferedReader(raw, buffer_size=37) as buffered:
        assert buffered.read() == data
        buffered.seek(len(data) // 2)
        assert buffered.read(5) == data[len(data) // 2:len(data) // 2 + 5]
    assert raw.closed


def test_reader_seek_before_start_clamps_and_past_end_reads_nothing(
        written: tuple[Path, PixelDataLayout, bytes]) -> None:
    path, layout, data = written
    with FragmentReader(path, layout, len(data)) as reader:
        assert reader.seek(-10) == 0
        assert reader.read(1) == data[:1]
        assert reader.seek(len(data) + 100) == len(data) + 100
        assert reader.read(10) == b""
        assert reader.seek(-1, io.SEEK_END) == len(data) - 1
        assert reader.read(10) == data[-1:]
