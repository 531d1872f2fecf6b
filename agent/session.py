"""One persistent Blender process per task: start it, feed it frames one at a time, cancel it, reap it.

Loading a heavy scene can take longer than rendering a frame of it, so the process stays alive across frames
and chunks: :meth:`RenderSession.render` sends one frame to the driver (:mod:`agent.driver`) and waits for its
answer, reporting progress on the way.

Never an orphan. A Blender left behind keeps rendering and holding a GPU nobody schedules any more, so:

1. Blender starts in its own session and process group (``start_new_session``); cancel and close kill the
   whole group with SIGKILL, so nothing it started survives either.
2. On Linux the kernel kills Blender when its parent goes (``prctl(PR_SET_PDEATHSIG, SIGKILL)`` in the child
   before exec), which covers the agent dying by SIGKILL or a crash. Caveat: the kernel means the parent
   *thread*: start sessions from a thread that lives as long as they do (the agent's main thread or a
   long-lived worker), or Blender dies with the thread that started it.
3. Every live session is in a registry that an ``atexit`` hook kills; :func:`install_signal_handlers` makes
   SIGTERM/SIGHUP/SIGINT run it too (Python's default SIGTERM action skips ``atexit``).
4. Inside Blender the driver exits when stdin closes or its parent pid changes (it polls twice a second,
   also mid-render): the guard on systems without PDEATHSIG.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import json
import logging
import os
import queue
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from .blender import BlenderInstall
from .command import DRIVER_PATH, RenderSettings, build_command, command_env
from .driver import PREFIX, temp_path
from .errors import SessionClosedError, SessionError, SessionStartError
from .output import (
    BlenderError,
    BlenderWarning,
    EeveeProgress,
    Fault,
    SampleProgress,
    TileProgress,
    classify_fault,
    classify_message,
    parse_line,
)

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0
"""Opening a big production file over a slow disk can take minutes."""
KILL_WAIT_S = 2.0
"""Cancel must leave no process after this long (the issue's promise)."""
CLOSE_TIMEOUT_S = 10.0
LOG_LINES = 400
TAIL_LINES = 40
CRASH_REPORT_LINES = 40
PROGRESS_INTERVAL_S = 0.1
MAX_RENDER_FRACTION = 0.99
_PR_SET_PDEATHSIG = 1
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHUNK = struct.Struct(">I4s")


class SessionState(StrEnum):
    NEW = "new"
    STARTING = "starting"
    READY = "ready"
    RENDERING = "rendering"
    CLOSED = "closed"
    """Closed or cancelled by us."""
    DEAD = "dead"
    """Blender exited on its own (crash, killed by the system)."""


@dataclass(frozen=True, slots=True)
class SessionReady:
    """What the driver said once the file was loaded."""

    blender: str
    file: str
    scene: str
    engine: str
    format: str
    """The image format frames are written in (PNG when the scene's output is a movie)."""
    extension: str
    forced_png: bool
    resolution: tuple[int, int]
    frame_range: tuple[int, int]
    startup_seconds: float
    """From starting the process to "ready", as the agent measured it: the load cost paid once per session."""
    load_seconds: float | None
    """The file load alone, when the driver opened it (bpy); the executable loads it before the driver runs."""
    autoexec_blocked: bool
    """The file has scripts that did not run because auto-exec is off."""
    pid: int


@dataclass(frozen=True, slots=True)
class FrameProgress:
    """How far one frame is, 0..1, never going back within a frame."""

    frame: int
    fraction: float
    text: str | None = None


@dataclass(frozen=True, slots=True)
class FrameRendered:
    frame: int
    path: Path
    sha256: str
    size: int
    seconds: float
    warnings: tuple[str, ...] = ()
    """Errors and warnings Blender printed while rendering it (a missing texture renders pink, not fails)."""


@dataclass(frozen=True, slots=True)
class FrameFailed:
    frame: int
    error: str
    fault: Fault
    seconds: float
    log_tail: tuple[str, ...] = ()
    exit_code: int | None = None
    """Set when Blender itself ended (crash, kill): the session is then unusable."""


FrameResult = FrameRendered | FrameFailed
ProgressCallback = Callable[[FrameProgress], None]


# --- output checks ------------------------------------------------------------------------------------------


def check_png(data: bytes) -> str | None:
    """Why these bytes are not a complete PNG, or ``None``: signature, every chunk's CRC, IEND last, and the
    image data inflates. (Pillow is not a dependency; this is the part of decoding that catches truncation.)"""
    if not data.startswith(_PNG_SIGNATURE):
        return "not a PNG file (bad signature)"
    pos = len(_PNG_SIGNATURE)
    idat = bytearray()
    seen_iend = False
    while pos + 12 <= len(data):
        length, kind = _PNG_CHUNK.unpack_from(data, pos)
        end = pos + 8 + length
        if end + 4 > len(data):
            return f"PNG truncated inside a {kind.decode('latin-1')} chunk"
        (crc,) = struct.unpack_from(">I", data, end)
        if zlib.crc32(data[pos + 4 : end]) != crc:
            return f"PNG {kind.decode('latin-1')} chunk has a bad CRC"
        if kind == b"IDAT":
            idat += data[pos + 8 : end]
        pos = end + 4
        if kind == b"IEND":
            seen_iend = True
            break
    if not seen_iend:
        return "PNG has no IEND chunk (truncated)"
    if not idat:
        return "PNG has no image data"
    try:
        zlib.decompress(bytes(idat))
    except zlib.error as exc:
        return f"PNG image data does not inflate: {exc}"
    return None


def check_frame_file(path: Path) -> str | None:
    """Why a frame file is not usable, or ``None``. PNG is checked in depth; JPEG and OpenEXR by their
    start and end markers; any other format must at least exist and not be empty."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot read the frame file: {exc}"
    if not data:
        return "the frame file is empty"
    suffix = path.suffix.lower()
    if suffix == ".png":
        return check_png(data)
    if suffix in {".jpg", ".jpeg"} and not (data.startswith(b"\xff\xd8") and data.rstrip(b"\0").endswith(b"\xff\xd9")):
        return "JPEG truncated or not a JPEG"
    if suffix == ".exr" and not data.startswith(b"\x76\x2f\x31\x01"):
        return "not an OpenEXR file"
    return None


def resident_mb(pid: int) -> float | None:
    """A process's resident memory in MB (Linux ``/proc``), or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- process plumbing ---------------------------------------------------------------------------------------


def _linux_child_setup(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` asking the kernel to SIGKILL the child when its parent dies.

    libc and prctl are looked up here, in the parent: between fork and exec the child may only do simple
    things, and loading a library (dlopen takes a lock another thread may have held at fork) is not one."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl; then nobody would ever send the signal.
        if os.getppid() != parent_pid:
            os._exit(1)

    return setup


def _popen(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    if sys.platform == "win32":
        return subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            creationflags=subprocess.CREATE_NEW_PROCESS_GROUP,
        )
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        preexec_fn=_linux_child_setup(os.getpid()) if sys.platform.startswith("linux") else None,
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL Blender's whole process group (on Windows: its process tree)."""
    if sys.platform == "win32":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, timeout=KILL_WAIT_S, check=False
            )
        with contextlib.suppress(OSError):
            proc.kill()
        return
    # The group id is Blender's pid (start_new_session); it outlives Blender while any member lives, so this
    # also reaches children of a Blender that already exited.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


_LIVE: weakref.WeakSet[RenderSession] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def kill_all_sessions() -> None:
    """Kill every live session's Blender now (at exit, on SIGTERM). Safe to call from a signal handler."""
    with _LIVE_LOCK:
        sessions = list(_LIVE)
    for session in sessions:
        session.kill()
        session._remove_tmpdir()


atexit.register(kill_all_sessions)


def install_signal_handlers(signals: tuple[int, ...] | None = None) -> None:
    """Kill all sessions on SIGTERM/SIGHUP/SIGINT, then do what the signal did before (the previous Python
    handler, or exit with 128 + signal). Call it once from the main thread of the agent's composition root."""
    if signals is None:
        names = ("SIGTERM", "SIGHUP", "SIGINT")
        signals = tuple(int(getattr(signal, n)) for n in names if hasattr(signal, n))
    for signum in signals:
        previous = signal.getsignal(signum)

        def handler(received: int, frame: FrameType | None, previous: Any = previous) -> None:
            kill_all_sessions()
            if callable(previous):
                previous(received, frame)
            elif previous != signal.SIG_IGN:
                raise SystemExit(128 + received)

        signal.signal(signum, handler)


# --- the session --------------------------------------------------------------------------------------------

_Item = tuple[str, Any]
"""What the reader thread queues: ("line", str), ("message", dict) or ("eof", None)."""


class RenderSession:
    """One Blender process rendering frames of one file, one frame at a time.

    ``render`` is meant to be called from one thread; ``cancel`` and ``kill`` from any thread. ``on_log``
    (optional) gets every line Blender prints, from the reader thread, for the agent's task log.
    ``temp_root`` is where the session's temp folder (Blender's TMPDIR) goes; default: the system's. An
    agent killed with SIGKILL cannot remove it, so an agent should point this into its work folder and clear
    stale ``frameherd-blender-*`` folders there when it starts.
    """

    def __init__(
        self,
        install: BlenderInstall,
        blend_file: Path,
        settings: RenderSettings | None = None,
        *,
        on_log: Callable[[str], None] | None = None,
        progress_interval_s: float = PROGRESS_INTERVAL_S,
        driver: Path = DRIVER_PATH,
        memory_limit_mb: float | None = None,
        temp_root: Path | None = None,
    ) -> None:
        self.install = install
        self.blend_file = Path(blend_file)
        self.settings = settings or RenderSettings()
        self.argv = build_command(install, self.blend_file, self.settings, driver)
        self._on_log = on_log
        self._progress_interval = progress_interval_s
        self.memory_limit_mb = memory_limit_mb
        """Stop a frame (and this Blender) when Blender's resident memory goes over this (Linux)."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._items: queue.Queue[_Item] = queue.Queue()
        self._log: deque[str] = deque(maxlen=LOG_LINES)
        self._log_lock = threading.Lock()
        self._state = SessionState.NEW
        self._state_lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._cancelled = threading.Event()
        self._exit_code: int | None = None
        self._group_killed = False
        self._temp_root = temp_root
        self._tmpdir: Path | None = None
        self.ready: SessionReady | None = None
        self.files_loaded = 0
        """How many times Blender printed "Read blend:": 1 for a session, however many frames it rendered."""

    # --- state --------------------------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        if self._proc is not None and self._exit_code is None:
            self._exit_code = self._proc.poll()
        return self._exit_code

    def log_tail(self, lines: int = TAIL_LINES) -> tuple[str, ...]:
        with self._log_lock:
            return tuple(list(self._log)[-lines:])

    def _set_state(self, state: SessionState) -> None:
        with self._state_lock:
            # Closed and dead are final: a late "eof" must not turn a cancelled session into a crashed one.
            if self._state not in (SessionState.CLOSED, SessionState.DEAD):
                self._state = state

    # --- reading Blender's output -------------------------------------------------------------------------

    def _read(self, stream: Any) -> None:
        try:
            for raw in iter(stream.readline, b""):
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                at = text.find(PREFIX)
                if at < 0:
                    self._line(text)
                    continue
                if text[:at].strip():
                    self._line(text[:at])  # a Blender line that was missing its newline (3.4 stats)
                try:
                    message = json.loads(text[at + len(PREFIX) :])
                except ValueError:
                    self._line(text)
                    continue
                if isinstance(message, dict):
                    self._items.put(("message", message))
        except (OSError, ValueError) as exc:
            log.debug("reading Blender's output stopped: %s", exc)
        finally:
            self._items.put(("eof", None))

    def _line(self, text: str) -> None:
        if not text.strip():
            return
        with self._log_lock:
            self._log.append(text)
            if "Read blend:" in text:
                self.files_loaded += 1
        if self._on_log is not None:
            try:
                self._on_log(text)
            except Exception:
                log.exception("the on_log callback failed")
        self._items.put(("line", text))

    # --- start --------------------------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT_S) -> SessionReady:
        """Start Blender and wait until the file is loaded; raises :class:`SessionStartError` otherwise."""
        if self._state is not SessionState.NEW:
            raise SessionError(f"the session was already started (it is {self._state})")
        self._set_state(SessionState.STARTING)
        started = time.monotonic()
        log.info("starting %s", " ".join(self.argv))
        # Blender keeps a blender_XXXXXX folder under TMPDIR that only a clean exit removes, and writes its crash
        # report there: a folder of our own per session is removed whatever way Blender ends.
        self._tmpdir = Path(tempfile.mkdtemp(prefix="frameherd-blender-", dir=self._temp_root))
        env = command_env(self.settings)
        for name in ("TMPDIR", "TEMP", "TMP"):
            env[name] = str(self._tmpdir)
        try:
            self._proc = _popen(self.argv, env)
        except OSError as exc:
            self._set_state(SessionState.DEAD)
            self._remove_tmpdir()
            raise SessionStartError(f"cannot start {self.argv[0]}: {exc}", Fault.CRASH) from exc
        with _LIVE_LOCK:
            _LIVE.add(self)
        self._reader = threading.Thread(
            target=self._read, args=(self._proc.stdout,), name=f"blender-{self._proc.pid}-reader", daemon=True
        )
        self._reader.start()
        deadline = started + timeout
        fatal: str | None = None
        while True:
            try:
                kind, value = self._items.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                self._abort(SessionState.DEAD)
                raise SessionStartError(
                    f"Blender did not load {self.blend_file} within {timeout:.0f} s", Fault.TIMEOUT, self.log_tail()
                ) from None
            if kind == "line":
                continue  # kept in the log tail, which classifies a failure below
            if kind == "eof":
                code = self._reap(KILL_WAIT_S)
                self._abort(SessionState.DEAD)
                tail = self.log_tail()
                if self._cancelled.is_set():
                    raise SessionStartError("cancelled while loading", Fault.CANCELLED, tail, code)
                raise SessionStartError(
                    fatal or _last_error(tail) or "Blender exited before it was ready",
                    _start_fault(fatal, tail, code),
                    tail,
                    code,
                )
            message: dict[str, Any] = value
            event = message.get("event")
            if event == "fatal":
                fatal = str(message.get("error", "the driver failed"))
                continue  # the process exits next; its status and last lines complete the report
            if event == "ready":
                self.ready = _ready(message, time.monotonic() - started)
                self._set_state(SessionState.READY)
                log.info(
                    "Blender %s ready in %.2f s: %s", self.ready.blender, self.ready.startup_seconds, self.blend_file
                )
                return self.ready

    # --- render -------------------------------------------------------------------------------------------

    def render(
        self,
        frame: int,
        output_pattern: str | os.PathLike[str],
        *,
        on_progress: ProgressCallback | None = None,
        timeout: float | None = None,
        border: tuple[int, int, int, int] | None = None,
        image_format: str | None = None,
    ) -> FrameResult:
        """Render one frame to ``output_pattern`` (absolute; the last run of ``#`` becomes the frame number,
        the format's extension is added) and wait for it. Progress goes to ``on_progress`` (0 first, 1 last,
        at most every ``progress_interval_s`` in between). A frame that fails, or takes longer than
        ``timeout`` seconds (the session is then killed), is a :class:`FrameFailed`, not an exception.

        A tile of a split frame: ``border`` ``(x0, y0, x1, y1)`` renders only that region, in pixels of the
        final image (origin top left, x1 and y1 exclusive), into a full-size image that is transparent black
        elsewhere; ``image_format`` (a Blender ``file_format``, e.g. ``command.tile_image_format(...)``)
        writes this frame in that format instead of the scene's. Both apply to this frame only."""
        pattern = os.fspath(output_pattern)
        if not Path(pattern).is_absolute():
            raise ValueError(f"the output pattern must be an absolute path: {pattern!r}")
        command: dict[str, Any] = {"cmd": "render", "frame": frame, "output": pattern}
        if border is not None:
            command["border"] = self._check_border(border)
        if image_format is not None:
            command["format"] = image_format
        if not self._render_lock.acquire(blocking=False):
            raise SessionError("this session is already rendering a frame")
        try:
            if self._state is not SessionState.READY or not self.alive:
                raise SessionClosedError(f"the session is {self._state}: start a new one")
            self._set_state(SessionState.RENDERING)
            try:
                return self._render(command, on_progress, timeout)
            finally:
                self._set_state(SessionState.READY)  # a no-op when it died or was cancelled meanwhile
        finally:
            self._render_lock.release()

    def _check_border(self, border: tuple[int, int, int, int]) -> list[int]:
        region = list(border)
        if len(region) != 4 or any(isinstance(v, bool) or not isinstance(v, int) for v in region):
            raise ValueError(f"a border is four pixel numbers (x0, y0, x1, y1), not {border!r}")
        x0, y0, x1, y1 = region
        known = self.ready.resolution if self.ready is not None else (0, 0)
        width, height = known if all(known) else (x1, y1)  # not started yet: the driver checks it too
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(f"border {tuple(region)} is not a region of the {width}x{height} image")
        return region

    def _render(
        self, command: dict[str, Any], on_progress: ProgressCallback | None, timeout: float | None
    ) -> FrameResult:
        frame = int(command["frame"])
        # Lines left over from the previous frame (C stdio flushes late) belong to it, not to this one.
        with contextlib.suppress(queue.Empty):
            while True:
                kind, _ = self._items.get_nowait()
                if kind == "eof":
                    self._items.put(("eof", None))
                    break
        started = time.monotonic()
        deadline = started + timeout if timeout is not None else None
        reporter = _ProgressReporter(frame, on_progress, self._progress_interval)
        frame_lines: list[str] = []
        warnings: list[str] = []
        final: str | None = None
        if not self._send(command):
            return self._died(frame, started, frame_lines, final)
        while True:
            wait = 0.25 if deadline is None else min(0.25, max(deadline - time.monotonic(), 0.0))
            try:
                kind, value = self._items.get(timeout=wait)
            except queue.Empty:
                kind, value = "idle", None
            if self._cancelled.is_set():
                self._remove_partial(final)
                return FrameFailed(frame, "cancelled", Fault.CANCELLED, time.monotonic() - started, self.log_tail())
            if deadline is not None and time.monotonic() >= deadline:
                self._abort(SessionState.CLOSED)
                self._remove_partial(final)
                return FrameFailed(
                    frame,
                    f"frame {frame} took longer than {timeout:.0f} s",
                    Fault.TIMEOUT,
                    time.monotonic() - started,
                    self.log_tail(),
                    self.exit_code,
                )
            used = self._over_memory_limit()
            if used is not None:
                self._abort(SessionState.CLOSED)
                self._remove_partial(final)
                return FrameFailed(
                    frame,
                    f"Blender used {used:.0f} MB, over the task's limit of {self.memory_limit_mb:.0f} MB",
                    Fault.OUT_OF_MEMORY,
                    time.monotonic() - started,
                    self.log_tail(),
                    self.exit_code,
                )
            if kind == "idle":
                continue
            if kind == "eof":
                return self._died(frame, started, frame_lines, final)
            if kind == "line":
                frame_lines.append(value)
                event = parse_line(value)
                if isinstance(event, BlenderError | BlenderWarning):
                    warnings.append(event.message)
                # Blender 3.x/4.x progress: its own "Fra:" lines (3.4 passes no text to render_stats).
                if isinstance(event, SampleProgress | TileProgress | EeveeProgress) and event.frame in (None, frame):
                    reporter.report(event.fraction, value)
                continue
            message: dict[str, Any] = value
            event_name = message.get("event")
            if message.get("frame") not in (None, frame):
                continue
            if event_name == "frame_started":
                final = str(message.get("path", "")) or None
                reporter.report(0.0, None, force=True)
            elif event_name == "stats":
                # Blender 5.x progress: the render_stats text the driver forwards ("Mem: 2M | Sample 1/2").
                text = str(message.get("text", ""))
                parsed = parse_line(text)
                if isinstance(parsed, SampleProgress | TileProgress | EeveeProgress):
                    reporter.report(parsed.fraction, text)
            elif event_name == "frame_done":
                return self._finished(frame, message, started, tuple(warnings), reporter, frame_lines)
            elif event_name == "frame_failed":
                error = str(message.get("error", "the frame failed"))
                fault = classify_message(error)
                if fault is Fault.RENDER_ERROR:
                    fault = classify_fault(frame_lines) if frame_lines else fault
                    fault = Fault.RENDER_ERROR if fault is Fault.CRASH else fault
                self._remove_partial(final)
                return FrameFailed(frame, error, fault, time.monotonic() - started, tuple(frame_lines[-TAIL_LINES:]))
            elif event_name == "error":
                log.warning("driver: %s", message.get("error"))

    def _over_memory_limit(self) -> float | None:
        """Blender's resident memory in MB when it is over the limit, else None."""
        if self.memory_limit_mb is None or self._proc is None:
            return None
        used = resident_mb(self._proc.pid)
        return used if used is not None and used > self.memory_limit_mb else None

    def _finished(
        self,
        frame: int,
        message: dict[str, Any],
        started: float,
        warnings: tuple[str, ...],
        reporter: _ProgressReporter,
        frame_lines: list[str],
    ) -> FrameResult:
        path = Path(str(message.get("path", "")))
        seconds = float(message.get("seconds") or (time.monotonic() - started))
        problem = check_frame_file(path)
        if problem is not None:
            with contextlib.suppress(OSError):
                path.unlink()  # a frame that does not decode must not be mistaken for a result
            return FrameFailed(frame, f"{path}: {problem}", Fault.BAD_OUTPUT, seconds, tuple(frame_lines[-TAIL_LINES:]))
        reporter.report(1.0, None, force=True)
        return FrameRendered(frame, path, sha256_file(path), path.stat().st_size, seconds, warnings)

    def _died(self, frame: int, started: float, frame_lines: list[str], final: str | None) -> FrameFailed:
        if self._cancelled.is_set():
            self._remove_partial(final)
            return FrameFailed(frame, "cancelled", Fault.CANCELLED, time.monotonic() - started, self.log_tail())
        code = self._reap(KILL_WAIT_S)
        self._keep_crash_reports()
        self._abort(SessionState.DEAD)
        self._remove_partial(final)
        tail = self.log_tail()
        fault = classify_fault(frame_lines or tail, code)
        error = _last_error(tail) or f"Blender exited with status {code} while rendering frame {frame}"
        return FrameFailed(frame, error, fault, time.monotonic() - started, tail, code)

    @staticmethod
    def _remove_partial(final: str | None) -> None:
        if final:
            with contextlib.suppress(OSError):
                Path(temp_path(final)).unlink(missing_ok=True)

    def _send(self, command: dict[str, Any]) -> bool:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return False
        try:
            proc.stdin.write(json.dumps(command).encode() + b"\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            return False
        return True

    # --- ending -------------------------------------------------------------------------------------------

    def _reap(self, timeout: float) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        try:
            self._exit_code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self._exit_code

    def kill(self) -> None:
        """SIGKILL the whole process group now, without waiting (safe in signal handlers and at exit)."""
        if self._proc is not None and not self._group_killed:
            _kill_group(self._proc)
            # SIGKILL cannot be caught: once sent, the group is gone. Never send it again, since after the
            # leader is reaped its pid (the group id) could in principle be given to an unrelated process.
            self._group_killed = True

    def _abort(self, state: SessionState) -> None:
        """Kill the group, wait for it (at most :data:`KILL_WAIT_S`), stop the reader."""
        self._set_state(state)
        self.kill()
        self._reap(KILL_WAIT_S)
        self._finish()

    def _finish(self) -> None:
        """After the kill: stop the reader, close the pipes, remove the temp folder, leave the registry."""
        proc = self._proc
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.close()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(KILL_WAIT_S)
        # Closing stdout while the reader is still inside readline() would wait for it forever (the buffer's
        # lock), which happens only if something outside the group holds the pipe open: leave it open then.
        if proc is not None and proc.stdout is not None and (reader is None or not reader.is_alive()):
            with contextlib.suppress(OSError, ValueError):
                proc.stdout.close()
        self._remove_tmpdir()
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def _remove_tmpdir(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _keep_crash_reports(self) -> None:
        """Copy Blender's crash report (``<file>.crash.txt`` in its temp folder) into the log before the folder
        goes: it has the backtrace, the most useful thing to send to whoever owns the scene."""
        if self._tmpdir is None:
            return
        for report in sorted(self._tmpdir.rglob("*.crash.txt")):
            with contextlib.suppress(OSError):
                lines = report.read_text(errors="replace").splitlines()[:CRASH_REPORT_LINES]
                with self._log_lock:
                    self._log.extend(f"crash report: {line}" for line in lines if line.strip())

    def cancel(self) -> None:
        """Stop now: kill Blender's process group and wait until it is gone (at most 2 s). A ``render`` in
        progress in another thread returns a :class:`FrameFailed` with :attr:`Fault.CANCELLED`."""
        self._cancelled.set()
        self._set_state(SessionState.CLOSED)
        self.kill()
        self._reap(KILL_WAIT_S)
        # The reader ends at end of output, which the kill brings; render() (if any) drains the queue.
        self._finish()

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> int | None:
        """Ask the driver to quit, wait up to ``timeout`` s, then kill the group. Returns Blender's exit status."""
        if self._proc is None:
            self._set_state(SessionState.CLOSED)
            return None
        if self.alive and self._send({"cmd": "quit"}):
            with contextlib.suppress(OSError, ValueError):
                if self._proc.stdin is not None:
                    self._proc.stdin.close()
            self._reap(timeout)
        self._abort(SessionState.CLOSED)  # also kills anything Blender left behind in its group
        return self.exit_code

    def __enter__(self) -> RenderSession:
        if self._state is SessionState.NEW:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _ProgressReporter:
    """Monotonic, throttled progress for one frame."""

    def __init__(self, frame: int, callback: ProgressCallback | None, interval: float) -> None:
        self.frame = frame
        self.callback = callback
        self.interval = interval
        self.fraction = -1.0
        self.last = 0.0

    def report(self, fraction: float, text: str | None, *, force: bool = False) -> None:
        if not force:
            # Exactly one 1.0 per frame, and only once the file is saved, renamed and checked: "Sample 8/8"
            # is not the end of a frame (denoising, compositing and saving follow).
            fraction = min(fraction, MAX_RENDER_FRACTION)
        if self.callback is None or fraction < self.fraction or (fraction == self.fraction and not force):
            return
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.fraction = fraction
        self.last = now
        try:
            self.callback(FrameProgress(self.frame, fraction, text))
        except Exception:
            # A progress display must not fail a frame; the error still reaches the agent's log.
            log.exception("the progress callback failed")


def _ready(message: dict[str, Any], startup_seconds: float) -> SessionReady:
    resolution = message.get("resolution") or [0, 0]
    load = message.get("load_seconds")
    return SessionReady(
        blender=str(message.get("blender", "")),
        file=str(message.get("file", "")),
        scene=str(message.get("scene", "")),
        engine=str(message.get("engine", "")),
        format=str(message.get("format", "")),
        extension=str(message.get("extension", "")),
        forced_png=bool(message.get("forced_png")),
        resolution=(int(resolution[0]), int(resolution[1])),
        frame_range=(int(message.get("frame_start", 0)), int(message.get("frame_end", 0))),
        startup_seconds=startup_seconds,
        load_seconds=float(load) if load is not None else None,
        autoexec_blocked=bool(message.get("autoexec_blocked")),
        pid=int(message.get("pid", 0)),
    )


def _start_fault(fatal: str | None, tail: tuple[str, ...], exit_code: int | None) -> Fault:
    """The class of a start that failed: the driver's own message first (it names a missing GPU or scene),
    then what Blender printed and how it exited."""
    if fatal is None:
        return classify_fault(tail, exit_code)
    fault = classify_message(fatal)
    if fault is Fault.RENDER_ERROR:
        # The driver exits 2 after a fatal message; that status is not a crash, but the log may say more.
        from_log = classify_fault(tail, exit_code)
        return from_log if from_log not in (Fault.CRASH, Fault.RENDER_ERROR) else Fault.RENDER_ERROR
    return fault


def _last_error(lines: tuple[str, ...]) -> str | None:
    for line in reversed(lines):
        event = parse_line(line)
        if isinstance(event, BlenderError):
            return event.message
    return None


__all__ = [
    "FrameFailed",
    "FrameProgress",
    "FrameRendered",
    "FrameResult",
    "ProgressCallback",
    "RenderSession",
    "SessionReady",
    "SessionState",
    "check_frame_file",
    "check_png",
    "install_signal_handlers",
    "kill_all_sessions",
    "sha256_file",
]
