"""What the control station shows about a dropped file before anything is sent (Qt-free)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from blendfile import BlenderDataType, BlendFile, BlendFileError, Scene, autorun_scripts, detect_data_type


@dataclass(frozen=True, slots=True)
class FileSummary:
    """A file as the user will submit it: its scenes, the one Blender renders, and what is wrong."""

    path: str
    data_type: BlenderDataType | None
    blender_version: str | None = None
    compression: str | None = None
    scenes: tuple[Scene, ...] = ()
    current_scene: str | None = None
    error: str | None = None
    """Why the file cannot be read at all (the reader's message), else None."""
    size_bytes: int = 0
    warnings_by_scene: dict[str, tuple[str, ...]] = field(default_factory=dict)
    autorun_scripts: tuple[str, ...] = ()
    """Text blocks registered to run when the file is opened: they run on the farm only for a trusted task."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def scene(self, name: str | None = None) -> Scene | None:
        wanted = name or self.current_scene
        return next((s for s in self.scenes if s.name == wanted), None)


def scene_problems(scene: Scene) -> tuple[str, ...]:
    """What keeps a scene from rendering on the farm, in words for the user."""
    problems: list[str] = []
    if scene.frame_count == 0:
        problems.append(f"empty frame range: {scene.frame_start} to {scene.frame_end}")
    if scene.camera is None:
        problems.append("no camera: Blender cannot render this scene")
    if not scene.output_type.is_renderable:
        problems.append(f"output format {scene.output_type.value} cannot be rendered")
    if scene.resolution_x <= 0 or scene.resolution_y <= 0 or scene.resolution_percentage <= 0:
        problems.append("the output resolution is zero")
    return tuple(problems)


def inspect_file(path: str | os.PathLike[str]) -> FileSummary:
    """Read a file the user dropped. Never raises for bad input: the summary carries the error."""
    spath = os.fspath(path)
    try:
        size = Path(spath).stat().st_size
        data_type = detect_data_type(spath)
    except (BlendFileError, OSError) as exc:
        return FileSummary(spath, None, error=str(exc))
    if data_type is BlenderDataType.MULTI_FILE:
        return FileSummary(spath, data_type, size_bytes=size, error="zip projects are not supported yet")
    try:
        with BlendFile.open(spath) as bfile:
            scenes = tuple(bfile.scenes())
            current = bfile.current_scene()
            scripts = tuple(autorun_scripts(bfile))
            return FileSummary(
                path=spath,
                data_type=data_type,
                blender_version=bfile.version,
                compression=bfile.compression.value,
                scenes=scenes,
                current_scene=current.name,
                size_bytes=size,
                warnings_by_scene={s.name: scene_problems(s) for s in scenes},
                autorun_scripts=scripts,
            )
    except BlendFileError as exc:
        return FileSummary(spath, data_type, size_bytes=size, error=str(exc))
