"""The script that runs INSIDE Blender for a persistent render session (standard library + bpy only).

It must work in Blender 3.x to 5.x, so in every Python from 3.9 on: no ``match``, no ``X | Y`` outside
annotations, and nothing from the ``agent`` package (Blender's Python does not have it). ``bpy`` is imported
inside :func:`main`, so the agent can import this module for :func:`frame_path` and the message constants.

Protocol. The file is loaded once (by Blender's command line, or here with ``--bpy``); then the driver reads
one JSON command per line on stdin:

* ``{"cmd": "render", "frame": 12, "output": "/abs/dir/name_####"}``, optionally with
  ``"border": [x0, y0, x1, y1]`` (render only that region of the full-size image: a tile of a split frame)
  and ``"format": "PNG"`` (write this frame in another image format, e.g. the lossless one of a tile)
* ``{"cmd": "quit"}`` (or end of input: the agent is gone)

and writes one JSON message per line on stdout, each prefixed with :data:`PREFIX` and preceded by a newline
(Blender 3.4 calls ``render_stats`` handlers after printing a status text and *before* its newline, so a
message must not assume it starts a line): ``ready``, ``frame_started``, ``stats``, ``frame_done``,
``frame_failed``, ``fatal``, ``bye``.

Output. Frames are written in the scene's image format; a movie format (FFMPEG, AVI) becomes lossless
8-bit PNG for the manager to encode. Each frame is rendered to a hidden temporary name in the output folder
and renamed when complete, so a half-written frame never carries the final name.

Tiles. A ``border`` is in pixels of the final image (after the resolution percentage), origin at the top
left, x1 and y1 exclusive. The frame is rendered at full size with only that region filled (border render
without crop; the rest is transparent black), so tiles of one frame are stitched by pasting regions. Blender
turns the border floats into pixels by truncating ``float * size`` (in single precision, separately in the
render pipeline and in Cycles): :func:`border_floats` puts each edge half a pixel inside its pixel, which
truncates to exactly that pixel in both (see ``docs/tiles.md``). Border and format are set for one frame
and the scene's own settings are restored after it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

PREFIX = "@@FRAMEHERD "
"""Starts every message line the driver writes; the rest of the line is one JSON object."""
TEMP_SUFFIX = ".frameherd-tmp"
STATS_INTERVAL_S = 0.1
"""Sample counters arrive per sample; more than ~10 a second is noise on the pipe."""
PARENT_POLL_S = 0.5
MOVIE_FORMATS = frozenset({"FFMPEG", "AVI_JPEG", "AVI_RAW", "H264", "XVID", "THEORA", "QUICKTIME"})
EXR_FORMATS = frozenset({"OPEN_EXR", "OPEN_EXR_MULTILAYER"})
LOSSY_EXR_CODECS = frozenset({"B44", "B44A", "DWAA", "DWAB", "PXR24"})
"""PXR24 rounds 32-bit floats to 24 bits; the others are lossy outright. A tile is never written with them."""
_RENDER_STATE = ("use_border", "use_crop_to_border", "border_min_x", "border_min_y", "border_max_x", "border_max_y")
# media_type first: in 5.0 it decides which file formats are valid, and setting it resets the format.
_IMAGE_STATE = ("media_type", "file_format", "color_mode", "color_depth", "compression", "quality", "exr_codec")

_write_lock = threading.Lock()
# "Sample 3/64" (Cycles), "Rendering 3 / 64 samples" (EEVEE, Workbench)
_COUNTER = re.compile(r"(?:Sample|Rendering)\s+(\d+)\s*/\s*(\d+)")


class DriverError(Exception):
    """A problem the driver reports as ``fatal`` before exiting (bad device, unreadable file)."""


def emit(event: str, **fields: Any) -> None:
    """One message line on stdout. A closed pipe means the agent is gone: exit at once."""
    message = {"event": event}
    message.update(fields)
    line = "\n" + PREFIX + json.dumps(message, ensure_ascii=True, default=str) + "\n"
    with _write_lock:
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except (BrokenPipeError, ValueError, OSError):
            os._exit(3)


def frame_path(pattern: str, frame: int, extension: str) -> str:
    """The file one frame is written to, the way Blender names animation frames.

    The last run of ``#`` becomes the frame number padded to its length (``f_####`` -> ``f_0012``); with no
    ``#`` four digits are appended. The extension (``.png``) is added unless the name already ends with it.
    """
    target = Path(pattern)
    name = target.name
    end = name.rfind("#")
    if end < 0:
        name = f"{name}{frame:04d}"
    else:
        start = end
        while start > 0 and name[start - 1] == "#":
            start -= 1
        width = end - start + 1
        name = f"{name[:start]}{frame:0{width}d}{name[end + 1 :]}"
    if extension and not name.lower().endswith(extension.lower()):
        name += extension
    return str(target.with_name(name))


def temp_path(final: str) -> str:
    """Where a frame is written before it is complete: hidden, next to the final name, same filesystem."""
    path = Path(final)
    return str(path.with_name("." + path.name + TEMP_SUFFIX))


def border_floats(region: list[int], width: int, height: int) -> tuple[float, float, float, float]:
    """Blender's ``(border_min_x, border_min_y, border_max_x, border_max_y)`` for a pixel region.

    ``region`` is ``[x0, y0, x1, y1]`` with the origin at the top left and x1, y1 exclusive; Blender's border
    has its origin at the bottom left. Blender computes each pixel edge as ``int(border * size)`` in single
    precision: an edge placed at ``(p + 0.5) / size`` is half a pixel away from either neighbour, far more than
    the rounding of a float (2**-24 relative), so it truncates to ``p`` for any size below 2**22. The image
    edges are exactly 0.0 and 1.0 (a border that covers everything is then no border at all, as in Blender).
    """

    def edge(pixel: int, size: int) -> float:
        if pixel <= 0:
            return 0.0
        if pixel >= size:
            return 1.0
        return (pixel + 0.5) / size

    x0, y0, x1, y1 = region
    return edge(x0, width), edge(height - y1, height), edge(x1, width), edge(height - y0, height)


def check_border(border: Any, width: int, height: int) -> list[int]:
    """The border as four ints, or :class:`DriverError` saying why it is not a region of this image."""
    if (
        not isinstance(border, (list, tuple))
        or len(border) != 4
        or any(isinstance(v, bool) or not isinstance(v, int) for v in border)
    ):
        raise DriverError(f"a border is four whole pixel numbers [x0, y0, x1, y1], not {border!r}")
    region = list(border)
    x0, y0, x1, y1 = region
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise DriverError(f"border {region} is not a region of the {width}x{height} image")
    return region


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="frameherd-driver", add_help=False)
    parser.add_argument("--bpy", action="store_true", help="running in a plain Python with the bpy module")
    parser.add_argument("--file", help="the .blend file to open (with --bpy)")
    parser.add_argument("--trusted", action="store_true", help="allow the file's scripts to run (with --bpy)")
    parser.add_argument("--addons", default="", help="add-ons to enable before opening (with --bpy)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device-type", default="CPU")
    parser.add_argument("--gpus", default="")
    parser.add_argument("--with-cpu", action="store_true")
    parser.add_argument("--scene", default="")
    return parser.parse_args(argv)


def script_args(argv: list[str]) -> list[str]:
    """Our options: after ``--`` inside the Blender executable, after the script path in a plain Python."""
    if "--" in argv:
        return argv[argv.index("--") + 1 :]
    return argv[1:]


def _watch_parent() -> None:
    """Exit when the agent dies, even mid-render (Blender releases the GIL while it renders).

    The agent also asks the kernel for this (``PR_SET_PDEATHSIG`` on Linux), but that fires when the
    *thread* that started us ends, and not at all elsewhere; an orphan gets a new parent pid everywhere.
    """
    parent = os.getppid()
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent:
            break
    if hasattr(os, "killpg") and os.getpgid(0) == os.getpid():
        # We lead our own process group (the agent starts us so): take anything Blender started with us.
        # Never when run by hand from a shell, where the group is the shell's.
        os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(4)


def _disk_hint(path: Path) -> str:
    """Blender prints "Saved:" even when the disk was full: say so when it is (the usual cause)."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return ""
    if free < 16 * 1024 * 1024:
        return f": the disk is full (No space left on device; {free // 1024} KiB free)"
    return ""


def _error_text(exc: BaseException) -> str:
    # Blender's operator errors read "Error: <what>\n"; the agent wants just <what>.
    text = str(exc).strip()
    return text[len("Error:") :].strip() if text.startswith("Error:") else text


def _set(owner: Any, name: str, value: Any) -> bool:
    """Set a Blender property if this Blender takes the value; whether it now has it."""
    try:
        setattr(owner, name, value)
    except (AttributeError, TypeError, ValueError):
        return False
    return bool(getattr(owner, name) == value)


class Driver:
    """The session state inside Blender: one scene, its output settings, the frame being rendered."""

    def __init__(self, bpy: Any, options: argparse.Namespace) -> None:
        self.bpy = bpy
        self.options = options
        self.frame: int | None = None
        self.last_stats = 0.0
        self.load_seconds: float | None = None
        self.forced_png = False
        self.scene: Any = None

    # --- start-up ---------------------------------------------------------------------------------------

    def open_file(self) -> None:
        """With ``--bpy``: factory settings, the auto-exec preference, then the file (the executable did all
        of this from its command line before running us)."""
        bpy = self.bpy
        start = time.perf_counter()
        bpy.ops.wm.read_factory_settings(use_empty=True)
        # The preference decides whether scripts in the file run when it loads; set it before opening,
        # and pass use_scripts too (open_mainfile's own default is taken from the preference).
        bpy.context.preferences.filepaths.use_scripts_auto_execute = bool(self.options.trusted)
        for addon in filter(None, self.options.addons.split(",")):
            try:
                bpy.ops.preferences.addon_enable(module=addon)
            except Exception as exc:
                raise DriverError(f"Add-on not loaded: {addon!r}: {_error_text(exc)}") from exc
        try:
            bpy.ops.wm.open_mainfile(filepath=self.options.file, load_ui=False, use_scripts=self.options.trusted)
        except RuntimeError as exc:
            raise DriverError(_error_text(exc)) from exc
        self.load_seconds = time.perf_counter() - start

    def choose_scene(self) -> None:
        bpy = self.bpy
        if self.options.scene:
            scene = bpy.data.scenes.get(self.options.scene)
            if scene is None:
                raise DriverError(f"no scene named {self.options.scene!r} in the file")
        else:
            scene = bpy.context.scene
        if scene is None:
            raise DriverError("the file has no scene")
        self.scene = scene

    def configure(self) -> None:
        """Threads, Cycles device, and the output format; once, before the first frame."""
        scene = self.scene
        render = scene.render
        if self.options.threads > 0:
            render.threads_mode = "FIXED"
            render.threads = self.options.threads
        self.configure_device()
        image = render.image_settings
        is_movie = bool(getattr(render, "is_movie_format", False)) or image.file_format in MOVIE_FORMATS
        if is_movie:
            # 5.0 separates the media type; PNG is not even a valid file_format while it says VIDEO.
            if hasattr(image, "media_type"):
                image.media_type = "IMAGE"
            image.file_format = "PNG"
            image.color_mode = "RGBA" if render.film_transparent else "RGB"
            image.color_depth = "8"
            image.compression = 15
            self.forced_png = True
        # We name every file ourselves (frame_path), extension included, and Blender writes exactly that.
        render.use_file_extension = False

    def configure_device(self) -> None:
        device = self.options.device_type.upper()
        cycles = getattr(self.scene, "cycles", None)
        if device == "CPU":
            if cycles is not None:
                cycles.device = "CPU"
            return
        addon = self.bpy.context.preferences.addons.get("cycles")
        if addon is None:
            raise DriverError("GPU error: the Cycles add-on is not loaded")
        prefs = addon.preferences
        try:
            prefs.compute_device_type = device
        except (TypeError, ValueError) as exc:
            raise DriverError(f"GPU error: this Blender has no {device} support: {exc}") from exc
        if hasattr(prefs, "refresh_devices"):
            prefs.refresh_devices()
        else:
            prefs.get_devices()
        gpus = [d for d in prefs.devices if d.type == device]
        if not gpus:
            raise DriverError(f"GPU error: no {device} device found")
        wanted = [int(i) for i in self.options.gpus.split(",") if i.strip()]
        if any(i >= len(gpus) for i in wanted):
            raise DriverError(f"GPU error: asked for {device} devices {wanted}, there are {len(gpus)}")
        chosen = [gpus[i] for i in wanted] if wanted else gpus
        for d in prefs.devices:
            d.use = any(d.as_pointer() == c.as_pointer() for c in chosen) or (self.options.with_cpu and d.type == "CPU")
        if cycles is not None:
            cycles.device = "GPU"

    def extension(self) -> str:
        return str(self.scene.render.file_extension)

    def resolution(self) -> tuple[int, int]:
        """The size of a frame in pixels, after the resolution percentage (what Blender renders)."""
        render = self.scene.render
        return (
            render.resolution_x * render.resolution_percentage // 100,
            render.resolution_y * render.resolution_percentage // 100,
        )

    def ready_fields(self) -> dict[str, Any]:
        bpy = self.bpy
        scene = self.scene
        render = scene.render
        return {
            "blender": bpy.app.version_string,
            "version": list(bpy.app.version),
            "file": bpy.data.filepath,
            "scene": scene.name,
            "engine": render.engine,
            "format": render.image_settings.file_format,
            "extension": self.extension(),
            "forced_png": self.forced_png,
            "frame_start": scene.frame_start,
            "frame_end": scene.frame_end,
            "resolution": list(self.resolution()),
            "load_seconds": self.load_seconds,
            # True when a script in the file was there and did not run because auto-exec is off.
            "autoexec_blocked": bool(getattr(bpy.app, "autoexec_fail", False)),
            "autoexec_message": str(getattr(bpy.app, "autoexec_fail_message", "")),
            "pid": os.getpid(),
        }

    # --- handlers ---------------------------------------------------------------------------------------

    def on_stats(self, *args: Any) -> None:
        """``render_stats``: 5.x passes the status text first; 3.4 passes no text at all (it is printed
        on stdout as a ``Fra:`` line, which the agent parses)."""
        text = next((a for a in args if isinstance(a, str)), None)
        if not text:
            return
        counter = _COUNTER.search(text)
        if counter is not None:
            # Throttle sample counters, but never drop the last one: a fast frame still shows it finished.
            now = time.perf_counter()
            last = counter.group(1) == counter.group(2)
            if not last and now - self.last_stats < STATS_INTERVAL_S:
                return
            self.last_stats = now
        emit("stats", frame=self.frame, text=text)

    def register_handlers(self) -> None:
        # A plain function: persistent() sets an attribute on it, which a bound method cannot take.
        def on_stats(*args: Any) -> None:
            self.on_stats(*args)

        self.bpy.app.handlers.render_stats.append(self.bpy.app.handlers.persistent(on_stats))

    # --- frames -----------------------------------------------------------------------------------------

    def output_path(self, pattern: str) -> str:
        path = pattern
        if tuple(self.bpy.app.version) >= (5, 0, 0):
            # 5.0 path templates: "{...}" in an output path is an expression; double the braces to mean them.
            path = path.replace("{", "{{").replace("}", "}}")
        return path

    def render(self, frame: int, pattern: str, border: Any = None, image_format: Any = None) -> None:
        """Render one frame to ``pattern``; with ``border``/``image_format`` for this frame only."""
        self.frame = frame
        start = time.perf_counter()
        saved = self.snapshot()
        partial: Path | None = None
        try:
            self.apply_overrides(border, image_format)
            final = frame_path(pattern, frame, self.extension())
            partial = Path(temp_path(final))
            emit("frame_started", frame=frame, path=final)
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.unlink(missing_ok=True)
            self.scene.frame_set(frame)
            self.scene.render.filepath = self.output_path(str(partial))
            result = self.bpy.ops.render.render(write_still=True, scene=self.scene.name)
            if "FINISHED" not in result:
                raise DriverError(f"the render was cancelled ({', '.join(sorted(result))})")
            if not partial.is_file() or partial.stat().st_size == 0:
                raise DriverError(f"Blender wrote no file for frame {frame} (expected {partial}){_disk_hint(partial)}")
            partial.replace(final)
        except Exception as exc:
            if partial is not None:
                partial.unlink(missing_ok=True)
            emit("frame_failed", frame=frame, error=_error_text(exc), seconds=time.perf_counter() - start)
        else:
            emit("frame_done", frame=frame, path=final, seconds=time.perf_counter() - start)
        finally:
            self.restore(saved)
            self.frame = None

    # --- per-frame overrides: a tile's border and lossless format ----------------------------------------

    def snapshot(self) -> list[tuple[Any, str, Any]]:
        """The border and image settings a frame may override, to put back after it."""
        render = self.scene.render
        image = render.image_settings
        saved = [(render, name, getattr(render, name)) for name in _RENDER_STATE]
        return saved + [(image, name, getattr(image, name)) for name in _IMAGE_STATE if hasattr(image, name)]

    @staticmethod
    def restore(saved: list[tuple[Any, str, Any]]) -> None:
        # In order: the format before its depth and mode (changing the format may reset them).
        for owner, name, value in saved:
            if getattr(owner, name) != value:
                _set(owner, name, value)

    def apply_overrides(self, border: Any, image_format: Any) -> None:
        if image_format is not None:
            self.set_format(str(image_format))
        if border is not None:
            width, height = self.resolution()
            region = check_border(border, width, height)
            render = self.scene.render
            render.use_border = True
            render.use_crop_to_border = False
            floats = border_floats(region, width, height)
            render.border_min_x, render.border_min_y, render.border_max_x, render.border_max_y = floats

    def set_format(self, image_format: str) -> None:
        """Write this frame as ``image_format``, as losslessly as the format allows: PNG keeps the scene's
        colour mode and takes 16 bits when the scene has more than 8; EXR keeps half or full float (full
        float for an 8-bit scene) and never a lossy codec."""
        render = self.scene.render
        image = render.image_settings
        depth = str(image.color_depth)
        mode = str(image.color_mode)
        if image.file_format != image_format:
            if hasattr(image, "media_type"):
                # 5.0: multilayer EXR is its own media type, and the image formats are valid only in IMAGE.
                image.media_type = "MULTI_LAYER_IMAGE" if image_format == "OPEN_EXR_MULTILAYER" else "IMAGE"
            if not _set(image, "file_format", image_format):
                raise DriverError(f"this Blender cannot write {image_format} images")
            if image_format in EXR_FORMATS:
                _set(image, "color_depth", depth if depth in ("16", "32") else "32")
            elif image_format == "PNG":
                _set(image, "color_depth", "8" if depth in ("", "8") else "16")
            if not _set(image, "color_mode", mode):
                _set(image, "color_mode", "RGBA" if render.film_transparent else "RGB")
        if image_format in EXR_FORMATS and image.exr_codec in LOSSY_EXR_CODECS:
            image.exr_codec = "ZIP"

    def serve(self, stdin: Any) -> None:
        for raw in iter(stdin.readline, ""):
            line = raw.strip()
            if not line:
                continue
            try:
                command = json.loads(line)
                name = command["cmd"]
            except (ValueError, KeyError, TypeError):
                emit("error", error=f"not a command: {line[:200]!r}")
                continue
            if name == "quit":
                break
            if name == "render":
                try:
                    frame = int(command["frame"])
                    pattern = str(command["output"])
                except (KeyError, TypeError, ValueError):
                    emit("error", error=f"a render command needs frame and output: {line[:200]!r}")
                    continue
                self.render(frame, pattern, command.get("border"), command.get("format"))
            else:
                emit("error", error=f"unknown command {name!r}")
        emit("bye")


def main(argv: list[str]) -> int:
    options = parse_args(script_args(argv))
    threading.Thread(target=_watch_parent, name="frameherd-parent-watch", daemon=True).start()
    try:
        import bpy

        driver = Driver(bpy, options)
        if options.bpy:
            if not options.file:
                raise DriverError("--bpy needs --file")
            driver.open_file()
        driver.choose_scene()
        driver.configure()
        driver.register_handlers()
    except DriverError as exc:
        emit("fatal", error=str(exc))
        return 2
    except Exception as exc:
        emit("fatal", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        return 2
    emit("ready", **driver.ready_fields())
    driver.serve(sys.stdin)
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    if code:
        # sys.exit inside Blender ends Blender with this status (checked with 3.4 and 5.0).
        sys.exit(code)
