"""Pack a .blend and everything it needs into one zip project the farm can send to agents (Qt-free).

Like Blender Asset Tracer's ``pack``: the main .blend, the libraries it links (recursively), and
every file they use (images, whole image sequences and UDIM tile sets, sounds, fonts, caches...).

Where files go in the zip:

* The zip's top is the *project root*: the deepest folder holding the main .blend and everything
  its ``//`` paths reach, so ``//../textures/x.png`` keeps working unchanged. A ``//`` path that
  climbs more than :data:`MAX_LEVELS_UP` folders above the main .blend's folder, or to the top of
  a drive, does not widen the root: it is treated like an absolute path.
* A file outside the root (an absolute path, or one of those) goes to
  ``_outside_project/<its absolute path>`` (``C:`` becomes ``C``), and the path stored in the .blend
  (or library) that uses it is rewritten to a ``//`` path that reaches it there.

Rewriting happens in copies of the .blend files, never in the user's files: a path lives in a
fixed-size ``char`` array, so the new text is written over it in place (the rest zero-filled) and
no block moves. A compressed .blend that needs a rewrite is decompressed for writing (Blender reads
both); one that needs none is packed as it is.

Missing files are listed in the report and do not stop the packing; the same file used twice is
packed once; "weak" library references (where an appended ID came from) are neither packed nor
rewritten, as nothing reads them to render. The zip's comment names the main .blend, so
:func:`blendfile.project.open_project` finds it without being told.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from blendfile import BlendFile
from blendfile.deps import (
    BlendDependencies,
    Dependency,
    DependencyKind,
    Expansion,
    PathPart,
    expand_files,
    file_dependencies,
    is_blend_relative,
    walk_dependencies,
)
from blendfile.errors import ProjectError
from blendfile.project import MAIN_BLEND_COMMENT_PREFIX, check_member_name

EXTERNAL_DIR = "_outside_project"
"""Folder in the zip for files that lie outside the project root."""
MAX_LEVELS_UP = 4
"""How far above the main .blend's folder a ``//`` path may reach and still be kept as it is."""
# Already compressed: deflating them again costs time and saves nothing.
_STORED_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".avif", ".mp4", ".mov", ".mkv", ".avi", ".webm", ".mp3", ".ogg", ".flac",
     ".aac", ".m4a", ".zip", ".gz", ".zst", ".7z", ".vdb", ".abc", ".usdz", ".woff2"}
)  # fmt: skip

ProgressCallback = Callable[[int, int], None]
"""Called with (bytes written, bytes to write) while the zip is being written."""


@dataclass(frozen=True, slots=True)
class PackedFile:
    source: str
    """Where the file is on this machine."""
    arcname: str
    """Its ``/``-separated path in the zip."""
    size: int
    """Bytes written (for a rewritten .blend: the size of the rewritten, uncompressed copy)."""


@dataclass(frozen=True, slots=True)
class Remap:
    """A path rewritten in a .blend copy so it resolves inside the zip."""

    blend: str
    """Arcname of the .blend holding the path."""
    kind: DependencyKind
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class MissingFile:
    blend: str
    """The .blend (on this machine) that refers to it."""
    kind: DependencyKind
    path: str
    """As stored."""
    resolved: str


@dataclass(frozen=True, slots=True)
class PackReport:
    """What :func:`pack_project` did."""

    zip_path: str
    root: str
    """The folder that became the top of the zip."""
    main_blend: str
    """Arcname of the main .blend: what agents get as ``main_blend``."""
    packed: tuple[PackedFile, ...] = ()
    remapped: tuple[Remap, ...] = ()
    missing: tuple[MissingFile, ...] = ()
    problems: tuple[str, ...] = ()
    """Things that may keep the project from rendering as it does here (a path too long to
    rewrite, a library that could not be read)."""

    @property
    def total_bytes(self) -> int:
        """Bytes packed, before zip compression."""
        return sum(f.size for f in self.packed)


@dataclass
class _Plan:
    root: Path
    external: str
    files: dict[str, tuple[Path, str]] = field(default_factory=dict)
    """identity -> (source, arcname), in packing order."""
    arcnames: dict[str, str] = field(default_factory=dict)
    """arcname (case-folded) -> identity, to catch two sources landing on one name."""
    missing: list[MissingFile] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _identity(path: Path) -> str:
    return os.path.normcase(os.path.realpath(path))


def _levels_between(parent: Path, child: Path) -> int:
    return len(child.parts) - len(parent.parts)


def _within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def choose_root(main_blend: Path, walk: list[BlendDependencies], max_levels_up: int = MAX_LEVELS_UP) -> Path:
    """The deepest folder holding the main .blend's folder and every ``//`` target close enough.

    "Close enough": at most ``max_levels_up`` folders above the main .blend's folder, never a
    drive's or the file system's top, and on the same drive.
    """
    main_dir = Path(os.path.normpath(main_blend.absolute().parent))
    root = main_dir
    for result in walk:
        for dep in result.dependencies:
            if not (dep.kind.needed_to_render and dep.is_set and is_blend_relative(dep.path)):
                continue
            target = Path(dep.resolved)
            folder = target if dep.expansion is Expansion.DIRECTORY else target.parent
            try:
                common = Path(os.path.commonpath([main_dir, folder]))
            except ValueError:  # another drive
                continue
            if common == Path(common.anchor) or _levels_between(common, main_dir) > max_levels_up:
                continue
            if _within(root, common):
                root = common
    return root


def _arcname(plan: _Plan, path: Path) -> str:
    """Where ``path`` goes in the zip: relative to the root, or mirrored under the external folder."""
    normal = Path(os.path.normpath(path))
    if _within(normal, plan.root):
        return normal.relative_to(plan.root).as_posix()
    drive, rest = os.path.splitdrive(os.fspath(normal))
    parts = [p for p in rest.replace("\\", "/").split("/") if p]
    if drive:
        drive_part = drive.replace(":", "").replace("\\", "/").strip("/").replace("/", "_")
        parts.insert(0, drive_part)
    return "/".join([plan.external, *parts])


def _target_arcname(plan: _Plan, path: Path) -> str:
    """Where a path a .blend refers to lands in the zip (the packed file's name when it is packed,
    so a library reached through a symbolic link is still found)."""
    known = plan.files.get(_identity(path)) if path.exists() else None
    return known[1] if known is not None else _arcname(plan, path)


def _add_file(plan: _Plan, source: Path) -> str | None:
    """Plan to pack ``source`` once; its arcname, or None when it cannot be packed."""
    identity = _identity(source)
    known = plan.files.get(identity)
    if known is not None:
        return known[1]
    arcname = _arcname(plan, source)
    try:
        check_member_name(arcname)
    except ProjectError as exc:
        plan.problems.append(f"{source}: cannot be packed under the name {arcname!r} ({exc.message})")
        return None
    other = plan.arcnames.get(arcname.casefold())
    if other is not None and other != identity:
        plan.problems.append(f"{source}: another file already packed as {arcname!r}")
        return None
    plan.arcnames[arcname.casefold()] = identity
    plan.files[identity] = (source, arcname)
    return arcname


def _relative_stored(from_blend_arc: str, target_arc: str, trailing_slash: bool) -> str:
    """A ``//`` path from the folder of the .blend at ``from_blend_arc`` to ``target_arc``."""
    start = PurePosixPath(from_blend_arc).parent
    rel = os.path.relpath(PurePosixPath(target_arc), start if str(start) else ".").replace(os.sep, "/")
    if rel == ".":
        rel = ""
    return "//" + rel + ("/" if trailing_slash and rel else "")


def _same_stored(old: str, new: str) -> bool:
    """Whether two ``//`` paths name the same place (separators and ``.`` aside)."""
    if not (is_blend_relative(old) and is_blend_relative(new)):
        return False

    def norm(p: str) -> str:
        return os.path.normpath("/" + p[2:].replace("\\", "/")).replace("\\", "/")

    return norm(old) == norm(new) and old.endswith(("/", "\\")) == new.endswith("/")


def _rewrites(plan: _Plan, blend_arc: str, deps: tuple[Dependency, ...]) -> tuple[dict[int, bytes], list[Remap]]:
    """The byte patches (offset -> new field contents) that make ``deps`` resolve in the zip."""
    patches: dict[int, bytes] = {}
    remaps: list[Remap] = []
    for dep in deps:
        if dep.field is None or not dep.kind.needed_to_render or not dep.is_set or dep.missing:
            continue
        if dep.field.offset in patches:
            continue  # strip elements share their folder field
        if dep.field.part is PathPart.DIRECTORY:
            target = _target_arcname(plan, Path(dep.resolved).parent)
            old = dep.field.stored
            new = _relative_stored(blend_arc, target + "/x", False)[: -len("x")]
        else:
            old = dep.path
            trailing = old.endswith(("/", "\\"))
            new = _relative_stored(blend_arc, _target_arcname(plan, Path(dep.resolved)), trailing)
        if _same_stored(old, new):
            continue
        encoded = new.encode("utf-8", "surrogateescape")
        if len(encoded) >= dep.field.size:
            plan.problems.append(
                f"{blend_arc}: {dep.kind.value} path {old!r} cannot be rewritten to {new!r}: "
                f"only {dep.field.size - 1} bytes fit; it will not resolve on the farm"
            )
            continue
        patches[dep.field.offset] = encoded.ljust(dep.field.size, b"\0")
        remaps.append(Remap(blend_arc, dep.kind, old, new))
    return patches, remaps


def _plan_dependencies(plan: _Plan, result: BlendDependencies) -> None:
    for dep in result.dependencies:
        if not dep.kind.needed_to_render or not dep.is_set or dep.kind is DependencyKind.LIBRARY:
            continue  # libraries are packed as blend files, once each, below
        files = expand_files(dep)
        if not files:
            plan.missing.append(MissingFile(result.path, dep.kind, dep.path, dep.resolved))
            continue
        for source in files:
            _add_file(plan, Path(source))
    for dep in result.dependencies:
        if dep.kind is DependencyKind.LIBRARY and dep.missing:
            plan.missing.append(MissingFile(result.path, dep.kind, dep.path, dep.resolved))


def _blend_bytes(source: Path, patches: dict[int, bytes]) -> bytes:
    """The .blend's decompressed bytes with ``patches`` applied."""
    with BlendFile.open(source) as bfile:
        data = bytearray(bfile.read_all())
    for offset, value in patches.items():
        data[offset : offset + len(value)] = value
    return bytes(data)


def pack_project(
    blend_path: str | os.PathLike[str],
    zip_path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    max_levels_up: int = MAX_LEVELS_UP,
    progress: ProgressCallback | None = None,
) -> PackReport:
    """Write ``zip_path``: the .blend, its libraries and every file they use (see the module doc).

    ``root`` forces the project root (files outside it are remapped; it must hold the main
    .blend, else :class:`ValueError`). Raises :class:`~blendfile.BlendFileError` when the main
    .blend cannot be read (a :class:`~blendfile.ProjectError` when its name cannot go in a zip),
    :class:`OSError` when the zip cannot be written; anything else (missing files, an unreadable
    library) is in the report. The zip appears only once complete.
    """
    main = Path(os.path.normpath(Path(blend_path).absolute()))
    file_dependencies(main)  # an unreadable main file raises its own error here
    walk = walk_dependencies([main])
    project_root = (
        Path(os.path.normpath(Path(root).absolute())) if root is not None else choose_root(main, walk, max_levels_up)
    )
    if not _within(main, project_root):
        raise ValueError(f"the project root {project_root} does not contain {main}")
    plan = _Plan(project_root, EXTERNAL_DIR)
    blends: list[tuple[BlendDependencies, str]] = []
    for result in walk:
        arcname = _add_file(plan, Path(result.path))
        if arcname is None:
            if result is walk[0]:
                raise ProjectError(plan.problems[-1], zip_path)
            continue
        if result.error is not None:
            plan.problems.append(f"{result.path}: packed as it is, it could not be read ({result.error})")
            continue
        blends.append((result, arcname))
    for result, _arc in blends:
        _plan_dependencies(plan, result)
    if any(arc.split("/", 1)[0] == EXTERNAL_DIR for src, arc in plan.files.values() if _within(src, project_root)):
        plan.problems.append(f"the project has its own {EXTERNAL_DIR!r} folder: outside files may mix with it")

    remaps: list[Remap] = []
    patches: dict[str, dict[int, bytes]] = {}
    for result, arcname in blends:
        blend_patches, blend_remaps = _rewrites(plan, arcname, result.dependencies)
        if blend_patches:
            patches[_identity(Path(result.path))] = blend_patches
            remaps.extend(blend_remaps)

    main_arc = plan.files[_identity(main)][1]
    packed = _write_zip(Path(zip_path), plan, patches, main_arc, progress)
    return PackReport(
        zip_path=os.fspath(zip_path),
        root=os.fspath(project_root),
        main_blend=main_arc,
        packed=tuple(packed),
        remapped=tuple(remaps),
        missing=tuple(plan.missing),
        problems=tuple(plan.problems),
    )


def _write_zip(
    zip_path: Path,
    plan: _Plan,
    patches: dict[str, dict[int, bytes]],
    main_arc: str,
    progress: ProgressCallback | None,
) -> list[PackedFile]:
    # The total is known up front from the files on disk; a rewritten .blend is written
    # decompressed, so it can grow past its share (progress then reports done == total).
    total = sum(source.stat().st_size for source, _arc in plan.files.values())
    done = 0
    packed: list[PackedFile] = []
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name and renamed at the end: a failed pack leaves no half zip.
    fd, partial_name = tempfile.mkstemp(prefix=f".{zip_path.name}.", suffix=".partial", dir=zip_path.parent)
    os.close(fd)
    partial = Path(partial_name)
    try:
        # strict_timestamps off: a file dated before 1980 (a camera's reset clock) is packed too.
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, allowZip64=True, strict_timestamps=False) as zf:
            zf.comment = f"{MAIN_BLEND_COMMENT_PREFIX}{main_arc}".encode()
            for identity, (source, arcname) in plan.files.items():
                blend_patches = patches.get(identity)
                if blend_patches is not None:
                    # One rewritten .blend in memory at a time, decompressed.
                    data = _blend_bytes(source, blend_patches)
                    info = zipfile.ZipInfo.from_file(source, arcname, strict_timestamps=False)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    zf.writestr(info, data)
                    size = len(data)
                    del data
                else:
                    stored = source.suffix.lower() in _STORED_SUFFIXES
                    zf.write(source, arcname, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
                    size = source.stat().st_size
                packed.append(PackedFile(os.fspath(source), arcname, size))
                done += size
                if progress is not None:
                    progress(min(done, total), total)
        partial.replace(zip_path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return packed


__all__ = [
    "EXTERNAL_DIR",
    "MAX_LEVELS_UP",
    "MissingFile",
    "PackReport",
    "PackedFile",
    "ProgressCallback",
    "Remap",
    "choose_root",
    "pack_project",
]
