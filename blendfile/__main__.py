"""``python -m blendfile info|deps FILE... [--json]``: what a render farm needs to know about files.

``info`` summarises scenes and render settings. ``deps`` lists the external files each file uses
and, recursively, those of the libraries it links (see :mod:`blendfile.deps`).

Exit status: 0 when every file (and, for ``deps``, every library reached) could be read; 1 when
one could not (the error is printed on stderr and in the output, and the other files are still
listed). Missing dependencies do not change the exit status: they are part of the report
(``"exists": false``, marked ``MISSING`` in the text output).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from . import BlendFile, BlendFileError, Scene
from .deps import BlendDependencies, walk_dependencies


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


def _print_dependencies(result: BlendDependencies) -> None:
    origin = " (library)" if result.is_library else ""
    if result.error is not None:
        print(f"{result.path}{origin}\n  error: {result.error}")
        return
    missing = len(result.missing)
    count = len(result.dependencies)
    summary = f"{count} dependenc{'y' if count == 1 else 'ies'}" + (f", {missing} missing" if missing else "")
    print(f"{result.path}{origin}: {summary}")
    for dep in result.dependencies:
        mark = "MISSING" if dep.missing else ("-" if not dep.is_set else "ok")
        line = f"  {mark:<7} {dep.kind.value:<22} {dep.path or '(empty)'}"
        if dep.missing:
            line += f"  ->  {dep.resolved}"
        print(line)


def deps_main(files: Sequence[str], as_json: bool) -> int:
    results = walk_dependencies(files)
    status = 0
    for result in results:
        if result.error is not None:
            status = 1
            print(f"error: {result.error}", file=sys.stderr)
    if as_json:
        json.dump([r.to_json() for r in results], sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        for result in results:
            _print_dependencies(result)
        missing = sum(len(r.missing) for r in results)
        if missing:
            print(f"{missing} missing file{'s' if missing != 1 else ''} (marked MISSING)")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m blendfile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="summarise blend files: version, scenes, frame ranges, output")
    info.add_argument("files", nargs="+", metavar="FILE")
    info.add_argument("--json", action="store_true", help="print a JSON array, one object per file")
    deps = sub.add_parser("deps", help="list the external files blend files use, following linked libraries")
    deps.add_argument("files", nargs="+", metavar="FILE")
    deps.add_argument(
        "--json", action="store_true", help="print a JSON array: one object per file, then one per library reached"
    )
    args = parser.parse_args(argv)
    if args.command == "deps":
        return deps_main(args.files, args.json)

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
