"""The manager at scale: the real manager (database and API) with 100 simulated agents on a 20,000-frame task.

The manager is the real one, in its own process (``python -m farmgui --headless --no-local-agent
--no-discovery``, SQLite in a temporary folder, its own token, a loopback port), so that its CPU time is read
from ``/proc`` apart from the load's. The task is a real ``.blend`` (a PNG-output file of the test corpus: no
video to merge) submitted through the REST API with the frame range ``1-FRAMES``, as a user would.

The agents are simulated in this process (asyncio, one keep-alive HTTP/1.1 connection per loop of each agent,
as each thread of a real agent keeps one) and speak the protocol of ``agent/protocol.py`` with the real
agent's habits (``agent/service.py``): hello; a heartbeat every ``HEARTBEAT_INTERVAL_S`` with the frame in
progress and every frame queued; a work request when the queue is empty (every ``IDLE_POLL_S`` while there is
nothing) and one ahead while the last frame held renders in a warm "Blender"; the task's file downloaded by
sha256 once per agent, then a simulated start-up; each frame queued for upload the moment it is "rendered"
and uploaded by an upload loop of its own (a tiny valid PNG with its sha256). No Blender runs: a frame is a
sleep of ``--render-ms`` (+-20 %). The client is a minimal one of its own: httpx's asyncio client cost about
as much CPU per request as the manager spent answering it, which two shared cores cannot spare.

A separate process polls the task's progress (``GET /api/render-tasks/KEY/progress/``, what REST users and
``farmgui status`` read) ``--poll-hz`` times a second and records each latency.

In one run, on one manager:

1. ``floor``: a bare FastAPI route on the same server class (``agent.httpserver.ServerThread``), in a process
   of its own: the CPU any request costs on this machine before the manager does anything.
2. ``idle``: the manager alone for ``--idle-s``: its CPU per second doing nothing.
3. ``baseline``: ``--baseline-agents`` agents (10) on ``--baseline-frames`` frames (a twentieth): the costs
   without the crowd.
4. ``main``: ``--agents`` agents (100) on ``--frames`` frames (20,000).

Each of the last two: the task is submitted and polled for ``--idle-s`` with no agent yet (the polls'
latency and cost on a quiet manager); the agents start and render every frame, with a freeze at 40 % (below);
the merge (zip of the frames and a preview MP4, by the manager and its ffmpeg) while the agents keep asking
for work as real ones do; then an idle farm for ``--idle-s`` (nothing to do, every agent polls).

The freeze measures one progress report: the agents keep their frames (the one "rendering" at 99 %, the rest
queued, leases and all), send no work request and no upload, and beat every ``--freeze-beat-s`` instead of
every 2 s; after one heartbeat interval to settle, the manager's CPU over ``--freeze-s``, less its rate in the
queued window (the polls), over the heartbeats. The render's figures leave the freeze out.

Printed, never asserted: the manager's CPU (total, per frame done, per frame scheduled, i.e. per frame of
every work assignment, duplicates and moved frames included, per heartbeat, cores used), frames/s, where the
agents waited (request latencies, frames waiting in their upload queues), the database with its WAL and the
stored files, the progress polls' latency (p50/p95/p99/max) and the render in ten stretches of time; ratios
against baselines of the same run (the bare route, the idle manager, the 10-agent task, the polls before any
agent). Goals (issue #6): manager CPU per frame under 2 ms, progress polls under 50 ms at p99.

``--render-ms`` is 500 by default: 100 agents then ask for 200 frames a second, which a manager at the goal
(2 ms a frame) serves with 0.4 of a core; shorter frames measure how it copes beyond its capacity.
``--profile PATH`` runs the manager under cProfile with a CPU clock in every thread (uvicorn's event loop,
the threadpool, the maintenance and merge threads) and prints its hot spots: exact CPU per function, but the
manager runs several times slower, so profile a lighter run than the one measured. ``--quick``: 20 agents,
2,000 frames.

    python benchmarks/manager_scale.py [--agents 100] [--frames 20000] [--render-ms 500] [--quick]
                                       [--profile PATH] [--json PATH] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import itertools
import json
import math
import os
import platform
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent import protocol as p  # noqa: E402
from tests.pngs import png_bytes  # noqa: E402

TOKEN = "manager-scale-benchmark-token-0123456789ab"  # noqa: S105 - the benchmark's own farm, on loopback
BLEND = ROOT / "tests" / "data" / "blendfiles" / "assimp" / "BlenderDefault_250_Compressed.blend"
"""64 KiB, Blender 2.52, PNG output, a camera: the manager accepts it and merges nothing into a video."""
GOAL_CPU_PER_FRAME_MS = 2.0
GOAL_POLL_P99_MS = 50.0
FREEZE_AT = 0.4
"""Share of the frames done when the heartbeat-only freeze starts."""
SAMPLE_S = 0.5
IDLE_POLL_S = 0.5
"""``agent.service.IDLE_POLL_S``: how often an idle agent asks for work (not imported: that module brings the
whole Blender session code with it)."""
HEARTBEAT_TIMEOUT_S = 15.0


# --- processes ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system, all threads) a live process has used; ``children``: those of its reaped
    children (the merge's ffmpeg) instead."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    first = 13 if children else 11
    return (int(fields[first]) + int(fields[first + 1])) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def end_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, up to ``grace`` s to exit, then SIGKILL whatever is left of the process group, then reap
    (the group is killed before its leader is reaped, so its id cannot have been reused)."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
                break
        except ChildProcessError:
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


class Child:
    """A process in its own process group, output in a log file."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, env=env)

    def check(self) -> None:
        # Not poll(): it would reap the process, and stop() kills its group only before that.
        exited = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        if exited is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.log_path.name}: exited with {exited.si_status}:\n{tail}")

    def stop(self, grace: float = 30) -> None:
        end_group(self.proc, grace)
        self._log.close()


# --- the payload ----------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def latency_summary(values_ms: list[float]) -> dict[str, float]:
    return {
        "count": len(values_ms),
        "p50_ms": percentile(values_ms, 50),
        "p95_ms": percentile(values_ms, 95),
        "p99_ms": percentile(values_ms, 99),
        "max_ms": max(values_ms) if values_ms else math.nan,
    }


# --- the simulated farm -------------------------------------------------------------------------------------


@dataclass
class Counters:
    heartbeats: int = 0
    heartbeat_frames: int = 0
    """FrameProgress entries sent in heartbeats (running + queued)."""
    work_assigned: int = 0
    work_empty: int = 0
    frames_scheduled: int = 0
    uploads: int = 0
    accepted: int = 0
    duplicates: int = 0
    refused: int = 0
    abandoned: int = 0
    downloads: int = 0
    hellos: int = 0
    upload_backlog_max: int = 0
    """The most frames one agent had rendered and not uploaded yet (its upload queue, as the real agent's)."""
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latency_ms: dict[str, list[float]] = field(default_factory=dict)

    def snapshot(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}

    def record(self, kind: str, started: float) -> None:
        self.latency_ms.setdefault(kind, []).append((time.perf_counter() - started) * 1000)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(what[:300])


@dataclass
class Job:
    assignment: p.WorkAssignment
    frame: int
    started: float | None = None
    duration: float = 0.0
    abandoned: bool = False

    def progress(self, now: float) -> float:
        if self.started is None or self.duration <= 0:
            return 0.0
        return min(0.99, (now - self.started) / self.duration)


class Farm:
    """What the simulated agents share: the manager's address, the counters, the freeze switch."""

    def __init__(self, url: str, render_s: float, startup_s: float, seed: int) -> None:
        self.url = url
        self.render_s = render_s
        self.startup_s = startup_s
        self.rng = random.Random(seed)
        self.counters = Counters()
        self.heartbeat_interval = p.HEARTBEAT_INTERVAL_S
        self.stop = asyncio.Event()
        self.running = asyncio.Event()
        """Cleared for the freeze: no frame ends, no request but heartbeats."""
        self.running.set()
        self.target = 0
        self.all_done = asyncio.Event()


class HttpError(Exception):
    pass


@dataclass
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """One keep-alive HTTP/1.1 connection to the manager, as each of a real agent's threads keeps one.

    A minimal client: the simulated agents must cost the two shared cores far less than the manager they
    load (httpx's asyncio client cost about as much CPU per request as the manager spent answering it).
    One request at a time; the request line, headers and body go out in one write.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.fixed = f"Host: {host}:{port}\r\n{p.AUTH_HEADER}: {p.BEARER}{TOKEN}\r\n"

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        length = f"Content-Length: {len(body)}\r\n" if method != "GET" else ""
        data = f"{method} {path} HTTP/1.1\r\n{self.fixed}{length}{extra}\r\n".encode() + body
        for attempt in range(2):
            fresh = self.writer is None
            try:
                if self.reader is None or self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                self.writer.write(data)
                line = await self.reader.readline()
                if not line:  # the server closed an idle keep-alive connection: a new one, the request again
                    raise ConnectionResetError("closed by the server")
                status = int(line.split(b" ", 2)[1])
                size, chunked, close = 0, False, False
                while (header := await self.reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        size = int(value)
                    elif name == b"transfer-encoding" and b"chunked" in value.lower():
                        chunked = True
                    elif name == b"connection" and b"close" in value.lower():
                        close = True
                if chunked:
                    parts = []
                    while (n := int((await self.reader.readline()).split(b";")[0], 16)) > 0:
                        parts.append(await self.reader.readexactly(n + 2))
                    await self.reader.readline()
                    payload = b"".join(x[:-2] for x in parts)
                else:
                    payload = await self.reader.readexactly(size) if size else b""
                if close:
                    self.close()
                return Reply(status, payload)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                self.close()
                if fresh or attempt:
                    raise HttpError(f"{method} {path}: {exc!r}") from exc
        raise HttpError(f"{method} {path}: no answer")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class SimAgent:
    """One agent: the real agent's loops (work, heartbeat, uploads) with sleeps for Blender."""

    def __init__(self, farm: Farm, index: int) -> None:
        self.farm = farm
        self.index = index
        self.agent_id = uuid.uuid4().hex
        self.rng = random.Random(farm.rng.random())
        host, port = farm.url.removeprefix("http://").rsplit(":", 1)
        # One connection per loop, as the real agent's threads each use its client's pool.
        self.conn = {name: Connection(host, int(port)) for name in ("work", "ahead", "heartbeat", "upload")}
        self.state = p.AgentState.IDLE
        self.queue: deque[Job] = deque()
        self.current: Job | None = None
        self.warm: set[str] = set()
        self.cached: set[str] = set()
        self.last_startup_s: float | None = None
        self.known = False
        self.uploads: asyncio.Queue[tuple[p.WorkAssignment, int, float, float]] = asyncio.Queue()
        self.png = png_bytes(shade=index)
        self.png_sha = hashlib.sha256(self.png).hexdigest()
        self.tasks: list[asyncio.Task[None]] = []

    def info(self) -> p.AgentInfo:
        return p.AgentInfo(
            agent_id=self.agent_id,
            name=f"sim-{self.index:03d}",
            host="127.0.0.1",
            port=40000 + self.index,
            blenders=[p.BlenderVersion("4.2.0", "executable")],
            cpus=2,
            state=self.state,
            paired=True,
            version="manager-scale",
        )

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self.work_loop()),
            asyncio.create_task(self.heartbeat_loop()),
            asyncio.create_task(self.upload_loop()),
        ]

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for conn in self.conn.values():
            conn.close()

    async def post(self, kind: str, path: str, message: p.Message, conn: str = "work") -> Reply | None:
        started = time.perf_counter()
        try:
            r = await self.conn[conn].request(
                "POST", path, json.dumps(message.to_dict()).encode(), {"Content-Type": "application/json"}
            )
        except HttpError as exc:
            self.farm.counters.error(f"{kind}: {exc}")
            return None
        self.farm.counters.record(kind, started)
        if r.status >= 400:
            self.farm.counters.error(f"{kind}: HTTP {r.status} {r.body[:200]!r}")
        return r

    async def hello(self) -> bool:
        r = await self.post("hello", p.MANAGER_HELLO, self.info())
        self.known = r is not None and r.status == 200
        if self.known:
            self.farm.counters.hellos += 1
        return self.known

    # -- work --------------------------------------------------------------------------------------------
    async def work_loop(self) -> None:
        while not self.farm.stop.is_set():
            await self.farm.running.wait()
            if not self.known and not await self.hello():
                await asyncio.sleep(0.5)
                continue
            job = self.next_job()
            if job is None:
                if not await self.ask(0):
                    self.state = p.AgentState.IDLE
                    await asyncio.sleep(IDLE_POLL_S)
                continue
            ahead = None
            if not self.queue and job.assignment.task_id in self.warm:
                ahead = asyncio.create_task(self.ask(1, "ahead"))
            await self.render(job)
            if ahead is not None:
                await ahead

    async def ask(self, in_progress: int, conn: str = "work") -> bool:
        request = p.WorkRequest(
            self.agent_id,
            warm_tasks=sorted(self.warm),
            queued_frames=len(self.queue) + in_progress,
            startup_seconds=self.last_startup_s,
        )
        r = await self.post("work", p.MANAGER_WORK, request, conn)
        if r is None or r.status == 204:
            if r is not None:
                self.farm.counters.work_empty += 1
            return False
        if r.status != 200:
            self.known = False
            return False
        assignment = p.WorkAssignment.from_dict(r.json())
        self.farm.counters.work_assigned += 1
        self.farm.counters.frames_scheduled += len(assignment.frames)
        self.queue.extend(Job(assignment, frame) for frame in assignment.frames)
        return True

    def next_job(self) -> Job | None:
        while self.queue:
            job = self.queue.popleft()
            if not job.abandoned:
                self.current = job
                return job
        return None

    async def render(self, job: Job) -> None:
        self.state = p.AgentState.RENDERING
        task_id = job.assignment.task_id
        if task_id not in self.warm:
            if job.assignment.file_sha256 not in self.cached:
                started = time.perf_counter()
                url = p.MANAGER_FILE.format(sha256=job.assignment.file_sha256)
                try:
                    r = await self.conn["work"].request("GET", url)
                except HttpError as exc:
                    r = Reply(0, repr(exc).encode())
                self.farm.counters.record("file", started)
                if r.status != 200 or hashlib.sha256(r.body).hexdigest() != job.assignment.file_sha256:
                    self.farm.counters.error(f"file: HTTP {r.status}")
                self.farm.counters.downloads += 1
                self.cached.add(job.assignment.file_sha256)
            startup = self.farm.startup_s * self.rng.uniform(0.8, 1.2)
            await asyncio.sleep(startup)  # Blender starts and loads the file
            self.last_startup_s = startup
            self.warm.add(task_id)
        job.duration = self.farm.render_s * self.rng.uniform(0.8, 1.2)
        job.started = time.monotonic()
        await asyncio.sleep(job.duration)
        await self.farm.running.wait()  # frozen: the frame stays at 99 %
        self.current = None
        if job.abandoned:
            return
        self.uploads.put_nowait((job.assignment, job.frame, job.duration, time.perf_counter()))
        counters = self.farm.counters
        counters.upload_backlog_max = max(counters.upload_backlog_max, self.uploads.qsize())

    # -- uploads -----------------------------------------------------------------------------------------
    async def upload_loop(self) -> None:
        counters = self.farm.counters
        while True:
            assignment, frame, seconds, rendered = await self.uploads.get()
            headers = {
                p.HEADER_AGENT_ID: self.agent_id,
                p.HEADER_ATTEMPT: assignment.attempt,
                p.HEADER_SHA256: self.png_sha,
                p.HEADER_RENDER_SECONDS: f"{seconds:.3f}",
                p.HEADER_EXTENSION: "png",
                "Content-Type": "application/octet-stream",
            }
            url = p.MANAGER_FRAME.format(task_id=assignment.task_id, frame=frame)
            await self.farm.running.wait()
            while True:
                started = time.perf_counter()
                try:
                    r = await self.conn["upload"].request("PUT", url, self.png, headers)
                except HttpError as exc:
                    counters.error(f"upload: {exc}")
                    await asyncio.sleep(0.5)
                    continue
                counters.record("upload", started)
                counters.record("rendered_to_uploaded", rendered)
                if r.status >= 500:
                    counters.error(f"upload: HTTP {r.status}")
                    await asyncio.sleep(0.5)
                    continue
                break
            counters.uploads += 1
            if r.status != 200:
                counters.error(f"upload: HTTP {r.status} {r.body[:200]!r}")
                continue
            reply = p.FrameAccepted.from_dict(r.json())
            if reply.accepted:
                counters.accepted += 1
                if counters.accepted >= self.farm.target:
                    self.farm.all_done.set()
            elif reply.duplicate:
                counters.duplicates += 1
            else:
                counters.refused += 1

    # -- heartbeat ---------------------------------------------------------------------------------------
    async def heartbeat_loop(self) -> None:
        await asyncio.sleep(self.rng.uniform(0, p.HEARTBEAT_INTERVAL_S))  # agents start at different times
        while True:
            await asyncio.sleep(self.farm.heartbeat_interval)
            if not self.known:
                continue
            now = time.monotonic()
            current = self.current
            running = []
            if current is not None:
                a = current.assignment
                running.append(p.FrameProgress(a.task_id, a.attempt, current.frame, current.progress(now)))
            held = [p.FrameProgress(j.assignment.task_id, j.assignment.attempt, j.frame, 0.0) for j in self.queue]
            beat = p.Heartbeat(self.agent_id, self.state, running=running, queued=held)
            r = await self.post("heartbeat", p.MANAGER_HEARTBEAT, beat, "heartbeat")
            if r is None or r.status != 200:
                continue
            self.farm.counters.heartbeats += 1
            self.farm.counters.heartbeat_frames += len(running) + len(held)
            reply = p.HeartbeatReply.from_dict(r.json())
            if not reply.known:
                self.known = False
                continue
            self.apply(reply)

    def apply(self, reply: p.HeartbeatReply) -> None:
        drop = {(x.attempt, x.frame) for x in reply.abandon}
        cancelled = set(reply.cancel_tasks)
        if not drop and not cancelled:
            return
        for job in self.queue:
            if (job.assignment.attempt, job.frame) in drop or job.assignment.task_id in cancelled:
                job.abandoned = True
                self.farm.counters.abandoned += 1
        self.queue = deque(j for j in self.queue if not j.abandoned)
        current = self.current
        if current is not None and (
            (current.assignment.attempt, current.frame) in drop or current.assignment.task_id in cancelled
        ):
            current.abandoned = True
            self.farm.counters.abandoned += 1
            self.warm.discard(current.assignment.task_id)  # the real agent stops that Blender


# --- the measurements -----------------------------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    manager_cpu: float
    own_cpu: float
    counts: dict[str, int]
    phase: str
    """``render``, ``settle`` or ``freeze``."""


@dataclass
class Freeze:
    phase: str = "render"
    """``render``, then ``settle`` (the agents switch to the fast heartbeat), ``freeze`` (measured), ``render``."""
    done: bool = False
    at: float = math.nan
    """When the current phase began."""


class Manager:
    """The real manager, headless, in its own process group; optionally under cProfile (every thread)."""

    def __init__(self, root: Path, profile: Path | None) -> None:
        self.data_dir = root / "manager"
        self.data_dir.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            "--headless", "--no-local-agent", "--no-discovery", "--host", "127.0.0.1", "--port", str(self.port),
            "--data-dir", str(self.data_dir), "--token", TOKEN, "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT_S),
        ]  # fmt: skip
        if profile is None:
            argv = [sys.executable, "-m", "farmgui", *args]
        else:
            argv = [sys.executable, str(Path(__file__).resolve()), "_profiled-manager", str(profile), *args]
        self.child = Child(argv, root / "manager.log")
        self.pid = self.child.proc.pid

    def cpu(self) -> float:
        return proc_cpu(self.pid)

    def children_cpu(self) -> float:
        return proc_cpu(self.pid, children=True)

    def db_bytes(self) -> dict[str, int]:
        base = self.data_dir / "farm.sqlite3"
        sizes = {}
        for suffix in ("", "-wal", "-shm"):
            path = base.with_name(base.name + suffix)
            sizes["db" + suffix.replace("-", "_")] = path.stat().st_size if path.exists() else 0
        return sizes


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that mention ``text`` (this run's temporary folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if text in cmdline:
                    found.append(f"{entry.name}: {cmdline[:160]}")
    return found


def tree_size(path: Path) -> tuple[int, int, int]:
    """(files, bytes, bytes allocated on disk) under ``path``."""
    files = size = allocated = 0
    for entry in path.rglob("*"):
        if entry.is_file():
            st = entry.stat()
            files += 1
            size += st.st_size
            allocated += st.st_blocks * 512
    return files, size, allocated


class Poller:
    """The progress poller: a process of its own (this script's ``_poll`` mode), writing one JSON line a poll."""

    def __init__(self, root: Path, url: str, key: str, hz: float, name: str) -> None:
        self.out = root / f"polls-{name}.jsonl"
        argv = [sys.executable, str(Path(__file__).resolve()), "_poll", url, key, str(hz), str(self.out)]
        self.child = Child(argv, root / f"poller-{name}.log")

    def stop(self) -> tuple[list[dict[str, Any]], float]:
        """Stop it; returns its samples and its CPU seconds."""
        cpu = proc_cpu(self.child.proc.pid)
        self.child.stop(10)
        samples = []
        if self.out.exists():
            for line in self.out.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    samples.append(json.loads(line))
        return samples, cpu


def poll_main(url: str, key: str, hz: float, out: Path) -> int:
    """The poller's process: GET the task's progress ``hz`` times a second until SIGTERM."""
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    period = 1.0 / hz
    path = f"/api/render-tasks/{key}/progress/"
    with httpx.Client(base_url=url, headers=p.bearer(TOKEN), timeout=60) as client, out.open("a") as f:
        next_at = time.monotonic()
        while not stop:
            at = time.time()
            started = time.perf_counter()
            try:
                r = client.get(path)
                ms = (time.perf_counter() - started) * 1000
                body = r.json() if r.status_code == 200 else {}
                row = {"at": at, "ms": ms, "status": r.status_code, "stage": body.get("stage")}
                row["frames_done"] = body.get("frames_done")
            except (httpx.HTTPError, ValueError) as exc:
                row = {"at": at, "ms": (time.perf_counter() - started) * 1000, "status": 0, "error": repr(exc)}
            f.write(json.dumps(row) + "\n")
            f.flush()
            next_at = max(next_at + period, time.monotonic())
            time.sleep(max(0.0, next_at - time.monotonic()))
    return 0


def profiled_manager(out: Path, args: list[str]) -> int:
    """The manager under cProfile with a CPU clock, one profiler per thread: exact calls and CPU per function,
    but the manager runs several times slower."""
    import cProfile
    import pstats
    import threading

    profiles: list[cProfile.Profile] = []

    def start_thread(*_: object) -> None:
        prof = cProfile.Profile(time.thread_time)  # CPU time: a thread waiting on a lock or a socket costs nothing
        profiles.append(prof)
        sys.setprofile(None)
        prof.enable()

    threading.setprofile(start_thread)
    main_prof = cProfile.Profile(time.thread_time)
    profiles.append(main_prof)
    main_prof.enable()
    from farmgui.__main__ import main

    try:
        return main(args)
    finally:
        main_prof.disable()
        threading.setprofile(None)
        stats = pstats.Stats(profiles[0])
        for prof in profiles[1:]:
            with contextlib.suppress(TypeError):  # a thread that never ran a profiled call
                stats.add(prof)
        stats.dump_stats(out)


def print_profile(path: Path, limit: int = 25) -> list[dict[str, Any]]:
    import pstats

    stats = pstats.Stats(str(path))
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(filename).name}:{line}({name})", "file": filename, "calls": calls,
                     "tottime": tottime, "cumtime": cumtime})  # fmt: skip
    ours = [
        r
        for r in rows
        if any(f"/{pkg}/" in r["file"] for pkg in ("farmgui", "agent", "blendfile"))
        and r["calls"] > 1  # not the threads' main loops (their cumulative time is everything)
    ]
    print("\nManager profile (cProfile, CPU clock, every thread), our code by cumulative time:")
    print("| function | calls | cumulative s | own s | cumulative ms/call |")
    print("|---|---:|---:|---:|---:|")
    for r in sorted(ours, key=lambda r: -r["cumtime"])[:limit]:
        print(f"| {r['function']} | {r['calls']} | {r['cumtime']:.2f} | {r['tottime']:.2f} "
              f"| {r['cumtime'] / max(r['calls'], 1) * 1000:.3f} |")  # fmt: skip
    print("\nEverything by own time:")
    print("| function | calls | own s | cumulative s |")
    print("|---|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: -r["tottime"])[:limit]:
        print(f"| {r['function']} | {r['calls']} | {r['tottime']:.2f} | {r['cumtime']:.2f} |")
    return sorted(rows, key=lambda r: -r["cumtime"])[:60]


# --- a scenario -----------------------------------------------------------------------------------------------


@dataclass
class Config:
    agents: int
    frames: int
    baseline_agents: int
    baseline_frames: int
    render_s: float
    startup_s: float
    idle_s: float
    poll_hz: float
    freeze_s: float
    freeze_beat_s: float
    floor_requests: int
    seed: int
    timeout_s: float


async def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = await check()
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            last, value = exc, None
        if value:
            return value
        await asyncio.sleep(interval)
    raise TimeoutError(f"no {what} within {timeout:.0f} s (last error: {last})")


def window(samples: list[Sample], pick: Callable[[Sample, Sample], bool]) -> dict[str, Any]:
    """Sums over the sampling intervals ``pick`` selects: wall, CPU and every counter (``counts``); ``frames``
    (accepted), ``scheduled``, ``heartbeats`` and ``work`` (work requests) for short."""
    total: dict[str, Any] = {"wall": 0.0, "cpu": 0.0, "own_cpu": 0.0, "counts": {}}
    counts: dict[str, int] = total["counts"]
    for a, b in itertools.pairwise(samples):
        if not pick(a, b):
            continue
        total["wall"] += b.at - a.at
        total["cpu"] += b.manager_cpu - a.manager_cpu
        total["own_cpu"] += b.own_cpu - a.own_cpu
        for key, value in b.counts.items():
            if key != "upload_backlog_max":
                counts[key] = counts.get(key, 0) + value - a.counts[key]
    total["frames"] = counts.get("accepted", 0)
    total["scheduled"] = counts.get("frames_scheduled", 0)
    total["heartbeats"] = counts.get("heartbeats", 0)
    total["heartbeat_frames"] = counts.get("heartbeat_frames", 0)
    total["work"] = counts.get("work_assigned", 0) + counts.get("work_empty", 0)
    return total


def requests_between(before: dict[str, int], after: dict[str, int]) -> int:
    """Agent requests to the manager between two counter snapshots."""
    kinds = ("heartbeats", "work_assigned", "work_empty", "uploads", "hellos", "downloads")
    return sum(after[k] - before[k] for k in kinds)


def timeline(samples: list[Sample], parts: int = 10) -> list[dict[str, float]]:
    """The render in ``parts`` equal stretches of time: throughput and the manager's cost as the task goes on."""
    if len(samples) < 2:
        return []
    t0, t1 = samples[0].at, samples[-1].at
    rows = []
    for i in range(parts):
        lo, hi = t0 + (t1 - t0) * i / parts, t0 + (t1 - t0) * (i + 1) / parts
        inside = [s for s in samples if lo <= s.at <= hi]
        if len(inside) < 2:
            continue
        a, b = inside[0], inside[-1]
        counts = {k: b.counts[k] - a.counts[k] for k in b.counts}
        wall = b.at - a.at
        cpu = b.manager_cpu - a.manager_cpu
        rows.append({
            "from_s": a.at - t0, "to_s": b.at - t0, "frames_done_at_end": b.counts["accepted"],
            "frames_per_s": counts["accepted"] / wall if wall else math.nan,
            "manager_cores": cpu / wall if wall else math.nan,
            "cpu_per_frame_ms": cpu / counts["accepted"] * 1000 if counts["accepted"] else math.nan,
            "generator_cores": (b.own_cpu - a.own_cpu) / wall if wall else math.nan,
            **{k: counts[k] for k in ("heartbeats", "work_assigned", "work_empty", "frames_scheduled", "duplicates",
                                      "abandoned", "errors")},
        })  # fmt: skip
    return rows


async def scenario(
    name: str, manager: Manager, root: Path, cfg: Config, n_agents: int, frames: int, idle_rate: float
) -> dict[str, Any]:
    print(f"\n## {name}: {n_agents} agents, {frames} frames", flush=True)
    user = httpx.AsyncClient(base_url=manager.url, headers=p.bearer(TOKEN), timeout=120)
    db_before = sum(manager.db_bytes().values())
    result: dict[str, Any] = {"agents": n_agents, "frames": frames}
    try:
        started = time.perf_counter()
        with BLEND.open("rb") as f:
            r = await user.post(
                "/api/render-tasks/run_task/",
                files={"file": (BLEND.name, f.read())},
                data={"frame_start": "1", "frame_end": str(frames)},
            )
        if r.status_code != 201:
            raise RuntimeError(f"submission refused: {r.status_code} {r.text[:300]}")
        key = str(r.json()["task_key"])
        result["submit_s"] = time.perf_counter() - started
        poller = Poller(root, manager.url, key, cfg.poll_hz, name)
        try:
            # -- queued: the task waits, the poller polls, no agent yet --------------------------------
            await asyncio.sleep(0.5)  # the poller's interpreter starts
            q0, q_cpu0 = time.time(), manager.cpu()
            await asyncio.sleep(cfg.idle_s)
            q1, q_cpu1 = time.time(), manager.cpu()
            result["queued"] = {"wall_s": q1 - q0, "manager_cpu_per_s": (q_cpu1 - q_cpu0) / (q1 - q0)}

            # -- render ------------------------------------------------------------------------------
            farm = Farm(manager.url, cfg.render_s, cfg.startup_s, cfg.seed + n_agents)
            farm.target = frames
            agents = [SimAgent(farm, i) for i in range(n_agents)]
            samples: list[Sample] = []
            freeze = Freeze(done=cfg.freeze_s <= 0)

            def sample() -> None:
                samples.append(Sample(time.time(), manager.cpu(), self_cpu(), farm.counters.snapshot(), freeze.phase))

            async def sampler() -> None:
                while True:
                    await asyncio.sleep(SAMPLE_S)
                    manager.child.check()
                    now = time.time()
                    if not freeze.done and freeze.phase == "render" and farm.counters.accepted >= FREEZE_AT * frames:
                        freeze.phase, freeze.at = "settle", now
                        farm.running.clear()
                        farm.heartbeat_interval = cfg.freeze_beat_s
                    elif freeze.phase == "settle" and now - freeze.at >= p.HEARTBEAT_INTERVAL_S + SAMPLE_S:
                        freeze.phase, freeze.at = "freeze", now  # every agent beats at the new pace now
                    elif freeze.phase == "freeze" and now - freeze.at >= cfg.freeze_s:
                        freeze.phase, freeze.done = "render", True
                        farm.heartbeat_interval = p.HEARTBEAT_INTERVAL_S
                        farm.running.set()
                    sample()
                    done = farm.counters.accepted
                    if len(samples) % max(1, int(5 / SAMPLE_S)) == 0:
                        cpu = samples[-1].manager_cpu - samples[0].manager_cpu
                        print(f"  {samples[-1].at - samples[0].at:6.1f} s: {done}/{frames} frames, manager CPU "
                              f"{cpu:.1f} s, {farm.counters.heartbeats} heartbeats", flush=True)  # fmt: skip

            children0 = manager.children_cpu()
            sample()
            r0 = time.time()
            for agent in agents:
                agent.start()
            watcher = asyncio.create_task(sampler())
            timed_out = False
            try:
                await asyncio.wait_for(farm.all_done.wait(), cfg.timeout_s)
            except TimeoutError:
                timed_out = True  # reported, with everything measured so far; the task is cancelled
                print(f"  TIMED OUT: {farm.counters.accepted}/{frames} frames after {cfg.timeout_s:.0f} s", flush=True)
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            sample()
            r1 = time.time()
            counters = farm.counters
            render_latency = {k: list(v) for k, v in counters.latency_ms.items()}
            if timed_out:
                await user.post(f"/api/render-tasks/{key}/cancel/")

            # -- merge: the agents stay, asking for work as real ones do ---------------------------------
            m_cpu0, m_counts0 = manager.cpu(), counters.snapshot()

            async def finished() -> dict[str, Any] | None:
                pr = (await user.get(f"/api/render-tasks/{key}/progress/")).json()
                return pr if pr["stage"] in {"finished", "failed", "cancelled"} else None

            final = await wait_until("the merge", finished, cfg.timeout_s, 0.2)
            m1 = time.time()
            merge_cpu = manager.cpu() - m_cpu0
            merge_children = manager.children_cpu() - children0
            merge_requests = requests_between(m_counts0, counters.snapshot())

            # -- an idle farm: nothing to render, every agent polls ------------------------------------
            f0, f_cpu0, f_counts0 = time.time(), manager.cpu(), counters.snapshot()
            await asyncio.sleep(cfg.idle_s)
            f1, f_cpu1 = time.time(), manager.cpu()
            idle_requests = requests_between(f_counts0, counters.snapshot())
            farm.stop.set()
            await asyncio.gather(*(a.close() for a in agents))
            polls, poller_cpu = poller.stop()
        except BaseException:
            poller.stop()
            raise

        # -- checks ----------------------------------------------------------------------------------
        t = time.perf_counter()
        rows = (await user.get(f"/api/render-tasks/{key}/frames/")).json()
        frames_list_ms = (time.perf_counter() - t) * 1000
        done_rows = sum(1 for row in rows if row["state"] == "done")
        task_dir = manager.data_dir / "tasks" / key
        frame_files = sum(1 for f in (task_dir / "frames").iterdir() if not f.name.startswith("."))
        results = sorted(f.name for f in task_dir.iterdir() if f.is_file())
        checks = {
            "stage": final["stage"],
            "frames_done": final["frames_done"],
            "frames_total": final["frames_total"],
            "frame_rows_done": done_rows,
            "frame_files": frame_files,
            "result_files": results,
            "error": final.get("error"),
            "timed_out": timed_out,
            "ok": not timed_out
            and final["stage"] == "finished"
            and final["frames_done"] == frames
            and done_rows == frames
            and frame_files == frames,
        }
    finally:
        await user.aclose()

    own = samples[-1].own_cpu - samples[0].own_cpu
    # The render less the freeze (and its settling), and the freeze. A sample's phase is the one that begins as it
    # is taken: the stretch up to the next sample is in it.
    render_w = window(samples, lambda a, b: a.phase == "render")
    freeze_w = window(samples, lambda a, b: a.phase == "freeze")
    queued_rate = result["queued"]["manager_cpu_per_s"]
    rw, rc, rf = render_w["wall"], render_w["cpu"], max(render_w["frames"], 1)
    heartbeat_ms = (
        (freeze_w["cpu"] - queued_rate * freeze_w["wall"]) / freeze_w["heartbeats"] * 1000
        if freeze_w["heartbeats"]
        else math.nan
    )
    frozen = [(a.at, b.at) for a, b in itertools.pairwise(samples) if a.phase != "render"]
    render_polls = [
        s["ms"]
        for s in polls
        if r0 <= s["at"] <= r1 and s.get("status") == 200 and not any(lo <= s["at"] <= hi for lo, hi in frozen)
    ]
    queued_polls = [s["ms"] for s in polls if q0 <= s["at"] <= q1 and s.get("status") == 200]
    merge_polls = [s["ms"] for s in polls if r1 <= s["at"] <= m1 and s.get("status") == 200]
    db_after = manager.db_bytes()
    files, size, allocated = tree_size(task_dir)
    agent_latency = {k: latency_summary(v) for k, v in render_latency.items()}
    stretches = timeline(samples)
    idle_farm_rate = (f_cpu1 - f_cpu0) / (f1 - f0)
    result.update(
        task=key,
        render={
            "wall_with_freeze_s": r1 - r0,
            "wall_s": rw,
            "frames": rf,
            "frames_per_s": rf / rw,
            "manager_cpu_s": rc,
            "manager_cores": rc / rw,
            "manager_cpu_over_idle": (rc / rw) / idle_rate if idle_rate > 0 else math.nan,
            "cpu_per_frame_ms": rc / rf * 1000,
            "cpu_per_frame_net_of_idle_ms": (rc - idle_rate * rw) / rf * 1000,
            "cpu_per_frame_net_of_heartbeats_ms": (rc - queued_rate * rw - heartbeat_ms / 1000 * render_w["heartbeats"])
            / rf
            * 1000,
            "cpu_per_frame_scheduled_ms": rc / max(render_w["scheduled"], 1) * 1000,
            "cpu_per_heartbeat_ms": rc / max(render_w["heartbeats"], 1) * 1000,
            "heartbeats": render_w["heartbeats"],
            "generator_cpu_s": render_w["own_cpu"],
            "generator_cpu_all_s": own,
            "counts": {
                **render_w["counts"],
                "upload_backlog_max": counters.upload_backlog_max,
                "hellos": counters.hellos,
                "accepted_all": counters.accepted,
            },
            "error_samples": counters.error_samples,
            "agent_request_latency": agent_latency,
            "timeline": stretches,
        },
        freeze={
            "beat_every_s": cfg.freeze_beat_s,
            "wall_s": freeze_w["wall"],
            "manager_cpu_s": freeze_w["cpu"],
            "heartbeats": freeze_w["heartbeats"],
            "frame_entries_per_heartbeat": freeze_w["heartbeat_frames"] / max(freeze_w["heartbeats"], 1),
            "other_requests": freeze_w["work"] + freeze_w["frames"],
            "heartbeats_per_s": freeze_w["heartbeats"] / freeze_w["wall"] if freeze_w["wall"] else math.nan,
            "cpu_per_heartbeat_ms": heartbeat_ms,
        },
        polls={
            "hz": cfg.poll_hz,
            "queued": latency_summary(queued_polls),
            "render": latency_summary(render_polls),
            "merge": latency_summary(merge_polls),
            "failed": sum(1 for s in polls if s.get("status") != 200),
            "poller_cpu_s": poller_cpu,
        },
        merge={
            "wall_s": m1 - r1,
            "manager_cpu_s": merge_cpu,
            "manager_cpu_net_s": merge_cpu - idle_farm_rate * (m1 - r1),
            "ffmpeg_cpu_s": merge_children,
            "agent_requests": merge_requests,
        },
        idle_farm={
            "wall_s": f1 - f0,
            "manager_cpu_per_s": idle_farm_rate,
            "requests": idle_requests,
            "requests_per_s": idle_requests / (f1 - f0),
            "cpu_per_request_ms": (idle_farm_rate - idle_rate) / max(idle_requests / (f1 - f0), 1e-9) * 1000,
        },
        storage={
            "db_bytes_after": db_after,
            "db_total_bytes": sum(db_after.values()),
            "db_growth_bytes": sum(db_after.values()) - db_before,
            "task_files": files,
            "task_bytes": size,
            "task_bytes_on_disk": allocated,
        },
        frames_list_ms=frames_list_ms,
        checks=checks,
    )
    print(
        f"  rendered {counters.accepted} frames in {r1 - r0:.1f} s ({rf / rw:.0f} frames/s outside the freeze), "
        f"manager CPU {rc / rf * 1000:.2f} ms/frame, {heartbeat_ms:.2f} ms/heartbeat; merge {m1 - r1:.1f} s; "
        f"checks {'ok' if checks['ok'] else checks}",
        flush=True,
    )
    return result


# --- the report ---------------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def poll_latency(scenario: dict[str, Any], phase: str, key: str) -> float:
    return float(scenario["polls"][phase][key])


def report(data: dict[str, Any]) -> None:
    base, main = data["scenarios"]["baseline"], data["scenarios"]["main"]
    idle = data["idle"]["manager_cpu_per_s"]

    def ratio(a: float, b: float) -> str:
        return fmt(a / b, 2) + "x" if b and not math.isnan(a) and not math.isnan(b) else "n/a"

    def row(label: str, get: Callable[[dict[str, Any]], Any], digits: int = 2, show_ratio: bool = True) -> None:
        b, m = get(base), get(main)
        r = ratio(float(m), float(b)) if show_ratio and isinstance(m, int | float) else ""
        print(f"| {label} | {fmt(b, digits)} | {fmt(m, digits)} | {r} |")

    print(f"\n## Results ({data['config']['render_ms']:.0f} ms frames, start-up {data['config']['startup_s']} s)\n")
    floor = data["floor"]["cpu_per_request_ms"]
    print(f"Idle manager (no agent, no task): {idle * 1000:.1f} ms CPU per second.")
    print(f"A bare FastAPI route on the same server (the floor of any request here): {floor:.3f} ms CPU per request.\n")
    b_label = f"baseline: {base['agents']} agents, {base['frames']:,} frames"
    m_label = f"main: {main['agents']} agents, {main['frames']:,} frames"
    print(f"| measure | {b_label} | {m_label} | main / baseline |")
    print("|---|---:|---:|---:|")
    row("render wall s (less the freeze)", lambda s: s["render"]["wall_s"], 1)
    row("frames/s", lambda s: s["render"]["frames_per_s"], 1)
    row("manager CPU s (render)", lambda s: s["render"]["manager_cpu_s"], 1)
    row("manager cores used (CPU s / wall s)", lambda s: s["render"]["manager_cores"], 2)
    row(
        "manager CPU per frame done over the bare FastAPI request", lambda s: s["render"]["cpu_per_frame_ms"] / floor, 1
    )
    row(f"**manager CPU per frame done, ms** (goal < {GOAL_CPU_PER_FRAME_MS:g})",
        lambda s: s["render"]["cpu_per_frame_ms"], 3)  # fmt: skip
    row("  same, less the idle manager's CPU", lambda s: s["render"]["cpu_per_frame_net_of_idle_ms"], 3)
    row("  same, less the heartbeats (at the freeze's price) and the polls",
        lambda s: s["render"]["cpu_per_frame_net_of_heartbeats_ms"], 3)  # fmt: skip
    row("manager CPU per frame scheduled, ms", lambda s: s["render"]["cpu_per_frame_scheduled_ms"], 3)
    row("manager CPU per heartbeat (all CPU / heartbeats), ms", lambda s: s["render"]["cpu_per_heartbeat_ms"], 3)
    row("**manager CPU per heartbeat (freeze), ms**", lambda s: s["freeze"]["cpu_per_heartbeat_ms"], 3)
    row("  over the bare FastAPI request", lambda s: s["freeze"]["cpu_per_heartbeat_ms"] / floor, 1)
    row("  freeze: heartbeats/s, frame entries per heartbeat",
        lambda s: f"{s['freeze']['heartbeats_per_s']:.0f}, {s['freeze']['frame_entries_per_heartbeat']:.1f}",
        show_ratio=False)  # fmt: skip
    row("frames scheduled (work assignments' frames)", lambda s: s["render"]["counts"]["frames_scheduled"], 0)
    row("work requests: assigned / empty (204)",
        lambda s: f"{s['render']['counts']['work_assigned']:,} / {s['render']['counts']['work_empty']:,}",
        show_ratio=False)  # fmt: skip
    row("heartbeats in the render", lambda s: s["render"]["heartbeats"], 0)
    row("uploads: accepted / duplicate / refused",
        lambda s: "{accepted:,} / {duplicates:,} / {refused:,}".format(**s["render"]["counts"]),
        show_ratio=False)  # fmt: skip
    row("agent request errors", lambda s: s["render"]["counts"]["errors"], 0, show_ratio=False)
    row("heartbeat latency p50 / p99 ms (agents' side)",
        lambda s: "{} / {}".format(fmt(s["render"]["agent_request_latency"].get("heartbeat", {}).get("p50_ms"), 1),
                                   fmt(s["render"]["agent_request_latency"].get("heartbeat", {}).get("p99_ms"), 1)),
        show_ratio=False)  # fmt: skip
    row("rendered to uploaded p50 / p99 ms (upload queue + upload)",
        lambda s: "{} / {}".format(
            fmt(s["render"]["agent_request_latency"].get("rendered_to_uploaded", {}).get("p50_ms"), 0),
            fmt(s["render"]["agent_request_latency"].get("rendered_to_uploaded", {}).get("p99_ms"), 0)),
        show_ratio=False)  # fmt: skip
    row("largest upload queue on one agent (frames)", lambda s: s["render"]["counts"]["upload_backlog_max"], 0)
    row("upload latency p50 / p99 ms (agents' side)",
        lambda s: "{} / {}".format(fmt(s["render"]["agent_request_latency"].get("upload", {}).get("p50_ms"), 1),
                                   fmt(s["render"]["agent_request_latency"].get("upload", {}).get("p99_ms"), 1)),
        show_ratio=False)  # fmt: skip
    row("load generator CPU s (this process)", lambda s: s["render"]["generator_cpu_s"], 1)
    for phase in ("queued", "render", "merge"):
        for q in ("p50", "p95", "p99", "max"):
            label = f"progress poll {q} ms, {phase}"
            if q == "p99" and phase == "render":
                label = f"**{label}** (goal < {GOAL_POLL_P99_MS:g})"
            row(label, functools.partial(poll_latency, phase=phase, key=f"{q}_ms"), 1)
    row("progress polls (render phase)", lambda s: s["polls"]["render"]["count"], 0)
    row("frame list GET ms (once, after)", lambda s: s["frames_list_ms"], 0)
    row(
        "idle farm (task done, agents polling): manager CPU ms/s",
        lambda s: s["idle_farm"]["manager_cpu_per_s"] * 1000,
        1,
    )
    row("idle farm: agent requests/s", lambda s: s["idle_farm"]["requests_per_s"], 1)
    row("idle farm: manager CPU per request, ms (less the idle manager)",
        lambda s: s["idle_farm"]["cpu_per_request_ms"], 2)  # fmt: skip
    row("  over the bare FastAPI request", lambda s: s["idle_farm"]["cpu_per_request_ms"] / floor, 1)
    row("merge wall s (agents still polling)", lambda s: s["merge"]["wall_s"], 1)
    row("merge CPU s: manager (less the idle farm's) / ffmpeg",
        lambda s: "{:.1f} ({:.1f}) / {:.1f}".format(s["merge"]["manager_cpu_s"], s["merge"]["manager_cpu_net_s"],
                                                    s["merge"]["ffmpeg_cpu_s"]), show_ratio=False)  # fmt: skip
    row("database growth", lambda s: mib(s["storage"]["db_growth_bytes"]), show_ratio=False)
    row("database + WAL at the end",
        lambda s: f"{mib(s['storage']['db_total_bytes'])} ({mib(s['storage']['db_bytes_after']['db_wal'])} WAL)",
        show_ratio=False)  # fmt: skip
    row("task folder: files, size (on disk)",
        lambda s: "{:,}, {} ({})".format(s["storage"]["task_files"], mib(s["storage"]["task_bytes"]),
                                         mib(s["storage"]["task_bytes_on_disk"])),
        show_ratio=False)  # fmt: skip
    row("checks (stage, all frames done)",
        lambda s: "ok" if s["checks"]["ok"] else json.dumps(s["checks"]), show_ratio=False)  # fmt: skip

    print(f"\nThe main render in ten stretches of time ({main['agents']} agents):\n")
    print(
        "| from s | to s | frames done | frames/s | manager cores | manager CPU ms/frame | generator cores "
        "| heartbeats | work assigned | work empty (204) | frames scheduled | duplicates | abandoned |"
    )
    print("|" + "---:|" * 13)
    for t in main["render"]["timeline"]:
        print(f"| {t['from_s']:.0f} | {t['to_s']:.0f} | {t['frames_done_at_end']:,} | {t['frames_per_s']:.1f} "
              f"| {t['manager_cores']:.2f} | {fmt(t['cpu_per_frame_ms'], 2)} | {t['generator_cores']:.2f} "
              f"| {t['heartbeats']:,} | {t['work_assigned']:,} | {t['work_empty']:,} | {t['frames_scheduled']:,} "
              f"| {t['duplicates']:,} | {t['abandoned']:,} |")  # fmt: skip

    per_frame = main["render"]["cpu_per_frame_ms"]
    p99 = main["polls"]["render"]["p99_ms"]
    print("\nGoals (main scenario):")
    print(f"- manager CPU per frame < {GOAL_CPU_PER_FRAME_MS:g} ms: {per_frame:.3f} ms, "
          f"{'met' if per_frame < GOAL_CPU_PER_FRAME_MS else 'MISSED'}")  # fmt: skip
    print(f"- progress polls p99 < {GOAL_POLL_P99_MS:g} ms while rendering: {p99:.1f} ms, "
          f"{'met' if p99 < GOAL_POLL_P99_MS else 'MISSED'}")  # fmt: skip
    finished = "yes" if main["checks"]["ok"] else "NO: " + json.dumps(main["checks"])
    print(f"- the task finished with every frame: {finished}")


# --- main -----------------------------------------------------------------------------------------------------


def server_stack() -> str:
    """What uvicorn serves with here: its event loop and HTTP parser are chosen by what is installed."""
    import importlib.util

    import uvicorn

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"uvicorn {uvicorn.__version__}, {loop} loop, {http} parser"


def floor_server(port_file: Path) -> int:
    """A bare FastAPI route on the manager's server (``agent.httpserver.ServerThread``: uvicorn): what any
    request costs on this machine before the manager does anything."""
    from fastapi import FastAPI, Request

    from agent.httpserver import ServerThread

    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, Any]:
        body = await request.body()
        return {"known": True, "abandon": [], "cancel_tasks": [], "size": len(body)}

    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    with ServerThread(app, "127.0.0.1", 0) as server:
        port_file.write_text(str(server.port))
        while not stop:
            time.sleep(0.1)
    return 0


async def measure_floor(root: Path, requests: int, clients: int) -> dict[str, float]:
    """CPU per request of the bare route, with the agents' client, ``clients`` connections at once."""
    port_file = root / "floor-port"
    child = Child([sys.executable, str(Path(__file__).resolve()), "_floor-server", str(port_file)], root / "floor.log")
    try:

        async def ready() -> bool:
            child.check()
            return port_file.exists() and port_file.read_text().isdigit()

        await wait_until("the floor server", ready, 60, 0.1)
        port = int(port_file.read_text())
        beat = p.Heartbeat(uuid.uuid4().hex, p.AgentState.IDLE)
        body = json.dumps(beat.to_dict()).encode()

        async def client(count: int) -> None:
            conn = Connection("127.0.0.1", port)
            for _ in range(count):
                await conn.request("POST", "/echo", body, {"Content-Type": "application/json"})
            conn.close()

        await asyncio.gather(*(client(20) for _ in range(clients)))  # warm up
        t0, c0 = time.time(), proc_cpu(child.proc.pid)
        await asyncio.gather(*(client(requests // clients) for _ in range(clients)))
        t1, c1 = time.time(), proc_cpu(child.proc.pid)
        count = requests // clients * clients
        return {"requests": count, "cpu_per_request_ms": (c1 - c0) / count * 1000, "requests_per_s": count / (t1 - t0)}
    finally:
        child.stop(10)


async def run(cfg: Config, root: Path, profile: Path | None) -> dict[str, Any]:
    floor = await measure_floor(root, cfg.floor_requests, min(cfg.agents, 50))
    print(
        f"bare FastAPI route (same server): {floor['cpu_per_request_ms']:.3f} ms CPU per request, "
        f"{floor['requests_per_s']:.0f} requests/s",
        flush=True,
    )
    manager = Manager(root, profile)
    try:
        async with httpx.AsyncClient(base_url=manager.url, headers=p.bearer(TOKEN), timeout=10) as c:

            async def ready() -> bool:
                manager.child.check()
                return (await c.get("/api/")).status_code == 200

            await wait_until("the manager", ready, 120, 0.1)
        await asyncio.sleep(1.0)  # start-up settles (migrations, imports)
        i0, c0 = time.time(), manager.cpu()
        await asyncio.sleep(cfg.idle_s)
        idle_rate = (manager.cpu() - c0) / (time.time() - i0)
        data: dict[str, Any] = {
            "floor": floor,
            "idle": {"wall_s": time.time() - i0, "manager_cpu_per_s": idle_rate},
            "scenarios": {},
        }
        data["scenarios"]["baseline"] = await scenario(
            "baseline", manager, root, cfg, cfg.baseline_agents, cfg.baseline_frames, idle_rate
        )
        data["scenarios"]["main"] = await scenario("main", manager, root, cfg, cfg.agents, cfg.frames, idle_rate)
        data["manager_log_tail"] = manager.child.log_path.read_text(errors="replace")[-1500:]
        return data
    finally:
        manager.child.stop(60 if profile else 20)


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["_poll"]:
        url, key, hz, out = args_list[1:5]
        return poll_main(url, key, float(hz), Path(out))
    if args_list[:1] == ["_floor-server"]:
        return floor_server(Path(args_list[1]))
    if args_list[:1] == ["_profiled-manager"]:
        return profiled_manager(Path(args_list[1]), args_list[2:])

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--baseline-agents", type=int, default=10)
    parser.add_argument("--baseline-frames", type=int, help="default: a twentieth of --frames")
    parser.add_argument("--render-ms", type=float, default=500.0, help="simulated render time of a frame (+-20 %%)")
    parser.add_argument("--startup-s", type=float, default=0.5, help="simulated Blender start-up per agent and task")
    parser.add_argument("--idle-s", type=float, default=4.0, help="length of the idle and queued windows")
    parser.add_argument("--poll-hz", type=float, default=5.0, help="progress polls per second")
    parser.add_argument("--freeze-s", type=float, default=5.0, help="heartbeat-only window, measured (0: none)")
    parser.add_argument("--freeze-beat-s", type=float, default=0.25, help="heartbeat interval in the freeze")
    parser.add_argument("--floor-requests", type=int, default=3000, help="requests to the bare FastAPI route")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--timeout-s", type=float, default=900.0, help="give up on a render or merge after this")
    parser.add_argument("--quick", action="store_true", help="20 agents, 2,000 frames (baseline: 4 agents)")
    parser.add_argument("--profile", type=Path, metavar="PATH", help="profile the manager, results to PATH")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results to PATH")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (database, logs, frames)")
    args = parser.parse_args(args_list)
    if args.quick:
        args.agents, args.frames, args.baseline_agents = 20, 2_000, 4
    cfg = Config(
        agents=args.agents,
        frames=args.frames,
        baseline_agents=args.baseline_agents,
        baseline_frames=args.baseline_frames or max(1, args.frames // 20),
        render_s=args.render_ms / 1000,
        startup_s=args.startup_s,
        idle_s=args.idle_s,
        poll_hz=args.poll_hz,
        freeze_s=args.freeze_s,
        freeze_beat_s=args.freeze_beat_s,
        floor_requests=args.floor_requests,
        seed=args.seed,
        timeout_s=args.timeout_s,
    )
    print(f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}; {server_stack()}; {BLEND.name}")  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="frameherd-manager-scale-"))
    started = time.time()
    try:
        data = asyncio.run(run(cfg, root, args.profile.resolve() if args.profile else None))
    finally:
        left = processes_mentioning(str(root))
        print(f"processes left behind: {len(left)}")
        for line in left:
            print(f"  {line}")
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    data["processes_left"] = left
    data["config"] = {
        **{k: v for k, v in cfg.__dict__.items() if k != "render_s"},
        "render_ms": args.render_ms,
        "heartbeat_interval_s": p.HEARTBEAT_INTERVAL_S,
        "idle_poll_s": IDLE_POLL_S,
        "blend": str(BLEND.relative_to(ROOT)),
        "profiled": args.profile is not None,
    }
    data["machine"] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_after": os.getloadavg(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_s": time.time() - started,
        "server": server_stack(),
    }
    base, mainrun = data["scenarios"]["baseline"]["render"], data["scenarios"]["main"]["render"]
    data["ratios"] = {
        "cpu_per_frame_main_over_baseline": mainrun["cpu_per_frame_ms"] / base["cpu_per_frame_ms"],
        "manager_cpu_rate_main_over_idle": mainrun["manager_cpu_over_idle"],
        "poll_p99_render_over_queued": data["scenarios"]["main"]["polls"]["render"]["p99_ms"]
        / data["scenarios"]["main"]["polls"]["queued"]["p99_ms"],
    }
    data["goals"] = {
        "cpu_per_frame_ms": {"goal": GOAL_CPU_PER_FRAME_MS, "value": mainrun["cpu_per_frame_ms"]},
        "poll_p99_ms": {"goal": GOAL_POLL_P99_MS, "value": data["scenarios"]["main"]["polls"]["render"]["p99_ms"]},
        "all_frames_done": data["scenarios"]["main"]["checks"]["ok"],
    }
    report(data)
    if args.profile:
        data["profile"] = print_profile(args.profile)
    text = json.dumps(data, indent=1, default=str)
    print("\nJSON:")
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    print(f"\nwhole run: {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
