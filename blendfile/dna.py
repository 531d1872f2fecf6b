"""SDNA, the file's own description of its structs (the ``DNA1`` block).

Every struct layout is read from the file itself, so a field is found by name in any Blender
version; no offset is hard-coded. Parsing is split in two to stay cheap: :func:`parse_sdna` only
splits the name and type tables and notes where each struct's member list starts (about a
millisecond for Blender 5's ~1,000 structs); a struct's fields and offsets are worked out the first
time it is asked for.
"""

from __future__ import annotations

import re
import struct
import sys
from array import array
from dataclasses import dataclass
from functools import cached_property

from .errors import CorruptFileError
from .header import Endian

_ARRAY_DIM = re.compile(rb"\[(\d+)\]")
# Disk name -> name we also accept, for members renamed in the source but not on disk
# (``dna_rename_defs.h``): callers may ask for either.
_ALIASES: dict[str, tuple[str, ...]] = {"filepath": ("name", "filename")}


@dataclass(frozen=True, slots=True)
class Field:
    """One member of a struct, as laid out in this file."""

    name: str
    """The bare name: ``mat`` for ``mat[4][4]``, ``next`` for ``*next``, ``func`` for ``(*func)()``."""
    type_name: str
    offset: int
    size: int
    """Size of the whole member in bytes (all array elements)."""
    is_pointer: bool
    array_length: int
    """Product of the array dimensions; 1 for a scalar."""
    element_size: int


@dataclass(frozen=True, slots=True)
class DNAStruct:
    """A struct's layout: its fields by name, in order, and its total size."""

    name: str
    index: int
    size: int
    fields: tuple[Field, ...]
    by_name: dict[str, Field]

    def field(self, name: str) -> Field | None:
        """The member called ``name``, or one of its known on-disk aliases; None if absent."""
        found = self.by_name.get(name)
        if found is None:
            for alias in _ALIASES.get(name, ()):
                found = self.by_name.get(alias)
                if found is not None:
                    break
        return found


def _bare_name(raw: bytes) -> tuple[str, bool, int]:
    """Bare name, pointer-ness and array length of an SDNA member name like ``*mat[4][4]``."""
    is_pointer = raw.startswith((b"*", b"(*"))
    length = 1
    for dim in _ARRAY_DIM.findall(raw):
        length *= int(dim)
    name = raw.split(b"[", 1)[0]
    if name.startswith(b"(*"):
        name = name[2:].split(b")", 1)[0]
    name = name.lstrip(b"*")
    return name.decode("ascii", "replace"), is_pointer, length


class SDNA:
    """Names, types and struct layouts of one file."""

    def __init__(
        self,
        names: list[bytes],
        types: list[str],
        type_sizes: array[int],
        members: array[int],
        struct_starts: list[int],
        pointer_size: int,
    ) -> None:
        self._names = names
        self.types = types
        self.type_sizes = type_sizes
        self._members = members
        self._struct_starts = struct_starts
        self.pointer_size = pointer_size
        self._structs: dict[int, DNAStruct] = {}

    @cached_property
    def _index_by_name(self) -> dict[str, int]:
        members = self._members
        types = self.types
        return {types[members[start]]: i for i, start in enumerate(self._struct_starts)}

    @property
    def struct_count(self) -> int:
        return len(self._struct_starts)

    def struct_index(self, name: str) -> int | None:
        return self._index_by_name.get(name)

    def struct_by_name(self, name: str) -> DNAStruct | None:
        index = self._index_by_name.get(name)
        return None if index is None else self.struct(index)

    def struct(self, index: int) -> DNAStruct:
        """The layout of struct ``index`` (an SDNA index, as block headers give it)."""
        cached = self._structs.get(index)
        if cached is not None:
            return cached
        if not 0 <= index < len(self._struct_starts):
            raise CorruptFileError(f"SDNA struct index {index} out of range (the file has {len(self._struct_starts)})")
        members = self._members
        start = self._struct_starts[index]
        type_index, count = members[start], members[start + 1]
        fields: list[Field] = []
        offset = 0
        n_names = len(self._names)
        n_types = len(self.types)
        for k in range(count):
            ftype, fname = members[start + 2 + 2 * k], members[start + 3 + 2 * k]
            if not (0 <= ftype < n_types and 0 <= fname < n_names):
                raise CorruptFileError(f"SDNA struct {self.types[type_index]} refers to a missing type or name")
            name, is_pointer, length = _bare_name(self._names[fname])
            element = self.pointer_size if is_pointer else self.type_sizes[ftype]
            size = element * length
            fields.append(Field(name, self.types[ftype], offset, size, is_pointer, length, element))
            offset += size
        by_name: dict[str, Field] = {}
        for f in fields:
            by_name.setdefault(f.name, f)
        result = DNAStruct(self.types[type_index], index, self.type_sizes[type_index], tuple(fields), by_name)
        self._structs[index] = result
        return result


def _pad4(pos: int) -> int:
    return (pos + 3) & ~3


def _split_strings(data: bytes, pos: int, count: int, what: str) -> tuple[list[bytes], int]:
    """``count`` NUL-terminated strings from ``data[pos:]``, and the position after them."""
    if count < 0 or count > len(data) - pos:
        raise CorruptFileError(f"SDNA claims {count} {what}, more than the block can hold")
    parts = data[pos:].split(b"\0", count)
    if len(parts) <= count:
        raise CorruptFileError(f"SDNA {what} table is cut short")
    # The text after the last string starts where the remainder begins.
    return parts[:count], len(data) - len(parts[count])


def parse_sdna(data: bytes, endian: Endian, pointer_size: int) -> SDNA:
    """Parse a ``DNA1`` block's payload. Alignment is relative to the payload's start."""
    order = "<" if endian == "little" else ">"
    int32 = struct.Struct(order + "i")
    swap = (endian == "little") != (sys.byteorder == "little")

    def expect(pos: int, tag: bytes) -> int:
        if data[pos : pos + 4] != tag:
            raise CorruptFileError(f"SDNA: expected {tag.decode()} at offset {pos} of the DNA1 block")
        return pos + 4

    def count_at(pos: int) -> int:
        if pos + 4 > len(data):
            raise CorruptFileError("SDNA is cut short")
        value: int = int32.unpack_from(data, pos)[0]
        return value

    pos = expect(0, b"SDNA")
    pos = expect(pos, b"NAME")
    n_names = count_at(pos)
    names, pos = _split_strings(data, pos + 4, n_names, "names")
    pos = expect(_pad4(pos), b"TYPE")
    n_types = count_at(pos)
    raw_types, pos = _split_strings(data, pos + 4, n_types, "types")
    types = [t.decode("ascii", "replace") for t in raw_types]
    pos = expect(_pad4(pos), b"TLEN")
    tlen_end = pos + 2 * n_types
    if tlen_end > len(data):
        raise CorruptFileError("SDNA type-size table is cut short")
    type_sizes = array("H", data[pos:tlen_end])
    pos = expect(_pad4(tlen_end), b"STRC")
    n_structs = count_at(pos)
    pos += 4
    rest = data[pos : pos + ((len(data) - pos) & ~1)]
    members = array("H", rest)
    if swap:
        type_sizes.byteswap()
        members.byteswap()
    if n_structs < 0 or n_structs * 2 > len(members):
        raise CorruptFileError(f"SDNA claims {n_structs} structs, more than the block can hold")
    starts: list[int] = []
    at = 0
    total = len(members)
    for _ in range(n_structs):
        if at + 2 > total:
            raise CorruptFileError("SDNA struct table is cut short")
        type_index, count = members[at], members[at + 1]
        if type_index >= n_types:
            raise CorruptFileError("SDNA struct table refers to a type that does not exist")
        starts.append(at)
        at += 2 + 2 * count
    if at > total:
        raise CorruptFileError("SDNA struct table is cut short")
    return SDNA(names, types, type_sizes, members, starts, pointer_size)


__all__ = ["SDNA", "DNAStruct", "Field", "parse_sdna"]
