"""External files a blend file needs: images, libraries, sounds, fonts, caches, ...

The list is the one Blender itself makes with ``bpy.utils.blend_paths(absolute=False, local=True)``
(Blender's ``BKE_bpath_foreach_path_main``), read from the file's bytes instead:

* image (``Image.filepath``; not packed, not generated; sequences and ``<UDIM>`` tiles as stored),
  linked library (``Library.filepath``, unless packed), sound, font (not ``<builtin>``), movie clip,
  Alembic/USD cache (``CacheFile``), OpenVDB volume, text (only one loaded from a file);
* sequencer strips with files (image, movie, sound: the strip's folder joined with each element's
  file name, every element of an image strip);
* object modifiers: fluid domain cache folder, legacy fluid simulation folder, ocean cache folder
  (listed even when nothing is baked), Mesh Cache file; point caches kept on disk (cloth, soft
  body, particles);
* shader nodes that read a file: OSL Script and IES Texture (in node groups and in the node trees
  of materials, worlds, lights...);
* a mesh's external multires data (``CustomDataExternal``);
* the library an appended ID came from when it was appended with "reuse local data"
  (``ID.library_weak_reference``), and a brush's custom icon (files that still have
  ``Brush.icon_filepath``, gone in 5.0): Blender lists both, though nothing reads them to render.

A path is reported as stored (``//`` = the folder of the blend file that holds it) and resolved
against the folder of *that* file, so a library's own dependencies resolve against the library's
folder. Windows separators (``//..\\tex\\a.png``) resolve as Blender does once it has loaded the
file (it turns them into ``/`` on Linux and macOS). A path that is absolute on another system
(``C:\\...``, ``\\\\server\\share``) is kept as it is and never exists here. A relative path without
``//`` (rare, made by scripts) is resolved against the blend file's folder too, as Blender Asset
Tracer does: Blender itself would use its working directory.

:func:`walk_dependencies` follows linked libraries recursively, each file once (cycles are
fine); a library that is missing is reported missing by the file that links it, one that cannot
be read gets an entry with its error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from .errors import BlendFileError, CorruptFileError
from .file import BlendFile, StructView

# Image.source (eImageSource in DNA_image_types.h): only these read a file.
IMA_SRC_FILE = 1
IMA_SRC_SEQUENCE = 2
IMA_SRC_MOVIE = 3
IMA_SRC_TILED = 6
_IMAGE_SOURCES_WITH_FILES = frozenset({IMA_SRC_FILE, IMA_SRC_SEQUENCE, IMA_SRC_MOVIE, IMA_SRC_TILED})
MCLIP_SRC_SEQUENCE = 1
"""``MovieClip.source`` of a clip made of numbered images."""
# Strip.type values whose strips read files (SEQ_HAS_PATH in SEQ_sequencer.hh).
SEQ_TYPE_IMAGE = 0
SEQ_TYPE_MOVIE = 3
SEQ_TYPE_SOUND_RAM = 4
SEQ_TYPE_SOUND_HD = 5
_STRIP_TYPES_WITH_FILES = frozenset({SEQ_TYPE_IMAGE, SEQ_TYPE_MOVIE, SEQ_TYPE_SOUND_RAM, SEQ_TYPE_SOUND_HD})
PTCACHE_DISK_CACHE = 1 << 6
PTCACHE_EXTERNAL = 1 << 9
PTCACHE_PATH = "blendcache_"
"""Folder prefix of a point cache on disk that is not "external": ``//blendcache_<blend name>/``."""
MOD_FLUID_TYPE_DOMAIN = 1 << 0
NTREE_SHADER = 0
FO_BUILTIN_NAME = "<builtin>"
_UDIM_TOKENS = ("<UDIM>", "<UVTILE>")
_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")
# ID block codes are two letters padded with NULs; these two are not IDs with data.
_NOT_ID_CODES = frozenset({b"ID\0\0", b"\0\0\0\0"})


class DependencyKind(StrEnum):
    """What refers to an external file (the ``kind`` of ``deps --json``)."""

    IMAGE = "image"
    LIBRARY = "library"
    SOUND = "sound"
    FONT = "font"
    MOVIE_CLIP = "movie_clip"
    CACHE_FILE = "cache_file"
    VOLUME = "volume"
    TEXT = "text"
    SEQUENCER_STRIP = "sequencer_strip"
    FLUID_CACHE = "fluid_cache"
    FLUIDSIM_CACHE = "fluidsim_cache"
    OCEAN_CACHE = "ocean_cache"
    MESH_CACHE = "mesh_cache"
    POINT_CACHE = "point_cache"
    MULTIRES_EXTERNAL = "multires_external"
    OSL_SCRIPT = "osl_script"
    IES = "ies"
    WEAK_LIBRARY_REFERENCE = "weak_library_reference"
    """Where an appended ID came from ("reuse local data"); not read when rendering."""
    BRUSH_ICON = "brush_icon"
    """A brush's custom icon (files saved before Blender 4.3 or so; 5.0 has no such field)."""

    @property
    def needed_to_render(self) -> bool:
        return self not in (DependencyKind.WEAK_LIBRARY_REFERENCE, DependencyKind.BRUSH_ICON)


class Expansion(StrEnum):
    """Which files on disk a path stands for (see :func:`expand_files`)."""

    FILE = "file"
    SEQUENCE = "sequence"
    """Numbered files: the path names one, the frame number (last digits of the name) varies."""
    UDIM = "udim"
    """``<UDIM>`` or ``<UVTILE>`` in the name stands for each tile."""
    DIRECTORY = "directory"
    """A cache folder: everything in it."""


class PathPart(StrEnum):
    WHOLE = "whole"
    """The field holds the whole path."""
    DIRECTORY = "directory"
    """The field holds the folder; the file name is stored elsewhere (sequencer strips)."""


@dataclass(frozen=True, slots=True)
class PathField:
    """Where a stored path lies in the file's decompressed bytes (to patch a copy of the file)."""

    offset: int
    size: int
    """Bytes available, the terminating NUL included."""
    part: PathPart = PathPart.WHOLE
    stored: str = ""
    """The field's current text (for a folder field: the folder, not the joined path)."""


@dataclass(frozen=True, slots=True)
class Dependency:
    """One external file (or file set) a blend file refers to."""

    kind: DependencyKind
    path: str
    """As stored in the file (``//`` = relative to the blend file's folder)."""
    resolved: str
    """Absolute path on this machine; empty for an empty stored path."""
    exists: bool
    owner: str = ""
    """The data-block that refers to it, e.g. ``IMwood.png`` or ``OBCube.modifiers["Ocean"]``."""
    expansion: Expansion = Expansion.FILE
    field: PathField | None = None
    """Where to rewrite it; None when the stored text is not what Blender reads (a point cache in
    the default ``blendcache_`` folder) or cannot be changed in place."""

    @property
    def is_set(self) -> bool:
        """False for an empty path that stands for nothing (e.g. an OSL node with no file)."""
        return bool(self.resolved)

    @property
    def missing(self) -> bool:
        return self.is_set and not self.exists

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "path": _printable(self.path),
            "resolved": _printable(self.resolved),
            "exists": self.exists,
        }


@dataclass(frozen=True, slots=True)
class BlendDependencies:
    """The dependencies of one blend file (its own, not those of the libraries it links)."""

    path: str
    dependencies: tuple[Dependency, ...] = ()
    error: str | None = None
    """Why the file could not be read (then ``dependencies`` is empty)."""
    is_library: bool = False
    """Reached through a library link rather than named by the caller."""

    @property
    def missing(self) -> list[Dependency]:
        return [d for d in self.dependencies if d.missing]

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "path": _printable(self.path),
            "dependencies": [d.to_json() for d in self.dependencies],
        }
        if self.error is not None:
            result["error"] = self.error
        return result


def _printable(text: str) -> str:
    """Paths are decoded with ``surrogateescape`` (exact bytes for the file system); JSON wants UTF-8."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# -- paths -----------------------------------------------------------------------------------------


def is_blend_relative(path: str) -> bool:
    """``//`` at the start: relative to the folder of the blend file that stores it."""
    return path.startswith("//")


def is_foreign_absolute(path: str) -> bool:
    """Absolute on Windows (``C:\\``, ``\\\\server``) while this is not Windows: it cannot resolve here."""
    return os.sep == "/" and bool(_WINDOWS_ABSOLUTE.match(path))


def resolve_path(stored: str, blend_dir: str | os.PathLike[str]) -> str:
    """The absolute path Blender reads for ``stored``, in a blend file whose folder is ``blend_dir``.

    ``//`` is the blend file's folder; ``\\`` counts as a separator everywhere (Blender makes
    separators native when it loads a file); ``..`` is folded. An empty path stays empty.
    """
    if not stored:
        return ""
    base = os.fspath(blend_dir)
    if is_blend_relative(stored):
        return os.path.normpath(Path(base, stored[2:].replace("\\", "/").lstrip("/")))
    if is_foreign_absolute(stored):
        # Kept, with '/' as Blender on Linux/macOS shows it (a UNC prefix keeps its backslashes).
        prefix = 2 if stored.startswith("\\\\") else 0
        return stored[:prefix] + stored[prefix:].replace("\\", "/")
    native = stored.replace("\\", "/") if os.sep == "/" else stored
    return os.path.normpath(Path(base, native))


def has_udim_token(path: str) -> bool:
    return any(token in path for token in _UDIM_TOKENS)


def _udim_pattern(name: str) -> re.Pattern[str]:
    pattern = re.escape(name)
    pattern = pattern.replace(re.escape("<UDIM>"), r"\d{4}").replace(re.escape("<UVTILE>"), r"u\d+_v\d+")
    return re.compile(f"^{pattern}$")


_LAST_DIGITS = re.compile(r"^(.*?)(\d+)(\D*)$")


def _sequence_pattern(name: str) -> re.Pattern[str] | None:
    """Every frame of a numbered file name (Blender's ``BLI_path_sequence_decode``: the last run of
    digits, before the extension)."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    match = _LAST_DIGITS.match(stem)
    if match is None:
        return None
    head, _digits, tail = match.groups()
    suffix = tail + (dot + ext if dot else "")
    return re.compile(f"^{re.escape(head)}\\d+{re.escape(suffix)}$")


def _matching_files(folder: str, pattern: re.Pattern[str]) -> list[str]:
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return []
    return sorted(str(e) for e in entries if pattern.match(e.name) and e.is_file())


def _exists(resolved: str, expansion: Expansion) -> bool:
    if not resolved or is_foreign_absolute(resolved):
        return False
    if expansion is Expansion.UDIM and has_udim_token(resolved):
        folder, name = os.path.split(resolved)
        return bool(_matching_files(folder, _udim_pattern(name)))
    return Path(resolved).exists()


def expand_files(dep: Dependency) -> list[str]:
    """The files on disk that ``dep`` stands for: the file itself, every frame of a sequence, every
    UDIM tile, everything in a cache folder. Empty when nothing is there."""
    resolved = dep.resolved
    if not resolved or is_foreign_absolute(resolved):
        return []
    if dep.expansion is Expansion.DIRECTORY or Path(resolved).is_dir():
        return sorted(str(p) for p in Path(resolved).rglob("*") if p.is_file())
    folder, name = os.path.split(resolved)
    if dep.expansion is Expansion.UDIM and has_udim_token(name):
        return _matching_files(folder, _udim_pattern(name))
    if dep.expansion is Expansion.SEQUENCE:
        pattern = _sequence_pattern(name)
        if pattern is not None:
            frames = _matching_files(folder, pattern)
            if frames:
                return frames
    return [resolved] if Path(resolved).is_file() else []


def join_dir_file(directory: str, filename: str) -> str:
    """A sequencer strip's folder and file name joined as Blender does (``BLI_path_join``): one
    ``/`` between them, the folder's own trailing separators dropped unless it is only separators."""
    if not directory:
        return filename.lstrip("/\\")
    head = directory.rstrip("/\\") or directory
    tail = filename.lstrip("/\\")
    if not tail:
        return directory
    return head + tail if head.endswith(("/", "\\")) else f"{head}/{tail}"


# -- reading one file ------------------------------------------------------------------------------


def _decode(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


class _Reader:
    """Collects the dependencies of one open file."""

    def __init__(self, bfile: BlendFile) -> None:
        self.bfile = bfile
        self.blend_dir = os.path.normpath(Path(bfile.path).absolute().parent)
        self.found: list[Dependency] = []

    # -- low-level helpers --------------------------------------------------------------------
    def text(self, view: StructView, name: str) -> str:
        return _decode(view.get_bytes(name))

    def add_path(
        self, kind: DependencyKind, view: StructView, owner: str, expansion: Expansion = Expansion.FILE
    ) -> None:
        """The ID's own path: stored as ``name`` in most IDs, whatever the source calls it now.

        Only ``name`` is safe: before 2.8 ``Library.filepath`` was the absolute copy (today's
        ``filepath_abs``), and 2.4x ``Library.filename`` the same.
        """
        self.add_field(kind, view, _path_member(view), owner, expansion)

    def field_of(self, view: StructView, name: str, part: PathPart = PathPart.WHOLE) -> PathField:
        offset, size = view.field_span(name)
        return PathField(offset, size, part, self.text(view, name))

    def add(
        self,
        kind: DependencyKind,
        path: str,
        owner: str,
        field: PathField | None,
        expansion: Expansion = Expansion.FILE,
        resolved: str | None = None,
    ) -> None:
        if expansion is Expansion.FILE and kind is DependencyKind.IMAGE and has_udim_token(path):
            expansion = Expansion.UDIM
        full = resolve_path(path, self.blend_dir) if resolved is None else resolved
        self.found.append(Dependency(kind, path, full, _exists(full, expansion), owner, expansion, field))

    def add_field(
        self, kind: DependencyKind, view: StructView, name: str, owner: str, expansion: Expansion = Expansion.FILE
    ) -> None:
        field = self.field_of(view, name)
        self.add(kind, field.stored, owner, field, expansion)

    def deref(self, view: StructView, name: str) -> StructView | None:
        if not view.has(name):
            return None
        return view.deref(name)

    def listbase(self, view: StructView, name: str, seen: set[int] | None = None) -> Iterator[StructView]:
        """The elements of a ``ListBase`` member, following ``next``. Cycle-safe: an element
        already in ``seen`` (shared by nested lists, e.g. meta strips) ends the list."""
        if not view.has(name):
            return
        address = view.get_struct(name).get_pointer("first")
        if seen is None:
            seen = set()
        while address and address not in seen:
            seen.add(address)
            item = self.bfile.struct_at(address)
            if item is None:
                return
            yield item
            address = _next_pointer(item)

    # -- the walk -----------------------------------------------------------------------------
    def read(self) -> list[Dependency]:
        bfile = self.bfile
        bfile.sdna  # noqa: B018 - a file without SDNA is unreadable (Blender refuses it), not "no dependencies"
        for block in bfile.blocks:
            code = block.code
            if code[2:] != b"\0\0" or code in _NOT_ID_CODES or block.size == 0:
                continue
            view = bfile.struct_view(block)
            if not view.has("id"):
                continue
            id_view = view.get_struct("id")
            if id_view.get_pointer("lib"):
                continue  # linked data kept in this file (5.x archives): its paths belong to its library
            owner = _decode(id_view.get_bytes("name"))
            self.read_id(view, id_view, owner)
        return self.found

    def read_id(self, view: StructView, id_view: StructView, owner: str) -> None:
        if id_view.has("library_weak_reference"):
            weak = id_view.deref("library_weak_reference")
            if weak is not None and weak.has("library_filepath"):
                self.add_field(DependencyKind.WEAK_LIBRARY_REFERENCE, weak, "library_filepath", owner)
        if view.dna.name != "bNodeTree" and view.has("nodetree"):
            tree = view.deref("nodetree")  # the embedded node tree of a material, world, light...
            if tree is not None and tree.dna.name == "bNodeTree":
                self.node_tree(tree, f"{owner}.nodetree")
        handler = _HANDLERS.get(view.dna.name)
        if handler is not None:
            handler(self, view, owner)

    # -- per ID type (the foreach_path callbacks of Blender's IDTypeInfo) ----------------------
    def image(self, view: StructView, owner: str) -> None:
        if _pointer(view, "packedfile") or (
            view.has("packedfiles") and view.get_struct("packedfiles").get_pointer("first")
        ):
            return
        source = view.get_int("source", IMA_SRC_FILE)
        field = self.field_of(view, _path_member(view))
        if source not in _IMAGE_SOURCES_WITH_FILES or not field.stored:
            return
        expansion = {IMA_SRC_SEQUENCE: Expansion.SEQUENCE, IMA_SRC_TILED: Expansion.UDIM}.get(source, Expansion.FILE)
        self.add(DependencyKind.IMAGE, field.stored, owner, field, expansion)

    def library(self, view: StructView, owner: str) -> None:
        if not _pointer(view, "packedfile"):
            self.add_path(DependencyKind.LIBRARY, view, owner)

    def sound(self, view: StructView, owner: str) -> None:
        if not _pointer(view, "packedfile"):
            self.add_path(DependencyKind.SOUND, view, owner)

    def font(self, view: StructView, owner: str) -> None:
        if (
            _pointer(view, "packedfile")
            or self.text(view, "name" if "name" in view.dna.by_name else "filepath") == FO_BUILTIN_NAME
        ):
            return
        self.add_path(DependencyKind.FONT, view, owner)

    def movie_clip(self, view: StructView, owner: str) -> None:
        sequence = view.get_int("source", 0) == MCLIP_SRC_SEQUENCE
        self.add_path(DependencyKind.MOVIE_CLIP, view, owner, Expansion.SEQUENCE if sequence else Expansion.FILE)

    def cache_file(self, view: StructView, owner: str) -> None:
        sequence = bool(view.get_int("is_sequence", 0))
        self.add_path(DependencyKind.CACHE_FILE, view, owner, Expansion.SEQUENCE if sequence else Expansion.FILE)

    def volume(self, view: StructView, owner: str) -> None:
        if _pointer(view, "packedfile"):
            return
        sequence = bool(view.get_int("is_sequence", 0))
        self.add_path(DependencyKind.VOLUME, view, owner, Expansion.SEQUENCE if sequence else Expansion.FILE)

    def text_block(self, view: StructView, owner: str) -> None:
        # Text.filepath is a char* (saved as its own block), set only for a text loaded from a file.
        address = view.get_pointer("filepath") if view.has("filepath") else 0
        block = self.bfile.block_at(address)
        if block is None:
            return
        raw = self.bfile.read_block(block)
        path = _decode(raw)
        self.add(DependencyKind.TEXT, path, owner, PathField(block.offset, block.size, PathPart.WHOLE, path))

    def brush(self, view: StructView, owner: str) -> None:
        if view.has("icon_filepath") and self.text(view, "icon_filepath"):
            self.add_field(DependencyKind.BRUSH_ICON, view, "icon_filepath", owner)

    def mesh(self, view: StructView, owner: str) -> None:
        if not view.has("ldata"):
            return
        corner_data = view.get_struct("ldata")
        external = self.deref(corner_data, "external")
        if external is not None:
            self.add_field(DependencyKind.MULTIRES_EXTERNAL, external, "filepath", owner)

    def scene(self, view: StructView, owner: str) -> None:
        editing = self.deref(view, "ed")
        if editing is not None:
            self.strips(editing, "seqbase", owner, set())

    def strips(self, parent: StructView, listname: str, owner: str, seen: set[int]) -> None:
        for strip in self.listbase(parent, listname, seen):
            name = _decode(strip.get_bytes("name"))[2:] if strip.has("name") else "?"
            where = f'{owner}.strips["{name}"]'
            if strip.has("seqbase"):  # meta strips hold strips of their own
                self.strips(strip, "seqbase", owner, seen)
            if strip.get_int("type", -1) not in _STRIP_TYPES_WITH_FILES:
                continue
            data = self.deref(strip, "strip")
            if data is None or not data.has("dir"):
                continue
            dir_field = self.field_of(data, "dir", PathPart.DIRECTORY)
            elements = self.strip_elements(data)
            kind = DependencyKind.SEQUENCER_STRIP
            strip_type = strip.get_int("type")
            if strip_type in (SEQ_TYPE_MOVIE, SEQ_TYPE_SOUND_RAM) and elements:
                elements = elements[:1]
            elif strip_type != SEQ_TYPE_IMAGE or not elements:
                self.add(
                    kind,
                    dir_field.stored,
                    where,
                    PathField(dir_field.offset, dir_field.size, PathPart.WHOLE, dir_field.stored),
                )
                continue
            for element in elements:
                path = join_dir_file(dir_field.stored, element)
                self.add(kind, path, where, dir_field)

    def strip_elements(self, data: StructView) -> list[str]:
        """File names of a strip's ``StripElem`` array (all of it: the block holds as many as
        Blender allocated, which is what it iterates)."""
        address = data.get_pointer("stripdata") if data.has("stripdata") else 0
        block = self.bfile.block_at(address)
        if block is None or block.size == 0:
            return []
        element_type = self.bfile.sdna.struct_by_name("StripElem")
        if element_type is None or element_type.size == 0:
            return []
        names = []
        for index in range(block.size // element_type.size):
            element = self.bfile.struct_view(block, index) if block.item_count > index else None
            if element is None or element.dna.name != "StripElem":
                break
            names.append(self.text(element, "filepath"))
        return names

    def object(self, view: StructView, owner: str) -> None:
        for modifier in self.listbase(view, "modifiers"):
            name = _decode(modifier.get_struct("modifier").get_bytes("name")) if modifier.has("modifier") else "?"
            where = f'{owner}.modifiers["{name}"]'
            kind_name = modifier.dna.name
            if kind_name == "FluidsimModifierData":
                settings = self.deref(modifier, "fss")
                if settings is not None and settings.has("surfdataPath"):
                    self.add_field(DependencyKind.FLUIDSIM_CACHE, settings, "surfdataPath", where, Expansion.DIRECTORY)
            elif kind_name == "FluidModifierData":
                domain = self.deref(modifier, "domain")
                if modifier.get_int("type", 0) & MOD_FLUID_TYPE_DOMAIN and domain is not None:
                    self.add_field(DependencyKind.FLUID_CACHE, domain, "cache_directory", where, Expansion.DIRECTORY)
            elif kind_name == "ClothModifierData":
                self.point_caches(modifier, where)
            elif kind_name == "OceanModifierData":
                self.add_field(DependencyKind.OCEAN_CACHE, modifier, "cachepath", where, Expansion.DIRECTORY)
            elif kind_name == "MeshCacheModifierData":
                self.add_field(DependencyKind.MESH_CACHE, modifier, "filepath", where)
        soft = self.deref(view, "soft")
        if soft is not None:
            shared = self.deref(soft, "shared")
            self.point_caches(shared if shared is not None else soft, f"{owner}.soft_body")
        for system in self.listbase(view, "particlesystem"):
            self.point_caches(system, f'{owner}.particle_systems["{self.text(system, "name")}"]')

    def point_caches(self, owner_view: StructView, where: str) -> None:
        for cache in self.listbase(owner_view, "ptcaches"):
            flag = cache.get_int("flag", 0)
            if not flag & PTCACHE_DISK_CACHE or not cache.has("path"):
                continue
            field = self.field_of(cache, "path")
            if flag & PTCACHE_EXTERNAL:
                self.add(DependencyKind.POINT_CACHE, field.stored, where, field, Expansion.DIRECTORY)
            else:
                # Blender ignores the stored path and uses //blendcache_<blend name>/ (ptcache_path()).
                folder = os.path.normpath(Path(self.blend_dir, PTCACHE_PATH + Path(self.bfile.path).stem))
                self.add(DependencyKind.POINT_CACHE, field.stored, where, None, Expansion.DIRECTORY, folder)

    def node_tree(self, view: StructView, owner: str) -> None:
        if view.get_int("type", -1) != NTREE_SHADER:
            return
        for node in self.listbase(view, "nodes"):
            idname = self.text(node, "idname") if node.has("idname") else ""
            if idname not in ("ShaderNodeScript", "ShaderNodeTexIES"):
                continue
            storage = self.deref(node, "storage")
            if storage is None or not storage.has("filepath"):
                continue
            kind = DependencyKind.OSL_SCRIPT if idname == "ShaderNodeScript" else DependencyKind.IES
            self.add_field(kind, storage, "filepath", f'{owner}.nodes["{self.text(node, "name")}"]')

    def node_group(self, view: StructView, owner: str) -> None:
        self.node_tree(view, owner)


def _path_member(view: StructView) -> str:
    """The member holding an ID's own path: ``name`` on disk in every version that has it."""
    return "name" if "name" in view.dna.by_name else "filepath"


def _pointer(view: StructView, name: str) -> int:
    return view.get_pointer(name) if view.has(name) else 0


def _next_pointer(view: StructView) -> int:
    """A list element's ``next``: its first member, or the first member of its first embedded struct
    (``ModifierData`` inside ``OceanModifierData``)."""
    while True:
        first = view.dna.fields[0] if view.dna.fields else None
        if first is None:
            return 0
        if first.is_pointer:
            return view.get_pointer(first.name)
        try:
            view = view.get_struct(first.name)
        except CorruptFileError:
            return 0


_HANDLERS: dict[str, Callable[[_Reader, StructView, str], None]] = {
    "Image": _Reader.image,
    "Library": _Reader.library,
    "bSound": _Reader.sound,
    "VFont": _Reader.font,
    "MovieClip": _Reader.movie_clip,
    "CacheFile": _Reader.cache_file,
    "Volume": _Reader.volume,
    "Text": _Reader.text_block,
    "Mesh": _Reader.mesh,
    "Brush": _Reader.brush,
    "Scene": _Reader.scene,
    "Object": _Reader.object,
    "bNodeTree": _Reader.node_group,
}


def _dedupe(found: Iterable[Dependency]) -> tuple[Dependency, ...]:
    """One entry per (kind, path, rewrite place): the same image used twice is listed once, but a
    path stored in two places stays twice so both are rewritten."""
    seen: set[tuple[DependencyKind, str, int | None]] = set()
    result = []
    for dep in found:
        key = (dep.kind, dep.path, None if dep.field is None else dep.field.offset)
        if key not in seen:
            seen.add(key)
            result.append(dep)
    return tuple(result)


def read_dependencies(bfile: BlendFile) -> tuple[Dependency, ...]:
    """The external files an open blend file refers to itself (not those of its libraries)."""
    return bfile.guarded(lambda: _dedupe(_Reader(bfile).read()))


def file_dependencies(path: str | os.PathLike[str]) -> tuple[Dependency, ...]:
    """Open ``path`` and list its own dependencies (raises :class:`BlendFileError`)."""
    with BlendFile.open(path) as bfile:
        return read_dependencies(bfile)


def _identity(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def walk_dependencies(paths: Iterable[str | os.PathLike[str]]) -> list[BlendDependencies]:
    """Each named file's dependencies, then those of every library they reach, each file once.

    Named files keep the path as given; libraries get their resolved absolute path. A library
    that does not exist is only reported missing by the file that links it; one that exists but
    cannot be read gets an entry with ``error`` set. Never raises for bad input.
    """
    results: list[BlendDependencies] = []
    seen: set[str] = set()
    queue: list[tuple[str, bool]] = [(os.fspath(p), False) for p in paths]
    index = 0
    while index < len(queue):
        path, is_library = queue[index]
        index += 1
        identity = _identity(path)
        if identity in seen:
            continue
        seen.add(identity)
        try:
            deps = file_dependencies(path)
        except BlendFileError as exc:
            results.append(BlendDependencies(path, (), str(exc), is_library))
            continue
        results.append(BlendDependencies(path, deps, None, is_library))
        for dep in deps:
            if dep.kind is DependencyKind.LIBRARY and dep.exists and Path(dep.resolved).is_file():
                queue.append((dep.resolved, True))
    return results


__all__ = [
    "BlendDependencies",
    "Dependency",
    "DependencyKind",
    "Expansion",
    "PathField",
    "PathPart",
    "expand_files",
    "file_dependencies",
    "has_udim_token",
    "is_blend_relative",
    "is_foreign_absolute",
    "join_dir_file",
    "read_dependencies",
    "resolve_path",
    "walk_dependencies",
]
