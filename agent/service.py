"""The agent core: pull work from the manager, render it in kept-alive Blender sessions, report back.

Qt-free and HTTP-server-free: ``server.py`` is its HTTP face, ``tray.py`` its icon. Three threads:

* the **worker** asks the manager for frames (before its queue runs dry), renders them one at a time
  in one Blender per task, and uploads each frame the moment it is written;
* the **heartbeat** reports the frame in progress every two seconds and applies the manager's reply
  (abandon a frame another agent finished first, drop a cancelled task);
* the **uploader** sends finished frames, and keeps them on disk to send again while the manager is
  unreachable, so a restarted manager still gets every frame rendered meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import queue
import shutil
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import httpx

from blendfile import BlendFileError
from blendfile.project import open_project

from . import protocol as p
from .blender import BlenderInstall, select_blender
from .command import RenderSettings, tile_image_format
from .errors import AgentError, SessionError, SessionStartError, TransferError
from .output import Fault
from .pairing import is_pin_refusal, pinned_context, short_fingerprint
from .session import FrameFailed, FrameProgress, FrameRendered, RenderSession

log = logging.getLogger(__name__)

MULTI_FILE = "MULTI_FILE"
"""``WorkAssignment.data_type`` of a zip project."""

CACHE_LIMIT_BYTES = 20 << 30
"""Task files kept for reuse (a second chunk or task of the same file downloads nothing)."""
IDLE_SESSION_S = 120.0
"""A Blender kept warm for a task with no frames for this long is closed."""
MAX_WARM_SESSIONS = 2
RETRY_S = (0.5, 1.0, 2.0, 5.0)
IDLE_POLL_S = 0.5
"""How often an idle agent asks for work: a task waits half of it on average before an idle agent takes it
(``benchmarks/agent_overhead.py``: "pickup"). An empty answer costs the manager ~1.4 ms of CPU (measured on
two shared cores), so this is ~3 ms/s per idle agent; 1 s made a 20 s task wait 0.5 s (2.5 %) on average."""


@dataclass
class AgentConfig:
    name: str
    host: str
    port: int
    work_dir: Path
    token: str | None = None
    threads: int = 0
    render: RenderSettings = field(default_factory=RenderSettings)
    cache_limit_bytes: int = CACHE_LIMIT_BYTES
    version: str = "0.1.0"
    gpus: list[str] = field(default_factory=list)
    """GPU render devices found on this PC (``CUDA:0 NVIDIA ...``), for the manager's list."""
    manager_cert: str | None = None
    """The certificate (PEM) a TLS manager pinned when it paired this agent, kept with the token: the agent then
    talks to its manager only over HTTPS and trusts that one certificate (``pairing.pinned_context``). None: the
    agent was paired with a plain-HTTP manager."""


@dataclass
class _Job:
    """One frame the agent holds: queued, then rendering."""

    assignment: p.WorkAssignment
    frame: int
    progress: float = 0.0
    abandoned: bool = False


@dataclass
class _Upload:
    task_id: str
    attempt: str
    frame: int
    path: Path
    sha256: str
    seconds: float
    extension: str


class _Session:
    """A Blender kept alive for one task, with when it was last used."""

    def __init__(self, session: RenderSession) -> None:
        self.session = session
        self.last_used = time.monotonic()


def _load_agent_id(work_dir: Path) -> str:
    path = work_dir / "agent-id"
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    value = uuid.uuid4().hex
    path.write_text(value + "\n")
    return value


class AgentCore:
    def __init__(self, config: AgentConfig, installs: list[BlenderInstall]) -> None:
        self.config = config
        config.work_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("cache", "out", "outbox", "projects"):
            (config.work_dir / sub).mkdir(exist_ok=True)
        self.agent_id = _load_agent_id(config.work_dir)
        self.installs = installs
        self.state = p.AgentState.IDLE
        self.paused = False
        self.manager_url: str | None = None
        self.manager_id: str | None = None
        self.on_state_change: Callable[[AgentCore], None] | None = None
        self._lock = threading.RLock()
        self._queue: deque[_Job] = deque()
        self._current: _Job | None = None
        self._sessions: dict[str, _Session] = {}
        self._uploads: queue.Queue[_Upload | None] = queue.Queue()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closing: list[threading.Thread] = []
        self._client: httpx.Client | None = None
        self._client_for: tuple[str, str, str | None] | None = None
        self._refused: str | None = None
        self._known = False
        self.log_lines: deque[str] = deque(maxlen=500)
        self.last_startup_s: float | None = None
        self.frames_rendered = 0
        self._transfer_failures = 0
        self._load_manager()

    @property
    def current_job(self) -> _Job | None:
        return self._current

    # -- identity ----------------------------------------------------------------------------
    def info(self) -> p.AgentInfo:
        return p.AgentInfo(
            agent_id=self.agent_id,
            name=self.config.name,
            host=self.config.host,
            port=self.config.port,
            blenders=[p.BlenderVersion(".".join(map(str, i.version)), i.kind) for i in self.installs],
            cpus=os.cpu_count() or 1,
            gpus=list(self.config.gpus),
            state=self.state,
            paired=self.config.token is not None,
            version=self.config.version,
        )

    # -- attach ------------------------------------------------------------------------------
    def _manager_file(self) -> Path:
        return self.config.work_dir / "manager.json"

    def _load_manager(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self._manager_file().read_text())
            self.manager_url = str(data["manager_url"])
            self.manager_id = str(data["manager_id"])

    def attach(self, request: p.AttachRequest) -> None:
        """Work for this manager from now on (and after a restart of either side)."""
        with self._lock:
            changed = request.manager_url != self.manager_url
            self.manager_url = request.manager_url.rstrip("/")
            self.manager_id = request.manager_id
            self._manager_file().write_text(
                json.dumps({"manager_url": self.manager_url, "manager_id": self.manager_id})
            )
            if changed:
                self._known = False
                self._reset_client()
        self._wake.set()

    def detach(self) -> None:
        with self._lock:
            self.manager_url = None
            self.manager_id = None
            self._manager_file().unlink(missing_ok=True)
            self._queue.clear()
            self._reset_client()

    def _reset_client(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None
        self._client_for = None

    def _http(self) -> httpx.Client | None:
        with self._lock:
            if self.manager_url is None or self.config.token is None:
                return None
            made_for = (self.manager_url, self.config.token, self.config.manager_cert)
            if self._client is not None and self._client_for not in (None, made_for):
                self._reset_client()  # paired again (another token or pin) since the client was made
            if self._client is None:
                transport = self._transport(self.manager_url, self.config.manager_cert)
                if transport is None:
                    return None
                self._client = httpx.Client(
                    base_url=self.manager_url,
                    headers=p.bearer(self.config.token),
                    timeout=httpx.Timeout(10.0, read=300.0),
                    transport=transport,
                )
                self._client_for = made_for
            return self._client

    def _transport(self, url: str, pinned: str | None) -> _ManagerTransport | None:
        """How to reach the manager: plain HTTP, or HTTPS trusting only the pinned certificate. None, with one
        log line, when an agent holding a pin is sent to a manager without TLS (it will not send its token
        there in the clear)."""
        if pinned is None:
            return _ManagerTransport(True, None)  # https:// without a pin: the system's CAs (a real certificate)
        try:
            context = pinned_context(pinned)
        except (ValueError, ssl.SSLError) as exc:
            self._refuse(f"the manager certificate saved at pairing cannot be used ({exc}): pair this agent again")
            return None
        if not url.lower().startswith("https://"):
            self._refuse(
                f"refusing to work for {url}: this agent was paired with a TLS manager and pinned its certificate "
                f"(sha256 {short_fingerprint(context.pinned_sha256)}), so it talks to its manager only over HTTPS. "
                "Start the manager with TLS, or revoke this agent and pair it again."
            )
            return None
        self._refused = None
        return _ManagerTransport(context, context.pinned_sha256)

    def _refuse(self, message: str) -> None:
        if message != self._refused:  # once, not every second of the worker's loop
            log.error("%s", message)
            self._refused = message

    # -- pause -------------------------------------------------------------------------------
    def pause(self) -> None:
        """Finish the current frame, take no new work; queued frames go back to the manager."""
        with self._lock:
            self.paused = True
            self._queue.clear()
        self._set_state(p.AgentState.PAUSED if self._current is None else self.state)

    def resume(self) -> None:
        with self._lock:
            self.paused = False
        self._set_state(p.AgentState.RENDERING if self._current is not None else p.AgentState.IDLE)
        self._wake.set()

    def _set_state(self, state: p.AgentState) -> None:
        if state == self.state:
            return
        self.state = state
        if self.on_state_change is not None:
            try:
                self.on_state_change(self)
            except Exception:  # a tray or advertiser problem must not stop rendering
                log.exception("state-change listener failed")

    # -- lifetime ----------------------------------------------------------------------------
    def start(self) -> None:
        for target, name in (
            (self._work_loop, "worker"),
            (self._heartbeat_loop, "heartbeat"),
            (self._upload_loop, "uploader"),
        ):
            thread = threading.Thread(target=target, name=f"agent-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        for pending in sorted((self.config.work_dir / "outbox").glob("*.json")):
            with contextlib.suppress(OSError, ValueError, KeyError):
                data = json.loads(pending.read_text())
                self._uploads.put(_Upload(**{**data, "path": Path(data["path"])}))

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._uploads.put(None)
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for s in sessions:
            s.session.cancel()
        for thread in self._threads:
            thread.join(timeout=15)
        for s in sessions:
            s.session.close()
        with self._lock:
            closing = list(self._closing)
        for thread in closing:
            thread.join(timeout=15)  # sessions closed in the background (each kills its Blender within 12 s)
        self._reset_client()

    # -- the worker --------------------------------------------------------------------------
    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _hello(self, client: httpx.Client) -> bool:
        try:
            r = client.post(p.MANAGER_HELLO, json=self.info().to_dict())
        except httpx.HTTPError as exc:
            log.info("manager unreachable: %s", exc)
            return False
        if r.status_code != 200:
            log.warning("manager refused hello: %s %s", r.status_code, r.text[:200])
            return False
        self._known = True
        return True

    def _work_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            client = self._http()
            if client is None or self.paused:
                self._set_state(p.AgentState.PAUSED if self.paused else p.AgentState.IDLE)
                self._sleep(1.0)
                continue
            if not self._known and not self._hello(client):
                failures += 1
                self._sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
                continue
            failures = 0
            job = self._next_job()
            if job is None:
                if not self._ask_for_work(client):
                    self._set_state(p.AgentState.IDLE)
                    self._close_idle_sessions()
                    self._sleep(IDLE_POLL_S)
                continue
            ahead = self._ask_ahead(client, job)
            try:
                self._render(job)
            except TransferError as exc:
                # The link or the manager failed mid-download: keep the frames, try again after a pause.
                failures = self._requeue_after_transfer_error(job, exc)
                self._sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
            except Exception as exc:  # the worker must outlive anything one frame does (a full disk, a bug)
                log.exception("frame %d of task %s: unexpected error", job.frame, job.assignment.task_id[:8])
                with self._lock:
                    self._current = None
                fault = Fault.DISK_FULL if _is_disk_full(exc) else Fault.CRASH
                self._report_failure(job, _describe(exc), str(fault), [])
            else:
                self._transfer_failures = 0
            if ahead is not None:
                ahead.join()

    def _requeue_after_transfer_error(self, job: _Job, exc: TransferError) -> int:
        """Put the frame back at the head of the queue (the heartbeat goes on reporting it as held, so the
        manager keeps the lease while the link lasts, and moves it if the agent goes silent)."""
        self._transfer_failures += 1
        log.warning("fetching the file of task %s failed, will retry: %s", job.assignment.task_id[:8], exc)
        with self._lock:
            self._current = None
            if not job.abandoned:
                self._queue.appendleft(job)
        return self._transfer_failures

    def _ask_ahead(self, client: httpx.Client, job: _Job) -> threading.Thread | None:
        """With the last frame held now rendering, ask for the next ones meanwhile, so the next frame starts
        the moment this one ends rather than one round trip to the manager later (once per frame).

        Only in a warm Blender: a cold one's first frame measures its start-up for the scheduler, and
        frames asked for during a long file load would wait on it. The frame in progress counts as held
        (``queued_frames``), so the manager gives no end-of-task duplicate to a busy agent."""
        with self._lock:
            if self._queue:
                return None
            warm = self._sessions.get(job.assignment.task_id)
        if warm is None or not warm.session.alive:
            return None
        thread = threading.Thread(target=self._ask_for_work, args=(client, 1), name="agent-ask-ahead", daemon=True)
        thread.start()
        return thread

    def _ask_for_work(self, client: httpx.Client, in_progress: int = 0) -> bool:
        with self._lock:
            warm = list(self._sessions)
            queued = len(self._queue) + in_progress
        request = p.WorkRequest(
            self.agent_id, warm_tasks=warm, queued_frames=queued, startup_seconds=self.last_startup_s
        )
        try:
            r = client.post(p.MANAGER_WORK, json=request.to_dict())
        except httpx.HTTPError as exc:
            log.info("asking for work failed: %s", exc)
            self._known = False
            return False
        if r.status_code == 204:
            return False
        if r.status_code != 200:
            log.warning("work request refused: %s %s", r.status_code, r.text[:200])
            self._known = False
            return False
        try:
            assignment = p.WorkAssignment.from_dict(r.json())
        except (p.ProtocolError, ValueError) as exc:
            log.warning("bad assignment from the manager: %s", exc)
            return False
        with self._lock:
            if self.paused:
                # Paused while asking: like the frames pause() dropped, these go back to the manager (it
                # requeues a lease its agent stops mentioning in heartbeats).
                log.info("paused: not taking frames %s of task %s", assignment.frames, assignment.task_id[:8])
                return False
            self._queue.extend(_Job(assignment, frame) for frame in assignment.frames)
        log.info("assigned frames %s of task %s", assignment.frames, assignment.task_id[:8])
        return True

    def _next_job(self) -> _Job | None:
        with self._lock:
            while self._queue:
                job = self._queue.popleft()
                if not job.abandoned:
                    self._current = job
                    return job
        return None

    def _render(self, job: _Job) -> None:
        assignment = job.assignment
        self._set_state(p.AgentState.RENDERING)
        try:
            session = self._session_for(assignment)
        except TransferError:
            raise
        except (AgentError, OSError, httpx.HTTPError) as exc:
            if isinstance(exc, SessionStartError):
                fault = exc.fault
            elif _is_disk_full(exc):
                fault = Fault.DISK_FULL
            else:
                fault = Fault.CANNOT_READ_FILE
            tail = exc.log_tail if isinstance(exc, SessionStartError) else ()
            self._report_failure(job, _describe(exc), str(fault), list(tail))
            with self._lock:
                # Every other frame of this task would fail the same way: hand them back.
                for other in self._queue:
                    if other.assignment.task_id == assignment.task_id:
                        other.abandoned = True
                self._current = None
            return
        out_dir = self.config.work_dir / "out" / assignment.task_id
        out_dir.mkdir(parents=True, exist_ok=True)

        def progress(event: FrameProgress) -> None:
            job.progress = event.fraction

        try:
            if assignment.tile_frame is None:
                sign = "-" if job.frame < 0 else ""
                result = session.session.render(
                    job.frame,
                    out_dir / f"frame_{sign}######",
                    on_progress=progress,
                    timeout=assignment.frame_timeout_s,
                )
            else:
                result = self._render_tile(session.session, job, out_dir, progress)
        except SessionError as exc:
            result = FrameFailed(job.frame, str(exc), Fault.CRASH, 0.0)
        session.last_used = time.monotonic()
        with self._lock:
            self._current = None
        if isinstance(result, FrameRendered):
            self.frames_rendered += 1
            if job.abandoned:
                result.path.unlink(missing_ok=True)  # another agent delivered it first
                return
            self._queue_upload(assignment, result, job.frame)
        else:
            if result.exit_code is not None or not session.session.alive:
                with self._lock:
                    self._sessions.pop(assignment.task_id, None)
                session.session.close()
            if not job.abandoned:
                self._report_failure(job, result.error, str(result.fault), list(result.log_tail))

    @staticmethod
    def _render_tile(
        session: RenderSession, job: _Job, out_dir: Path, progress: Callable[[FrameProgress], None]
    ) -> FrameRendered | FrameFailed:
        """One tile of a still: the whole frame's size with only the tile's region rendered, in a lossless
        format, uploaded under the tile's index (the manager stitches them)."""
        assignment = job.assignment
        regions = assignment.tile_regions
        if not 0 <= job.frame < len(regions) or len(regions[job.frame]) != 4:
            return FrameFailed(job.frame, f"tile {job.frame} has no region in the assignment", Fault.RENDER_ERROR, 0.0)
        x0, y0, x1, y1 = (int(v) for v in regions[job.frame])
        frame = assignment.tile_frame if assignment.tile_frame is not None else 0
        return session.render(
            frame,
            out_dir / f"tile_{job.frame:03d}_{'-' if frame < 0 else ''}######",
            on_progress=progress,
            timeout=assignment.frame_timeout_s,
            border=(x0, y0, x1, y1),
            image_format=tile_image_format(assignment.output_type),
        )

    def _session_for(self, assignment: p.WorkAssignment) -> _Session:
        with self._lock:
            existing = self._sessions.get(assignment.task_id)
        if existing is not None and existing.session.alive:
            return existing
        choice = select_blender(self.installs, assignment.blender_version)
        if choice.install is None:
            raise SessionStartError(choice.reason, Fault.CANNOT_READ_FILE)
        blend = self._task_blend(assignment)
        settings = RenderSettings(
            trusted=assignment.trusted,
            threads=self.config.threads,
            device=self.config.render.device,
            gpus=self.config.render.gpus,
            use_cpu_with_gpu=self.config.render.use_cpu_with_gpu,
            scene=assignment.scene or None,
            extra_env=self.config.render.extra_env,
        )
        session = RenderSession(
            choice.install, blend, settings, on_log=self.log_lines.append, memory_limit_mb=assignment.memory_limit_mb
        )
        ready = session.start()
        self.last_startup_s = ready.startup_seconds
        wrapped = _Session(session)
        with self._lock:
            self._sessions[assignment.task_id] = wrapped
            stale = sorted(self._sessions.items(), key=lambda kv: kv[1].last_used)[:-MAX_WARM_SESSIONS]
            for task_id, _ in stale:
                del self._sessions[task_id]
        for _, old in stale:
            self._close_later(old.session)
        return wrapped

    def _close_later(self, session: RenderSession) -> None:
        """Close a Blender we no longer keep, off the way to the next frame and outside the lock: quitting
        takes Blender 0.3 s for a small scene and more for a big one. :meth:`close` waits for it."""
        thread = threading.Thread(target=session.close, name="agent-close-session", daemon=True)
        thread.start()
        with self._lock:
            self._closing = [t for t in self._closing if t.is_alive()] + [thread]

    def _close_idle_sessions(self, force_tasks: set[str] | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            idle = [
                t
                for t, s in self._sessions.items()
                if (force_tasks and t in force_tasks) or now - s.last_used > IDLE_SESSION_S
            ]
            closing = [self._sessions.pop(t) for t in idle]
        for s in closing:
            s.session.close()

    # -- files -------------------------------------------------------------------------------
    def _task_blend(self, assignment: p.WorkAssignment) -> Path:
        """The .blend to load: the task's file, or for a zip project its main .blend, unpacked once into its
        own folder so that ``//`` paths resolve exactly as on the artist's PC."""
        if assignment.data_type != MULTI_FILE:
            return self._fetch_file(assignment)
        folder = self.config.work_dir / "projects" / assignment.file_sha256
        note = folder.with_name(f"{folder.name}.main")
        if not folder.is_dir():
            archive = self._fetch_file(assignment)
            partial = folder.with_name(f".{folder.name}.part")
            shutil.rmtree(partial, ignore_errors=True)
            try:
                with open_project(archive, assignment.main_blend) as project:
                    project.extract(partial)
                    note.write_text(project.main_blend)
            except OSError:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            except BlendFileError as exc:  # unsafe or damaged: the same on every agent, a real failure
                raise AgentError(f"the project cannot be unpacked: {exc.message}") from exc
            partial.replace(folder)  # complete or not there at all
            archive.unlink(missing_ok=True)  # the unpacked folder is the cache from now on
        os.utime(folder)  # most recently used: evicted last
        try:
            main = assignment.main_blend or note.read_text().strip()
        except OSError as exc:
            raise AgentError(f"the unpacked project has no record of its main .blend: {exc}") from exc
        blend = folder.joinpath(*PurePosixPath(main).parts)
        if ".." in PurePosixPath(main).parts or not blend.is_file():
            raise AgentError(f"the project has no {main!r} to render")
        return blend

    def _fetch_file(self, assignment: p.WorkAssignment) -> Path:
        """The task's file from the cache, or downloaded by its sha256 (and checked against it)."""
        cache = self.config.work_dir / "cache"
        suffix = ".zip" if assignment.data_type == MULTI_FILE else ".blend"
        target = cache / f"{assignment.file_sha256}{suffix}"
        if target.exists():
            os.utime(target)  # most recently used: evicted last
            return target
        client = self._http()
        if client is None:
            raise AgentError("no manager to download the file from")
        partial = cache / f".{assignment.file_sha256}.part"
        digest = hashlib.sha256()
        try:
            with client.stream("GET", p.MANAGER_FILE.format(sha256=assignment.file_sha256)) as r:
                if r.status_code >= 500:
                    raise TransferError(f"the manager could not send the task's file: HTTP {r.status_code}")
                if r.status_code != 200:
                    raise AgentError(f"downloading the task's file failed: HTTP {r.status_code}")
                with partial.open("wb") as out:
                    for chunk in r.iter_bytes(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        except httpx.HTTPError as exc:
            partial.unlink(missing_ok=True)
            raise TransferError(f"downloading the task's file was interrupted: {exc}") from exc
        except OSError:
            partial.unlink(missing_ok=True)  # a full disk: leave no half file behind
            raise
        if digest.hexdigest() != assignment.file_sha256:
            partial.unlink(missing_ok=True)
            raise AgentError("the downloaded file does not match its sha256")
        self._evict(cache, keep=assignment.file_sha256, incoming=partial.stat().st_size)
        partial.replace(target)
        return target

    def _evict(self, cache: Path, keep: str, incoming: int) -> None:
        """Keep the task files (and unpacked projects) under the cache limit, oldest use first, never one
        a warm Blender has open."""
        projects = self.config.work_dir / "projects"
        entries = [f for f in cache.iterdir() if f.suffix in (".blend", ".zip") and not f.name.startswith(keep)]
        if projects.is_dir():
            entries += [d for d in projects.iterdir() if d.is_dir() and not d.name.startswith((keep, "."))]
        sized = sorted(((e.stat().st_mtime, e, _size(e)) for e in entries), key=lambda t: t[0])
        total = sum(size for _, _, size in sized) + incoming
        in_use = {s.session.blend_file for s in self._sessions.values()}
        for _, entry, size in sized:
            if total <= self.config.cache_limit_bytes:
                break
            if any(path == entry or entry in path.parents for path in in_use):
                continue
            total -= size
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                entry.with_name(f"{entry.name}.main").unlink(missing_ok=True)
            else:
                entry.unlink(missing_ok=True)

    # -- results -----------------------------------------------------------------------------
    def _queue_upload(self, assignment: p.WorkAssignment, result: FrameRendered, number: int) -> None:
        """Send a rendered frame (or tile: ``number`` is what the manager calls it, a frame or a tile index).
        It moves into the outbox with a note first, so an agent restart still delivers it."""
        outbox = self.config.work_dir / "outbox"
        target = outbox / f"{assignment.task_id}-{number}{result.path.suffix}"
        try:
            shutil.move(result.path, target)  # a rename: same file system, needs no space
        except OSError as exc:
            log.warning("frame %d stays where Blender wrote it (%s): sent, but lost if the agent restarts", number, exc)
            target = result.path
        upload = _Upload(
            assignment.task_id, assignment.attempt, number, target, result.sha256, result.seconds,
            result.path.suffix.lstrip(".") or "png",
        )  # fmt: skip
        note = {k: (str(v) if isinstance(v, Path) else v) for k, v in upload.__dict__.items()}
        note_path = outbox / f"{assignment.task_id}-{number}.json"
        try:
            note_path.write_text(json.dumps(note))
        except OSError as exc:
            # A disk with room for the frame but not for this note: send the frame anyway; only surviving an
            # agent restart needs the note.
            note_path.unlink(missing_ok=True)
            log.warning("no note for frame %d in the outbox (%s): sent, but lost if the agent restarts", number, exc)
        self._uploads.put(upload)

    def _upload_loop(self) -> None:
        failures = 0
        while True:
            item = self._uploads.get()
            if item is None:
                return
            while not self._stop.is_set():
                client = self._http()
                if client is not None and self._send(client, item):
                    failures = 0
                    break
                failures += 1
                self._stop.wait(RETRY_S[min(failures, len(RETRY_S) - 1)])
            else:
                return  # stopping: the outbox keeps it for the next start

    def _send(self, client: httpx.Client, item: _Upload) -> bool:
        headers = {
            p.HEADER_AGENT_ID: self.agent_id,
            p.HEADER_ATTEMPT: item.attempt,
            p.HEADER_SHA256: item.sha256,
            p.HEADER_RENDER_SECONDS: f"{item.seconds:.3f}",
            p.HEADER_EXTENSION: item.extension,
        }
        url = p.MANAGER_FRAME.format(task_id=item.task_id, frame=item.frame)
        try:
            with item.path.open("rb") as body:
                r = client.put(url, content=body, headers=headers)
        except FileNotFoundError:
            self._forget(item)
            return True
        except httpx.HTTPError as exc:
            log.info("upload of frame %d failed, will retry: %s", item.frame, exc)
            return False
        if r.status_code >= 500:
            return False
        if r.status_code >= 400:
            log.warning("manager refused frame %d: %s %s", item.frame, r.status_code, r.text[:200])
        self._forget(item)
        return True

    def _forget(self, item: _Upload) -> None:
        item.path.unlink(missing_ok=True)
        (item.path.parent / f"{item.task_id}-{item.frame}.json").unlink(missing_ok=True)

    def _report_failure(self, job: _Job, error: str, fault: str, tail: list[str]) -> None:
        client = self._http()
        if client is None:
            return
        failure = p.FrameFailure(self.agent_id, job.assignment.attempt, error, fault, tail[-40:])
        url = p.MANAGER_FRAME_FAILED.format(task_id=job.assignment.task_id, frame=job.frame)
        for delay in RETRY_S:
            try:
                client.post(url, json=failure.to_dict())
            except httpx.HTTPError:
                if self._stop.wait(delay):
                    return
            else:
                return

    # -- heartbeat ---------------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(p.HEARTBEAT_INTERVAL_S):
            client = self._http()
            if client is None or not self._known:
                continue
            with self._lock:
                current = self._current
                queued = list(self._queue)
            running = (
                [
                    p.FrameProgress(
                        current.assignment.task_id, current.assignment.attempt, current.frame, current.progress
                    )
                ]
                if current is not None
                else []
            )
            held = [p.FrameProgress(j.assignment.task_id, j.assignment.attempt, j.frame, 0.0) for j in queued]
            beat = p.Heartbeat(self.agent_id, self.state, running=running, queued=held)
            try:
                r = client.post(p.MANAGER_HEARTBEAT, json=beat.to_dict())
                reply = p.HeartbeatReply.from_dict(r.json()) if r.status_code == 200 else None
            except (httpx.HTTPError, p.ProtocolError, ValueError) as exc:
                log.info("heartbeat failed: %s", exc)
                continue
            if reply is None:
                continue
            if not reply.known:
                self._known = False  # the manager restarted: say hello again
                self._wake.set()
                continue
            self._apply(reply)

    def _apply(self, reply: p.HeartbeatReply) -> None:
        drop = {(x.attempt, x.frame) for x in reply.abandon}
        cancelled = set(reply.cancel_tasks)
        kill: _Session | None = None
        with self._lock:
            for job in self._queue:
                if (job.assignment.attempt, job.frame) in drop or job.assignment.task_id in cancelled:
                    job.abandoned = True
            self._queue = deque(j for j in self._queue if not j.abandoned)
            current = self._current
            if current is not None and (
                (current.assignment.attempt, current.frame) in drop or current.assignment.task_id in cancelled
            ):
                current.abandoned = True
                kill = self._sessions.pop(current.assignment.task_id, None)
        if kill is not None:
            kill.session.cancel()  # stops Blender within 2 s; the frame is someone else's now
            kill.session.close()
        if cancelled:
            self._close_idle_sessions(force_tasks=cancelled)


class _ManagerTransport(httpx.HTTPTransport):
    """httpx's transport to the manager, which says in words why a TLS handshake was refused."""

    REPEAT_S = 60.0

    def __init__(self, verify: ssl.SSLContext | bool, pinned_sha256: str | None) -> None:
        super().__init__(verify=verify)
        self._pinned = pinned_sha256
        self._said = -self.REPEAT_S

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.ConnectError as exc:
            if is_pin_refusal(exc):
                self._say_refused(request, exc)
            raise

    def _say_refused(self, request: httpx.Request, exc: httpx.ConnectError) -> None:
        now = time.monotonic()
        if now - self._said < self.REPEAT_S:  # the worker retries every few seconds: a line a minute is enough
            return
        self._said = now
        where = f"{request.url.scheme}://{request.url.netloc.decode()}"
        if self._pinned is not None:
            log.error(
                "refusing the manager at %s: its TLS certificate is not the one pinned when this agent was paired "
                "(sha256 %s). Another machine answers at that address (a man in the middle?), or the manager's "
                "certificate was made anew; then revoke this agent and pair it again. (%s)",
                where, short_fingerprint(self._pinned), exc,
            )  # fmt: skip
        else:
            log.error(
                "the manager at %s uses a TLS certificate this agent does not trust: it was paired without TLS. "
                "Revoke it and pair it again from the control station, which pins the certificate. (%s)",
                where, exc,
            )  # fmt: skip


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _describe(exc: BaseException) -> str:
    """What the user reads in the task's log; a full disk says so in words the log search finds."""
    if _is_disk_full(exc):
        where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
        return f"No space left on device: the agent's disk is full{where}"
    return str(exc) or type(exc).__name__


def status_text(core: AgentCore) -> str:
    """One line for the tray's tooltip."""
    current = core.current_job
    if core.paused:
        return "Paused"
    if current is not None:
        return f"Rendering frame {current.frame} of task {current.assignment.task_id[:8]} ({current.progress:.0%})"
    if core.manager_url is None:
        return "Idle: waiting for a manager"
    return "Idle"
