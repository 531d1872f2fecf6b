"""Sniff how a file is stored, from its magic bytes, and parse zstd's seek table.

Blender writes whole-file gzip (up to 2.93) or zstd (3.0+). Its zstd files use the *seekable*
format: independent frames of at most 1 MiB and a seek table in a trailing skippable frame, so a
reader can decompress just the frames that hold what it reads. Both functions here are pure: they
take bytes and return values, so tests can feed them literal bytes.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from dataclasses import dataclass
from enum import StrEnum

from .errors import CorruptCompressedStreamError


class Compression(StrEnum):
    """How the bytes of a blend file are stored on disk."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


class Container(StrEnum):
    """What a file's first bytes say it is."""

    BLEND = "blend"
    GZIP = "gzip"
    ZSTD = "zstd"
    ZIP = "zip"
    UNKNOWN = "unknown"


GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Skippable frames use magics 0x184D2A50..0x184D2A5F (little endian): ?? 2A 4D 18 with ?? in 50..5F.
_SKIPPABLE_HIGH = b"\x2a\x4d\x18"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
SNIFF_SIZE = 8


def sniff(first_bytes: bytes) -> Container:
    """Tell a plain, gzip or zstd blend file (or a zip project) from its first bytes; never the name."""
    if first_bytes.startswith(b"BLENDER"):
        return Container.BLEND
    if first_bytes.startswith(GZIP_MAGIC):
        return Container.GZIP
    if first_bytes.startswith(ZSTD_MAGIC):
        return Container.ZSTD
    if len(first_bytes) >= 4 and first_bytes[1:4] == _SKIPPABLE_HIGH and first_bytes[0] & 0xF0 == 0x50:
        return Container.ZSTD
    if first_bytes.startswith(ZIP_MAGICS):
        return Container.ZIP
    return Container.UNKNOWN


SEEK_TABLE_MAGIC = 0x8F92EAB1
SKIPPABLE_SEEK_MAGIC = 0x184D2A5E
#: The footer of a seek table: number of frames (u32), descriptor (u8), magic (u32).
SEEK_TABLE_FOOTER = struct.Struct("<IBI")
_SKIPPABLE_HEADER = struct.Struct("<II")
#: A frame bigger than this when decompressed is not something Blender writes (1 MiB frames);
#: refusing it keeps a forged table from making us allocate gigabytes for one frame.
MAX_FRAME_SIZE = 64 << 20


@dataclass(frozen=True, slots=True)
class SeekTable:
    """Where each zstd frame lies, compressed and decompressed."""

    compressed_offsets: tuple[int, ...]
    compressed_sizes: tuple[int, ...]
    decompressed_offsets: tuple[int, ...]
    decompressed_sizes: tuple[int, ...]

    @property
    def frame_count(self) -> int:
        return len(self.compressed_sizes)

    @property
    def decompressed_size(self) -> int:
        if not self.decompressed_sizes:
            return 0
        return self.decompressed_offsets[-1] + self.decompressed_sizes[-1]

    def frame_at(self, offset: int) -> int:
        """Index of the frame holding decompressed byte ``offset`` (which must be in range)."""
        return bisect_right(self.decompressed_offsets, offset) - 1


def seek_table_length(footer: bytes) -> int | None:
    """From the last 9 bytes of a file, the length of its seek-table frame (None: there is none)."""
    if len(footer) != SEEK_TABLE_FOOTER.size:
        return None
    n_frames: int
    descriptor: int
    magic: int
    n_frames, descriptor, magic = SEEK_TABLE_FOOTER.unpack(footer)
    if magic != SEEK_TABLE_MAGIC:
        return None
    entry = 12 if descriptor & 0x80 else 8
    return _SKIPPABLE_HEADER.size + n_frames * entry + SEEK_TABLE_FOOTER.size


def parse_seek_table(table_frame: bytes, file_size: int) -> SeekTable:
    """Parse a seek-table frame (the file's last ``seek_table_length`` bytes).

    Checks that the frames it lists tile the file exactly up to the table, so a damaged table
    raises :class:`CorruptCompressedStreamError` instead of sending reads to the wrong place.
    """
    if len(table_frame) < _SKIPPABLE_HEADER.size + SEEK_TABLE_FOOTER.size:
        raise CorruptCompressedStreamError("the zstd seek table is cut short")
    magic, frame_size = _SKIPPABLE_HEADER.unpack_from(table_frame, 0)
    n_frames, descriptor, _ = SEEK_TABLE_FOOTER.unpack_from(table_frame, len(table_frame) - SEEK_TABLE_FOOTER.size)
    if magic != SKIPPABLE_SEEK_MAGIC:
        raise CorruptCompressedStreamError("the zstd seek table does not start with its skippable-frame magic")
    if descriptor & 0x7C:
        raise CorruptCompressedStreamError("the zstd seek table uses reserved descriptor bits")
    entry = 12 if descriptor & 0x80 else 8
    if frame_size != n_frames * entry + SEEK_TABLE_FOOTER.size or len(table_frame) != frame_size + 8:
        raise CorruptCompressedStreamError("the zstd seek table's length does not match its frame count")
    comp_offsets: list[int] = []
    comp_sizes: list[int] = []
    decomp_offsets: list[int] = []
    decomp_sizes: list[int] = []
    comp_pos = 0
    decomp_pos = 0
    entry_struct = struct.Struct("<II")
    for i in range(n_frames):
        csize, dsize = entry_struct.unpack_from(table_frame, 8 + i * entry)
        if csize == 0 or dsize > MAX_FRAME_SIZE:
            raise CorruptCompressedStreamError(f"zstd frame {i} has an impossible size in the seek table")
        comp_offsets.append(comp_pos)
        comp_sizes.append(csize)
        decomp_offsets.append(decomp_pos)
        decomp_sizes.append(dsize)
        comp_pos += csize
        decomp_pos += dsize
    if comp_pos != file_size - len(table_frame):
        raise CorruptCompressedStreamError(
            f"the zstd seek table lists {comp_pos} compressed bytes, the file has {file_size - len(table_frame)}"
        )
    return SeekTable(tuple(comp_offsets), tuple(comp_sizes), tuple(decomp_offsets), tuple(decomp_sizes))


__all__ = [
    "Compression",
    "Container",
    "SeekTable",
    "parse_seek_table",
    "seek_table_length",
    "sniff",
]
