"""What the control station shows about a dropped file before anything is sent (Qt-free)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from blendfile import BlenderDataType, BlendFile, BlendFileError, Scene, autorun_scripts, detect_data_type
from blendfile.deps import BlendDependencies, Dependency, walk_dependencies
from blendfile.project import open_project


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
    dependencies: tuple[BlendDependencies, ...] = ()
    """For a .blend: its external files, then those of each library it links (recursively)."""
    main_blend: str | None = None
    """For a zip project: the .blend inside it that is rendered."""
    project_blends: tuple[str, ...] = ()
    """For a zip project: every .blend in it (the user may pick another main one)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def external_files(self) -> list[Dependency]:
        """Every file the .blend needs to render from outside itself (and its libraries'), each once."""
        seen: dict[str, Dependency] = {}
        for blend in self.dependencies:
            for dep in blend.dependencies:
                if dep.is_set and dep.kind.needed_to_render:  # not weak library references, brush icons
                    seen.setdefault(dep.resolved, dep)
        return list(seen.values())

    @property
    def missing_files(self) -> list[Dependency]:
        return [d for d in self.external_files if not d.exists]

    @property
    def needs_project(self) -> bool:
        """True when agents need files beside the .blend: submit it packed as a project (a zip already is one)."""
        return self.data_type is not BlenderDataType.MULTI_FILE and any(d.exists for d in self.external_files)

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


def inspect_file(path: str | os.PathLike[str], main_blend: str | None = None) -> FileSummary:
    """Read a file the user dropped. Never raises for bad input: the summary carries the error."""
    spath = os.fspath(path)
    try:
        size = Path(spath).stat().st_size
        data_type = detect_data_type(spath)
    except (BlendFileError, OSError) as exc:
        return FileSummary(spath, None, error=str(exc))
    if data_type is BlenderDataType.MULTI_FILE:
        return _inspect_project(spath, size, main_blend)
    try:
        with BlendFile.open(spath) as bfile:
            summary = _summary(spath, data_type, size, bfile)
    except BlendFileError as exc:
        return FileSummary(spath, data_type, size_bytes=size, error=str(exc))
    try:
        deps = tuple(walk_dependencies([spath]))
    except (BlendFileError, OSError) as exc:  # the scenes are still worth showing
        deps = (BlendDependencies(spath, error=str(exc)),)
    return replace(summary, dependencies=deps)


def _summary(path: str, data_type: BlenderDataType, size: int, bfile: BlendFile) -> FileSummary:
    scenes = tuple(bfile.scenes())
    current = bfile.current_scene()
    return FileSummary(
        path=path,
        data_type=data_type,
        blender_version=bfile.version,
        compression=bfile.compression.value,
        scenes=scenes,
        current_scene=current.name,
        size_bytes=size,
        warnings_by_scene={s.name: scene_problems(s) for s in scenes},
        autorun_scripts=tuple(autorun_scripts(bfile)),
    )


def _inspect_project(path: str, size: int, main_blend: str | None) -> FileSummary:
    """A zip project: its main .blend's scenes, and the files it and its libraries need, found in the zip or not.

    The zip's tree goes to a temporary folder with its .blend files decompressed and every other file empty
    (``Project.extract(blends_only=True)``), so the paths resolve exactly as on an agent; the summary names them
    by their place in the zip.
    """
    blends: tuple[str, ...] = ()
    try:
        with open_project(path, main_blend) as project:
            blends = tuple(project.blend_files())
            with tempfile.TemporaryDirectory(prefix="frameherd-inspect-") as tmp:
                main = project.extract(Path(tmp) / "project", blends_only=True)
                with BlendFile.open(main) as bfile:
                    summary = _summary(path, BlenderDataType.MULTI_FILE, size, bfile)
                deps = _zip_names(tuple(walk_dependencies([main])), Path(tmp) / "project")
            return replace(summary, main_blend=project.main_blend, project_blends=blends, dependencies=deps)
    except BlendFileError as exc:
        candidates = tuple(getattr(exc, "candidates", ()) or blends)
        return FileSummary(
            path, BlenderDataType.MULTI_FILE, size_bytes=size, error=str(exc.message), project_blends=candidates
        )


def _zip_names(deps: tuple[BlendDependencies, ...], root: Path) -> tuple[BlendDependencies, ...]:
    """Paths under the extracted tree as the zip names them (``shot/tex/a.png``); others (absolute paths that
    point outside the project, which no agent has) as resolved."""

    def name(path: str) -> str:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            return path

    return tuple(
        replace(
            blend,
            path=name(blend.path),
            dependencies=tuple(replace(d, resolved=name(d.resolved)) if d.resolved else d for d in blend.dependencies),
        )
        for blend in deps
    )
