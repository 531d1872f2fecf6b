"""Run inside Blender (3.4 executable or the bpy module) to save the scenes the farm tests render.

``blender -b --factory-startup --python make_scenes.py -- OUT_DIR`` or ``python make_scenes.py OUT_DIR``.
A cube seen by a camera, Cycles on the CPU: tiny frames that still take a measurable time.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import bpy


def scene(samples: int, size: int, frames: int) -> Any:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    sc = bpy.context.scene
    mesh = bpy.data.meshes.new("Cube")
    mesh.from_pydata(
        [(-1, -1, -1), (1, -1, -1), (1, 1, -1), (-1, 1, -1), (-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)],
        [],
        [(0, 1, 2, 3), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)],
    )
    cube = bpy.data.objects.new("Cube", mesh)
    sc.collection.objects.link(cube)
    # The cube turns, so every frame differs (a frame rendered twice or out of order would show).
    cube.rotation_euler = (0.0, 0.0, 0.0)
    cube.keyframe_insert("rotation_euler", frame=1)
    cube.rotation_euler = (0.0, 0.0, 3.0)
    cube.keyframe_insert("rotation_euler", frame=max(frames, 2))
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.location = (5.0, -5.0, 4.0)
    camera.rotation_euler = (1.1, 0.0, 0.8)
    sc.collection.objects.link(camera)
    sc.camera = camera
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sc.collection.objects.link(sun)
    sc.render.engine = "CYCLES"
    sc.cycles.samples = samples
    sc.cycles.use_adaptive_sampling = False
    sc.cycles.use_denoising = False
    sc.render.resolution_x = size
    sc.render.resolution_y = size
    sc.render.resolution_percentage = 100
    sc.frame_start = 1
    sc.frame_end = frames
    sc.render.fps = 24
    return sc


def video(sc: Any, container: str, codec: str) -> None:
    settings = sc.render.image_settings
    if hasattr(settings, "media_type"):  # 5.0+: video is a media type
        settings.media_type = "VIDEO"
    else:
        settings.file_format = "FFMPEG"
    sc.render.ffmpeg.format = container
    sc.render.ffmpeg.codec = codec


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    sc = scene(samples=4, size=32, frames=12)
    video(sc, "MKV", "H264")
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "video_mkv.blend"))
    sc = scene(samples=4, size=32, frames=10)
    video(sc, "MPEG4", "H264")
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "video_mp4.blend"), compress=True)
    sc = scene(samples=4, size=32, frames=8)
    sc.render.image_settings.file_format = "PNG"
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "png.blend"))
    # Slow frames (a few seconds each on two cores) for the tests that kill things mid-frame.
    sc = scene(samples=2500, size=64, frames=16)
    sc.render.image_settings.file_format = "PNG"
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "slow.blend"))
    sc = scene(samples=4, size=32, frames=4)
    sc.cycles.use_denoising = True  # Debian's 3.4 has no OpenImageDenoise: every frame fails there
    sc.render.image_settings.file_format = "PNG"
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "denoise.blend"))


if __name__ == "__main__":
    args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    main(Path(args[0]))
