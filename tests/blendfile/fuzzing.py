"""Mutations of real blend files that aim at the parts a reader trusts: headers, lengths, SDNA."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from pathlib import Path

from blendfile import BlendFile
from blendfile.__main__ import file_info
from blendfile.compression import seek_table_length
from tests.conftest import BLENDFILES

# Small files covering each layout: 32-bit LE, 32-bit BE, 64-bit 2.79, 4.5 legacy header, 5.0 header,
# and the compressed kinds (their stream and seek table are fuzzed too).
SEEDS = [
    "assimp/BlenderDefault_248.blend",
    "assimp/yxa_1.blend",
    "bat/basic_file.blend",
    "gltf-blender-io/36_viewport_material_export.blend",
    "gltf-blender-io/27_apply_modifier_with_shapekeys.blend",
    "bat/basic_file_compressed.blend",
    "bat/basic_file_zstandard.blend",
    "gltf-blender-io/38_pointcloud_GN.blend",
]
_INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1]


@dataclass(frozen=True)
class Seed:
    data: bytes
    hot: list[int]
    """Offsets worth hitting: block headers, the DNA1 payload and the SC block (plain files)."""
    complete_at: int
    """A prefix at least this long still holds everything (Blender accepts a cut-short ENDB)."""


def load_seed(name: str) -> Seed:
    path = BLENDFILES / name
    data = path.read_bytes()
    hot = list(range(17))
    complete_at = len(data)
    if data.startswith(b"BLENDER"):
        with BlendFile.open(path) as bfile:
            hsize = bfile.header.block_header.size
            for block in bfile.blocks:
                hot.extend(range(block.offset - hsize, block.offset))
                if block.code in (b"DNA1", b"SC\0\0", b"GLOB"):
                    hot.extend(range(block.offset, block.offset + min(block.size, 4096)))
            last = bfile.blocks[-1]
            complete_at = last.offset + last.size + 4  # the ENDB code itself
    else:
        hot.extend(range(max(0, len(data) - 64), len(data)))  # compressed: the seek table
        table = seek_table_length(data[-9:])
        if table is not None:
            complete_at = len(data) - table  # the frames are all there; only the seek table is cut
    return Seed(data, hot, complete_at)


def mutate(seed: Seed, rng: random.Random) -> bytes:
    data = bytearray(seed.data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        pos = rng.choice(seed.hot) if rng.random() < 0.8 else rng.randrange(len(data))
        pos = min(pos, len(data) - 1)
        if op < 0.35:
            data[pos] ^= 1 << rng.randrange(8)
        elif op < 0.6:
            width = rng.choice([2, 4, 8])
            value = rng.choice(_INTERESTING) & ((1 << (8 * width)) - 1)
            data[pos : pos + width] = value.to_bytes(width, rng.choice(["little", "big"]))
        elif op < 0.75:
            data[pos : pos + 4] = struct.pack("<i", rng.choice([-1, -(2**31), 2**31 - 1]))
        elif op < 0.9:
            del data[rng.randrange(len(data)) :]
        else:
            data[pos:pos] = rng.randbytes(rng.randint(1, 64))
        if not data:
            break
    return bytes(data)


def read_everything(path: Path) -> None:
    """What the farm does with a file: the info summary (all scenes, current scene)."""
    file_info(str(path))
