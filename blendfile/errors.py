"""One exception hierarchy for everything the reader can say is wrong with a file.

Every public entry point of :mod:`blendfile` either returns or raises a :class:`BlendFileError`
subclass, whatever bytes it is given. Each error carries the path it is about, and its message says
what is wrong in words a user can act on.
"""

from __future__ import annotations

import os


class BlendFileError(Exception):
    """Base of every error the reader raises; ``path`` names the file it is about."""

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = os.fspath(path) if path is not None else None

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        return f"{self.path}: {self.message}"


class FileAccessError(BlendFileError):
    """The file could not be opened or read (missing, a folder, no permission)."""


class NotABlendFileError(BlendFileError):
    """The bytes are not a .blend file (nor a compressed one)."""


class TruncatedFileError(BlendFileError):
    """The file ends before the data it announces (an interrupted copy or save)."""


class CorruptCompressedStreamError(BlendFileError):
    """The gzip or zstd stream (or zstd's seek table) is damaged."""


class UnsupportedVersionError(BlendFileError):
    """A blend file of a header format this reader does not know (a newer Blender)."""


class MissingSDNAError(BlendFileError):
    """The file has no DNA1 block, so none of its structs can be decoded."""


class CorruptFileError(BlendFileError):
    """The structure is inconsistent: bad block header, SDNA, pointer or field."""


class NoSceneError(BlendFileError):
    """A valid blend file that holds no scene (a preferences or library-only file)."""


class MissingDependencyError(BlendFileError):
    """A library needed for this file is not installed (e.g. zstandard for zstd files)."""


class ProjectError(BlendFileError):
    """A zip project that cannot be used: unsafe, too large, damaged, or with no clear main .blend.

    ``path`` is the zip file; ``member`` the entry at fault, when there is one; ``candidates`` the
    .blend files the caller may name when the main one is ambiguous or missing.
    """

    def __init__(
        self,
        message: str,
        path: str | os.PathLike[str] | None = None,
        *,
        member: str | None = None,
        candidates: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, path)
        self.member = member
        self.candidates = candidates


__all__ = [
    "BlendFileError",
    "CorruptCompressedStreamError",
    "CorruptFileError",
    "FileAccessError",
    "MissingDependencyError",
    "MissingSDNAError",
    "NoSceneError",
    "NotABlendFileError",
    "ProjectError",
    "TruncatedFileError",
    "UnsupportedVersionError",
]
