from __future__ import annotations

import struct

import pytest

from blendfile.errors import CorruptFileError, NotABlendFileError, TruncatedFileError, UnsupportedVersionError
from blendfile.header import block_header_format, parse_file_header


@pytest.mark.parametrize(
    ("raw", "ptr", "endian", "version", "size"),
    [
        (b"BLENDER_v248", 4, "little", "2.48", 12),
        (b"BLENDER_V260", 4, "big", "2.60", 12),
        (b"BLENDER-v279", 8, "little", "2.79", 12),
        (b"BLENDER-v405", 8, "little", "4.5", 12),
        (b"BLENDER17-01v0500", 8, "little", "5.0", 17),
        (b"BLENDER17-01v0502", 8, "little", "5.2", 17),
    ],
)
def test_file_headers(raw: bytes, ptr: int, endian: str, version: str, size: int) -> None:
    header = parse_file_header(raw + b"\0" * 8)
    assert (header.pointer_size, header.endian, header.version, header.size) == (ptr, endian, version, size)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", NotABlendFileError),
        (b"BLEND", NotABlendFileError),
        (b"PK\x03\x04 not blend", NotABlendFileError),
        (b"BLENDER-v2", TruncatedFileError),
        (b"BLENDER-x279", CorruptFileError),
        (b"BLENDER-vabc", CorruptFileError),
        (b"BLENDER*v279", CorruptFileError),
        (b"BLENDER17-01v05", TruncatedFileError),
        (b"BLENDER18-01v0500x", UnsupportedVersionError),
        (b"BLENDER17-02v0500", UnsupportedVersionError),
        (b"BLENDER17+01v0500", CorruptFileError),
    ],
)
def test_bad_headers(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_file_header(raw)


def test_block_header_layouts() -> None:
    small4 = block_header_format(parse_file_header(b"BLENDER_v248"))
    block = small4.parse(struct.pack("<4siIii", b"SC\0\0", 100, 0xDEAD, 7, 1), 0, 32)
    assert (block.code, block.size, block.old_address, block.sdna_index, block.item_count, block.offset) == (
        b"SC\0\0", 100, 0xDEAD, 7, 1, 32,
    )  # fmt: skip
    big4 = block_header_format(parse_file_header(b"BLENDER_V260"))
    # Two-letter ID codes are written as an int: big-endian files show them as b"\0\0SC".
    block = big4.parse(struct.pack(">4siIii", b"\0\0SC", 100, 0xBEEF, 7, 1), 0, 32)
    assert block.code == b"SC\0\0"
    assert block.old_address == 0xBEEF
    small8 = block_header_format(parse_file_header(b"BLENDER-v279"))
    assert small8.size == 24
    large = block_header_format(parse_file_header(b"BLENDER17-01v0500"))
    assert large.size == 32
    # LargeBHead8 reorders the fields: code, SDNAnr, old, len (64-bit), nr (64-bit).
    block = large.parse(struct.pack("<4siQqq", b"DATA", 9, 0x1234, 5_000_000_000, 3), 0, 49)
    assert (block.sdna_index, block.old_address, block.size, block.item_count) == (9, 0x1234, 5_000_000_000, 3)
