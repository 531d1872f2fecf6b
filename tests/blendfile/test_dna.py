from __future__ import annotations

import struct

import pytest

from blendfile.dna import _bare_name, parse_sdna
from blendfile.errors import CorruptFileError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"sfra", ("sfra", False, 1)),
        (b"*next", ("next", True, 1)),
        (b"**mat", ("mat", True, 1)),
        (b"name[66]", ("name", False, 66)),
        (b"mat[4][4]", ("mat", False, 16)),
        (b"*mtex[18]", ("mtex", True, 18)),
        (b"(*func)()", ("func", True, 1)),
    ],
)
def test_bare_names(raw: bytes, expected: tuple[str, bool, int]) -> None:
    assert _bare_name(raw) == expected


def build_sdna(order: str = "<", odd_name: bool = True) -> bytes:
    """A tiny SDNA: struct Thing { int a; char name[3]; short *p; float m[2][2]; }, ptr size 8."""
    names = [b"a", b"name[3]", b"*p", b"m[2][2]"] + ([b"x"] if odd_name else [])
    types = [b"char", b"short", b"int", b"float", b"Thing"]
    sizes = [1, 2, 4, 4, 4 + 3 + 8 + 16]
    out = bytearray(b"SDNANAME")
    out += struct.pack(order + "i", len(names)) + b"".join(n + b"\0" for n in names)
    out += b"\0" * (-len(out) % 4) + b"TYPE"
    out += struct.pack(order + "i", len(types)) + b"".join(t + b"\0" for t in types)
    out += b"\0" * (-len(out) % 4) + b"TLEN"
    out += struct.pack(order + f"{len(sizes)}H", *sizes)
    out += b"\0" * (-len(out) % 4) + b"STRC"
    out += struct.pack(order + "i", 1) + struct.pack(order + "10h", 4, 4, 2, 0, 0, 1, 1, 2, 3, 3)
    return bytes(out)


@pytest.mark.parametrize("order", ["<", ">"])
def test_parse_sdna_layout(order: str) -> None:
    sdna = parse_sdna(build_sdna(order), "little" if order == "<" else "big", 8)
    thing = sdna.struct_by_name("Thing")
    assert thing is not None
    assert thing.size == 31
    assert [(f.name, f.offset, f.size, f.is_pointer) for f in thing.fields] == [
        ("a", 0, 4, False),
        ("name", 4, 3, False),
        ("p", 7, 8, True),
        ("m", 15, 16, False),
    ]
    assert thing.field("missing") is None


def test_sdna_alignment_is_relative_to_the_block() -> None:
    # Same SDNA with one name fewer: the padding after NAME changes, parsing must still line up.
    sdna = parse_sdna(build_sdna(odd_name=False), "little", 8)
    assert sdna.struct_by_name("Thing") is not None


@pytest.mark.parametrize("cut", [4, 8, 12, 20, 40, 60, 80, 100])
def test_truncated_sdna(cut: int) -> None:
    data = build_sdna()
    with pytest.raises(CorruptFileError):
        parse_sdna(data[:cut], "little", 8).struct(0)


def test_sdna_with_huge_counts_is_refused_without_allocating() -> None:
    data = bytearray(build_sdna())
    data[8:12] = struct.pack("<i", 2**31 - 1)
    with pytest.raises(CorruptFileError, match="names"):
        parse_sdna(bytes(data), "little", 8)
