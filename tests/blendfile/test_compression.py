from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from blendfile import BlendFile, Compression
from blendfile.compression import Container, parse_seek_table, seek_table_length, sniff
from blendfile.errors import BlendFileError, CorruptCompressedStreamError, TruncatedFileError
from blendfile.source import SeekableZstdSource, StreamSource
from tests.conftest import BLENDFILES

from .zstd_util import plain_zstd, seekable_zstd

BASIC = BLENDFILES / "bat" / "basic_file.blend"


@pytest.mark.parametrize(
    ("first", "kind"),
    [
        (b"BLENDER-v279", Container.BLEND),
        (b"\x1f\x8b\x08\x00", Container.GZIP),
        (b"\x28\xb5\x2f\xfd", Container.ZSTD),
        (b"\x5e\x2a\x4d\x18", Container.ZSTD),  # zstd skippable frame first
        (b"\x50\x2a\x4d\x18", Container.ZSTD),
        (b"\x60\x2a\x4d\x18", Container.UNKNOWN),
        (b"PK\x03\x04", Container.ZIP),
        (b"PK\x05\x06", Container.ZIP),
        (b"", Container.UNKNOWN),
        (b"\x89PNG\r\n", Container.UNKNOWN),
    ],
)
def test_sniff(first: bytes, kind: Container) -> None:
    assert sniff(first) is kind


def literal_table(entries: list[tuple[int, int]], flags: int = 0) -> bytes:
    """A seek-table frame written out by hand from (compressed, decompressed) sizes."""
    body = b"".join(struct.pack("<II", c, d) for c, d in entries)
    footer = struct.pack("<IBI", len(entries), flags, 0x8F92EAB1)
    return struct.pack("<II", 0x184D2A5E, len(body) + len(footer)) + body + footer


def test_seek_table_on_literal_bytes() -> None:
    table_bytes = literal_table([(100, 1 << 20), (50, 1 << 20), (7, 300)])
    assert table_bytes == (
        b"\x5e\x2a\x4d\x18" b"\x21\x00\x00\x00"
        b"\x64\x00\x00\x00\x00\x00\x10\x00"
        b"\x32\x00\x00\x00\x00\x00\x10\x00"
        b"\x07\x00\x00\x00\x2c\x01\x00\x00"
        b"\x03\x00\x00\x00" b"\x00" b"\xb1\xea\x92\x8f"
    )  # fmt: skip
    assert seek_table_length(table_bytes[-9:]) == len(table_bytes)
    table = parse_seek_table(table_bytes, 157 + len(table_bytes))
    assert table.compressed_offsets == (0, 100, 150)
    assert table.decompressed_offsets == (0, 1 << 20, 2 << 20)
    assert table.decompressed_size == (2 << 20) + 300
    assert table.frame_at(0) == 0
    assert table.frame_at((1 << 20) - 1) == 0
    assert table.frame_at(1 << 20) == 1
    assert table.frame_at((2 << 20) + 299) == 2


def test_no_seek_table_is_not_an_error() -> None:
    assert seek_table_length(b"\0" * 9) is None
    assert seek_table_length(b"short") is None


@pytest.mark.parametrize(
    ("table_bytes", "file_size", "match"),
    [
        (literal_table([(100, 10), (50, 10)]), 100 + 41, "compressed bytes"),  # sizes don't add up
        (literal_table([(100, 10)]), 1000, "compressed bytes"),
        (literal_table([(0, 10)]), 33, "impossible size"),
        (literal_table([(10, 1 << 30)]), 10 + 25, "impossible size"),
        (literal_table([(10, 10)], flags=0x04), 10 + 25, "reserved"),
        (b"\0\0\0\0" + literal_table([(10, 10)])[4:], 10 + 25, "magic"),
        (literal_table([(10, 10)])[:-12] + literal_table([(10, 10)])[-9:], 10 + 22, "length"),
    ],
)
def test_corrupt_seek_tables(table_bytes: bytes, file_size: int, match: str) -> None:
    with pytest.raises(CorruptCompressedStreamError, match=match):
        parse_seek_table(table_bytes, file_size)


def test_seekable_zstd_reads_only_the_frames_it_needs(tmp_path: Path) -> None:
    data = BASIC.read_bytes()
    path = tmp_path / "seekable.blend"
    path.write_bytes(seekable_zstd(data, frame_size=16 * 1024))
    with BlendFile.open(path) as bfile:
        assert bfile.compression is Compression.ZSTD
        source = bfile._source
        assert isinstance(source, SeekableZstdSource)
        frames = source.table.frame_count
        scene = bfile.current_scene()
        touched = source.frames_decompressed
    with BlendFile.open(BASIC) as plain:
        assert plain.current_scene() == scene
    assert frames > 20
    assert touched < frames, "a seek table must let the reader skip frames it does not need"


def test_checksum_flag_seek_table(tmp_path: Path) -> None:
    path = tmp_path / "checksummed.blend"
    path.write_bytes(seekable_zstd(BASIC.read_bytes(), frame_size=64 * 1024, checksum_flag=True))
    assert BlendFile.get_current_scene(path) == BlendFile.get_current_scene(BASIC)


def test_zstd_without_seek_table_streams(tmp_path: Path) -> None:
    path = tmp_path / "stream.blend"
    path.write_bytes(plain_zstd(BASIC.read_bytes()))
    with BlendFile.open(path) as bfile:
        assert isinstance(bfile._source, StreamSource)
        assert bfile.current_scene() == BlendFile.get_current_scene(BASIC)
        assert bfile.compression is Compression.ZSTD


def test_gzip_streams(tmp_path: Path) -> None:
    path = tmp_path / "gz.blend"
    path.write_bytes(gzip.compress(BASIC.read_bytes()))
    with BlendFile.open(path) as bfile:
        assert isinstance(bfile._source, StreamSource)
        assert bfile.current_scene() == BlendFile.get_current_scene(BASIC)
        assert bfile.compression is Compression.GZIP


def test_frame_that_fails_to_decompress(tmp_path: Path) -> None:
    blob = bytearray(seekable_zstd(BASIC.read_bytes(), frame_size=16 * 1024))
    # Damage the inside of the first frame (past its 4-byte magic and header).
    for i in range(20, 60):
        blob[i] ^= 0xFF
    path = tmp_path / "broken.blend"
    path.write_bytes(bytes(blob))
    with pytest.raises(BlendFileError):
        BlendFile.get_current_scene(path)


def test_seek_table_lying_about_sizes(tmp_path: Path) -> None:
    blob = bytearray(seekable_zstd(BASIC.read_bytes(), frame_size=16 * 1024))
    # The first entry's decompressed size is 9 bytes before the footer's end... find it: entries start
    # right after the 8-byte skippable header of the table.
    n_frames = struct.unpack_from("<I", blob, len(blob) - 9)[0]
    table_start = len(blob) - (8 + n_frames * 8 + 9)
    struct.pack_into("<I", blob, table_start + 8 + 4, 1000)  # frame 0 "decompresses to 1000 bytes"
    path = tmp_path / "lying.blend"
    path.write_bytes(bytes(blob))
    with pytest.raises(CorruptCompressedStreamError, match="seek table says"):
        BlendFile.get_current_scene(path)


@pytest.mark.parametrize("compress", [gzip.compress, plain_zstd, seekable_zstd])
def test_truncated_compressed_files(tmp_path: Path, compress: object) -> None:
    blob = compress(BASIC.read_bytes())  # type: ignore[operator]
    path = tmp_path / "cut.blend"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(BlendFileError) as info:
        BlendFile.get_current_scene(path)
    assert isinstance(info.value, TruncatedFileError | CorruptCompressedStreamError)
    assert str(path) in str(info.value)
