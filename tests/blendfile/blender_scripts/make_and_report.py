"""Run inside Blender: save blend files with random render settings, then reopen each and report.

Standard library and ``bpy`` only; works in Blender 3.4 and 5.0 alike::

    blender -b --factory-startup --python-exit-code 1 --python make_and_report.py -- SEED COUNT OUTDIR REPORT
    python make_and_report.py SEED COUNT OUTDIR REPORT     # a Python that can import bpy

Phase one builds ``COUNT`` files, more if needed so that every output format and engine this
Blender offers, and every kind of camera, frame rate and output path, comes up at least once.
Each has 2-4 scenes whose window scene is never the first one; they are saved alternately
compressed and not. Phase two opens every saved file with ``bpy.ops.wm.open_mainfile`` and writes
what Blender itself reads from it as JSON to ``REPORT``: the fields of ``python -m blendfile info
--json`` for every scene, the context scene, and the version. Blender has no Python property for a
file's compression, so the report gives the ``compress`` argument the file was saved with.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import bpy

ENGINE_CANDIDATES = ("CYCLES", "BLENDER_EEVEE", "BLENDER_EEVEE_NEXT", "BLENDER_WORKBENCH")
MULTILAYER = "OPEN_EXR_MULTILAYER"
VIDEO = "FFMPEG"
SCENE_NAMES = (
    "Shot",
    "Layout",
    "Comp",
    "Szene_Übersicht",
    "シーン",
    "with space",
    "Lighting.001",
    "z_last",
    "A_first",
    "Long_" * 20,  # 100 bytes: Blender 3.4 cuts ID names at 63, 5.0 keeps up to 255
)
OUTPUT_PATHS = (
    "",
    "//render/shot_####",
    "/tmp/frameherd/out_",
    "//ü/Überblick_##.",
    "C:\\renders\\frame_",
    "\\\\server\\share\\shot_",
    "//" + "deep/" * 50 + "frame_",
)
FPS_CHOICES = (24, 25, 30, 50, 60, 120)
MAX_FILES = 16


def script_args() -> list[str]:
    argv = sys.argv
    return argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]


def has_media_type() -> bool:
    """Blender 5.0 chooses multilayer EXR and video through ``image_settings.media_type``."""
    props = bpy.context.scene.render.image_settings.bl_rna.properties
    return "media_type" in props


def offered_engines() -> list[str]:
    render = bpy.context.scene.render
    engines = []
    for engine in ENGINE_CANDIDATES:
        try:
            render.engine = engine
        except TypeError:
            continue
        engines.append(engine)
    return engines


def offered_formats() -> list[str]:
    """Every ``file_format`` identifier this Blender has, single-layer images, multilayer and video."""
    props = bpy.context.scene.render.image_settings.bl_rna.properties
    return [item.identifier for item in props["file_format"].enum_items]


def enum_ids(struct: Any, prop: str) -> list[str]:
    return [item.identifier for item in struct.bl_rna.properties[prop].enum_items]


def set_format(scene: Any, file_format: str, rng: random.Random) -> None:
    im = scene.render.image_settings
    if has_media_type():
        im.media_type = {MULTILAYER: "MULTI_LAYER_IMAGE", VIDEO: "VIDEO"}.get(file_format, "IMAGE")
    im.file_format = file_format
    if file_format == VIDEO:
        ff = scene.render.ffmpeg
        ff.format = rng.choice(enum_ids(ff, "format"))
        ff.codec = rng.choice(enum_ids(ff, "codec"))


def set_frames(scene: Any, rng: random.Random) -> None:
    start = rng.randint(0, 5000)
    end = start + rng.randint(0, 3000)
    # Setting start past the current end drags the end along, so go through a wide range first.
    scene.frame_end = 1048574
    scene.frame_start = start
    scene.frame_end = end
    scene.frame_step = rng.randint(1, 12)
    scene.frame_current = rng.randint(max(start - 20, 0), end + 20)


def add_camera(scene: Any, name: str) -> Any:
    data = bpy.data.cameras.new(name)
    obj = bpy.data.objects.new(name, data)
    scene.collection.objects.link(obj)
    return obj


class Picker:
    """Draws from a shuffled deck of choices, reshuffled when empty, so every choice comes up."""

    def __init__(self, choices: list[str], rng: random.Random) -> None:
        self.choices = choices
        self.rng = rng
        self.deck: list[str] = []
        self.used: set[str] = set()

    def take(self) -> str:
        if not self.deck:
            self.deck = list(self.choices)
            self.rng.shuffle(self.deck)
        choice = self.deck.pop()
        self.used.add(choice)
        return choice

    @property
    def all_used(self) -> bool:
        return self.used == set(self.choices)


class Decks:
    """The settings every batch must cover, each drawn from its own deck."""

    def __init__(self, rng: random.Random) -> None:
        self.formats = Picker(offered_formats(), rng)
        self.engines = Picker(offered_engines(), rng)
        self.output_paths = Picker(list(OUTPUT_PATHS), rng)
        self.cameras = Picker(["none", "own", "another scene's"], rng)
        self.fps_bases = Picker(["1", "1.001", "random"], rng)
        self.transparent = Picker(["yes", "no"], rng)

    @property
    def all_used(self) -> bool:
        return all(picker.all_used for picker in vars(self).values())


def configure(scene: Any, rng: random.Random, decks: Decks, cameras: list[Any]) -> None:
    render = scene.render
    render.engine = decks.engines.take()
    set_frames(scene, rng)
    render.fps = rng.choice((*FPS_CHOICES, rng.randint(1, 240)))
    render.fps_base = {"1": 1.0, "1.001": 1.001}.get(decks.fps_bases.take(), round(rng.uniform(0.5, 2.0), 4))
    render.resolution_x = rng.randint(16, 8192)
    render.resolution_y = rng.randint(16, 8192)
    render.resolution_percentage = rng.choice((100, 50, 25, rng.randint(1, 200)))
    render.filepath = decks.output_paths.take()
    set_format(scene, decks.formats.take(), rng)
    render.film_transparent = decks.transparent.take() == "yes"
    render.use_file_extension = rng.random() < 0.7
    camera = decks.cameras.take()
    if camera == "none":
        scene.camera = None
    elif camera == "another scene's" and cameras:
        scene.camera = rng.choice(cameras)  # not linked into this scene: Blender allows it
    else:
        obj = add_camera(scene, f"Cam {scene.name}")
        cameras.append(obj)
        scene.camera = obj


def set_window_scene(scene: Any) -> None:
    window = bpy.context.window
    if window is None:
        window = bpy.context.window_manager.windows[0]
    window.scene = scene
    if bpy.context.scene != scene:
        raise RuntimeError(f"could not make {scene.name!r} the window scene")


def make_file(path: Path, rng: random.Random, decks: Decks, compress: bool) -> dict[str, str]:
    """Build and save one file; return each scene's output path as set (and so as stored)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    first = bpy.context.scene
    names = rng.sample(SCENE_NAMES, rng.randint(2, 4))
    first.name = names[0]
    scenes = [first] + [bpy.data.scenes.new(name) for name in names[1:]]
    cameras: list[Any] = []
    for scene in scenes:
        configure(scene, rng, decks, cameras)
    # bpy.data.scenes is sorted by name, as Blender writes them: never make the first one current.
    ordered = list(bpy.data.scenes)
    set_window_scene(rng.choice(ordered[1:]))
    bpy.ops.wm.save_as_mainfile(filepath=str(path), compress=compress, check_existing=False)
    return {scene.name: scene.render.filepath for scene in bpy.data.scenes}


def describe_scene(scene: Any) -> dict[str, Any]:
    render = scene.render
    is_video = render.image_settings.file_format == VIDEO
    return {
        "name": scene.name,
        "frame_start": scene.frame_start,
        "frame_end": scene.frame_end,
        "frame_step": scene.frame_step,
        "frame_current": scene.frame_current,
        "fps": render.fps / render.fps_base,
        "resolution_x": render.resolution_x,
        "resolution_y": render.resolution_y,
        "resolution_percentage": render.resolution_percentage,
        "engine": render.engine,
        "output_path": render.filepath,
        "output_type": render.image_settings.file_format,
        "ffmpeg": {"container": render.ffmpeg.format, "codec": render.ffmpeg.codec} if is_video else None,
        "camera": scene.camera.name if scene.camera is not None else None,
        "film_transparent": render.film_transparent,
        # Not in ``info --json``; checked through the Python API.
        "fps_numerator": render.fps,
        "fps_base": render.fps_base,
        "use_file_extension": render.use_file_extension,
    }


def report_file(path: Path, compress: bool, saved_paths: dict[str, str]) -> dict[str, Any]:
    bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=True, use_scripts=False)
    return {
        "path": str(path),
        "compress": compress,
        # Blender turns backslashes into slashes when it loads a file; these are the bytes it wrote.
        "saved_output_paths": saved_paths,
        "file_version": list(bpy.data.version),
        "current_scene": bpy.context.scene.name,
        "scenes": [describe_scene(scene) for scene in bpy.data.scenes],
    }


def main() -> None:
    seed_arg, count_arg, outdir_arg, report_arg = script_args()
    rng = random.Random(int(seed_arg))
    count = int(count_arg)
    outdir = Path(outdir_arg).resolve()  # Blender wants absolute paths
    outdir.mkdir(parents=True, exist_ok=True)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    decks = Decks(rng)
    compress = rng.random() < 0.5
    saved: list[tuple[Path, bool, dict[str, str]]] = []
    while len(saved) < count or not decks.all_used:
        if len(saved) >= MAX_FILES:
            raise RuntimeError(f"{MAX_FILES} files and still not every choice used")
        path = outdir / f"random_{len(saved):02d}{'_zstd' if compress else ''}.blend"
        saved.append((path, compress, make_file(path, rng, decks, compress)))
        compress = not compress

    report = {
        "blender_version": list(bpy.app.version),
        "formats": decks.formats.choices,
        "engines": decks.engines.choices,
        "files": [report_file(*args) for args in saved],
    }
    Path(report_arg).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
