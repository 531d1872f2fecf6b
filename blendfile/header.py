"""The file header and block headers: pure functions from bytes to frozen dataclasses.

Two header formats exist (see ``shared/notes/blend-format.md`` section 1):

* legacy, 12 bytes: ``BLENDER`` + pointer size (``_`` 4, ``-`` 8) + endianness (``v`` little,
  ``V`` big) + three version digits, e.g. ``BLENDER-v279``;
* format version 1 (Blender 5.0+), 17 bytes: ``BLENDER`` + header size ``17`` + ``-`` + format
  version ``01`` + ``v`` + four version digits, e.g. ``BLENDER17-01v0500``. Always 8-byte pointers,
  little endian, and 64-bit "large" block headers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal, NamedTuple

from .errors import CorruptFileError, NotABlendFileError, TruncatedFileError, UnsupportedVersionError

MAGIC = b"BLENDER"
LEGACY_HEADER_SIZE = 12
V1_HEADER_SIZE = 17
#: The most bytes a header can take; read this many to parse any header.
MAX_HEADER_SIZE = V1_HEADER_SIZE

Endian = Literal["little", "big"]


@dataclass(frozen=True, slots=True)
class FileHeader:
    """What the first bytes of an (uncompressed) blend file say."""

    size: int
    """Header length in bytes: 12 (legacy) or 17 (format version 1)."""
    format_version: int
    """0 for the legacy header, 1 for Blender 5.0's header."""
    pointer_size: int
    endian: Endian
    file_version: int
    """``BLENDER_FILE_VERSION``: major * 100 + minor, e.g. 279, 405, 500."""

    @property
    def version(self) -> str:
        """The Blender version that wrote the file, as ``"major.minor"`` (e.g. ``"4.2"``)."""
        return f"{self.file_version // 100}.{self.file_version % 100}"

    @property
    def block_header(self) -> BlockHeaderFormat:
        return block_header_format(self)


def parse_file_header(data: bytes) -> FileHeader:
    """Parse the header at the start of ``data`` (at least 12 bytes; 17 for a 5.0+ header)."""
    if len(data) < len(MAGIC) or not data.startswith(MAGIC):
        raise NotABlendFileError("not a blend file: it does not start with 'BLENDER'")
    if len(data) < LEGACY_HEADER_SIZE:
        raise TruncatedFileError("the file ends inside its header")
    kind = data[7:8]
    if kind in (b"_", b"-"):
        pointer_size = 4 if kind == b"_" else 8
        endian_char = data[8:9]
        if endian_char not in (b"v", b"V"):
            raise CorruptFileError(f"unknown endianness mark {endian_char!r} in the file header")
        digits = data[9:12]
        if not digits.isdigit():
            raise CorruptFileError(f"the version in the file header is not a number: {digits!r}")
        return FileHeader(
            size=LEGACY_HEADER_SIZE,
            format_version=0,
            pointer_size=pointer_size,
            endian="little" if endian_char == b"v" else "big",
            file_version=int(digits),
        )
    size_digits = data[7:9]
    if not size_digits.isdigit():
        raise CorruptFileError(f"unknown pointer-size mark {kind!r} in the file header")
    header_size = int(size_digits)
    if header_size != V1_HEADER_SIZE:
        raise UnsupportedVersionError(
            f"a blend file with a {header_size}-byte header: written by a newer Blender than this reader knows"
        )
    if len(data) < V1_HEADER_SIZE:
        raise TruncatedFileError("the file ends inside its header")
    format_digits = data[10:12]
    if data[9:10] != b"-" or not format_digits.isdigit() or data[12:13] != b"v":
        raise CorruptFileError(f"malformed file header {data[:V1_HEADER_SIZE]!r}")
    if int(format_digits) != 1:
        raise UnsupportedVersionError(
            f"blend file format version {int(format_digits)}: written by a newer Blender than this reader knows"
        )
    digits = data[13:17]
    if not digits.isdigit():
        raise CorruptFileError(f"the version in the file header is not a number: {digits!r}")
    return FileHeader(size=V1_HEADER_SIZE, format_version=1, pointer_size=8, endian="little", file_version=int(digits))


class BlockHeader(NamedTuple):
    """One block header ("BHead"): what follows it and where.

    A NamedTuple, not a dataclass: a file has thousands of blocks and building a frozen dataclass
    per header was 60% of opening a small file (1.5 us against 0.3 us each, measured).
    """

    code: bytes
    """Four bytes: ``DATA``, ``DNA1``, ``GLOB``, ``ENDB``, or a two-letter ID code padded with NULs."""
    size: int
    """Length of the payload that follows the header, in bytes."""
    old_address: int
    """The pointer value the block had when saved; pointers in other blocks refer to it."""
    sdna_index: int
    item_count: int
    """How many structs of type ``sdna_index`` the payload holds (Blender's ``nr``)."""
    offset: int
    """Offset of the payload in the (decompressed) file."""


@dataclass(frozen=True, slots=True)
class BlockHeaderFormat:
    """How block headers are laid out in one file; ``parse`` reads one from bytes."""

    struct: struct.Struct
    large: bool
    big_endian: bool

    @property
    def size(self) -> int:
        return self.struct.size

    def parse(self, data: bytes | memoryview, pos: int, payload_offset: int) -> BlockHeader:
        """Parse the block header at ``data[pos:]``; ``payload_offset`` is where its payload starts."""
        if self.large:
            code, sdna_index, old, size, count = self.struct.unpack_from(data, pos)
        else:
            code, size, old, sdna_index, count = self.struct.unpack_from(data, pos)
        if self.big_endian and code[:2] == b"\0\0":
            # Two-letter ID codes are written as an int: in a big-endian file 'SC' reads as b'\0\0SC'.
            code = code[2:] + b"\0\0"
        return BlockHeader(
            code=code, size=size, old_address=old, sdna_index=sdna_index, item_count=count, offset=payload_offset
        )


_BHEAD_CACHE: dict[tuple[int, int, str], BlockHeaderFormat] = {}


def block_header_format(header: FileHeader) -> BlockHeaderFormat:
    """The block-header layout of a file: BHead4, SmallBHead8 or LargeBHead8."""
    key = (header.format_version, header.pointer_size, header.endian)
    fmt = _BHEAD_CACHE.get(key)
    if fmt is None:
        order = "<" if header.endian == "little" else ">"
        if header.format_version == 1:
            fmt = BlockHeaderFormat(struct.Struct("<4siQqq"), large=True, big_endian=False)
        elif header.pointer_size == 4:
            fmt = BlockHeaderFormat(struct.Struct(order + "4siIii"), large=False, big_endian=order == ">")
        else:
            fmt = BlockHeaderFormat(struct.Struct(order + "4siQii"), large=False, big_endian=order == ">")
        _BHEAD_CACHE[key] = fmt
    return fmt


__all__ = [
    "MAX_HEADER_SIZE",
    "BlockHeader",
    "BlockHeaderFormat",
    "Endian",
    "FileHeader",
    "block_header_format",
    "parse_file_header",
]
