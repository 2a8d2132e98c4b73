"""Encapsulated Pixel Data for video, written and read in chunks (PS3.5 A.4).

pydicom's encapsulate_buffer needs every fragment as a seekable buffer of its own and its reader
returns whole fragments as bytes; a video is one multi-gigabyte fragment, so these few functions
stream it instead. Layout: Pixel Data header, empty Basic Offset Table item, the fragments
(even lengths, only the last one padded), Sequence Delimitation Item.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

CHUNK = 1 << 20
MAX_ITEM = 2**32 - 2
ITEM_TAG = b"\xfe\xff\x00\xe0"
SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
PIXEL_DATA_HEADER = b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff"
"""(7FE0,0010) OB, undefined length, explicit VR little endian."""


def item_header(length: int) -> bytes:
    return ITEM_TAG + struct.pack("<I", length)


def fragment_lengths(total: int, max_item: int) -> list[int]:
    """Split a stream into item-sized pieces: all but the last even and at most max_item."""
    if total <= 0:
        raise ValueError("an empty bitstream cannot be encapsulated")
    step = max_item - (max_item % 2)
    lengths = [step] * ((total - 1) // step)
    lengths.append(total - sum(lengths))
    return lengths


def write_pixel_data(out: BinaryIO, source: Path, max_item: int) -> int:
    """Append the encapsulated Pixel Data of one bitstream file; returns its length in bytes."""
    total = source.stat().st_size
    out.write(PIXEL_DATA_HEADER)
    out.write(item_header(0))
    with source.open("rb") as src:
        for length in fragment_lengths(total, max_item):
            padded = length + (length % 2)
            out.write(item_header(padded))
            _copy(src, out, length)
            if padded != length:
                out.write(b"\x00")
    out.write(SEQUENCE_DELIMITER)
    return total


class WindowWriter(io.RawIOBase):
    """A file seen from `base` onwards, so a muxer can write (and seek back into) its container
    in place inside Pixel Data.

    With `step`, the container is spread over items of `step` bytes each: logical byte L lies
    at base + 8 * (L // step + 1) + L, leaving an 8-byte item header in front of every
    fragment (filled in by write_streamed_item once the length is known). A muxer that seeks
    back to patch its index lands in the right fragment."""

    def __init__(self, fp: BinaryIO, base: int, step: int | None = None) -> None:
        super().__init__()
        self._fp = fp
        self._base = base
        self._step = step
        self._pos = 0
        self.size = 0
        """Highest logical offset written: the container's length."""
        fp.seek(self._physical(0))

    def _physical(self, offset: int) -> int:
        if self._step is None:
            return self._base + offset
        return self._base + 8 * (offset // self._step + 1) + offset

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            take = len(view) - done
            if self._step is not None:
                take = min(take, self._step - self._pos % self._step)
                self._fp.seek(self._physical(self._pos))
            written = self._fp.write(view[done:done + take]) or 0
            done += written
            self._pos += written
        self.size = max(self.size, self._pos)
        return done

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self.size:
            take = min(len(view) - done, self.size - self._pos)
            if self._step is not None:
                take = min(take, self._step - self._pos % self._step)
            self._fp.seek(self._physical(self._pos))
            data = self._fp.read(take)
            if not data:
                break
            view[done:done + len(data)] = data
            done += len(data)
            self._pos += len(data)
        return done

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        if self._step is None:
            self._fp.seek(self._physical(self._pos))
        return self._pos

    def tell(self) -> int:
        return self._pos


class StreamedPixelData:
    """Pixel Data whose fragments a muxer writes in place (through `window`); finish() fills
    in the item headers and the Sequence Delimiter once the container's length is known.

    Without total_length_at the container must fit one item of at most max_item bytes, whose
    length is patched in afterwards. With it, the container is laid over items of max_item
    bytes (WindowWriter) and the 8-byte value of Encapsulated Pixel Data Value Total Length
    (7FE0,0003) at that file offset, in the header already written, is patched too. A count
    that contradicts the header (one item, or one fragment where the header announced
    several) raises ValueError, so the caller can take another route."""

    def __init__(self, out: BinaryIO, max_item: int = MAX_ITEM,
                 total_length_at: int | None = None) -> None:
        self._out = out
        self._total_at = total_length_at
        out.write(PIXEL_DATA_HEADER + item_header(0))
        self._first_item = out.tell()
        step = min(max_item, MAX_ITEM)
        self._step = step - step % 2
        if total_length_at is None:
            out.write(item_header(0))
            self.window = WindowWriter(out, self._first_item + 8)
        else:
            self.window = WindowWriter(out, self._first_item, self._step)
        self.length = 0
        self.fragments = 0

    def finish(self) -> tuple[int, int]:
        """Returns (bitstream length without the pad byte, number of fragments)."""
        out, length = self._out, self.window.size
        if length <= 0:
            raise ValueError("the muxer wrote no bitstream")
        lengths = fragment_lengths(length, self._step)
        several = self._total_at is not None
        if (len(lengths) > 1) != several:
            raise ValueError(f"a bitstream of {length} bytes makes {len(lengths)} fragments; "
                             f"the header was written for {'several' if several else 'one'}")
        position = self._first_item
        for n in lengths:
            out.seek(position)
            out.write(item_header(n + n % 2))
            position += 8 + n
        out.seek(position)
        out.truncate()
        if lengths[-1] % 2:
            out.write(b"\x00")
        out.write(SEQUENCE_DELIMITER)
        end = out.tell()
        if self._total_at is not None:
            out.seek(self._total_at)
            out.write(struct.pack("<Q", length))
        out.seek(end)
        self.length, self.fragments = length, len(lengths)
        return self.length, self.fragments


def write_streamed_item(out: BinaryIO, produce: Callable[[BinaryIO], object],
                        max_item: int = MAX_ITEM, total_length_at: int | None = None
                        ) -> tuple[int, int]:
    """Append Pixel Data that produce() writes in place (see StreamedPixelData); returns
    (bitstream length without the pad byte, number of fragments)."""
    pixels = StreamedPixelData(out, max_item, total_length_at)
    produce(cast(BinaryIO, pixels.window))
    return pixels.finish()


def item_offsets(frame_lengths: Sequence[int]) -> list[int]:
    """Basic/Extended Offset Table entries: where each frame's item starts, counted from the
    first item after the offset table, with every item padded to even length."""
    offsets, position = [], 0
    for length in frame_lengths:
        offsets.append(position)
        position += 8 + length + (length % 2)
    return offsets


def write_frame_items(out: BinaryIO, source: Path, frame_lengths: Sequence[int],
                      basic_offsets: Sequence[int] | None) -> int:
    """Append Pixel Data holding one fragment per frame, read in order from a spool file.

    basic_offsets fills the Basic Offset Table; None leaves it empty (an Extended Offset Table
    in the header then says where frames are)."""
    out.write(PIXEL_DATA_HEADER)
    table = b"".join(struct.pack("<I", o) for o in basic_offsets or ())
    out.write(item_header(len(table)) + table)
    with source.open("rb") as src:
        for length in frame_lengths:
            out.write(item_header(length + length % 2))
            _copy(src, out, length)
            if length % 2:
                out.write(b"\x00")
    out.write(SEQUENCE_DELIMITER)
    return sum(frame_lengths)


def write_native_pixel_data(out: BinaryIO, source: Path) -> int:
    """Append uncompressed 8-bit Pixel Data (OB, explicit length) copied from a spool file."""
    total = source.stat().st_size
    if total % 2 or total >= 0xFFFFFFFF:
        raise ValueError(f"native Pixel Data of {total} bytes cannot be encoded")
    out.write(b"\xe0\x7f\x10\x00OB\x00\x00" + struct.pack("<I", total))
    with source.open("rb") as src:
        _copy(src, out, total)
    return total


def _copy(src: BinaryIO, out: BinaryIO, length: int) -> None:
    left = length
    while left:
        chunk = src.read(min(CHUNK, left))
        if not chunk:
            raise EOFError("bitstream shorter than expected")
        out.write(chunk)
        left -= len(chunk)


@dataclass(frozen=True)
class Fragment:
    offset: int
    """File offset of the fragment's first byte (after its item header)."""
    length: int


@dataclass(frozen=True)
class PixelDataLayout:
    basic_offset_table_length: int
    fragments: tuple[Fragment, ...]
    terminated: bool

    @property
    def stored_length(self) -> int:
        return sum(f.length for f in self.fragments)


def read_layout(fp: BinaryIO, value_offset: int) -> PixelDataLayout:
    """Walk item headers from the first item (the Basic Offset Table), seeking over values."""
    fp.seek(value_offset)
    fragments: list[Fragment] = []
    bot_length: int | None = None
    while True:
        header = fp.read(8)
        if len(header) < 8:
            return PixelDataLayout(bot_length or 0, tuple(fragments), False)
        tag, length = header[:4], struct.unpack("<I", header[4:])[0]
        if tag == SEQUENCE_DELIMITER[:4]:
            return PixelDataLayout(bot_length or 0, tuple(fragments), True)
        if tag != ITEM_TAG:
            raise ValueError(f"unexpected tag {tag.hex()} inside encapsulated Pixel Data")
        if bot_length is None:
            bot_length = length
        else:
            fragments.append(Fragment(fp.tell(), length))
        fp.seek(length, io.SEEK_CUR)


class FragmentReader(io.RawIOBase):
    """A seekable, read-only view of the bitstream spread over the fragments, pad removed."""

    def __init__(self, path: Path, layout: PixelDataLayout, length: int | None = None) -> None:
        super().__init__()
        self._fp = path.open("rb")
        self._fragments = layout.fragments
        self._length = layout.stored_length if length is None else length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._length - self._pos)
        done = 0
        for start, fragment in self._spans():
            if want <= 0:
                break
            if self._pos >= start + fragment.length:
                continue
            inside = self._pos - start
            take = min(fragment.length - inside, want)
            self._fp.seek(fragment.offset + inside)
            data = self._fp.read(take)
            buffer[done:done + len(data)] = data
            done += len(data)
            self._pos += len(data)
            want -= len(data)
            if len(data) < take:
                break
        return done

    def _spans(self) -> Iterator[tuple[int, Fragment]]:
        start = 0
        for fragment in self._fragments:
            yield start, fragment
            start += fragment.length

    def close(self) -> None:
        self._fp.close()
        super().close()
