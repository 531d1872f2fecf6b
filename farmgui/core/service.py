"""FarmService: the facade the REST API, the GUI and the CLI call. Qt-free.

It owns the scheduler (in memory, rebuilt from the database on start), the database (the record
that survives a restart) and the file store. Every public method is one short unit of work under
one lock: the HTTP server's threads, the maintenance thread and the GUI's workers all come here.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm as so

from agent.protocol import (
    AgentInfo,
    FrameAccepted,
    FrameFailure,
    FrameProgress,
    Heartbeat,
    HeartbeatReply,
    WorkAssignment,
    WorkRequest,
)
from blendfile import BlenderDataType, BlendFile, BlendFileError, RenderOutputType, Scene, detect_data_type
from blendfile.project import open_project

from . import db
from .chunking import ChunkPolicy
from .frame_rows import FrameRowWriter
from .inspect import scene_problems
from .models import Agent, BlockedAgent, Frame, RenderTask, TaskEvent, utcnow
from .scheduler import FrameState, Outcome, Scheduler, TaskRun
from .states import ACTIVE, Stage, can_transition, transition
from .storage import Storage, safe_extension

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 8 << 30
"""Default upload size limit (8 GiB); a setting."""
BLENDER_VERSION = re.compile(r"[0-9]{1,4}(\.[0-9]{1,4}){0,3}")


class FarmError(Exception):
    """Base of the service's errors; the API maps each subclass to an HTTP status."""


class NotFound(FarmError):
    pass


class Conflict(FarmError):
    """The request does not fit the task's stage (e.g. downloading an unfinished task)."""


class BadRequest(FarmError):
    """The input is wrong (a file that is not a blend file, an empty frame range, ...)."""


@dataclass(frozen=True)
class TaskOptions:
    """What a submitter may override; None keeps the file's own setting."""

    scene: str | None = None
    frame_start: int | None = None
    frame_end: int | None = None
    frame_step: int | None = None
    priority: int = 0
    trusted: bool = False
    preview_first: bool = False
    frame_timeout_s: float | None = None
    memory_limit_mb: float | None = None
    tiles: int | None = None
    """Split a one-frame task into this many tiles, rendered on different agents and stitched."""
    tile_overlap: int | None = None
    """Pixels each tile renders beyond its region (None: :data:`DEFAULT_TILE_OVERLAP`)."""
    main_blend: str | None = None
    """For a zip project with several .blend files at its top: the one to render."""


MAX_TILES = 64
DEFAULT_TILE_OVERLAP = 16
"""Without denoising the overlap changes no pixel (Cycles samples each pixel alike whatever the border); with
denoising it gives the denoiser the neighbourhood across each seam: 16 px cut the seam error 5-9x, to the level
of the rest of the image, for 4.7 % more pixels at 1080p with 4 tiles (docs/tiles.md has the measurements)."""


@dataclass(frozen=True)
class WorkerProgress:
    agent: str
    share: float
    progress: float


@dataclass(frozen=True)
class TaskProgress:
    stage: Stage
    stage_progress: float
    """``-inf`` where a stage progress makes no sense (uploaded, queued, paused, failed, cancelled)."""
    total_progress: float
    frames_done: int
    frames_total: int
    frames_rendered: int
    workers: list[WorkerProgress] = field(default_factory=list)
    error: str | None = None
    waiting_reason: str | None = None


@dataclass(frozen=True)
class FrameUpload:
    """A rendered frame that arrived from an agent: its file on disk (under the task's folder), checked against its
    sha256 by whoever received it."""

    task_id: str
    frame: int
    agent_id: str
    attempt: str | None
    received: Path
    sha256: str
    seconds: float
    """How long the agent's Blender took to render it."""
    extension: str


@dataclass(frozen=True)
class AgentSnapshot:
    agent_id: str
    name: str
    host: str
    port: int
    online: bool
    enabled: bool
    blenders: list[str]
    current: list[tuple[str, int, float]]
    """(task id, frame, progress) of what it renders now."""
    seconds_per_frame: float | None


_BLOCKLIST_CLEARED = "block list cleared by the user"
_RESET_MESSAGES = ("retrying ", _BLOCKLIST_CLEARED)
"""Log messages after which failure counts start again from zero (see ``_restore_failures``)."""

# Render share of the total progress; merging is the rest (it is quick next to rendering).
_RENDER_WEIGHT = 0.95


class FarmService:
    def __init__(
        self,
        data_dir: Path,
        db_url: str | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        heartbeat_timeout_s: float = 15.0,
        policy: ChunkPolicy | None = None,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        merger: Callable[[FarmService, str], None] | None = None,
    ) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.storage = Storage(data_dir)
        self.engine, self.sessions = db.open_database(db_url or db.sqlite_url(data_dir))
        self.scheduler = Scheduler(clock, policy, heartbeat_timeout_s)
        self.scheduler.attempt_prefix = secrets.token_hex(3) + "-"
        self.max_upload_bytes = max_upload_bytes
        self.lock = threading.RLock()
        self.file_server_address = ""
        self.file_server_port = 0
        self._merger = merger
        self._merges: dict[str, threading.Thread] = {}
        self._merge_cancel: dict[str, threading.Event] = {}
        self._merge_written: dict[str, tuple[float, float]] = {}
        """Task id -> (merge progress, when) last written to the database."""
        self._stop = threading.Event()
        self._maintenance: threading.Thread | None = None
        self._agent_info: dict[str, AgentInfo] = {}
        self._assignment_fields: dict[str, dict[str, Any]] = {}
        """Task id -> the ``WorkAssignment`` fields of a task being rendered (see ``_start_rendering``)."""
        self._restore()
        self.frame_rows = FrameRowWriter(self.engine)

    # -- lifetime ----------------------------------------------------------------------------
    def start(self, interval_s: float = 1.0) -> None:
        """Start the maintenance loop: lost agents, stalled frames, merges."""
        if self._maintenance is None:
            self._maintenance = threading.Thread(
                target=self._maintain, args=(interval_s,), name="farm-maintenance", daemon=True
            )
            self._maintenance.start()

    def close(self) -> None:
        self._stop.set()
        if self._maintenance is not None:
            self._maintenance.join(timeout=10)
            self._maintenance = None
        for event in self._merge_cancel.values():
            event.set()
        for thread in list(self._merges.values()):
            thread.join(timeout=30)
        self.frame_rows.close()
        self.engine.dispose()

    def _maintain(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.tick()
            except Exception:  # the loop must survive a bug in one round; it is logged, not hidden
                log.exception("maintenance round failed")

    def tick(self) -> None:
        """One maintenance round (the loop calls it every second; tests call it directly)."""
        with self.lock:
            for agent_id in self.scheduler.expire():
                self._log_lost(agent_id)
            for lease, frame in self.scheduler.stalled():
                task = self.scheduler.tasks[lease.task_id]
                self._record_failure(
                    lease.task_id,
                    frame,
                    lease.agent_id,
                    f"frame {frame} made no progress for {task.frame_timeout_s:g} s",
                    "stalled",
                    [],
                    lease.attempt,
                )
            self._advance_stages()

    # -- restore after a restart -------------------------------------------------------------
    def _restore(self) -> None:
        with self.sessions.begin() as s:
            for task in s.scalars(
                sa.select(RenderTask).where(RenderTask.stage.in_([*ACTIVE, Stage.PAUSED, Stage.MERGING]))
            ):
                rows = s.execute(
                    sa.select(Frame.number, Frame.render_seconds, Frame.agent_id).where(
                        Frame.task_id == task.id, Frame.state == FrameState.DONE
                    )
                ).all()
                self._schedule(task, {number: seconds for number, seconds, _ in rows})
                restored = self.scheduler.tasks[task.id]
                for number, _, agent_id in rows:
                    if number in restored.frames:
                        restored.credit(restored.frames[number], agent_id)  # who rendered it, for the frame grid
                if task.stage is Stage.PAUSED:
                    self.scheduler.pause_task(task.id)
                blocked = s.scalars(sa.select(BlockedAgent.agent_id).where(BlockedAgent.task_id == task.id))
                self.scheduler.tasks[task.id].blocked.update(blocked)
                self._restore_failures(s, task.id)
            for agent in s.scalars(sa.select(Agent)):
                entry = self.scheduler.agent_online(agent.id, [b for b in agent.blenders.split(",") if b])
                entry.online = False  # until it says hello again
                entry.enabled = agent.enabled

    def _restore_failures(self, s: so.Session, task_id: str) -> None:
        """Rebuild who failed what from the task's log, so "3 failures" still means 3 after a restart.

        Counting starts after the latest retry or block-list clearing, which reset the counts.
        """
        entry = self.scheduler.tasks[task_id]
        events = s.scalars(sa.select(TaskEvent).where(TaskEvent.task_id == task_id).order_by(TaskEvent.id))
        for event in events:
            if event.level == "info" and event.message.startswith(_RESET_MESSAGES):
                entry.failures_by_agent.clear()
                for cleared in entry.frames.values():
                    cleared.failed_by.clear()
            elif event.level == "error" and event.agent_id and event.frame is not None and event.fault:
                entry.failures_by_agent[event.agent_id] = entry.failures_by_agent.get(event.agent_id, 0) + 1
                slot = entry.frames.get(event.frame)
                if slot is not None and slot.state is not FrameState.DONE:
                    slot.failed_by[event.agent_id] = event.message

    @staticmethod
    def _work_units(task: RenderTask) -> range:
        """What the scheduler hands out: frame numbers, or for a tiled still its tile indices."""
        if task.tiles:
            return range(task.tiles)
        if task.start is None or task.end is None:
            raise FarmError(f"task {task.id} has no frame range")
        return range(task.start, task.end + 1, max(task.step, 1))

    def _schedule(self, task: RenderTask, done: dict[int, float | None] | None = None) -> None:
        frames = self._work_units(task)
        self.scheduler.add_task(
            task.id,
            frames,
            priority=task.priority,
            submitted=task.created_at.timestamp(),
            blender_version=task.blender_version or "0.0",
            preview_first=task.preview_first,
            frame_timeout_s=task.frame_timeout_s,
            done=done,
        )

    # -- submitting ----------------------------------------------------------------------------
    def init_new_task(self, original_name: str = "") -> tuple[Path, str]:
        """Create a task in stage ``uploaded``; returns where to save its file, and its key."""
        task_id = uuid.uuid4().hex
        with self.sessions.begin() as s:
            s.add(
                RenderTask(
                    id=task_id,
                    original_name=original_name[:255],
                    file_server_address=self.file_server_address,
                    file_server_port=self.file_server_port,
                )
            )
        return self.storage.upload_path(task_id), task_id

    def run_task(self, task_id: str, options: TaskOptions | None = None) -> dict[str, Any]:
        """Read the uploaded file, validate it and queue it. Bad input: BadRequest, task failed.

        The file is at :meth:`init_new_task`'s path; if whoever wrote it told the storage its digest
        (:meth:`Storage.remember_digest`), it is not read again to hash it.
        """
        options = options or TaskOptions()
        upload = self.storage.upload_path(task_id)
        refused: BadRequest | None = None
        with self.lock, self.sessions.begin() as s:
            task = self._get(s, task_id)
            if task.stage is not Stage.UPLOADED:
                raise Conflict(f"task {task_id} was already started")
            try:
                self._prepare(task, upload, options)
            except BadRequest as exc:
                refused = exc
            else:
                return self._queue_prepared(s, task)
        # Outside the failed transaction (it rolled back): the task fails with the reason, on record.
        upload.unlink(missing_ok=True)
        self.storage.forget_digest(upload)
        with self.sessions.begin() as s:
            task = self._get(s, task_id)
            task.stage = transition(task.stage, Stage.FAILED)
            task.error = str(refused)
            task.finished_at = utcnow()
            s.add(TaskEvent(task_id=task_id, level="error", message=str(refused)))
        assert refused is not None  # noqa: S101 - the only way here
        raise refused

    def _queue_prepared(self, s: so.Session, task: RenderTask) -> dict[str, Any]:
        """A validated task: its frames go in the database and the scheduler's queue."""
        task.stage = transition(task.stage, Stage.QUEUED)
        task.queued_at = utcnow()
        s.flush()
        s.execute(sa.insert(Frame), [{"task_id": task.id, "number": n} for n in self._work_units(task)])
        self._schedule(task)
        return self._task_dict(s, task)

    def submit_file(self, path: Path, options: TaskOptions | None = None) -> dict[str, Any]:
        """Copy a local file in and run it (what the GUI and ``farmgui submit`` on this PC do).

        The copy is hashed as it is written, so the file is read once. A file over the upload limit is
        refused (BadRequest) before any task is made, as the API refuses it (413).
        """
        size = path.stat().st_size
        if size > self.max_upload_bytes:
            raise BadRequest(f"{path.name} is too large: {size} bytes, the limit is {self.max_upload_bytes} bytes")
        upload, task_id = self.init_new_task(path.name)
        with path.open("rb") as src:
            self.storage.receive(src, upload, self.max_upload_bytes)
        return self.run_task(task_id, options)

    def _prepare(self, task: RenderTask, upload: Path, options: TaskOptions) -> None:
        if not upload.exists() or upload.stat().st_size == 0:
            raise BadRequest("the uploaded file is empty")
        try:
            data_type = detect_data_type(upload)
        except BlendFileError as exc:
            raise BadRequest(exc.message) from exc
        main_blend: str | None = None
        try:
            if data_type is BlenderDataType.MULTI_FILE:
                # Only the main .blend is read (decompressed to a temporary file); the agents unpack the rest.
                with open_project(upload, options.main_blend) as project:
                    main_blend = project.main_blend
                    with project.open_main_blend() as bfile:
                        scenes, current, version = bfile.scenes(), bfile.current_scene(), bfile.version
            else:
                with BlendFile.open(upload) as bfile:
                    scenes, current, version = bfile.scenes(), bfile.current_scene(), bfile.version
        except BlendFileError as exc:
            where = f"{main_blend}: " if main_blend else ""
            member = getattr(exc, "member", None)  # a zip project's entry at fault
            raise BadRequest(where + exc.message + (f": {member!r}" if member else "")) from exc
        scene: Scene | None = current
        if options.scene is not None:
            scene = next((sc for sc in scenes if sc.name == options.scene), None)
            if scene is None:
                names = ", ".join(sc.name for sc in scenes)
                raise BadRequest(f"no scene called {options.scene!r} (the file has: {names})")
        if scene is None:  # unreachable: current_scene() raises for a file without scenes
            raise BadRequest("the file has no scene")
        start = scene.frame_start if options.frame_start is None else options.frame_start
        end = scene.frame_end if options.frame_end is None else options.frame_end
        step = scene.frame_step if options.frame_step is None else options.frame_step
        if step < 1:
            raise BadRequest(f"the frame step must be at least 1, not {step}")
        if not (math.isfinite(scene.fps) and math.isfinite(scene.fps_base)):
            raise BadRequest(f"scene {scene.name!r}: the frame rate is not a finite number (a damaged file?)")
        checked = replace(scene, frame_start=start, frame_end=end, frame_step=step)
        problems = scene_problems(checked)
        if problems:
            raise BadRequest(f"scene {scene.name!r}: " + "; ".join(problems))
        tiles = self._check_tiles(options, checked)
        sha, size = self.storage.store_file(upload)
        task.data_type = data_type
        task.output_type = scene.output_type
        task.start, task.end, task.step = start, end, step
        task.file_sha256, task.file_size = sha, size
        task.scene = scene.name
        task.blender_version = version
        task.fps, task.fps_numerator, task.fps_base = scene.fps, scene.fps_numerator, scene.fps_base
        task.resolution_x, task.resolution_y = scene.render_size
        task.engine = scene.engine
        task.camera = scene.camera
        if scene.ffmpeg is not None:
            task.container, task.codec = scene.ffmpeg.container, scene.ffmpeg.codec
        task.priority = options.priority
        task.trusted = options.trusted
        task.preview_first = options.preview_first
        task.frame_timeout_s = options.frame_timeout_s
        task.memory_limit_mb = options.memory_limit_mb
        task.tiles = tiles
        task.main_blend = main_blend
        task.tile_overlap = DEFAULT_TILE_OVERLAP if options.tile_overlap is None else options.tile_overlap

    @staticmethod
    def _check_tiles(options: TaskOptions, scene: Scene) -> int | None:
        """The number of tiles of a still split across agents, or None for a task of whole frames."""
        if options.tiles is None or options.tiles == 1:
            return None
        if not 2 <= options.tiles <= MAX_TILES:
            raise BadRequest(f"tiles must be between 2 and {MAX_TILES}, not {options.tiles}")
        if scene.frame_count != 1:
            raise BadRequest(
                f"only a single frame can be split into tiles; this task has {scene.frame_count} frames "
                f"({scene.frame_start} to {scene.frame_end}): set frame_start = frame_end"
            )
        from .tiles import can_stitch, grid_shape

        if not can_stitch(scene.output_type.value):
            raise BadRequest(f"a {scene.output_type.value} image cannot be split into tiles (no stitching for it)")
        width, height = scene.render_size
        try:
            grid_shape(width, height, options.tiles)
        except ValueError as exc:
            raise BadRequest(f"a {width}x{height} image cannot be split into {options.tiles} tiles: {exc}") from exc
        if options.tile_overlap is not None and not 0 <= options.tile_overlap <= 1024:
            raise BadRequest(f"tile_overlap must be between 0 and 1024 pixels, not {options.tile_overlap}")
        return options.tiles

    # -- user actions --------------------------------------------------------------------------
    def _change_stage(self, s: so.Session, task: RenderTask, target: Stage) -> None:
        task.stage = transition(task.stage, target)
        self._assignment_fields.pop(task.id, None)  # the next assignment reads the task again (``_start_rendering``)

    def cancel(self, task_id: str) -> None:
        with self.lock, self.sessions.begin() as s:
            task = self._get(s, task_id)
            if not can_transition(task.stage, Stage.CANCELLED):
                raise Conflict(f"task {task_id} is {task.stage.value} and cannot be cancelled")
            self._change_stage(s, task, Stage.CANCELLED)
            task.finished_at = utcnow()
            if task_id in self.scheduler.tasks:
                self.scheduler.cancel_task(task_id)
            if task_id in self._merge_cancel:
                self._merge_cancel[task_id].set()
            s.add(TaskEvent(task_id=task_id, message="cancelled by the user"))

    def pause(self, task_id: str) -> None:
        with self.lock, self.sessions.begin() as s:
            task = self._get(s, task_id)
            if not can_transition(task.stage, Stage.PAUSED):
                raise Conflict(f"task {task_id} is {task.stage.value} and cannot be paused")
            self._change_stage(s, task, Stage.PAUSED)
            self.scheduler.pause_task(task_id)

    def resume(self, task_id: str) -> None:
        with self.lock, self.sessions.begin() as s:
            task = self._get(s, task_id)
            if task.stage is not Stage.PAUSED:
                raise Conflict(f"task {task_id} is {task.stage.value}, not paused")
            started = self.scheduler.tasks[task_id].done_count > 0 or task.started_at is not None
            self._change_stage(s, task, Stage.RENDERING if started else Stage.QUEUED)
            self.scheduler.resume_task(task_id)

    def retry(self, task_id: str) -> int:
        """Requeue the failed frames of a failed task (and clear its block list)."""
        with self.lock, self.sessions.begin() as s:
            task = self._get(s, task_id)
            if task.stage is not Stage.FAILED or task_id not in self.scheduler.tasks:
                raise Conflict(f"task {task_id} is {task.stage.value}: only a failed render can be retried")
            count = self.scheduler.retry_failed(task_id)
            self._change_stage(s, task, Stage.QUEUED)
            task.error = None
            s.execute(sa.delete(BlockedAgent).where(BlockedAgent.task_id == task_id))
            s.execute(
                sa.update(Frame)
                .where(Frame.task_id == task_id, Frame.state == FrameState.FAILED)
                .values(state=FrameState.QUEUED)
            )
            s.add(TaskEvent(task_id=task_id, message=f"retrying {count} failed frame(s)"))
            return count

    def set_priority(self, task_id: str, priority: int) -> None:
        with self.lock, self.sessions.begin() as s:
            task = self._get(s, task_id)
            task.priority = priority
            if task_id in self.scheduler.tasks:
                self.scheduler.set_priority(task_id, priority)

    def clear_blocklist(self, task_id: str) -> None:
        with self.lock, self.sessions.begin() as s:
            self._get(s, task_id)
            s.execute(sa.delete(BlockedAgent).where(BlockedAgent.task_id == task_id))
            s.add(TaskEvent(task_id=task_id, message=_BLOCKLIST_CLEARED))
            if task_id in self.scheduler.tasks:
                self.scheduler.clear_blocklist(task_id)

    def set_agent_enabled(self, agent_id: str, enabled: bool) -> None:
        with self.lock, self.sessions.begin() as s:
            agent = s.get(Agent, agent_id)
            if agent is None:
                raise NotFound(f"no agent {agent_id}")
            agent.enabled = enabled
            self.scheduler.set_agent_enabled(agent_id, enabled)

    # -- reading -------------------------------------------------------------------------------
    def _get(self, s: so.Session, task_id: str) -> RenderTask:
        task = s.get(RenderTask, task_id)
        if task is None:
            raise NotFound(f"no task {task_id}")
        return task

    def task(self, task_id: str) -> dict[str, Any]:
        with self.lock, self.sessions.begin() as s:
            return self._task_dict(s, self._get(s, task_id))

    def tasks(self) -> list[dict[str, Any]]:
        with self.lock, self.sessions.begin() as s:
            return [self._task_dict(s, t) for t in s.scalars(sa.select(RenderTask).order_by(RenderTask.created_at))]

    def _task_dict(self, s: so.Session, task: RenderTask) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for column in RenderTask.__table__.columns:
            value = getattr(task, column.key)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif hasattr(value, "value"):
                value = value.value
            values[column.key] = value
        values["task_key"] = task.id
        progress = self._progress(s, task)
        values["frames_total"] = progress.frames_total
        values["frames_done"] = progress.frames_done
        values["waiting_reason"] = progress.waiting_reason
        return values

    def progress_simple(self, task_id: str) -> tuple[Stage, float, float]:
        """(stage, current stage progress or -inf, total progress), as the seed defines it."""
        p = self.progress(task_id)
        return p.stage, p.stage_progress, p.total_progress

    def progress_detailed(self, task_id: str) -> list[tuple[float, float]]:
        """For the rendering stage: (share of the task assigned to a worker, its progress) each."""
        return [(w.share, w.progress) for w in self.progress(task_id).workers]

    def progress(self, task_id: str) -> TaskProgress:
        with self.lock, self.sessions.begin() as s:
            return self._progress(s, self._get(s, task_id))

    def _progress(self, s: so.Session, task: RenderTask) -> TaskProgress:
        entry = self.scheduler.tasks.get(task.id)
        if entry is not None:
            total = len(entry.frames)
            done = entry.done_count
            rendered = entry.renders_total
            workers = [WorkerProgress(a, share, prog) for a, share, prog in self.scheduler.workers(task.id)]
            partial = sum(w.share * w.progress for w in workers)
        else:
            total = s.scalar(sa.select(sa.func.count()).where(Frame.task_id == task.id)) or 0
            done = (
                s.scalar(sa.select(sa.func.count()).where(Frame.task_id == task.id, Frame.state == FrameState.DONE))
                or 0
            )
            rendered = s.scalar(sa.select(sa.func.sum(Frame.renders)).where(Frame.task_id == task.id)) or done
            workers, partial = [], done / total if total else 0.0
        render_part = partial if total else 0.0
        stage = task.stage
        if stage is Stage.RENDERING:
            stage_progress = render_part
        elif stage is Stage.MERGING:
            stage_progress = task.merge_progress
        elif stage is Stage.FINISHED:
            stage_progress = 1.0
        else:
            stage_progress = -math.inf
        if stage is Stage.FINISHED:
            total_progress = 1.0
        elif stage is Stage.MERGING:
            total_progress = _RENDER_WEIGHT + (1 - _RENDER_WEIGHT) * task.merge_progress
        else:
            total_progress = _RENDER_WEIGHT * render_part
        reason = self.scheduler.waiting_reason(task.id) if entry is not None and stage in ACTIVE else None
        return TaskProgress(
            stage,
            stage_progress,
            total_progress,
            done,
            total,
            rendered,
            workers if stage in (Stage.RENDERING, Stage.PAUSED) else [],
            task.error,
            reason,
        )

    def frames(self, task_id: str) -> list[dict[str, Any]]:
        """Every frame with its state and the agent that has or had it (the GUI's frame grid).

        A task the scheduler holds is answered from its memory: loading 10,000 ``Frame`` rows through the ORM
        under the lock took 365-530 ms and filled the oldest GC generation (BENCHMARKS.md, "Control station
        responsiveness"); from memory it is a few ms. Other tasks (finished, failed) come from one column select.
        """
        with self.lock:
            entry = self.scheduler.tasks.get(task_id)
            if entry is not None:
                holders = {
                    n: lease.agent_id
                    for lease in self.scheduler.leases.values()
                    if lease.task_id == task_id
                    for n in lease.frames
                }
                return [
                    {
                        "frame": n,
                        "state": slot.state.value,
                        "agent": holders.get(n, slot.done_by),
                        "seconds": slot.seconds,
                    }
                    for n, slot in sorted(entry.frames.items())
                ]
        self.frame_rows.flush()  # rows of the task's last frames may still be on their way
        with self.sessions.begin() as s:
            self._get(s, task_id)
            rows = s.execute(
                sa.select(Frame.number, Frame.state, Frame.agent_id, Frame.render_seconds)
                .where(Frame.task_id == task_id)
                .order_by(Frame.number)
            )
            return [
                {"frame": number, "state": state.value, "agent": agent_id, "seconds": seconds}
                for number, state, agent_id, seconds in rows
            ]

    def events(self, task_id: str) -> list[dict[str, Any]]:
        with self.sessions.begin() as s:
            self._get(s, task_id)
            rows = s.scalars(sa.select(TaskEvent).where(TaskEvent.task_id == task_id).order_by(TaskEvent.id))
            return [
                {
                    "at": e.at.isoformat(),
                    "level": e.level,
                    "agent": e.agent_id,
                    "frame": e.frame,
                    "fault": e.fault,
                    "message": e.message,
                    "log_tail": e.log_tail.splitlines() if e.log_tail else [],
                }
                for e in rows
            ]

    def result_file(self, task_id: str) -> Path:
        with self.sessions.begin() as s:
            task = self._get(s, task_id)
            if task.stage is not Stage.FINISHED or task.result_path is None:
                raise Conflict(f"task {task_id} is {task.stage.value}: the result is not ready")
            return self.storage.absolute(task.result_path)

    def frame_files(self, task_id: str) -> list[Path]:
        return list(self._stored_frames(task_id).values())

    def _stored_frames(self, task_id: str) -> dict[int, Path]:
        """Frame number -> file of every frame stored as done, in frame order (after the rows still on their way)."""
        self.frame_rows.flush()
        with self.sessions.begin() as s:
            self._get(s, task_id)
            rows = s.execute(
                sa.select(Frame.number, Frame.path)
                .where(Frame.task_id == task_id, Frame.state == FrameState.DONE)
                .order_by(Frame.number)
            )
            return {number: self.storage.absolute(path) for number, path in rows if path}

    def agents(self) -> list[AgentSnapshot]:
        with self.lock, self.sessions.begin() as s:
            current: dict[str, list[tuple[str, int, float]]] = {}
            for lease in self.scheduler.leases.values():
                for frame, progress in lease.progress.items():
                    if frame in lease.frames:
                        current.setdefault(lease.agent_id, []).append((lease.task_id, frame, progress))
            result = []
            for row in s.scalars(sa.select(Agent).order_by(Agent.name)):
                entry = self.scheduler.agents.get(row.id)
                spf = [t.spf[row.id] for t in self.scheduler.tasks.values() if row.id in t.spf]
                result.append(
                    AgentSnapshot(
                        row.id,
                        row.name,
                        row.host,
                        row.port,
                        entry is not None and entry.online,
                        row.enabled,
                        [b for b in row.blenders.split(",") if b],
                        current.get(row.id, []),
                        spf[-1] if spf else None,
                    )
                )
            return result

    # -- the agents' side ----------------------------------------------------------------------
    def hello(self, info: AgentInfo, host: str | None = None) -> None:
        """An agent introduces itself (first contact, or back after a restart of either side)."""
        versions = [b.version for b in info.blenders]
        for version in versions:  # stored comma-joined and parsed by the scheduler: digits and dots only
            if not BLENDER_VERSION.fullmatch(version):
                raise BadRequest(f"not a Blender version: {version[:40]!r} (expected major.minor.patch)")
        with self.lock, self.sessions.begin() as s:
            row = s.get(Agent, info.agent_id)
            if row is None:
                row = Agent(id=info.agent_id, enabled=True)
                s.add(row)
            row.name = info.name
            row.host = host or info.host
            row.port = info.port
            row.blenders = ",".join(versions)
            row.cpus = info.cpus
            row.gpus = ",".join(info.gpus)
            row.last_seen = utcnow()
            entry = self.scheduler.agent_online(info.agent_id, versions)
            entry.enabled = row.enabled
            self._agent_info[info.agent_id] = info

    def heartbeat(self, beat: Heartbeat) -> HeartbeatReply:
        with self.lock:
            agent = self.scheduler.agents.get(beat.agent_id)
            if agent is None or not agent.online:
                return HeartbeatReply(known=False)
            self.scheduler.seen(beat.agent_id)
            abandon: list[FrameProgress] = []
            for p in beat.running:
                if not self.scheduler.progress(beat.agent_id, p.attempt, p.frame, p.progress):
                    abandon.append(p)
            held = [(p.attempt, p.frame) for p in beat.queued]
            dropped = set(self.scheduler.abandoned(beat.agent_id, held))
            abandon += [p for p in beat.queued if (p.attempt, p.frame) in dropped]
            cancelled = sorted(
                {p.task_id for p in (*beat.running, *beat.queued)}
                & {t for t, e in self.scheduler.tasks.items() if e.run is TaskRun.CANCELLED}
            )
            return HeartbeatReply(known=True, abandon=abandon, cancel_tasks=cancelled)

    def request_work(self, req: WorkRequest) -> WorkAssignment | None:
        with self.lock:
            if req.startup_seconds is not None and req.startup_seconds >= 0:
                self.scheduler.set_startup(req.agent_id, req.startup_seconds)
            work = self.scheduler.request_work(req.agent_id, req.warm_tasks, req.queued_frames)
            if work is None:
                return None
            fields = self._assignment_fields.get(work.task_id)
            if fields is None:
                fields = self._start_rendering(work.task_id)
            return WorkAssignment(task_id=work.task_id, attempt=work.attempt, frames=work.frames, **fields)

    def _start_rendering(self, task_id: str) -> dict[str, Any]:
        """A task's first assignment (or first since a stage change): the stage becomes ``rendering``, and what every
        assignment of the task tells the agent is read once and kept (``_assignment_fields``) until the task's stage
        changes again: the row read per assignment was 1.7 ms in benchmarks/manager_scale.py's profile."""
        with self.sessions.begin() as s:
            task = self._get(s, task_id)
            if task.stage is Stage.QUEUED:
                task.stage = transition(task.stage, Stage.RENDERING)
                task.started_at = task.started_at or utcnow()
            if task.file_sha256 is None or task.data_type is None:
                raise FarmError(f"task {task.id} has no file")
            fields = dict(
                file_sha256=task.file_sha256,
                file_name=task.original_name or "task.blend",
                file_size=task.file_size,
                data_type=task.data_type.value,
                scene=task.scene or "",
                blender_version=task.blender_version or "0.0",
                output_type=(task.output_type or RenderOutputType.PNG).value,
                trusted=task.trusted,
                frame_timeout_s=task.frame_timeout_s,
                memory_limit_mb=task.memory_limit_mb,
                main_blend=task.main_blend,
                **self._tile_fields(task),
            )
        self._assignment_fields[task_id] = fields
        return fields

    @staticmethod
    def _tile_fields(task: RenderTask) -> dict[str, Any]:
        if not task.tiles:
            return {}
        from .tiles import plan_tiles

        plan = plan_tiles(task.resolution_x or 1, task.resolution_y or 1, task.tiles, task.tile_overlap)
        return {"tile_frame": task.start, "tile_regions": [list(tile.render) for tile in plan]}

    def frame_upload_dir(self, task_id: str) -> Path | None:
        """Where to receive an uploaded frame of a task being rendered; None for any other task id
        (unknown, finished, or a name like ``..``), so that nothing is written for it."""
        with self.lock:
            if task_id not in self.scheduler.tasks:
                return None
        return self.storage.task_dir(task_id)

    def file_for(self, sha256: str) -> Path:
        try:
            path = self.storage.file_path(sha256)
        except ValueError as exc:
            raise NotFound(str(exc)) from exc
        if not path.exists():
            raise NotFound(f"no file {sha256}")
        return path

    def accept_frame(self, upload: FrameUpload) -> FrameAccepted:
        """A frame file arrived (already on disk, sha256 checked by the caller); answers once its row is committed."""
        accepted, committed = self.receive_frame(upload)
        if committed is not None:
            # Callbacks run in the order they were added, after ``result()`` waiters wake: waiting for one added
            # after ``_row_written`` returns once that has run too (a complete task's merge has started).
            handled = threading.Event()
            committed.add_done_callback(lambda _: handled.set())
            handled.wait()
            committed.result()
        return accepted

    def receive_frame(self, upload: FrameUpload) -> tuple[FrameAccepted, Future[None] | None]:
        """``accept_frame`` without the wait: the answer, and for a frame taken the future of its database row.

        The API's event loop awaits the future, so the upload is answered only once the frame is durable while the
        loop serves other requests; rows that arrive together are committed together (``FrameRowWriter``).
        """
        task_id, frame, agent_id, received = upload.task_id, upload.frame, upload.agent_id, upload.received
        try:
            ext = safe_extension(upload.extension)
        except ValueError as exc:
            received.unlink(missing_ok=True)
            raise BadRequest(str(exc)) from exc
        with self.lock:
            outcome = self.scheduler.frame_done(agent_id, task_id, frame, upload.seconds, upload.attempt)
            if outcome is not Outcome.ACCEPTED:
                received.unlink(missing_ok=True)
                return FrameAccepted(accepted=False, duplicate=outcome is Outcome.DUPLICATE), None
            target = self.storage.frame_path(task_id, frame, ext)
            received.replace(target)
            committed = self.frame_rows.submit(
                task_id,
                frame,
                {
                    "state": FrameState.DONE,
                    "agent_id": agent_id,
                    "render_seconds": upload.seconds,
                    "sha256": upload.sha256,
                    "path": self.storage.relative(target),
                    "renders": self.scheduler.tasks[task_id].frames[frame].renders,
                    "updated_at": utcnow(),
                },
            )
            committed.add_done_callback(functools.partial(self._row_written, task_id, frame))
            return FrameAccepted(accepted=True), committed

    def _row_written(self, task_id: str, frame: int, written: Future[None]) -> None:
        """A frame's row is committed (the task may be complete: its merge starts), or its write failed: the frame is
        queued again, so the upload's retry (it was answered 500) or another render is taken, and no merge starts a
        frame short."""
        with self.lock:
            error = written.exception()
            if error is None:
                self._advance_stages()
                return
            if not self.scheduler.frame_not_stored(task_id, frame):
                return
            try:
                with self.sessions.begin() as s:
                    s.add(
                        TaskEvent(
                            task_id=task_id,
                            level="warning",
                            frame=frame,
                            message=f"frame {frame} could not be stored ({type(error).__name__}): it is taken again",
                        )
                    )
            except sa.exc.SQLAlchemyError:  # the database that refused the row may refuse this too: the log has it
                log.warning("task %s: frame %s could not be stored and is queued again", task_id, frame)

    def frame_failed(self, task_id: str, frame: int, failure: FrameFailure) -> Outcome:
        with self.lock:
            return self._record_failure(
                task_id, frame, failure.agent_id, failure.error, failure.fault, failure.log_tail, failure.attempt
            )

    def _record_failure(
        self,
        task_id: str,
        frame: int,
        agent_id: str,
        error: str,
        fault: str,
        log_tail: Iterable[str],
        attempt: str | None,
    ) -> Outcome:
        before = self.scheduler.tasks.get(task_id)
        # A frame in flight when its agent was taken off fails later: still logged, but the agent is taken off once.
        was_blocked = before is not None and agent_id in before.blocked
        outcome = self.scheduler.frame_failed(agent_id, task_id, frame, error, attempt)
        if outcome is Outcome.UNKNOWN:
            return outcome
        with self.sessions.begin() as s:
            task = s.get(RenderTask, task_id)
            if task is None:
                return Outcome.UNKNOWN
            counted = outcome is not Outcome.DUPLICATE
            s.add(
                TaskEvent(
                    task_id=task_id,
                    # A failure on a frame another agent had already delivered changes nothing and is not counted
                    # against the agent: a warning, which ``_restore_failures`` leaves out as the scheduler did.
                    level="error" if counted else "warning",
                    agent_id=agent_id,
                    frame=frame,
                    fault=fault,
                    message=error if counted else f"{error} (not counted: frame {frame} was already rendered)",
                    log_tail="\n".join(log_tail) or None,
                )
            )
            if outcome is Outcome.AGENT_BLOCKED and not was_blocked:
                s.merge(BlockedAgent(task_id=task_id, agent_id=agent_id))
                s.add(
                    TaskEvent(
                        task_id=task_id,
                        level="warning",
                        agent_id=agent_id,
                        message="agent taken off the task after 3 failures",
                    )
                )
            elif outcome is Outcome.TASK_FAILED:
                entry = self.scheduler.tasks[task_id]
                self._change_stage(s, task, Stage.FAILED)
                task.error = entry.error
                task.finished_at = utcnow()
                s.execute(
                    sa.update(Frame)
                    .where(Frame.task_id == task_id, Frame.number == frame)
                    .values(state=FrameState.FAILED)
                )
        return outcome

    def _log_lost(self, agent_id: str) -> None:
        with self.sessions.begin() as s:
            for task_id in self.scheduler.tasks:
                if self.scheduler.tasks[task_id].run is TaskRun.ACTIVE:
                    s.add(
                        TaskEvent(
                            task_id=task_id,
                            level="warning",
                            agent_id=agent_id,
                            message="agent lost: its unfinished frames were requeued",
                        )
                    )
                    break

    # -- stages after rendering ---------------------------------------------------------------
    def _advance_stages(self) -> None:
        """Start the merge of every task whose frames are all done."""
        for task_id, entry in list(self.scheduler.tasks.items()):
            # Not while rows of its frames are on their way: one may yet fail (``_row_written``), and its last row's
            # commit calls this again.
            if entry.run is TaskRun.DONE and task_id not in self._merges and not self.frame_rows.has_unwritten(task_id):
                with self.sessions.begin() as s:
                    task = s.get(RenderTask, task_id)
                    if task is None or task.stage in (Stage.FINISHED, Stage.CANCELLED, Stage.FAILED):
                        continue
                    if task.stage is not Stage.MERGING:
                        self._change_stage(s, task, Stage.MERGING)
                        task.merge_progress = 0.0
                self._start_merge(task_id)

    def _start_merge(self, task_id: str) -> None:
        cancel = threading.Event()
        self._merge_cancel[task_id] = cancel
        thread = threading.Thread(target=self._merge, args=(task_id, cancel), name=f"merge-{task_id[:8]}", daemon=True)
        self._merges[task_id] = thread
        thread.start()

    def _merge(self, task_id: str, cancel: threading.Event) -> None:
        from .merging import merge_task

        try:
            result = merge_task(self, task_id, cancel)
        except Exception as exc:  # any merge failure becomes the task's error, shown to the user
            log.exception("merge of %s failed", task_id)
            self._merge_finished(task_id, None, f"merging failed: {exc}")
        else:
            self._merge_finished(task_id, result, None)

    def set_merge_progress(self, task_id: str, value: float) -> None:
        """Record the merge's progress, at most every ~0.5 % or 0.5 s: zipping 20,000 frames reported once per frame,
        a database transaction each, 76 % of the merge's time (benchmarks/manager_scale.py)."""
        value = max(0.0, min(1.0, value))
        now = time.monotonic()
        last_value, last_at = self._merge_written.get(task_id, (-1.0, 0.0))
        if value not in (0.0, 1.0) and value - last_value < 0.005 and now - last_at < 0.5:
            return
        self._merge_written[task_id] = (value, now)
        with self.sessions.begin() as s:
            task = s.get(RenderTask, task_id)
            if task is not None:
                task.merge_progress = value

    def merge_inputs(self, task_id: str) -> tuple[RenderTask, list[Path]]:
        """The task and its frames' files, every one of them: a result with a frame missing is never made.

        The scheduler starts the merge when it holds every frame as done; a frame whose database row could not be
        written (the upload then failed and its agent, told it is a duplicate, dropped it) has no stored result, and
        the merge fails naming it instead of delivering a video a frame short.
        """
        with self.sessions.begin() as s:
            task = self._get(s, task_id)
            s.expunge(task)
        stored = self._stored_frames(task_id)
        missing = [n for n in self._work_units(task) if n not in stored]
        if missing:
            shown = ", ".join(str(n) for n in missing[:10]) + (", ..." if len(missing) > 10 else "")
            raise FarmError(f"{len(missing)} frame(s) have no stored result ({shown}): not merging with frames missing")
        return task, list(stored.values())

    def _merge_finished(self, task_id: str, result: Path | None, error: str | None) -> None:
        with self.lock, self.sessions.begin() as s:
            task = s.get(RenderTask, task_id)
            self._merge_cancel.pop(task_id, None)
            self._merge_written.pop(task_id, None)
            if task is None or task.stage is not Stage.MERGING:
                return
            if result is not None:
                self._change_stage(s, task, Stage.FINISHED)
                task.result_path = self.storage.relative(result)
                task.merge_progress = 1.0
                s.add(TaskEvent(task_id=task_id, message=f"finished: {result.name}"))
            else:
                self._change_stage(s, task, Stage.FAILED)
                task.error = error
                s.add(TaskEvent(task_id=task_id, level="error", message=error or "merge failed"))
            task.finished_at = utcnow()
            self.scheduler.remove_task(task_id)
