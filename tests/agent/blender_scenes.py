"""Run inside Blender (3.4 executable or the 5.0 bpy module) to save the tiny test scenes into a folder.

``blender -b --factory-startup --python blender_scenes.py -- OUT_DIR`` or ``python blender_scenes.py OUT_DIR``.
Every scene is a cube seen by a camera, 32x32 px, Cycles with 2 samples on one thread: milliseconds a frame.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import bpy

# Auto-run script stored in the "autorun" file: it proves auto-exec ran by writing the file the test names.
AUTORUN = """
import os, pathlib
marker = os.environ.get("FRAMEHERD_TEST_MARKER")
if marker:
    pathlib.Path(marker).write_text("auto-exec ran")
"""


def base_scene() -> Any:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    mesh = bpy.data.meshes.new("Cube")
    mesh.from_pydata(
        [(-1, -1, -1), (1, -1, -1), (1, 1, -1), (-1, 1, -1), (-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)],
        [],
        [(0, 1, 2, 3), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)],
    )
    scene.collection.objects.link(bpy.data.objects.new("Cube", mesh))
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.location = (5.0, -5.0, 4.0)
    camera.rotation_euler = (1.1, 0.0, 0.8)
    scene.collection.objects.link(camera)
    scene.camera = camera
    light = bpy.data.objects.new("Light", bpy.data.lights.new("Light", "SUN"))
    scene.collection.objects.link(light)
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 2
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.render.resolution_x = 32
    scene.render.resolution_y = 32
    scene.render.resolution_percentage = 100
    scene.frame_start = 1
    scene.frame_end = 10
    return scene


def save(folder: Path, name: str) -> None:
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / f"{name}.blend"))


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    base_scene()
    save(folder, "basic")

    scene = base_scene()
    scene.cycles.use_denoising = True
    save(folder, "denoise")

    scene = base_scene()
    image = scene.render.image_settings
    if hasattr(image, "media_type"):  # 5.0: the video media type first, or FFMPEG is not a valid format
        image.media_type = "VIDEO"
    image.file_format = "FFMPEG"
    save(folder, "movie")

    scene = base_scene()
    scene.render.image_settings.file_format = "JPEG"
    save(folder, "jpeg")

    base_scene()
    text = bpy.data.texts.new("autorun.py")
    text.write(AUTORUN)
    text.use_module = True  # "Register": runs when the file loads, if auto-exec allows it
    save(folder, "autorun")

    scene = base_scene()
    scene.cycles.samples = 1000000  # minutes: something to cancel
    scene.render.resolution_x = 64
    scene.render.resolution_y = 64
    save(folder, "slow")


if __name__ == "__main__":
    args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    main(Path(args[0]))
