"""``python -m blendfile info FILE... [--json]``: what a render farm needs to know about files."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from . import BlendFile, BlendFileError, Scene


def scene_to_json(scene: Scene) -> dict[str, Any]:
    return {
        "name": scene.name,
        "frame_start": scene.frame_start,
        "frame_end": scene.frame_end,
        "frame_step": scene.frame_step,
        "frame_current": scene.frame_current,
        "fps": scene.fps,
        "resolution_x": scene.resolution_x,
        "resolution_y": scene.resolution_y,
        "resolution_percentage": scene.resolution_percentage,
        "engine": scene.engine,
        "output_path": scene.output_path,
        "output_type": scene.output_type.value,
        "ffmpeg": None if scene.ffmpeg is None else {"container": scene.ffmpeg.container, "codec": scene.ffmpeg.codec},
        "camera": scene.camera,
        "film_transparent": scene.film_transparent,
    }


def file_info(path: str) -> dict[str, Any]:
    """The ``info --json`` object of one file (raises BlendFileError)."""
    with BlendFile.open(path) as bfile:
        scenes = bfile.scenes()
        current = bfile.current_scene()
        return {
            "path": path,
            "blender_version": bfile.version,
            "pointer_size": bfile.pointer_size,
            "endian": bfile.endian,
            "compression": bfile.compression.value,
            "current_scene": current.name,
            "scenes": [scene_to_json(s) for s in scenes],
        }


def _print_summary(info: dict[str, Any]) -> None:
    print(f"{info['path']}")
    print(
        f"  Blender {info['blender_version']}, {info['pointer_size'] * 8}-bit {info['endian']} endian, "
        f"compression: {info['compression']}"
    )
    for scene in info["scenes"]:
        mark = "*" if scene["name"] == info["current_scene"] else " "
        fmt = scene["output_type"]
        if scene["ffmpeg"]:
            fmt += f" ({scene['ffmpeg']['container']}/{scene['ffmpeg']['codec']})"
        step = f" step {scene['frame_step']}" if scene["frame_step"] != 1 else ""
        print(
            f" {mark} {scene['name']}: frames {scene['frame_start']}-{scene['frame_end']}{step} "
            f"at {scene['fps']:g} fps, {scene['resolution_x']}x{scene['resolution_y']} "
            f"@{scene['resolution_percentage']}%, {scene['engine']}, {fmt} -> {scene['output_path'] or '(default)'}, "
            f"camera: {scene['camera'] or 'none'}{', transparent' if scene['film_transparent'] else ''}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blendfile", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="summarise blend files: version, scenes, frame ranges, output")
    info.add_argument("files", nargs="+", metavar="FILE")
    info.add_argument("--json", action="store_true", help="print a JSON array, one object per file")
    args = parser.parse_args(argv)

    status = 0
    results: list[dict[str, Any]] = []
    for path in args.files:
        try:
            results.append(file_info(path))
        except BlendFileError as exc:
            status = 1
            results.append({"path": path, "error": str(exc)})
    if args.json:
        json.dump(results, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        for result in results:
            if "error" in result:
                print(f"{result['path']}\n  error: {result['error']}")
            else:
                _print_summary(result)
    return status


if __name__ == "__main__":
    sys.exit(main())
