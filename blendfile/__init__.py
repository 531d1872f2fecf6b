"""Read any ``.blend`` file without Blender: header, scenes, render settings.

>>> from blendfile import BlendFile
>>> scene = BlendFile.get_current_scene("shot.blend")
>>> scene.frame_start, scene.frame_end, scene.output_type

Only block headers are read when a file is opened; everything else is decoded on demand through
the file's own SDNA, so any Blender version from 2.4x to 5.x is read the same way.
"""

from __future__ import annotations

import os

from .compression import Compression, Container, sniff
from .deps import BlendDependencies, Dependency, DependencyKind, file_dependencies, read_dependencies, walk_dependencies
from .errors import (
    BlendFileError,
    CorruptCompressedStreamError,
    CorruptFileError,
    FileAccessError,
    MissingDependencyError,
    MissingSDNAError,
    NoSceneError,
    NotABlendFileError,
    ProjectError,
    TruncatedFileError,
    UnsupportedVersionError,
)
from .file import BlendFile, StructView
from .header import BlockHeader, FileHeader
from .project import Project, open_project
from .scene import BlenderDataType, FFmpegSettings, RenderOutputType, Scene
from .scripts import TextBlock, autorun_scripts, python_drivers, text_blocks


def detect_data_type(path: str | os.PathLike[str]) -> BlenderDataType:
    """Whether a file is a blend file (plain or compressed) or a zip project, from its bytes.

    Raises :class:`NotABlendFileError` for anything else. A compressed file is called a blend
    file from its compression magic alone; opening it checks the rest.
    """
    try:
        with open(path, "rb") as f:
            first = f.read(8)
    except OSError as exc:
        raise FileAccessError(f"cannot read the file: {exc.strerror or exc}", path) from exc
    kind = sniff(first)
    if kind is Container.ZIP:
        return BlenderDataType.MULTI_FILE
    if kind is Container.UNKNOWN:
        if not first:
            raise NotABlendFileError("the file is empty", path)
        raise NotABlendFileError("neither a blend file nor a zip project", path)
    return BlenderDataType.SINGLE_FILE


__all__ = [
    "BlendDependencies",
    "BlendFile",
    "BlendFileError",
    "BlenderDataType",
    "BlockHeader",
    "Compression",
    "CorruptCompressedStreamError",
    "CorruptFileError",
    "Dependency",
    "DependencyKind",
    "FFmpegSettings",
    "FileAccessError",
    "FileHeader",
    "MissingDependencyError",
    "MissingSDNAError",
    "NoSceneError",
    "NotABlendFileError",
    "Project",
    "ProjectError",
    "RenderOutputType",
    "Scene",
    "StructView",
    "TextBlock",
    "TruncatedFileError",
    "UnsupportedVersionError",
    "autorun_scripts",
    "detect_data_type",
    "file_dependencies",
    "open_project",
    "python_drivers",
    "read_dependencies",
    "text_blocks",
    "walk_dependencies",
]
