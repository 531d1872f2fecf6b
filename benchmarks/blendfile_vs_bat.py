"""Our ``blendfile`` reader against blender-asset-tracer (BAT), measured in the same run.

Both readers answer the farm's question about a file: the current scene's name, frame range, step
and current frame, fps, resolution, engine, output path and type, FFmpeg container/codec, camera
and film transparency. Ours is ``BlendFile.get_current_scene(path)``; BAT reads the same fields
of the same scene block (``GLOB.curscene``, else the first ``SC`` block) from a freshly opened
``blender_asset_tracer.blendfile.BlendFile``, closed after each call, so nothing is cached
between repetitions.

1. Every file of ``tests/data/blendfiles/`` that both readers can read, timed in this process,
   the two readers interleaved, medians of ``--repeat`` calls after one warm-up call each (the
   files are in the page cache: this measures parsing, not the disk).
2. Two big files made with ``bpy`` (a grid mesh of ``--big-grid`` subdivisions, saved plain and
   zstd-compressed) and cached under ``benchmarks/.cache/``. Each reader runs in a fresh
   subprocess that reports its peak RSS growth over the interpreter after its imports.

Values read by the two readers are compared (frame range, resolution, fps, output type, camera)
and mismatches printed. With ``--check-bpy`` our values on the big files are also compared with
what ``bpy`` reports after ``bpy.ops.wm.open_mainfile`` of the same file, in a subprocess (bpy
loads the whole mesh: 1.4 s and 3.7 GB peak RSS for the 1.7 GB plain 4000 grid, 5.9 s and 2.1 GB
for its zstd copy, on 2 cores). On a zstd big file our child
also reports how many zstd frames one call decompresses. Goals are printed next to ratios;
timings are never asserted.

    python benchmarks/blendfile_vs_bat.py [--repeat N] [--no-big] [--big-grid N] [--check-bpy] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import pathlib
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any
from unittest import mock

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "blendfiles"
CACHE = ROOT / "benchmarks" / ".cache"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from blender_asset_tracer import blendfile as bat_blendfile  # noqa: E402

from blendfile import BlendFile, BlendFileError  # noqa: E402
from blendfile.compression import sniff  # noqa: E402
from blendfile.source import SeekableZstdSource  # noqa: E402

# Goals (printed, never asserted).
GOAL_CORPUS_RATIO = 3.0
GOAL_BIG_PLAIN_RATIO = 3.0
GOAL_BIG_PLAIN_SECONDS = 0.5
GOAL_BIG_PLAIN_RSS_MB = 50.0
GOAL_BIG_ZSTD_RATIO = 50.0

# ~110 bytes per grid vertex with bpy 5.0: 3000 subdivisions make a ~1.0 GB plain file.
DEFAULT_BIG_GRID = 3000
GENERATE_TIMEOUT_S = 3600
CHILD_TIMEOUT_S = 900
# Opening the 1.7 GB grid file in bpy took 1.4 s (zstd: 5.9 s); generous for a slow, shared machine.
BPY_TIMEOUT_S = 900
# A big-file child stops repeating after this many seconds (BAT decompresses a zstd file in full
# for every call); it always makes at least two calls.
CHILD_BUDGET_S = 30.0

# R_IMF_IMTYPE_* codes as Blender names them (DNA_scene_enums.h), to check the output type
# independently of our reader's own table.
IMTYPE_NAMES = {
    0: "TARGA", 1: "IRIS", 4: "JPEG", 14: "TARGA_RAW", 15: "AVI_RAW", 16: "AVI_JPEG", 17: "PNG",
    20: "BMP", 21: "HDR", 22: "TIFF", 23: "OPEN_EXR", 24: "FFMPEG", 26: "CINEON", 27: "DPX",
    28: "OPEN_EXR_MULTILAYER", 30: "JPEG2000", 35: "WEBP", 37: "AVIF",
}  # fmt: skip
MEDIA_TYPE_MULTILAYER = 1
MEDIA_TYPE_VIDEO = 2

# Run inside ``sys.executable -c``: argv = [-c, subdivisions, plain path, zstd path].
GENERATE_SCRIPT = """
import sys
import bpy

n, plain, zstd = int(sys.argv[1]), sys.argv[2], sys.argv[3]
bpy.ops.wm.read_factory_settings(use_empty=False)
scene = bpy.context.scene
scene.frame_start, scene.frame_end = 1, 120
scene.render.fps = 30
scene.render.resolution_x, scene.render.resolution_y = 1280, 720
scene.render.film_transparent = True
bpy.ops.mesh.primitive_grid_add(x_subdivisions=n, y_subdivisions=n, size=2.0)
bpy.ops.wm.save_as_mainfile(filepath=plain, compress=False)
bpy.ops.wm.save_as_mainfile(filepath=zstd, compress=True, copy=True)
"""

# Run inside ``sys.executable -c``: argv = [-c, path, prefix]. Prints one line starting with the prefix
# (bpy prints its own lines to stdout too). ``open_mainfile`` loads the UI like ``blender -b FILE``,
# so ``context.scene`` is the scene that ``blender -b FILE -a`` renders.
BPY_SCENE_PREFIX = "FRAMEHERD_BPY_SCENE "
BPY_SCENE_SCRIPT = """
import json
import resource
import sys
import time
import bpy

start = time.perf_counter()
bpy.ops.wm.open_mainfile(filepath=sys.argv[1])
seconds = time.perf_counter() - start
scene = bpy.context.scene
r = scene.render
values = {
    "name": scene.name,
    "frame_start": scene.frame_start,
    "frame_end": scene.frame_end,
    "frame_step": scene.frame_step,
    "frame_current": scene.frame_current,
    "fps": r.fps / r.fps_base if r.fps_base else float(r.fps),
    "resolution": [r.resolution_x, r.resolution_y, r.resolution_percentage],
    "engine": r.engine,
    "output_path": r.filepath,
    "output_type": r.image_settings.file_format,
    "camera": None if scene.camera is None else scene.camera.name,
    "film_transparent": bool(r.film_transparent),
}
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report = {"values": values, "open_s": seconds, "peak_rss_kib": peak_kib, "bpy_version": bpy.app.version_string}
print(sys.argv[2] + json.dumps(report), flush=True)
"""


# -- the two readers -------------------------------------------------------------------------
def read_ours(path: pathlib.Path) -> dict[str, Any]:
    """Our reader: one call, every field the farm uses."""
    scene = BlendFile.get_current_scene(path)
    return {
        "name": scene.name,
        "frame_start": scene.frame_start,
        "frame_end": scene.frame_end,
        "frame_step": scene.frame_step,
        "frame_current": scene.frame_current,
        "fps": scene.fps,
        "resolution": [scene.resolution_x, scene.resolution_y, scene.resolution_percentage],
        "engine": scene.engine,
        "output_path": scene.output_path,
        "output_type": scene.output_type.value,
        "ffmpeg": None if scene.ffmpeg is None else [scene.ffmpeg.container, scene.ffmpeg.codec],
        "camera": scene.camera,
        "film_transparent": scene.film_transparent,
    }


def _bat_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def read_bat(path: pathlib.Path) -> dict[str, Any]:
    """BAT reading the same fields of the same scene, from a freshly opened file."""
    bat_blendfile.close_all_cached()
    bfile = bat_blendfile.BlendFile(path)
    try:
        globs = bfile.find_blocks_from_code(b"GLOB")
        address = globs[0].get(b"curscene", default=0) if globs else 0
        scene = bfile.block_from_addr.get(address) if address else None
        # By type, not by code: BAT 1.23 reads two-letter codes of big-endian files as b"".
        if scene is None or scene.dna_type_id != b"Scene":
            scenes = bfile.find_blocks_from_code(b"SC")
            if not scenes:
                raise LookupError("no SC block")
            scene = scenes[0]

        def r(*names: bytes, default: Any = ...) -> Any:
            return scene.get((b"r", *names), default=default)

        imtype = r(b"im_format", b"imtype", default=None)
        media_type = r(b"im_format", b"media_type", default=0)
        if imtype is None:  # before 2.62 the format lived directly in RenderData
            imtype = r(b"imtype")
        ff_type = r(b"ffcodecdata", b"type", default=None)
        ff_codec = r(b"ffcodecdata", b"codec", default=None)
        camera_name: str | None = None
        try:
            camera = scene.get_pointer(b"camera", default=None)
        except bat_blendfile.exceptions.SegmentationFault:
            camera = None
        if camera is not None and camera.id_name is not None:
            camera_name = _bat_text(camera.id_name)[2:]
        fps_base = r(b"frs_sec_base", default=1.0)
        frs_sec = r(b"frs_sec")
        engine = r(b"engine", default=None)
        return {
            "name": _bat_text(scene.get((b"id", b"name")))[2:],
            "frame_start": r(b"sfra"),
            "frame_end": r(b"efra"),
            "frame_step": r(b"frame_step", default=1),
            "frame_current": r(b"cfra"),
            "fps": frs_sec / fps_base if fps_base else float(frs_sec),
            "resolution": [r(b"xsch"), r(b"ysch"), r(b"size")],
            "engine": None if engine is None else _bat_text(engine),
            "output_path": _bat_text(r(b"pic")),
            "imtype": imtype,
            "media_type": media_type,
            "ffmpeg": [ff_type, ff_codec],
            "camera": camera_name,
            "film_transparent": bool(r(b"alphamode", default=0) & 1),
        }
    finally:
        bfile.close()


READERS: dict[str, Callable[[pathlib.Path], dict[str, Any]]] = {"ours": read_ours, "bat": read_bat}


def bat_output_type(values: dict[str, Any]) -> str | None:
    """Blender's name for BAT's raw codes (None for a code outside our small table)."""
    imtype, media = values["imtype"], values["media_type"]
    if media == MEDIA_TYPE_VIDEO:
        return "FFMPEG"
    if media == MEDIA_TYPE_MULTILAYER and imtype in (23, 28):
        return "OPEN_EXR_MULTILAYER"
    return IMTYPE_NAMES.get(imtype)


def compare(ours: dict[str, Any], bat: dict[str, Any]) -> list[str]:
    """What the two readers disagree on (frame range, resolution, fps, output type, camera)."""
    problems: list[str] = []
    for key in ("frame_start", "frame_end", "camera"):
        if ours[key] != bat[key]:
            problems.append(f"{key}: ours {ours[key]!r}, BAT {bat[key]!r}")
    if ours["resolution"] != bat["resolution"]:
        problems.append(f"resolution: ours {ours['resolution']}, BAT {bat['resolution']}")
    if abs(ours["fps"] - bat["fps"]) > 1e-6 * max(1.0, abs(bat["fps"])):
        problems.append(f"fps: ours {ours['fps']}, BAT {bat['fps']}")
    bat_type = bat_output_type(bat)
    if bat_type is not None and bat_type != ours["output_type"]:
        problems.append(f"output type: ours {ours['output_type']}, BAT imtype {bat['imtype']} = {bat_type}")
    return problems


# The fields compared with bpy: everything the farm uses that bpy reports under the same meaning.
BPY_FIELDS = (
    "name",
    "frame_start",
    "frame_end",
    "frame_step",
    "frame_current",
    "resolution",
    "engine",
    "output_path",
    "output_type",
    "camera",
    "film_transparent",
)


def compare_bpy(ours: dict[str, Any], bpy_values: dict[str, Any]) -> list[str]:
    """What our reader and bpy disagree on (every field of ``BPY_FIELDS``, and fps)."""
    problems = [
        f"{key}: ours {ours[key]!r}, bpy {bpy_values[key]!r}" for key in BPY_FIELDS if ours[key] != bpy_values[key]
    ]
    if abs(ours["fps"] - bpy_values["fps"]) > 1e-6 * max(1.0, abs(bpy_values["fps"])):
        problems.append(f"fps: ours {ours['fps']}, bpy {bpy_values['fps']}")
    return problems


def read_bpy(path: pathlib.Path) -> dict[str, Any]:
    """bpy's view of the file's current scene, from a subprocess; ``{"error": ...}`` when it fails."""
    argv = [sys.executable, "-c", BPY_SCENE_SCRIPT, str(path), BPY_SCENE_PREFIX]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=BPY_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"bpy took over {BPY_TIMEOUT_S} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(BPY_SCENE_PREFIX) and proc.returncode == 0:
            result: dict[str, Any] = json.loads(line[len(BPY_SCENE_PREFIX) :])
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"bpy exit {proc.returncode}: {' | '.join(tail)}"}


def zstd_frames(path: pathlib.Path) -> dict[str, int] | None:
    """For a seekable zstd file: the frames one ``get_current_scene`` call decompresses, else None."""
    sources: list[SeekableZstdSource] = []
    touched: set[int] = set()
    original = SeekableZstdSource._frame

    def counting(self: SeekableZstdSource, index: int) -> bytes:
        if not sources or sources[-1] is not self:
            sources.append(self)
        touched.add(index)
        return original(self, index)

    with mock.patch.object(SeekableZstdSource, "_frame", counting):
        BlendFile.get_current_scene(path)
    if not sources:
        return None
    return {
        "decompressed": sum(source.frames_decompressed for source in sources),
        "distinct": len(touched),
        "total": sources[0].table.frame_count,
    }


# -- timing ----------------------------------------------------------------------------------
def timed(fn: Callable[[pathlib.Path], object], path: pathlib.Path) -> float:
    gc.collect()
    start = time.perf_counter()
    fn(path)
    return time.perf_counter() - start


@dataclass
class CorpusRow:
    file: str
    size: int
    compression: str
    version: str
    ours_ms: float
    bat_ms: float
    ours_min_ms: float
    bat_min_ms: float
    mismatches: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.bat_ms / self.ours_ms


def file_facts(path: pathlib.Path) -> tuple[str, str]:
    """Compression (from the magic bytes) and the Blender version that saved the file."""
    with open(path, "rb") as f:
        compression = sniff(f.read(8)).value
    try:
        with BlendFile.open(path) as bfile:
            return compression, bfile.version
    except BlendFileError:
        return compression, "?"


def bench_corpus(repeat: int) -> tuple[list[CorpusRow], list[tuple[str, str]]]:
    rows: list[CorpusRow] = []
    skipped: list[tuple[str, str]] = []
    for path in sorted(CORPUS.rglob("*.blend")):
        name = str(path.relative_to(CORPUS))
        reasons: list[str] = []
        values: dict[str, dict[str, Any]] = {}
        for reader, fn in READERS.items():
            try:
                values[reader] = fn(path)  # the warm-up call, and the values compared
            except Exception as exc:  # every failure means "this reader cannot read it": skip
                message = str(exc).replace(f"{path}: ", "").replace(f": {path}", "")
                reasons.append(f"{'ours' if reader == 'ours' else 'BAT'}: {type(exc).__name__}: {message}")
        if reasons:
            skipped.append((name, "; ".join(reasons)))
            continue
        times: dict[str, list[float]] = {"ours": [], "bat": []}
        order = list(READERS)
        for i in range(repeat):
            for reader in order if i % 2 == 0 else reversed(order):
                times[reader].append(timed(READERS[reader], path))
        compression, version = file_facts(path)
        rows.append(
            CorpusRow(
                file=name,
                size=path.stat().st_size,
                compression=compression,
                version=version,
                ours_ms=statistics.median(times["ours"]) * 1e3,
                bat_ms=statistics.median(times["bat"]) * 1e3,
                ours_min_ms=min(times["ours"]) * 1e3,
                bat_min_ms=min(times["bat"]) * 1e3,
                mismatches=compare(values["ours"], values["bat"]),
            )
        )
    return rows, skipped


# -- big files -------------------------------------------------------------------------------
def big_paths(grid: int) -> tuple[pathlib.Path, pathlib.Path]:
    return CACHE / f"grid{grid}_plain.blend", CACHE / f"grid{grid}_zstd.blend"


def ensure_big_files(grid: int, log: Callable[[str], None]) -> tuple[pathlib.Path, pathlib.Path] | str:
    """The two cached big files, generating them with bpy when missing; a string says why not."""
    plain, zstd = big_paths(grid)
    if plain.exists() and zstd.exists():
        return plain, zstd
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp_plain, tmp_zstd = plain.with_suffix(".tmp.blend"), zstd.with_suffix(".tmp.blend")
    log(f"generating {plain.name} and {zstd.name} with bpy (grid {grid}x{grid}); cached for later runs...")
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", GENERATE_SCRIPT, str(grid), str(tmp_plain), str(tmp_zstd)],
            capture_output=True,
            text=True,
            timeout=GENERATE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"generating the big files took over {GENERATE_TIMEOUT_S} s"
    if proc.returncode != 0 or not tmp_plain.exists() or not tmp_zstd.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return f"bpy could not generate the big files (exit {proc.returncode}): {' | '.join(tail)}"
    tmp_plain.replace(plain)
    tmp_zstd.replace(zstd)
    log(f"generated in {time.perf_counter() - start:.0f} s")
    return plain, zstd


def _kib_from_status(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", pathlib.Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise LookupError(key)
    return int(match.group(1))


def measure_child(reader: str, path: pathlib.Path, repeat: int) -> dict[str, Any]:
    """In a fresh interpreter: peak RSS growth of the first call, then the time of more calls."""
    fn = READERS[reader]
    gc.collect()
    try:  # reset the peak (Linux >= 4.0), so imports' transient peaks do not hide ours
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        method = "VmHWM after clear_refs"
        before = _kib_from_status("VmRSS")
    except (OSError, LookupError):
        method = "ru_maxrss"
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    values = fn(path)
    first = time.perf_counter() - start
    peak = _kib_from_status("VmHWM") if method != "ru_maxrss" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times: list[float] = []
    budget_end = time.perf_counter() + CHILD_BUDGET_S
    while len(times) < repeat and (len(times) < 1 or time.perf_counter() < budget_end):
        times.append(timed(fn, path))
    return {
        "values": values,
        "first_s": first,
        "times_s": times,
        "rss_growth_kib": peak - before,
        "rss_method": method,
        "zstd_frames": zstd_frames(path) if reader == "ours" else None,
    }


@dataclass
class BigRow:
    file: str
    size: int
    compression: str
    ours_ms: float | None = None
    bat_ms: float | None = None
    ours_first_ms: float | None = None
    bat_first_ms: float | None = None
    ours_rss_mb: float | None = None
    bat_rss_mb: float | None = None
    ours_calls: int = 0
    bat_calls: int = 0
    rss_method: str = ""
    bat_compared: bool = False
    zstd_frames: dict[str, int] | None = None
    bpy_checked: bool = False
    bpy_open_s: float | None = None
    bpy_peak_rss_mb: float | None = None
    bpy_version: str | None = None
    errors: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    bpy_mismatches: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.ours_ms is None or self.bat_ms is None:
            return None
        return self.bat_ms / self.ours_ms


def run_child(reader: str, path: pathlib.Path, repeat: int) -> dict[str, Any]:
    argv = [sys.executable, str(pathlib.Path(__file__).resolve()), "--child", reader, str(path), str(repeat)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"took over {CHILD_TIMEOUT_S} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = proc.stderr.strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def bench_big(paths: Sequence[pathlib.Path], repeat: int, check_bpy: bool, log: Callable[[str], None]) -> list[BigRow]:
    rows: list[BigRow] = []
    for path in paths:
        with open(path, "rb") as f:
            compression = sniff(f.read(8)).value
        row = BigRow(file=path.name, size=path.stat().st_size, compression=compression)
        values: dict[str, dict[str, Any]] = {}
        for reader in READERS:
            result = run_child(reader, path, repeat)
            if "error" in result:
                row.errors.append(f"{'ours' if reader == 'ours' else 'BAT'}: {result['error']}")
                continue
            values[reader] = result["values"]
            median_ms = statistics.median(result["times_s"]) * 1e3
            first_ms = result["first_s"] * 1e3
            rss_mb = result["rss_growth_kib"] / 1024
            row.rss_method = result["rss_method"]
            if reader == "ours":
                row.ours_ms, row.ours_first_ms, row.ours_rss_mb = median_ms, first_ms, rss_mb
                row.ours_calls = len(result["times_s"])
                row.zstd_frames = result.get("zstd_frames")
            else:
                row.bat_ms, row.bat_first_ms, row.bat_rss_mb = median_ms, first_ms, rss_mb
                row.bat_calls = len(result["times_s"])
        if len(values) == len(READERS):
            row.bat_compared = True
            row.mismatches = compare(values["ours"], values["bat"])
        if check_bpy and "ours" in values:
            log(f"opening {path.name} in bpy (--check-bpy)...")
            seen = read_bpy(path)
            if "error" in seen:
                row.errors.append(f"bpy: {seen['error']}")
            else:
                row.bpy_checked = True
                row.bpy_open_s = seen["open_s"]
                row.bpy_peak_rss_mb = seen["peak_rss_kib"] / 1024
                row.bpy_version = seen["bpy_version"]
                row.bpy_mismatches = compare_bpy(values["ours"], seen["values"])
        rows.append(row)
    return rows


# -- report ----------------------------------------------------------------------------------
def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _size(n: int) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.2f} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{n / 1024:.0f} KiB"


def _frames(frames: dict[str, int] | None) -> str:
    if not frames:
        return "-"
    return f"{frames['decompressed']} ({frames['distinct']}) of {frames['total']}"


def _agreement(checked: bool, problems: list[str]) -> str:
    if not checked:
        return "-"
    return "yes" if not problems else f"NO ({len(problems)})"


def big_goals(row: BigRow) -> list[str]:
    ratio = row.ratio
    if row.compression == "zstd":
        return [f"ratio >= {GOAL_BIG_ZSTD_RATIO:g}x: {_mark(ratio is not None and ratio >= GOAL_BIG_ZSTD_RATIO)}"]
    return [
        f"ratio >= {GOAL_BIG_PLAIN_RATIO:g}x: {_mark(ratio is not None and ratio >= GOAL_BIG_PLAIN_RATIO)}",
        f"ours < {GOAL_BIG_PLAIN_SECONDS:g} s: "
        f"{_mark(row.ours_ms is not None and row.ours_ms < GOAL_BIG_PLAIN_SECONDS * 1e3)}",
        f"ours RSS growth < {GOAL_BIG_PLAIN_RSS_MB:g} MB: "
        f"{_mark(row.ours_rss_mb is not None and row.ours_rss_mb < GOAL_BIG_PLAIN_RSS_MB)}",
    ]


def print_report(
    env: dict[str, Any],
    rows: list[CorpusRow],
    skipped: list[tuple[str, str]],
    big: list[BigRow],
    big_note: str | None,
) -> None:
    print(f"blendfile vs blender-asset-tracer {env['bat_version']}, {env['date']}")
    print(f"{env['machine']}; Python {env['python']}; corpus: median of {env['repeat']} calls after a warm-up")
    print()
    header = f"| file | size | compression | Blender | ours ms | BAT ms | BAT/ours | goal >= {GOAL_CORPUS_RATIO:g}x |"
    print(header)
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for row in rows:
        print(
            f"| {row.file} | {_size(row.size)} | {row.compression} | {row.version} | {row.ours_ms:.2f} | "
            f"{row.bat_ms:.2f} | {row.ratio:.1f}x | {_mark(row.ratio >= GOAL_CORPUS_RATIO)} |"
        )
    if rows:
        ratios = [row.ratio for row in rows]
        print()
        print(
            f"corpus: {len(rows)} files, BAT/ours median {statistics.median(ratios):.1f}x, "
            f"min {min(ratios):.1f}x, max {max(ratios):.1f}x; "
            f"{sum(r >= GOAL_CORPUS_RATIO for r in ratios)}/{len(rows)} meet >= {GOAL_CORPUS_RATIO:g}x"
        )
    new_header = [row.file for row in rows if row.version[:1].isdigit() and int(row.version.split(".")[0]) >= 5]
    print(f"BAT {env['bat_version']} reads the 17-byte header of Blender 5.x: {len(new_header)} such files measured")
    for name, reason in skipped:
        print(f"skipped {name}: {reason}")
    mismatches = [(row.file, m) for row in rows for m in row.mismatches]
    mismatches += [(brow.file, m) for brow in big for m in brow.mismatches]
    mismatches += [(brow.file, m) for brow in big for m in brow.bpy_mismatches]
    print("values agree on every file read by both" if not mismatches else "VALUE MISMATCHES:")
    for name, problem in mismatches:
        print(f"  MISMATCH {name}: {problem}")

    print()
    if big_note:
        print(f"big files: {big_note}")
    if big:
        print("big files: each reader in a fresh subprocess; RSS growth = peak over the interpreter after imports")
        print("| file | size | compression | ours ms | BAT ms | BAT/ours | ours first call ms | BAT first call ms "
              "| ours peak RSS growth | BAT peak RSS growth | zstd frames decompressed | = BAT | = bpy "
              "| goals |")  # fmt: skip
        print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
        for brow in big:
            ratio = "-" if brow.ratio is None else f"{brow.ratio:.1f}x"
            ours_rss = "-" if brow.ours_rss_mb is None else f"{brow.ours_rss_mb:.1f} MB"
            bat_rss = "-" if brow.bat_rss_mb is None else f"{brow.bat_rss_mb:.1f} MB"
            print(
                f"| {brow.file} | {_size(brow.size)} | {brow.compression} | {_ms(brow.ours_ms)} | {_ms(brow.bat_ms)} | "
                f"{ratio} | {_ms(brow.ours_first_ms)} | {_ms(brow.bat_first_ms)} | {ours_rss} | {bat_rss} | "
                f"{_frames(brow.zstd_frames)} | {_agreement(brow.bat_compared, brow.mismatches)} | "
                f"{_agreement(brow.bpy_checked, brow.bpy_mismatches)} | {'; '.join(big_goals(brow))} |"
            )
        for brow in big:
            print(
                f"  {brow.file}: medians of {brow.ours_calls} (ours) and {brow.bat_calls} (BAT) calls after the first"
            )
            if brow.bpy_checked:
                print(
                    f"  {brow.file}: bpy {brow.bpy_version} open_mainfile {brow.bpy_open_s:.1f} s, "
                    f"bpy subprocess peak RSS {brow.bpy_peak_rss_mb:.0f} MB; compared with ours: "
                    f"{', '.join(BPY_FIELDS)}, fps"
                )
            for error in brow.errors:
                print(f"  {brow.file}: could not measure {error}")
        print(f"  RSS measured by {big[0].rss_method or '-'}")
        if any(brow.zstd_frames for brow in big):
            print("  zstd frames: decompressions in one call (distinct frames) of the frames in the seek table")
        if not any(brow.bpy_checked for brow in big):
            print("  = bpy: not checked (run with --check-bpy)")


def environment(repeat: int) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "bat_version": metadata.version("blender-asset-tracer"),
        "repeat": repeat,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=21, help="timed calls per reader and file (default 21)")
    parser.add_argument("--no-big", action="store_true", help="skip the big generated files")
    parser.add_argument(
        "--big-grid",
        type=int,
        default=DEFAULT_BIG_GRID,
        metavar="N",
        help=f"subdivisions of the big files' grid mesh (default {DEFAULT_BIG_GRID}: ~1 GB plain)",
    )
    parser.add_argument(
        "--check-bpy",
        action="store_true",
        help="also compare our values on the big files with bpy's (open_mainfile in a subprocess: seconds, GBs)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--child", nargs=3, metavar=("READER", "PATH", "REPEAT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.getLogger("blender_asset_tracer").setLevel(logging.ERROR)

    if args.child:
        reader, path, repeat = args.child
        print(json.dumps(measure_child(reader, pathlib.Path(path), int(repeat))))
        return 0

    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.big_grid < 1:
        parser.error("--big-grid must be at least 1")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    env = environment(args.repeat)
    rows, skipped = bench_corpus(args.repeat)
    big: list[BigRow] = []
    big_note: str | None = "skipped (--no-big)" if args.no_big else None
    if not args.no_big:
        made = ensure_big_files(args.big_grid, log)
        if isinstance(made, str):
            big_note = f"skipped: {made}"
        else:
            big = bench_big(made, args.repeat, args.check_bpy, log)

    if args.json:
        report = {
            **env,
            "goals": {
                "corpus_ratio": GOAL_CORPUS_RATIO,
                "big_plain_ratio": GOAL_BIG_PLAIN_RATIO,
                "big_plain_seconds": GOAL_BIG_PLAIN_SECONDS,
                "big_plain_rss_mb": GOAL_BIG_PLAIN_RSS_MB,
                "big_zstd_ratio": GOAL_BIG_ZSTD_RATIO,
            },
            "corpus": [{**asdict(row), "ratio": row.ratio} for row in rows],
            "skipped": [{"file": name, "reason": reason} for name, reason in skipped],
            "big": [{**asdict(row), "ratio": row.ratio, "goals": big_goals(row)} for row in big],
            "big_note": big_note,
        }
        print(json.dumps(report, indent=2))
    else:
        print_report(env, rows, skipped, big, big_note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
