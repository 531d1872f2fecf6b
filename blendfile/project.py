"""Zip projects (``BlenderDataType.MULTI_FILE``): a main .blend and the files it needs, in one zip.

An uploaded zip is untrusted. :func:`open_project` checks its directory before anything is written:

* every name must be a plain relative path: no absolute path, drive letter, ``..``, backslash,
  colon, empty or ``.`` component, NUL or control character, and no two entries with one name;
* no symbolic link or other special file, no encrypted entry, no unknown compression method;
* at most :data:`MAX_MEMBERS` entries and :data:`MAX_TOTAL_BYTES` bytes once extracted (as declared),
  and no two entries sharing their compressed bytes (the trick of "overlapping" zip bombs).

Extraction then checks again what it really writes, not what the headers claim: it stops a member
that outgrows its declared size, a member that inflates more than :data:`MAX_COMPRESSION_RATIO`
times its compressed size (past :data:`RATIO_GRACE_BYTES`), and the total at :data:`MAX_TOTAL_BYTES`.
A failed extraction removes what it wrote. The limits are module constants, overridable per call
with :class:`ZipLimits`.

The main .blend is the one the caller names; else the one the zip's comment names (the farm's
packer writes ``frameherd-main-blend: shots/main.blend``); else the only ``.blend`` at the top of
the zip, or at the top of its one folder when everything sits in a single folder (what zipping a
folder gives). Otherwise :class:`ProjectError` lists the candidates. macOS's ``__MACOSX/``
entries and ``.DS_Store`` files are skipped.

>>> with open_project("shot.zip") as project:
...     with project.open_main_blend() as bfile:       # only the main .blend is extracted
...         scenes = bfile.scenes()
...     main = project.extract("work/task-1")            # everything, checked; returns the main .blend
"""

from __future__ import annotations

import contextlib
import itertools
import lzma
import os
import shutil
import stat
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import BinaryIO

from .errors import ProjectError
from .file import BlendFile

MAX_MEMBERS = 100_000
"""Most entries a project may hold (files and folders)."""
MAX_TOTAL_BYTES = 64 << 30
"""Most bytes a project may extract to (64 GiB: caches and textures of a real shot fit)."""
MAX_COMPRESSION_RATIO = 250
"""Most a member may inflate relative to its compressed size. Deflate cannot exceed ~1032; real
.blend files and textures stay far below 100; this stops bzip2/lzma bombs and nested tricks."""
RATIO_GRACE_BYTES = 16 << 20
"""The ratio is enforced once a member has produced this much, so a small, very regular file (an
empty text, a blank image) is never refused."""
MAX_NAME_LENGTH = 1024
"""Longest entry name in characters (Blender's paths are at most 1024 bytes anyway)."""
MAIN_BLEND_COMMENT_PREFIX = "frameherd-main-blend:"
"""A zip comment starting with this names the main .blend (the farm's packer writes it); it is
only a hint: it must name a .blend in the zip, and a name given by the caller wins."""
_CHUNK = 1 << 20
_JUNK_DIRS = frozenset({"__MACOSX"})
_JUNK_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
_ZIP_ENCRYPTED = 0x1
_LOCAL_HEADER_SIZE = 30
# What reading a damaged or hostile entry raises from zipfile and its decompressors.
_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
    ValueError,
)
_SUPPORTED_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})


@dataclass(frozen=True, slots=True)
class ZipLimits:
    """The limits an extraction enforces (defaults: the module constants)."""

    max_members: int = MAX_MEMBERS
    max_total_bytes: int = MAX_TOTAL_BYTES
    max_compression_ratio: float = MAX_COMPRESSION_RATIO
    ratio_grace_bytes: int = RATIO_GRACE_BYTES
    max_name_length: int = MAX_NAME_LENGTH


DEFAULT_LIMITS = ZipLimits()


@dataclass(frozen=True, slots=True)
class ProjectMember:
    """One checked entry of the zip."""

    name: str
    """``/``-separated relative path, without a trailing ``/`` for folders."""
    size: int
    """Uncompressed size as declared (extraction does not trust it)."""
    compressed_size: int
    is_dir: bool


def _is_junk(name: str) -> bool:
    parts = name.split("/")
    return parts[0] in _JUNK_DIRS or parts[-1] in _JUNK_FILES


def check_member_name(name: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """The entry name as a safe relative path (``/``-separated, no trailing ``/``), or why not.

    Raises :class:`ProjectError` (without a zip path: the caller adds it).
    """
    if not name or len(name) > max_length:
        raise ProjectError(f"entry name of {len(name)} characters", member=name[:200])
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise ProjectError("entry name with a control character", member=name)
    if "\\" in name:
        # Zip names use '/'; a '\\' is a Windows path in disguise ("..\\..\\x" extracts above on Windows).
        raise ProjectError("entry name with a backslash", member=name)
    if ":" in name:
        # Drive letters ("C:x") and NTFS streams ("a:b") on Windows.
        raise ProjectError("entry name with a colon (a drive letter or stream)", member=name)
    if name.startswith("/"):
        raise ProjectError("absolute entry name", member=name)
    body = name[:-1] if name.endswith("/") else name
    parts = body.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ProjectError(f"entry name with a {part or 'empty'!r} component", member=name)
        if part != part.rstrip(". "):
            # Windows drops trailing dots and spaces: "a." and "a" would be one file there.
            raise ProjectError("entry name component ending in a dot or space", member=name)
    return body


def _member_kind_ok(info: zipfile.ZipInfo, name: str) -> None:
    mode = info.external_attr >> 16
    if info.create_system == 3 and mode:  # Unix attributes are only meaningful from Unix zippers
        kind = stat.S_IFMT(mode)
        if stat.S_ISLNK(mode):
            raise ProjectError("symbolic link in the project", member=name)
        if kind and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise ProjectError("special file (device, pipe or socket) in the project", member=name)
    if info.flag_bits & _ZIP_ENCRYPTED:
        raise ProjectError("encrypted entry: upload the project without a password", member=name)
    if info.compress_type not in _SUPPORTED_METHODS:
        raise ProjectError(f"entry compressed with an unsupported method ({info.compress_type})", member=name)


def _check_no_overlap(infos: list[zipfile.ZipInfo], zip_path: str) -> None:
    """Refuse entries whose compressed data overlap (one "kernel" counted many times)."""
    ordered = sorted(infos, key=lambda i: i.header_offset)
    for current, following in itertools.pairwise(ordered):
        if current.header_offset + _LOCAL_HEADER_SIZE + current.compress_size > following.header_offset:
            raise ProjectError("entries share their compressed data (a zip bomb?)", zip_path, member=following.filename)


class Project:
    """An opened, checked zip project. Use :func:`open_project` (a context manager)."""

    def __init__(
        self,
        path: str,
        archive: zipfile.ZipFile,
        members: dict[str, tuple[ProjectMember, zipfile.ZipInfo]],
        limits: ZipLimits,
    ) -> None:
        self.path = path
        self._zip = archive
        self._members = members
        self.limits = limits
        self.root = _single_top_folder(members)
        """The one folder everything sits in (``"shot"``), or ``""``."""
        self.main_blend = ""
        """Member name of the main .blend (``/``-separated), what agents get as ``main_blend``."""

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- contents -------------------------------------------------------------------------------
    @property
    def members(self) -> list[ProjectMember]:
        """The checked entries, junk skipped, in zip order."""
        return [m for m, _info in self._members.values()]

    @property
    def declared_size(self) -> int:
        return sum(m.size for m in self.members)

    def blend_files(self) -> list[str]:
        """Every .blend in the zip (not backups like ``.blend1``)."""
        return [m.name for m in self.members if not m.is_dir and m.name.lower().endswith(".blend")]

    def top_level_blend_files(self) -> list[str]:
        """The .blend files directly in the top folder (the zip's top, or its single folder)."""
        prefix = f"{self.root}/" if self.root else ""
        return [n for n in self.blend_files() if n.startswith(prefix) and "/" not in n[len(prefix) :]]

    def choose_main(self, name: str | None = None) -> str:
        """Set and return :attr:`main_blend`: ``name`` when given, else the one the zip's comment
        names, else the only top-level .blend."""
        every = tuple(self.blend_files())
        if name is not None:
            wanted = name.replace("\\", "/").strip("/")
            for candidate in (wanted, f"{self.root}/{wanted}" if self.root else wanted):
                if candidate in every:
                    self.main_blend = candidate
                    return candidate
            raise ProjectError(
                f"no {name!r} in the project; its .blend files: {_listing(every)}", self.path, candidates=every
            )
        hinted = self._comment_hint()
        if hinted in every:
            self.main_blend = hinted
            return hinted
        top = tuple(self.top_level_blend_files())
        if len(top) == 1:
            self.main_blend = top[0]
            return top[0]
        where = f"at the top of {self.root!r}" if self.root else "at the top of the zip"
        if not top:
            raise ProjectError(
                f"no .blend file {where}; name the main one. The project's .blend files: {_listing(every)}",
                self.path,
                candidates=every,
            )
        raise ProjectError(
            f"{len(top)} .blend files {where}, name the main one: {_listing(top)}", self.path, candidates=top
        )

    def _comment_hint(self) -> str:
        """The main .blend named in the zip's comment (written by the farm's packer), or ``""``."""
        comment = self._zip.comment.decode("utf-8", "replace").strip()
        if not comment.startswith(MAIN_BLEND_COMMENT_PREFIX):
            return ""
        return comment[len(MAIN_BLEND_COMMENT_PREFIX) :].strip()

    # -- extraction -----------------------------------------------------------------------------
    def _copy_member(self, name: str, out: BinaryIO, budget: list[int]) -> None:
        """Decompress one member into ``out``, measuring as it goes. ``budget[0]``: bytes left.

        Raises :class:`ProjectError` for a bad entry; an :class:`OSError` from writing ``out``
        (a full disk) passes through.
        """
        member, info = self._members[name]
        limits = self.limits
        written = 0
        try:
            src = self._zip.open(info)
        except _READ_ERRORS as exc:
            raise ProjectError(f"damaged entry: {exc}", self.path, member=name) from exc
        with src:
            while True:
                try:
                    chunk = src.read(_CHUNK)
                except _READ_ERRORS as exc:
                    raise ProjectError(f"damaged entry: {exc}", self.path, member=name) from exc
                if not chunk:
                    break
                written += len(chunk)
                if written > member.size:
                    raise ProjectError("entry is larger than its header says", self.path, member=name)
                if written > budget[0]:
                    raise ProjectError(
                        f"the project extracts to more than {limits.max_total_bytes} bytes", self.path, member=name
                    )
                if written > limits.ratio_grace_bytes and written > limits.max_compression_ratio * max(
                    info.compress_size, 1
                ):
                    raise ProjectError(
                        f"entry inflates more than {limits.max_compression_ratio:g} times (a zip bomb?)",
                        self.path,
                        member=name,
                    )
                out.write(chunk)
        if written != member.size:
            raise ProjectError("entry is shorter than its header says", self.path, member=name)
        budget[0] -= written

    def extract(self, dest: str | os.PathLike[str], *, blends_only: bool = False) -> Path:
        """Extract every checked entry under ``dest`` (created; must be empty if it exists).

        Returns the main .blend's path on disk (:meth:`choose_main` first when none is chosen).
        On any error nothing extracted is left behind. With ``blends_only`` only the .blend files are
        decompressed and every other file is created empty: the project's tree, enough to follow its
        libraries and see which of the files they refer to are there, without inflating textures and caches.
        """
        if not self.main_blend:
            self.choose_main()
        target = Path(dest)
        created = not target.exists()
        if not created and any(target.iterdir()):
            raise ProjectError(f"extraction folder {os.fspath(target)!r} is not empty", self.path)
        target.mkdir(parents=True, exist_ok=True)
        real_root = os.path.realpath(target)
        budget = [self.limits.max_total_bytes]
        try:
            for name, (member, _info) in self._members.items():
                out_path = target.joinpath(*PurePosixPath(name).parts)
                if not os.path.realpath(out_path).startswith(real_root + os.sep):
                    raise ProjectError("entry would extract outside the folder", self.path, member=name)
                if member.is_dir:
                    out_path.mkdir(parents=True, exist_ok=True)
                    continue
                out_path.parent.mkdir(parents=True, exist_ok=True)
                # "xb": never follow or replace something already there (a link planted by an earlier entry).
                with open(out_path, "xb") as out:
                    if not blends_only or name.lower().endswith(".blend"):
                        self._copy_member(name, out, budget)
        except BaseException:
            if created:
                shutil.rmtree(target, ignore_errors=True)
            else:
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
            raise
        return target.joinpath(*PurePosixPath(self.main_blend).parts)

    @contextlib.contextmanager
    def open_main_blend(self) -> Iterator[BlendFile]:
        """The main .blend, opened for reading, without extracting anything else.

        It is decompressed into a temporary folder (with the same checks as :meth:`extract`),
        removed when the block ends.
        """
        if not self.main_blend:
            self.choose_main()
        with tempfile.TemporaryDirectory(prefix="frameherd-project-") as tmp:
            local = Path(tmp) / PurePosixPath(self.main_blend).name
            with open(local, "xb") as out:
                self._copy_member(self.main_blend, out, [self.limits.max_total_bytes])
            with BlendFile.open(local) as bfile:
                yield bfile


def _listing(names: tuple[str, ...] | list[str]) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:20])
    return shown + (f" and {len(names) - 20} more" if len(names) > 20 else "")


def _single_top_folder(members: dict[str, tuple[ProjectMember, zipfile.ZipInfo]]) -> str:
    """The folder every entry sits in, if there is exactly one and no file beside it."""
    tops = {name.split("/", 1)[0] for name in members}
    if len(tops) != 1:
        return ""
    top = next(iter(tops))
    member = members.get(top)
    if member is not None and not member[0].is_dir:
        return ""  # a single file at the top, not a folder
    return top


def open_project(
    path: str | os.PathLike[str], main: str | None = None, *, limits: ZipLimits = DEFAULT_LIMITS
) -> Project:
    """Open and check a zip project, choosing its main .blend (``main`` names it explicitly).

    Raises :class:`ProjectError` for anything unsafe or unclear; nothing is written.
    """
    spath = os.fspath(path)
    try:
        archive = zipfile.ZipFile(spath)
    except FileNotFoundError as exc:
        raise ProjectError("the file does not exist", spath) from exc
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ProjectError(f"not a readable zip archive ({exc})", spath) from exc
    try:
        project = Project(spath, archive, _checked_members(archive, spath, limits), limits)
        project.choose_main(main)
    except BaseException:
        archive.close()
        raise
    return project


def _checked_members(
    archive: zipfile.ZipFile, zip_path: str, limits: ZipLimits
) -> dict[str, tuple[ProjectMember, zipfile.ZipInfo]]:
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise ProjectError(f"{len(infos)} entries, more than the {limits.max_members} allowed", zip_path)
    _check_no_overlap(infos, zip_path)
    members: dict[str, tuple[ProjectMember, zipfile.ZipInfo]] = {}
    folded: dict[str, str] = {}
    declared = 0
    for info in infos:
        try:
            name = check_member_name(info.filename, limits.max_name_length)
        except ProjectError as exc:
            exc.path = zip_path
            raise
        if _is_junk(name):
            continue
        _member_kind_ok_with_path(info, name, zip_path)
        is_dir = info.is_dir()
        key = name.casefold()
        if name in members or key in folded:
            raise ProjectError("two entries with the same name (letter case aside)", zip_path, member=name)
        folded[key] = name
        declared += info.file_size
        if declared > limits.max_total_bytes:
            raise ProjectError(f"the project extracts to more than {limits.max_total_bytes} bytes", zip_path)
        members[name] = (ProjectMember(name, info.file_size, info.compress_size, is_dir), info)
    for name in members:
        # A file used as a folder by another entry ("a" and "a/b"): extraction would fail half-way.
        parent = name
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            owner = members.get(parent)
            if owner is not None and not owner[0].is_dir:
                raise ProjectError(f"entry {parent!r} is a file and a folder", zip_path, member=name)
    return members


def _member_kind_ok_with_path(info: zipfile.ZipInfo, name: str, zip_path: str) -> None:
    try:
        _member_kind_ok(info, name)
    except ProjectError as exc:
        exc.path = zip_path
        raise


__all__ = [
    "DEFAULT_LIMITS",
    "MAIN_BLEND_COMMENT_PREFIX",
    "MAX_COMPRESSION_RATIO",
    "MAX_MEMBERS",
    "MAX_NAME_LENGTH",
    "MAX_TOTAL_BYTES",
    "RATIO_GRACE_BYTES",
    "Project",
    "ProjectMember",
    "ZipLimits",
    "check_member_name",
    "open_project",
]
