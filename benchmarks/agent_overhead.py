"""The farm's overhead: one agent rendering N frames of a real scene against plain ``blender -a``.

Scenes are made at run time with the Blender under test (``tests/integration/make_scenes.py``'s turning
cube, Cycles on the CPU):

* ``light``: 64x64, ``--samples`` samples (~1.2 s a frame on two idle cores), loads in a blink;
* ``heavy`` (``--heavy-grid``, 0 to skip): the same cube plus a hidden dense grid (1500x1500: 2.25 M
  vertices, a 72 MB zstd file), so Blender needs ~2 s to load it and the frames are short. It also gets
  ``per-frame``, what a farm without persistent sessions pays: one ``blender -b FILE -f N`` per frame
  (``--per-frame-frames`` of them, scaled to N).

Measures, in rotating order each round, on the same frames with the same thread count (``--threads``):

* ``plain``: ``blender -b FILE -o OUT/f_#### -t T -s 1 -e N -a``, wall time of the subprocess;
* ``session``: the agent's :class:`agent.session.RenderSession` in this process: start (load the file),
  render the N frames one command at a time (with the agent's PNG check and sha256), close;
* ``farm``: the whole farm on loopback: a real manager (``python -m farmgui --headless --no-local-agent
  --no-discovery``) and one real agent (``python -m agent --no-tray --no-advertise --blender BLENDER
  --no-bpy``), started once; each round submits the file through the REST API and times from the
  submission until the manager holds every frame (``frames_done == N``). The merge that follows is
  timed separately, not counted. The agent's file cache is cleared before each round, so every round
  includes the download, as a first submission does.

Each measure also has a CPU time: Blender's, plus on the farm the agent's and the manager's processes
(``/proc``), plus for ``session`` this process's. On a shared machine wall times swing by +-30 % with
the other tenants' load; CPU times much less, so both are printed.

Printed, never asserted: medians, the ratios farm/plain and session/plain (goal <= 1.05; "paired" is
the median of each round's own ratio), and where the time goes, from the agent's log (``-v``): submit
(upload to the manager until it answers), pickup (until the agent is assigned the first frame; slightly
negative when the agent asks before the answer reaches us), download, Blender's start-up, the frames,
the gaps between them (time beyond the driver's per-frame render time, also per frame after the first),
tail (from the last upload to ``frames_done``); then the farm-only time (what plain Blender has no
counterpart for) as a share of plain's, measured directly so it does not drown in the render noise.

    python benchmarks/agent_overhead.py [--frames 12] [--repeat 5] [--samples 1500] [--threads 2]
                                        [--heavy-grid 1500] [--per-frame-frames 4] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent import protocol as p  # noqa: E402
from agent.blender import BlenderInstall, probe_executable  # noqa: E402
from agent.command import RenderSettings  # noqa: E402
from agent.session import FrameFailed, RenderSession  # noqa: E402

GOAL = 1.05
TOKEN = "agent-overhead-benchmark-token-0123456789"  # noqa: S105 - the benchmark's own farm, on loopback
PROCESS_TIMEOUT_S = 900.0
FARM_POLL_S = 0.01
"""How often the benchmark looks for the last frame (a directory listing: no load on the manager)."""
FARM_ONLY = ("submit", "pickup", "download", "gaps", "tail")
"""The parts of the farm's time that plain Blender has no counterpart for."""

SCENE_SCRIPT = """
import sys
import bpy
sys.path.insert(0, {helpers!r})
import make_scenes

out, samples, size, frames, grid = sys.argv[sys.argv.index("--") + 1 :]
sc = make_scenes.scene(samples=int(samples), size=int(size), frames=int(frames))
sc.render.image_settings.file_format = "PNG"
if int(grid):
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=int(grid), y_subdivisions=int(grid), size=2)
    bpy.context.object.hide_render = True  # costs loading, not rendering
bpy.ops.wm.save_as_mainfile(filepath=out, compress=bool(int(grid)))
"""

_BLENDER_FRAME_TIME = re.compile(r"^ Time: (\d+):(\d+\.\d+)", re.MULTILINE)
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\S+) (.*)$")


# --- processes ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def end_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM (unless ``grace`` is 0), up to ``grace`` s to exit, then SIGKILL whatever is left of the
    process group, then reap. The group is killed before its leader is reaped: until then its id cannot
    have been given to anyone else."""
    if proc.returncode is not None:
        return
    if grace > 0:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            exited = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        except ChildProcessError:
            break
        if exited is not None:
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def run_group(argv: list[str], log: Path, timeout: float = PROCESS_TIMEOUT_S) -> float:
    """Run to the end in a process group of its own, output to ``log``; returns the wall time."""
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except BaseException:  # a timeout, Ctrl-C: nothing Blender started may outlive it
            end_group(proc, 0)
            raise
        elapsed = time.perf_counter() - started
    if code != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{argv[0]} exited with {code}:\n{tail}")
    return elapsed


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds of every child this process has reaped (Blender after it exits)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def newest_child(parent: int, name: str) -> int | None:
    """The most recently started child process of ``parent`` called ``name`` (the agent's Blender)."""
    best: tuple[int, int] | None = None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat.rsplit(")", 1)[1].split()
            if comm == name and int(fields[1]) == parent:
                started = int(fields[19])
                if best is None or started > best[0]:
                    best = (started, int(entry.name))
    return best[1] if best else None


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last, value = exc, None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"no {what} within {timeout:.0f} s (last error: {last})")


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if text in cmdline:
                    found.append(f"{entry.name}: {cmdline[:160]}")
    return found


class Child:
    """A long-lived farm process (manager or agent) in its own process group, output in a log file."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, env=env)

    def alive(self) -> bool:
        # Not poll(): it would reap the process, and stop() kills its group only before that.
        exited = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        if exited is not None:
            raise RuntimeError(f"{self.log_path.name}: exited with {exited.si_status}:\n{self.text()[-2000:]}")
        return True

    def text(self, offset: int = 0) -> str:
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def size(self) -> int:
        return self.log_path.stat().st_size

    def stop(self) -> None:
        """SIGTERM (the agent then kills its Blenders), then SIGKILL the group whatever happened."""
        end_group(self.proc, 20)
        self._log.close()


# --- scenes -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneSpec:
    name: str
    path: Path
    frames: int
    samples: int
    grid: int

    def describe(self) -> str:
        size = self.path.stat().st_size
        extra = f", hidden {self.grid}x{self.grid} grid, zstd" if self.grid else ""
        return f"{self.name}: {self.frames} frames, Cycles CPU {self.samples} samples{extra}, {size / 1e6:.1f} MB"


def make_scene(blender: Path, folder: Path, spec: tuple[str, int, int, int, int]) -> SceneSpec:
    name, samples, size, frames, grid = spec
    script = folder / "make_scene.py"
    script.write_text(SCENE_SCRIPT.format(helpers=str(ROOT / "tests" / "integration")))
    path = folder / f"{name}.blend"
    argv = [str(blender), "-b", "--factory-startup", "--python-exit-code", "1", "--python", str(script), "--"]
    seconds = run_group([*argv, str(path), str(samples), str(size), str(frames), str(grid)], folder / f"{name}.log")
    print(f"made {name}.blend in {seconds:.1f} s")
    return SceneSpec(name, path, frames, samples, grid)


# --- measures -----------------------------------------------------------------------------------------------


@dataclass
class Measure:
    total: float
    render: float
    """Time inside Blender's render of each frame (Blender's own "Time:", or the driver's), summed."""
    cpu: float
    """CPU seconds of every process involved: Blender, and the agent, manager or session on the farm's side."""
    parts: dict[str, float] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)
    """The frame files, in frame order."""


def plain(blender: Path, scene: SceneSpec, threads: int, out: Path) -> Measure:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    argv = [str(blender), "-b", str(scene.path), "-o", str(out / "f_####"), "-t", str(threads)]
    argv += ["-s", "1", "-e", str(scene.frames), "-a"]
    log = out.with_suffix(".log")
    cpu = children_cpu()
    total = run_group(argv, log)
    cpu = children_cpu() - cpu
    render = blender_frame_seconds(log.read_text(errors="replace"))
    outputs = check_count(out, scene.frames, "plain")
    return Measure(total, render, cpu, {"start+exit": total - render}, outputs)


def per_frame(blender: Path, scene: SceneSpec, threads: int, out: Path, frames: int) -> Measure:
    """One Blender per frame (a farm without persistent sessions, chunks of one frame): ``frames`` of them
    measured, scaled to the scene's frame count."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    frames = min(frames, scene.frames)
    total = render = 0.0
    cpu = children_cpu()
    for frame in range(1, frames + 1):
        argv = [str(blender), "-b", str(scene.path), "-o", str(out / "f_####"), "-t", str(threads), "-f", str(frame)]
        log = out.with_suffix(".log")
        total += run_group(argv, log)
        render += blender_frame_seconds(log.read_text(errors="replace"))
    cpu = children_cpu() - cpu
    outputs = check_count(out, frames, "per-frame")
    scale = scene.frames / frames
    parts = {"start+exit per frame": (total - render) / frames}
    return Measure(total * scale, render * scale, cpu * scale, parts, outputs)


def steady_gap(elapsed: float, seconds: list[float]) -> float:
    """Mean time between frames from the second on: ``elapsed`` from the end of frame 1 to the end of the
    last, less the render times of frames 2..N (Blender's start and the first frame's one-off costs apart)."""
    return (elapsed - sum(seconds[1:])) / max(len(seconds) - 1, 1)


def blender_frame_seconds(text: str) -> float:
    return sum(int(m) * 60 + float(s) for m, s in (_BLENDER_FRAME_TIME.findall(text) or []))


def check_count(folder: Path, frames: int, what: str) -> list[Path]:
    found = sorted(f for f in folder.iterdir() if f.suffix == ".png" and not f.name.startswith("."))
    if len(found) != frames:
        raise RuntimeError(f"{what}: {len(found)} frames in {folder}, expected {frames}")
    return found


def png_pixels(path: Path) -> bytes:
    """A PNG's image data, inflated (its text chunks, with Blender's render date and time, left out)."""
    data, pos, idat = path.read_bytes(), 8, bytearray()
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return zlib.decompress(bytes(idat))


def session_only(install: BlenderInstall, scene: SceneSpec, threads: int, out: Path, temp: Path) -> Measure:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    blender_cpu, own_cpu = children_cpu(), self_cpu()
    started = time.perf_counter()
    session = RenderSession(install, scene.path, RenderSettings(threads=threads), temp_root=temp)
    try:
        ready = session.start()
        render_started = time.perf_counter()
        seconds: list[float] = []
        first_done = render_started
        for frame in range(1, scene.frames + 1):
            result = session.render(frame, out / "frame_######", timeout=PROCESS_TIMEOUT_S)
            error = result.error if isinstance(result, FrameFailed) else None
            if error is not None:
                raise RuntimeError(f"session: frame {frame} failed: {error}")
            seconds.append(result.seconds)
            if frame == 1:
                first_done = time.perf_counter()
        render_ended = time.perf_counter()
        render = sum(seconds)
    finally:
        closing = time.perf_counter()
        session.close()
    ended = time.perf_counter()
    blender_cpu, own_cpu = children_cpu() - blender_cpu, self_cpu() - own_cpu
    outputs = check_count(out, scene.frames, "session")
    return Measure(
        ended - started,
        render,
        blender_cpu + own_cpu,
        {
            "start": ready.startup_seconds,
            "frames": render_ended - render_started,
            "gaps": render_ended - render_started - render,
            "gap per frame after the first": steady_gap(render_ended - first_done, seconds),
            "close": ended - closing,
            "CPU Blender": blender_cpu,
            "CPU session (Python)": own_cpu,
        },
        outputs,
    )


class Farm:
    """A manager and one agent on loopback, started once for all rounds."""

    def __init__(self, root: Path, blender: Path, threads: int) -> None:
        self.root = root
        self.agent_dir = root / "agent"
        self.agent_dir.mkdir(parents=True)
        self.data_dir = root / "manager"
        self.data_dir.mkdir(parents=True)
        agent_port, manager_port = free_port(), free_port()
        python = sys.executable
        self.agent = Child(
            [
                python, "-m", "agent", "--no-tray", "--no-advertise", "--host", "127.0.0.1",
                "--port", str(agent_port), "--name", "bench", "--token", TOKEN, "--work-dir", str(self.agent_dir),
                "--settings", str(self.agent_dir / "settings.json"), "--threads", str(threads),
                "--blender", str(blender), "--no-bpy", "-v",
            ],
            self.agent_dir / "agent.log",
        )  # fmt: skip
        self.manager: Child | None = None
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{manager_port}", headers=p.bearer(TOKEN), timeout=60)
        try:
            headers = p.bearer(TOKEN)
            wait_for(
                "agent",
                lambda: (
                    self.agent.alive()
                    and httpx.get(f"http://127.0.0.1:{agent_port}{p.AGENT_INFO}", headers=headers).status_code == 200
                ),
                120,
            )
            self.manager = Child(
                [
                    python, "-m", "farmgui", "--headless", "--no-local-agent", "--no-discovery",
                    "--host", "127.0.0.1", "--port", str(manager_port), "--data-dir", str(self.data_dir),
                    "--token", TOKEN, "--agent", f"127.0.0.1:{agent_port}",
                ],
                self.data_dir / "manager.log",
            )  # fmt: skip
            manager = self.manager
            wait_for("manager", lambda: manager.alive() and self.client.get("/api/").status_code == 200, 120)
            wait_for("the agent's hello", lambda: any(a["online"] for a in self.client.get("/api/agents/").json()), 60)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.client.close()
        if self.manager is not None:
            self.manager.stop()
        self.agent.stop()

    def run(self, scene: SceneSpec) -> Measure:
        for cached in (self.agent_dir / "cache").glob("*.blend"):
            cached.unlink()  # a first submission: the agent downloads the file
        offset = self.agent.size()
        assert self.manager is not None
        agent_cpu, manager_cpu = proc_cpu(self.agent.proc.pid), proc_cpu(self.manager.proc.pid)
        t0 = time.time()
        with scene.path.open("rb") as f:
            r = self.client.post("/api/render-tasks/run_task/", files={"file": (scene.path.name, f)})
        r.raise_for_status()
        key = str(r.json()["task_key"])
        queued = time.time()
        frames_dir = self.data_dir / "tasks" / key / "frames"

        def all_frames_stored() -> bool:
            with contextlib.suppress(FileNotFoundError):
                if sum(1 for f in frames_dir.iterdir() if not f.name.startswith(".")) >= scene.frames:
                    return True
            self.agent.alive()
            return False

        wait_for("all frames on the manager", all_frames_stored, PROCESS_TIMEOUT_S, FARM_POLL_S)
        wait_for("frames_done", lambda: self.progress(key)["frames_done"] >= scene.frames, 60, FARM_POLL_S)
        done = time.time()
        agent_cpu = proc_cpu(self.agent.proc.pid) - agent_cpu
        manager_cpu = proc_cpu(self.manager.proc.pid) - manager_cpu
        blender = newest_child(self.agent.proc.pid, "blender")  # this task's session: idle now, not closed
        if blender is None:
            raise RuntimeError("farm: the agent's Blender is gone")
        blender_cpu = proc_cpu(blender)
        finished = wait_for(
            "the merge", lambda: (pr := self.progress(key))["stage"] in {"finished", "failed"} and pr, 600, 0.1
        )
        merged = time.time()
        if finished["stage"] != "finished":
            raise RuntimeError(f"farm: task {key} {finished['stage']}: {finished.get('error')}")
        rows = sorted(self.client.get(f"/api/render-tasks/{key}/frames/").json(), key=lambda f: int(f["frame"]))
        seconds = [float(f["seconds"] or 0.0) for f in rows]
        events = agent_events(self.agent.text(offset), key)
        parts = farm_parts(t0, queued, done, events)
        render = sum(seconds)
        if "frames" in parts:
            parts["gaps"] = parts["frames"] - render
            uploads = events["uploaded"]
            if len(uploads) == len(seconds):  # one agent: frames arrive in order
                parts["gap per frame after the first"] = steady_gap(uploads[-1] - uploads[0], seconds)
        parts["merge (not counted)"] = merged - done
        parts |= {"CPU Blender": blender_cpu, "CPU agent": agent_cpu, "CPU manager": manager_cpu}
        outputs = check_count(frames_dir, scene.frames, "farm")
        return Measure(done - t0, render, blender_cpu + agent_cpu + manager_cpu, parts, outputs)

    def progress(self, key: str) -> dict[str, Any]:
        r = self.client.get(f"/api/render-tasks/{key}/progress/")
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data


def agent_events(text: str, key: str) -> dict[str, list[float]]:
    """When the agent did what for this task, from its log (``-v``: timestamps to the millisecond)."""
    events: dict[str, list[float]] = {}
    short = key[:8]
    for line in text.splitlines():
        m = _LOG_LINE.match(line)
        if m is None:
            continue
        when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        message = m.group(3)
        name = None
        if f"of task {short}" in message and message.startswith("assigned frames"):
            name = "assigned"
        elif message.startswith("starting "):
            name = "starting"
        elif " ready in " in message:
            name = "ready"
        elif "HTTP Request: PUT" in message and f"/tasks/{key}/frames/" in message:
            name = "uploaded"
        elif "HTTP Request: POST" in message and p.MANAGER_WORK in message:
            name = "asked"
        elif "HTTP Request: POST" in message and p.MANAGER_HEARTBEAT in message:
            name = "heartbeat"
        if name is not None:
            events.setdefault(name, []).append(when)
    return events


def farm_parts(t0: float, queued: float, done: float, ev: dict[str, list[float]]) -> dict[str, float]:
    parts = {"submit": queued - t0}
    if not all(k in ev for k in ("assigned", "starting", "ready", "uploaded")):
        return parts
    assigned, starting, ready = ev["assigned"][0], ev["starting"][0], ev["ready"][0]
    last_upload = ev["uploaded"][-1]
    parts["pickup"] = assigned - queued
    parts["download"] = starting - assigned
    parts["start"] = ready - starting
    parts["frames"] = last_upload - ready
    parts["tail"] = done - last_upload
    for name in ("asked", "heartbeat"):
        parts[f"{name} (count)"] = float(len([t for t in ev.get(name, []) if queued <= t <= done]))
    return parts


# --- the run ------------------------------------------------------------------------------------------------


def median_parts(measures: list[Measure]) -> dict[str, float]:
    keys = [k for k in measures[0].parts if all(k in m.parts for m in measures)]
    return {k: statistics.median(m.parts[k] for m in measures) for k in keys}


def fmt_parts(parts: dict[str, float]) -> str:
    def one(key: str, value: float) -> str:
        if key.endswith("(count)"):
            return f"{key} {value:.0f}"
        if key.startswith("gap per frame"):
            return f"{key} {value * 1000:.0f} ms"
        return f"{key} {value:.2f} s"

    return ", ".join(one(k, v) for k, v in parts.items())


def verdict(ratio: float) -> str:
    return "ok" if ratio <= GOAL else "MISSED"


def bench_scene(
    scene: SceneSpec,
    measures: dict[str, Callable[[SceneSpec], Measure]],
    repeat: int,
) -> dict[str, list[Measure]]:
    print(f"\n## {scene.describe()}\n")
    names = list(measures)
    results: dict[str, list[Measure]] = {n: [] for n in names}
    for round_no in range(repeat):
        # Rotate the order: on a shared machine the load drifts, and no measure should always go first.
        order = names[round_no % len(names) :] + names[: round_no % len(names)]
        for name in order:
            results[name].append(measures[name](scene))
        cells = " | ".join(f"{n} {results[n][-1].total:.2f} s ({results[n][-1].cpu:.2f} cpu)" for n in names)
        print(f"round {round_no + 1} ({', '.join(order)}): {cells}", flush=True)
    plain_runs = results["plain"]
    base = statistics.median(m.total for m in plain_runs)
    base_cpu = statistics.median(m.cpu for m in plain_runs)
    print(
        "\n| measure | wall median s | min | max | render s | CPU s | wall / plain | paired | CPU / plain "
        f"| goal <= {GOAL} |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in names:
        runs = results[name]
        totals = [m.total for m in runs]
        med, cpu = statistics.median(totals), statistics.median(m.cpu for m in runs)
        render = statistics.median(m.render for m in runs)
        ratio, cpu_ratio = med / base, cpu / base_cpu
        # Each round's own ratio: the two ran minutes apart at most, under much the same load.
        paired = statistics.median(m.total / b.total for m, b in zip(runs, plain_runs, strict=True))
        goal = "-" if name in ("plain", "per-frame") else f"wall {verdict(ratio)}, CPU {verdict(cpu_ratio)}"
        print(
            f"| {name} | {med:.2f} | {min(totals):.2f} | {max(totals):.2f} | {render:.2f} | {cpu:.2f} "
            f"| {ratio:.3f} | {paired:.3f} | {cpu_ratio:.3f} | {goal} |"
        )
    print("\nWhere the time goes (medians):")
    for name in names:
        print(f"- {name}: {fmt_parts(median_parts(results[name]))}")
    reference = [png_pixels(f) for f in results["plain"][-1].outputs]
    same = []
    for name in names[1:]:
        outputs = results[name][-1].outputs
        equal = sum(png_pixels(f) == reference[i] for i, f in enumerate(outputs))
        same.append(f"{name} {equal}/{len(outputs)}")
    print(f"\nFrames pixel-identical to plain Blender's (last round): {', '.join(same)}")
    farm_runs = [m for m in results.get("farm", []) if "tail" in m.parts]
    if farm_runs:
        # Measured directly, so it does not drown in the render time's noise on a shared machine.
        extra = statistics.median(sum(m.parts[k] for k in FARM_ONLY) for m in farm_runs)
        own = statistics.median(m.parts["CPU agent"] + m.parts["CPU manager"] for m in farm_runs)
        print(
            f"\nFarm-only time ({' + '.join(FARM_ONLY)}): {extra:.2f} s, {extra / base:.1%} of plain's wall time; "
            f"agent + manager CPU: {own:.2f} s, {own / base_cpu:.1%} of plain's CPU"
        )
    return results


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="frameherd-agent-overhead-"))
    try:
        yield root
    finally:
        left = processes_mentioning(str(root))
        print(f"\nprocesses left behind: {len(left)}")
        for line in left:
            print(f"  {line}")
        if keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blender", type=Path, default=Path("/usr/bin/blender"))
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--samples", type=int, default=1500, help="Cycles samples of the light scene")
    parser.add_argument("--size", type=int, default=64, help="resolution (square)")
    parser.add_argument("--threads", type=int, default=2, help="render threads, the same on every side")
    parser.add_argument("--heavy-grid", type=int, default=1500, help="subdivisions of the heavy scene's grid (0: none)")
    parser.add_argument("--heavy-samples", type=int, default=200)
    parser.add_argument(
        "--per-frame-frames", type=int, default=4, help="frames of the heavy scene rendered one Blender each (scaled)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, frames)")
    args = parser.parse_args(argv)

    found = probe_executable(args.blender)
    if found is None:
        print(f"{args.blender} is not a Blender that runs")
        return 1
    install = BlenderInstall("executable", args.blender, found[0], found[1])
    print(f"{install.describe()}; {args.frames} frames, {args.threads} threads, {args.repeat} rounds")
    print(f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs")

    with workspace(args.keep) as root:
        scenes = [make_scene(args.blender, root, ("light", args.samples, args.size, args.frames, 0))]
        if args.heavy_grid:
            heavy = ("heavy", args.heavy_samples, args.size, args.frames, args.heavy_grid)
            scenes.append(make_scene(args.blender, root, heavy))
        temp = root / "tmp"
        temp.mkdir()
        farm = Farm(root / "farm", args.blender, args.threads)
        try:
            summary = []
            for scene in scenes:
                out = root / "out" / scene.name
                measures: dict[str, Callable[[SceneSpec], Measure]] = {
                    "plain": functools.partial(plain, args.blender, threads=args.threads, out=out / "plain"),
                    "session": functools.partial(
                        session_only, install, threads=args.threads, out=out / "session", temp=temp
                    ),
                    "farm": farm.run,
                }
                if scene.grid:
                    measures["per-frame"] = functools.partial(
                        per_frame, args.blender, threads=args.threads, out=out / "pf", frames=args.per_frame_frames
                    )
                results = bench_scene(scene, measures, args.repeat)
                base = statistics.median(m.total for m in results["plain"])
                base_cpu = statistics.median(m.cpu for m in results["plain"])
                for name in ("session", "farm"):
                    ratio = statistics.median(m.total for m in results[name]) / base
                    cpu_ratio = statistics.median(m.cpu for m in results[name]) / base_cpu
                    summary.append(
                        f"{scene.name} {name}/plain: wall {ratio:.3f} ({verdict(ratio)}), "
                        f"CPU {cpu_ratio:.3f} ({verdict(cpu_ratio)}); goal <= {GOAL}"
                    )
            print("\nSummary:")
            for line in summary:
                print(f"- {line}")
        finally:
            farm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
