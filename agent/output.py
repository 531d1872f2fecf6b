"""Pure functions that turn what Blender prints into typed progress and fault events.

Blender prints two line formats (``shared/notes/blend-format.md`` section 9.1):

* 2.8x to 4.5: ``Fra:1 Mem:9.05M (Peak 10.83M) | Time:00:00.03 | <engine status>``, then
  ``Saved: '/out/f_0001.png'`` and `` Time: 00:00.16 (Saving: 00:00.11)`` after each frame;
* 5.x logs through CLOG: ``00:00.334  render           | Saved: '/out/f_0001.png'``, with a severity word
  (``ERROR``, ``WARNING``) at the start of the message for problems. The status text without the ``Fra:``
  prefix (``Mem: 2M | Sample 1/2``) also reaches a ``render_stats`` handler in 5.x, and the agent's driver
  forwards it; it parses with the same function.

Every regex searches (never anchors on the whole line) so a prefix we do not know yet (a timestamp, a
severity) does not hide the event. Nothing here does I/O: lines in, frozen dataclasses out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum


class Fault(StrEnum):
    """Why a frame or a Blender process failed, in words a farm operator can act on."""

    CANNOT_READ_FILE = "cannot-read-file"
    """The .blend file is missing or unreadable."""
    NOT_A_BLEND_FILE = "not-a-blend-file"
    """Blender does not recognise the file: damaged, or saved by a newer Blender than this one."""
    OUT_OF_MEMORY = "out-of-memory"
    GPU_ERROR = "gpu-error"
    DENOISER_UNAVAILABLE = "denoiser-unavailable"
    """The scene asks for a denoiser this Blender build lacks (Debian's 3.4 has no OpenImageDenoise)."""
    MISSING_ADDON = "missing-addon"
    MISSING_FILE = "missing-file"
    """A texture, library or cache the scene uses is not there."""
    RENDER_ERROR = "render-error"
    """Blender reported an error we have no more specific class for."""
    BAD_OUTPUT = "bad-output"
    """Blender said it was done but the frame file is missing, empty or does not decode."""
    DISK_FULL = "disk-full"
    """No space left where the agent writes frames."""
    CRASH = "crash"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


# --- events -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadBlend:
    """``Read blend: /path/file.blend``: Blender opened the file."""

    path: str


@dataclass(frozen=True, slots=True)
class AutoExecSkipped:
    """``scripts disabled for "/f.blend", skipping 'autorun.py'``: auto-exec is off and a script did not run."""

    path: str
    script: str


@dataclass(frozen=True, slots=True)
class FrameStarted:
    """A new frame number appeared (from the ``Fra:`` prefix, or 5.x's ``Rendering single frame``)."""

    frame: int


@dataclass(frozen=True, slots=True)
class RenderStatus:
    """A status line with no measurable progress (``Synchronizing object | Cube``, ``Updating Shaders``)."""

    frame: int | None
    text: str
    elapsed_s: float | None = None
    remaining_s: float | None = None
    memory_mb: float | None = None
    peak_memory_mb: float | None = None


@dataclass(frozen=True, slots=True)
class SampleProgress:
    """Cycles ``Sample N/M``."""

    frame: int | None
    sample: int
    samples: int
    remaining_s: float | None = None

    @property
    def fraction(self) -> float:
        return _clip(self.sample / self.samples) if self.samples > 0 else 0.0


@dataclass(frozen=True, slots=True)
class TileProgress:
    """Cycles ``Rendered N/M Tiles[, Sample X/Y]`` (big images are split into tiles)."""

    frame: int | None
    tile: int
    tiles: int
    sample: int | None = None
    samples: int | None = None
    remaining_s: float | None = None

    @property
    def fraction(self) -> float:
        if self.tiles <= 0:
            return 0.0
        if self.sample is None or not self.samples:
            # Without a sample count (Cycles before 3.0), N counts finished tiles.
            return _clip(self.tile / self.tiles)
        # Cycles X prints the tile it is working on next to that tile's sample, so the tile is not done yet.
        done = max(self.tile - 1, 0) + self.sample / self.samples
        return _clip(done / self.tiles)


@dataclass(frozen=True, slots=True)
class EeveeProgress:
    """EEVEE and Workbench ``Rendering N / M samples``."""

    frame: int | None
    sample: int
    samples: int

    @property
    def fraction(self) -> float:
        return _clip(self.sample / self.samples) if self.samples > 0 else 0.0


@dataclass(frozen=True, slots=True)
class FrameSaved:
    """``Saved: '<path>'``: an image file was written."""

    path: str


@dataclass(frozen=True, slots=True)
class FrameFinished:
    """``Time: 00:00.16 (Saving: 00:00.11)``: the frame is done, with its render and save times."""

    seconds: float
    saving_seconds: float


@dataclass(frozen=True, slots=True)
class VideoFrameAppended:
    """``Append frame N`` (5.x: ``Video append frame N``): a frame went into a movie file."""

    frame: int


@dataclass(frozen=True, slots=True)
class BlenderError:
    """An error Blender printed (``Error: ...``, a CLOG ``ERROR``), classified."""

    message: str
    fault: Fault
    path: str | None = None


@dataclass(frozen=True, slots=True)
class BlenderWarning:
    """A warning Blender printed (``Warning: ...``, a CLOG ``WARNING``): the render goes on, maybe wrongly."""

    message: str


@dataclass(frozen=True, slots=True)
class CrashReport:
    """``Writing: /tmp/file.crash.txt``: Blender crashed and wrote a report there."""

    path: str


@dataclass(frozen=True, slots=True)
class BlenderQuit:
    """``Blender quit``: a normal exit is under way."""


ProgressEvent = SampleProgress | TileProgress | EeveeProgress
Event = (
    ReadBlend
    | AutoExecSkipped
    | FrameStarted
    | RenderStatus
    | SampleProgress
    | TileProgress
    | EeveeProgress
    | FrameSaved
    | FrameFinished
    | VideoFrameAppended
    | BlenderError
    | BlenderWarning
    | CrashReport
    | BlenderQuit
)


# --- regexes ------------------------------------------------------------------------------------------------

_TIME = r"(\d+(?::\d+)*(?:\.\d+)?)"
# 5.x CLOG prefix: "00:00.334  render           | message". The time may gain hours; the category has dots.
_CLOG = re.compile(r"^\s*\d+(?::\d+)*\.\d+\s+[A-Za-z_][\w.]*\s+\|\s?(?P<msg>.*)$")
_SEVERITY = re.compile(r"^(?P<level>ERROR|FATAL|WARNING|WARN|INFO|DEBUG)\b:?\s*(?P<rest>.*)$")
# Pre-5.0 status prefix; the engine's own text follows the second "|".
_FRA = re.compile(
    r"Fra:\s*(?P<frame>-?\d+)\s+Mem:\s*(?P<mem>[\d.]+)M?\s*\(Peak\s+(?P<peak>[\d.]+)M?\)\s*\|\s*Time:\s*"
    r"(?P<time>\d+(?::\d+)*(?:\.\d+)?)\s*(?:\|\s*(?P<rest>.*))?$"
)
_FRA_LOOSE = re.compile(r"Fra:\s*(-?\d+)")
_REMAINING = re.compile(r"Remaining:\s*" + _TIME)
_MEM = re.compile(r"(?:^|\|)\s*Mem:\s*([\d.]+)M?(?:,\s*Peak:\s*([\d.]+)M?)?")
_SAMPLE = re.compile(r"\bSample\s+(\d+)\s*/\s*(\d+)")
_TILES = re.compile(r"Rendered\s+(\d+)\s*/\s*(\d+)\s+Tiles")
_EEVEE = re.compile(r"Rendering\s+(\d+)\s*/\s*(\d+)\s+samples")
_SAVED = re.compile(r"Saved:\s*'(.*)'")
_FRAME_END = re.compile(r"^\s*Time:\s*" + _TIME + r"\s*\(Saving:\s*" + _TIME + r"\)")
_APPEND = re.compile(r"(?:Video\s+)?[Aa]ppend frame\s+(-?\d+)")
_SINGLE = re.compile(r"Rendering single frame \(frame\s+(-?\d+)\)")
_READ_BLEND = re.compile(r"Read blend:\s*\"?(.*?)\"?\s*$")
_AUTOEXEC = re.compile(r"scripts disabled for \"(.*)\", skipping '(.*)'")
_CRASH = re.compile(r"Writing:\s*(\S.*\.crash\.txt)")
_QUIT = re.compile(r"^\s*Blender quit\s*$")
_ERROR = re.compile(r"^\s*Error:\s*(?P<msg>.*)$")
_WARNING = re.compile(r"^\s*Warning:\s*(?P<msg>.*)$")
_MEASUREMENT = re.compile(r"^(?:Remaining|Mem|Peak|Time):")
_SCENE_LAYER = re.compile(r"^[^,]+, [^,]+(?:, [^,]+)?$")
_QUOTED = re.compile(r"""['"]([^'"]+)['"]""")
_DENOISER = re.compile(r"Build without OpenImageDenoiser|OpenImageDenoise.*(?:not|unavailable)", re.IGNORECASE)
_NOT_BLEND = re.compile(r"not a blend file|File format is not supported", re.IGNORECASE)
_CANNOT_READ = re.compile(r"Cannot read file|Failed to read blend file|Unable to open blend", re.IGNORECASE)
_OOM = re.compile(
    r"out of (?:GPU |device |host )?memory|std::bad_alloc|Failed to allocate|Memory allocation failed", re.IGNORECASE
)
_GPU = re.compile(
    r"\b(?:CUDA|OptiX|HIP|oneAPI|Metal|OpenCL)\b.*(?:error|fail|not found|no device|unsupported)"
    r"|\bGPU\b.*(?:error|fail)|No (?:compatible )?(?:CUDA|OptiX|HIP|GPU) devices?",
    re.IGNORECASE,
)
_ADDON = re.compile(r"Add-on not loaded|add-on .* not found|No module named|engine .* not (?:found|available)", re.I)
_MISSING = re.compile(
    r"does not exist|not found|No such file or directory|Unable to open|Cannot (?:open|read|load) image", re.I
)


# signal.SIGKILL does not exist on Windows, where no exit status is negative anyway.
_SIGKILL = 9


def _clip(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def parse_time(text: str) -> float:
    """Blender's ``MM:SS.ss`` or ``HH:MM:SS.ss`` (``BLI_timecode_string_from_time_simple``) in seconds."""
    seconds = 0.0
    for part in text.strip().split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


_DISK_FULL = re.compile(r"No space left on device|disk is full|Disk quota exceeded", re.IGNORECASE)


def classify_message(message: str) -> Fault:
    """The fault class an error message names. Out of memory wins over GPU: ``CUDA error: Out of memory``."""
    for pattern, fault in (
        (_DISK_FULL, Fault.DISK_FULL),
        (_DENOISER, Fault.DENOISER_UNAVAILABLE),
        (_NOT_BLEND, Fault.NOT_A_BLEND_FILE),
        (_CANNOT_READ, Fault.CANNOT_READ_FILE),
        (_OOM, Fault.OUT_OF_MEMORY),
        (_GPU, Fault.GPU_ERROR),
        (_ADDON, Fault.MISSING_ADDON),
        (_MISSING, Fault.MISSING_FILE),
    ):
        if pattern.search(message):
            return fault
    return Fault.RENDER_ERROR


def _error(message: str) -> BlenderError:
    message = message.strip()
    quoted = _QUOTED.search(message)
    return BlenderError(message=message, fault=classify_message(message), path=quoted.group(1) if quoted else None)


def strip_log_prefix(line: str) -> tuple[str, str | None]:
    """Split a 5.x CLOG line into its message and severity; other lines come back unchanged, severity None."""
    line = line.rstrip("\r\n")
    clog = _CLOG.match(line)
    if clog is None:
        return line, None
    message = clog.group("msg")
    severity = _SEVERITY.match(message)
    if severity is None:
        return message, None
    level = severity.group("level")
    return severity.group("rest"), "WARNING" if level == "WARN" else level


def _status(
    text: str,
    frame: int | None,
    elapsed_s: float | None = None,
    memory_mb: float | None = None,
    peak_memory_mb: float | None = None,
) -> Event:
    """The engine's part of a status line (after ``Fra:... | Time:... |``, or a 5.x stats text as a whole)."""
    remaining = _REMAINING.search(text)
    remaining_s = parse_time(remaining.group(1)) if remaining else None
    tiles = _TILES.search(text)
    sample = _SAMPLE.search(text)
    if tiles:
        return TileProgress(
            frame=frame,
            tile=int(tiles.group(1)),
            tiles=int(tiles.group(2)),
            sample=int(sample.group(1)) if sample else None,
            samples=int(sample.group(2)) if sample else None,
            remaining_s=remaining_s,
        )
    if sample:
        return SampleProgress(frame, int(sample.group(1)), int(sample.group(2)), remaining_s)
    if eevee := _EEVEE.search(text):
        return EeveeProgress(frame, int(eevee.group(1)), int(eevee.group(2)))
    if memory_mb is None and (mem := _MEM.search(text)):
        # A 5.x stats text carries the only memory figure there is ("Mem: 2M").
        memory_mb = float(mem.group(1))
        peak_memory_mb = float(mem.group(2)) if mem.group(2) else None
    # Keep the status words, not the measurements in front of them: "Updating Shaders", not "Mem: 1M | ...".
    words = [part.strip() for part in text.split("|")]
    while words and _MEASUREMENT.match(words[0]):
        words.pop(0)
    if len(words) > 1 and frame is not None and _SCENE_LAYER.match(words[0]):
        words.pop(0)  # "Scene, ViewLayer": pre-5.0 Cycles names the scene and view layer here
    return RenderStatus(
        frame=frame,
        text=" | ".join(w for w in words if w) or text.strip(),
        elapsed_s=elapsed_s,
        remaining_s=remaining_s,
        memory_mb=memory_mb,
        peak_memory_mb=peak_memory_mb,
    )


def parse_line(line: str) -> Event | None:
    """One line of Blender's output (or one ``render_stats`` text) as an event; ``None`` for anything else."""
    message, severity = strip_log_prefix(line)
    text = message.strip()
    if not text:
        return None
    # Order matters: a status line can contain "Error" words (the denoiser one does), so the prefixed
    # status line is recognised first, then the plain "Error:" lines.
    fra = _FRA.search(text)
    if fra:
        frame = int(fra.group("frame"))
        return _status(
            fra.group("rest") or "",
            frame,
            elapsed_s=parse_time(fra.group("time")),
            memory_mb=float(fra.group("mem")),
            peak_memory_mb=float(fra.group("peak")),
        )
    if m := _SAVED.search(text):
        return FrameSaved(m.group(1))
    if m := _FRAME_END.search(text):
        return FrameFinished(parse_time(m.group(1)), parse_time(m.group(2)))
    if m := _ERROR.match(text):
        return _error(m.group("msg"))
    if severity in {"ERROR", "FATAL"}:
        return _error(text)
    if m := _WARNING.match(text):
        return BlenderWarning(m.group("msg").strip())
    if severity == "WARNING":
        return BlenderWarning(text)
    if m := _READ_BLEND.search(text):
        return ReadBlend(m.group(1))
    if m := _AUTOEXEC.search(text):
        return AutoExecSkipped(m.group(1), m.group(2))
    if m := _CRASH.search(text):
        return CrashReport(m.group(1).strip())
    if _QUIT.match(text):
        return BlenderQuit()
    if m := _SINGLE.search(text):
        return FrameStarted(int(m.group(1)))
    if m := _APPEND.search(text):
        return VideoFrameAppended(int(m.group(1)))
    if _FRA_LOOSE.search(text) is None and (
        _SAMPLE.search(text) or _EEVEE.search(text) or _TILES.search(text) or _MEM.search(text)
    ):
        # A 5.x stats text ("Mem: 2M | Sample 1/2"): no frame number in it.
        return _status(text, None, None)
    return None


def parse_lines(lines: Iterable[str]) -> Iterator[Event]:
    """Events for a stream of lines, plus a :class:`FrameStarted` whenever the ``Fra:`` number changes."""
    current: int | None = None
    for line in lines:
        event = parse_line(line)
        if event is None:
            continue
        frame = getattr(event, "frame", None)
        if isinstance(event, FrameStarted):
            current = event.frame
        elif isinstance(frame, int) and frame != current:
            current = frame
            yield FrameStarted(frame)
        yield event


def progress_fraction(event: Event) -> float | None:
    """How far the current frame is (0..1) according to this event, or ``None`` when it does not say."""
    if isinstance(event, SampleProgress | TileProgress | EeveeProgress):
        return event.fraction
    if isinstance(event, FrameSaved | FrameFinished):
        return 1.0
    return None


def classify_fault(lines: Iterable[str], exit_code: int | None = None) -> Fault:
    """The most telling fault class for a failure, from the log's last lines and the exit status.

    A specific error in the log (denoiser, file, memory, GPU, add-on) wins; then a crash report; then the
    exit status: killed by a signal is a crash, except SIGKILL that we did not send, which on Linux is
    almost always the kernel's out-of-memory killer.
    """
    generic = False
    crashed = False
    for line in lines:
        event = parse_line(line)
        if isinstance(event, BlenderError):
            if event.fault is not Fault.RENDER_ERROR:
                return event.fault
            generic = True
        elif isinstance(event, CrashReport):
            crashed = True
        elif _OOM.search(line):
            return Fault.OUT_OF_MEMORY
        elif _GPU.search(line):
            # GPU drivers print straight to stderr ("CUDA error: ..."), without Blender's "Error:" prefix.
            return Fault.GPU_ERROR
    if crashed:
        return Fault.CRASH
    if exit_code is not None and exit_code < 0:
        return Fault.OUT_OF_MEMORY if -exit_code == _SIGKILL else Fault.CRASH
    if generic:
        return Fault.RENDER_ERROR
    return Fault.CRASH


__all__ = [
    "AutoExecSkipped",
    "BlenderError",
    "BlenderQuit",
    "BlenderWarning",
    "CrashReport",
    "EeveeProgress",
    "Event",
    "Fault",
    "FrameFinished",
    "FrameSaved",
    "FrameStarted",
    "ProgressEvent",
    "ReadBlend",
    "RenderStatus",
    "SampleProgress",
    "TileProgress",
    "VideoFrameAppended",
    "classify_fault",
    "classify_message",
    "parse_line",
    "parse_lines",
    "parse_time",
    "progress_fraction",
    "strip_log_prefix",
]
