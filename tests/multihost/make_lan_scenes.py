"""Run inside Debian's Blender 3.4 to save the scenes of the multi-host tests.

``blender -b --factory-startup --python make_lan_scenes.py -- OUT_DIR``. The cube scene of the integration tests
(``tests/integration/make_scenes.py``), with frame times picked for a 2-core CI machine running 3-6 agents.
"""

from __future__ import annotations

import sys
from pathlib import Path

import bpy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))
from make_scenes import scene, video


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # ~0.5 s a frame on one thread: long enough to be caught mid-frame, short enough for CI.
    sc = scene(samples=160, size=64, frames=24)
    sc.render.image_settings.file_format = "PNG"
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "medium.blend"))
    sc = scene(samples=160, size=64, frames=24)
    video(sc, "MKV", "H264")
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "medium_mkv.blend"))
    # Tiny frames (a few ms to render): what the many-agent scenario is made of.
    sc = scene(samples=2, size=16, frames=100)
    sc.render.image_settings.file_format = "PNG"
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "tiny.blend"))
    sc = scene(samples=2, size=16, frames=100)
    video(sc, "MKV", "H264")
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "tiny_mkv.blend"))
    sc = scene(samples=4, size=32, frames=4)
    sc.cycles.use_denoising = True  # Debian's 3.4 has no OpenImageDenoise: every frame fails there
    sc.render.image_settings.file_format = "PNG"
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "denoise.blend"))


if __name__ == "__main__":
    main(Path(sys.argv[sys.argv.index("--") + 1]))
