"""Build zstd files the way Blender writes them (independent frames + seek table), for tests."""

from __future__ import annotations

import struct

import zstandard


def seekable_zstd(data: bytes, frame_size: int = 1 << 20, checksum_flag: bool = False) -> bytes:
    """``data`` compressed as independent frames of ``frame_size`` bytes, then a seek table."""
    cctx = zstandard.ZstdCompressor(level=3)
    frames = [cctx.compress(data[i : i + frame_size]) for i in range(0, len(data), frame_size)]
    entry = 12 if checksum_flag else 8
    entries = b"".join(
        struct.pack("<II", len(f), min(frame_size, len(data) - i * frame_size))
        + (b"\0\0\0\0" if checksum_flag else b"")
        for i, f in enumerate(frames)
    )
    footer = struct.pack("<IBI", len(frames), 0x80 if checksum_flag else 0, 0x8F92EAB1)
    table = struct.pack("<II", 0x184D2A5E, len(frames) * entry + len(footer)) + entries + footer
    return b"".join(frames) + table


def plain_zstd(data: bytes) -> bytes:
    """One zstd frame with no seek table (what the ``zstd`` tool writes)."""
    return zstandard.ZstdCompressor(level=3).compress(data)
