"""Does the control station's event loop stay responsive while a big farm streams progress?

The issue's measurement: 50 agents and a 10,000-frame task streaming progress, and the GUI event
loop never stalls for more than 50 ms.

- A real :class:`FarmService` in a temporary data directory (its maintenance thread running), with
  a real corpus ``.blend`` (4.5, PNG, has a camera) submitted for frames 1-10,000.
- ``--agents`` scripted agents, each on its own thread, speak the agent side of the protocol to the
  service in-process (the same calls the HTTP API makes): hello, request work (asking ahead when
  one frame is left, as the real agent does), a heartbeat with the running frame's progress every
  ``--beat-seconds`` (the protocol's interval by default), and an upload of a small PNG file for
  every frame after ``--frame-seconds`` (+-30 %) of "rendering".
- The real :class:`MainWindow` (offscreen unless ``QT_QPA_PLATFORM`` says otherwise) over that
  service, the task selected, its frame grid of 10,000 cells shown; every ``--tab-seconds`` the
  window switches tab (task detail, agents, tasks) so every view is painted while it changes.
- A probe: a 5 ms precise ``QTimer`` on the GUI thread records the gap between its ticks. A gap
  much over 5 ms is the event loop stalled (by our slots, painting, layout, or waiting for the GIL).
  The max and p99 gaps are the result. To explain a stall it also records the GUI thread's own CPU
  time within each gap (the rest is waiting), the GUI-thread slots that ended in it, whether a tab
  switch was in it, and Python's full garbage collections (wall and CPU time).
- The baseline, measured first in the same run: the probe over the same window idle with no farm
  (``--baseline-seconds``), i.e. what the machine's own load does to the event loop.
- What a tab switch costs the GUI thread (its CPU time, less noisy than the gaps on a shared machine):
  within the run, the CPU time in the probe's gaps in the 0.3 s after each switch, next to the same
  0.3 s halfway between switches; with ``--switch-cycles N``, before the run, N switches to each tab
  measured alone (the window stops polling the farm meanwhile; the agents go on).

Goal: max gap <= 50 ms. Printed next to the result, never asserted. Experiments: ``--gc default``
(no ``gc.freeze()`` at start-up), ``--gc off``, ``--in-memory-frames`` (a proposed core change).

    python benchmarks/gui_responsiveness.py [--seconds 60] [--agents 50] [--frames 10000]
        [--frame-seconds 2] [--beat-seconds 2] [--tab-seconds 5] [--baseline-seconds 10]
        [--gc app|default|off] [--in-memory-frames] [--switch-cycles N] [--screenshot PATH]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import platform
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QSettings, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from agent import protocol as p  # noqa: E402
from farmgui.core.service import FarmService, FrameUpload, TaskOptions  # noqa: E402
from farmgui.ui.app import quiet_gc  # noqa: E402
from farmgui.ui.main_window import MainWindow  # noqa: E402
from tests.pngs import png_bytes  # noqa: E402

BLEND = ROOT / "tests" / "data" / "blendfiles" / "gltf-blender-io" / "36_viewport_material_export.blend"
GOAL_MS = 50.0
PROBE_MS = 5
SETTLE_S = 0.3
SWITCH_S = 0.8
"""``--switch-cycles``: how long the event loop runs after a switch (the task detail's read lands in it)."""


@dataclass
class Counts:
    lock: threading.Lock = field(default_factory=threading.Lock)
    hellos: int = 0
    requests: int = 0
    assignments: int = 0
    beats: int = 0
    frames: int = 0
    rejected: int = 0

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)


class ScriptedAgent(threading.Thread):
    """The agent side of the protocol, called in-process; "renders" by waiting, uploads a tiny PNG."""

    def __init__(
        self, service: FarmService, index: int, stop: threading.Event, counts: Counts, args: argparse.Namespace
    ) -> None:
        super().__init__(name=f"agent-{index:02d}", daemon=True)
        self.service = service
        self.agent_id = f"bench-agent-{index:02d}"
        self.stop = stop
        self.counts = counts
        self.frame_s: float = args.frame_seconds
        self.beat_s: float = args.beat_seconds
        self.rng = random.Random(index)
        self.queue: list[tuple[p.WorkAssignment, int]] = []
        self.warm: list[str] = []

    def run(self) -> None:
        info = p.AgentInfo(
            self.agent_id, f"render-pc-{self.agent_id[-2:]}", f"10.0.0.{100 + int(self.agent_id[-2:])}", 8765,
            blenders=[p.BlenderVersion("4.5.3", "/opt/blender-4.5/blender")], cpus=16,
        )  # fmt: skip
        self.service.hello(info)
        self.counts.add("hellos")
        # Agents do not all start on the same millisecond.
        self.stop.wait(self.rng.uniform(0, self.beat_s))
        current: tuple[p.WorkAssignment, int, float, float] | None = None  # work, frame, started, duration
        next_beat = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if current is None:
                self._ask_for_work()
                if not self.queue:
                    self.stop.wait(1.0)
                    continue
                work, frame = self.queue.pop(0)
                current = (work, frame, now, self.frame_s * self.rng.uniform(0.7, 1.3))
            work, frame, started, duration = current
            if now >= started + duration:
                self._upload(work, frame)
                current = None
                if len(self.queue) <= 1:
                    self._ask_for_work()
                continue
            if now >= next_beat:
                self._beat(p.FrameProgress(work.task_id, work.attempt, frame, (now - started) / duration))
                next_beat = now + self.beat_s
            self.stop.wait(max(0.0, min(next_beat, started + duration) - time.monotonic()))

    def _ask_for_work(self) -> None:
        work = self.service.request_work(p.WorkRequest(self.agent_id, self.warm, len(self.queue)))
        self.counts.add("requests")
        if work is not None:
            self.counts.add("assignments")
            self.warm = [work.task_id]
            self.queue += [(work, frame) for frame in work.frames]

    def _beat(self, running: p.FrameProgress) -> None:
        queued = [p.FrameProgress(w.task_id, w.attempt, f, 0.0) for w, f in self.queue]
        reply = self.service.heartbeat(p.Heartbeat(self.agent_id, p.AgentState.RENDERING, [running], queued))
        self.counts.add("beats")
        dropped = {(a.attempt, a.frame) for a in reply.abandon}
        self.queue = [(w, f) for w, f in self.queue if (w.attempt, f) not in dropped]

    def _upload(self, work: p.WorkAssignment, frame: int) -> None:
        body = png_bytes(64, 36, shade=frame % 256)
        # As the API does: the body lands in a temporary file in the task's folder, then the service takes it.
        tmp_dir = self.service.storage.task_dir(work.task_id)
        with tempfile.NamedTemporaryFile(dir=tmp_dir, prefix=".upload-", delete=False) as out:
            out.write(body)
        seconds = self.frame_s
        reply = self.service.accept_frame(
            FrameUpload(
                work.task_id, frame, self.agent_id, work.attempt, Path(out.name),
                hashlib.sha256(body).hexdigest(), seconds, "png",
            )
        )  # fmt: skip
        self.counts.add("frames" if reply.accepted else "rejected")


class _NoLinks:
    def links(self) -> list[Any]:
        return []


@dataclass
class InProcessFarm:
    """What the window needs of a manager: the service, and the links to agents (none here)."""

    service: FarmService
    links: _NoLinks = field(default_factory=_NoLinks)


class Probe:
    """A 5 ms timer on the GUI thread; the gaps between its ticks are the event loop's stalls."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self.at: list[float] = []
        self.cpu: list[float] = []
        """The GUI thread's own CPU time within each gap: what of a stall was our work, not waiting
        (for the GIL, held by another thread, or for a core, on a loaded machine)."""
        self._last: float | None = None
        self._last_cpu = 0.0
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(PROBE_MS)
        self.timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._last = time.perf_counter()
        self._last_cpu = time.thread_time()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        if self._last is not None:
            self.gaps.append((now - self._last) * 1000)
            self.at.append(now)
            self.cpu.append((cpu - self._last_cpu) * 1000)
        self._last, self._last_cpu = now, cpu


class SlotTimer:
    """Times calls of one of the window's GUI-thread methods (they are looked up per call)."""

    def __init__(self, obj: object, name: str) -> None:
        self.name = name
        self.ms: list[float] = []
        self.at: list[float] = []
        original: Callable[..., Any] = getattr(obj, name)

        def timed(*args: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args)
            finally:
                end = time.perf_counter()
                self.ms.append((end - start) * 1000)
                self.at.append(end)

        setattr(obj, name, timed)


class GcTimer:
    """Python's full garbage collections (they hold the GIL): wall time, and CPU time of the collecting thread.

    On a loaded machine the wall time is mostly the collecting thread waiting for a core while it holds the GIL.
    """

    def __init__(self) -> None:
        self.wall_ms: list[float] = []
        self.cpu_ms: list[float] = []
        self.young = 0
        self._start = (0.0, 0.0)
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] < 2:
            self.young += phase == "start"
            return
        if phase == "start":
            self._start = (time.perf_counter(), time.thread_time())
        else:
            self.wall_ms.append((time.perf_counter() - self._start[0]) * 1000)
            self.cpu_ms.append((time.thread_time() - self._start[1]) * 1000)

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


class TabCycle:
    """Shows each tab in turn (task detail, agents, tasks) and remembers which was shown when."""

    def __init__(self, window: MainWindow, seconds: float) -> None:
        self.window = window
        self.tabs = [window.detail, window.agents_view, window.tasks_view]
        self.names = ["task detail", "agents", "tasks"]
        self.changes: list[tuple[float, str]] = [(time.perf_counter(), self.current())]
        self.timer = QTimer()
        self.timer.timeout.connect(self._next)
        self.timer.start(int(seconds * 1000))

    def current(self) -> str:
        return self.names[self.tabs.index(self.window.tabs.currentWidget())]

    def _next(self) -> None:
        i = (self.tabs.index(self.window.tabs.currentWidget()) + 1) % len(self.tabs)
        self.window.tabs.setCurrentWidget(self.tabs[i])
        self.changes.append((time.perf_counter(), self.names[i]))

    def shown_at(self, t: float) -> str:
        shown = self.changes[0][1]
        for at, name in self.changes:
            if at > t:
                break
            shown = name
        return shown

    def near_switch(self, start: float, end: float) -> bool:
        """Whether a gap from ``start`` to ``end`` holds a tab switch or follows one by under SETTLE_S."""
        return any(start - SETTLE_S <= at <= end for at, _ in self.changes[1:])

    def switch_cpu(self, probe: Probe) -> tuple[dict[str, list[float]], list[float]]:
        """The GUI thread's CPU time (ms) in the probe's gaps within SETTLE_S after each switch, by the tab
        shown (the switch itself, laying out and painting the tab, and for the task detail the read it
        forces); and the same for windows of SETTLE_S halfway between switches, where no tab changes."""

        def cpu_in(start: float) -> float:
            return sum(
                cpu
                for gap, at, cpu in zip(probe.gaps, probe.at, probe.cpu, strict=True)
                if at > start and at - gap / 1000 <= start + SETTLE_S
            )

        switches: dict[str, list[float]] = {name: [] for name in self.names}
        between: list[float] = []
        last = probe.at[-1] if probe.at else 0.0
        ends = [at for at, _ in self.changes[1:]] + [last]
        for i, ((at, name), end) in enumerate(zip(self.changes, ends, strict=True)):
            if i > 0 and at + SETTLE_S <= last:  # the first entry is the tab shown at the start, not a switch
                switches[name].append(cpu_in(at))
            if (end - at) / 2 > SETTLE_S:
                between.append(cpu_in((at + end) / 2))
        return switches, between


@dataclass
class Result:
    task_key: str
    submit_s: float
    probe: Probe
    slots: list[SlotTimer]
    gc: GcTimer
    tabs: TabCycle
    counts: Counts
    frames_done: int
    cpu_s: float
    load: tuple[tuple[float, float, float], tuple[float, float, float]]
    baseline: list[float]
    """The probe's gaps with the same window idle (no manager): the machine's own noise."""
    switch_costs: dict[str, list[float]] = field(default_factory=dict)
    """``--switch-cycles``: the GUI thread's CPU time (ms) of each switch to each tab, measured alone."""


def in_memory_frames(service: FarmService) -> Callable[[str], list[dict[str, Any]]]:
    """``--in-memory-frames``: FarmService.frames() answered from the scheduler's memory, not by loading
    every Frame row through the ORM (a proposal for the core, measured here; the database stays the
    record for tasks the scheduler no longer holds)."""
    original = service.frames

    def frames(task_id: str) -> list[dict[str, Any]]:
        with service.lock:
            entry = service.scheduler.tasks.get(task_id)
            if entry is None:
                return original(task_id)
            holders = {n: lease.agent_id for lease in service.scheduler.leases.values() if lease.task_id == task_id
                       for n in lease.frames}  # fmt: skip
            return [
                {"frame": n, "state": slot.state.value, "agent": holders.get(n, slot.done_by), "seconds": slot.seconds}
                for n, slot in sorted(entry.frames.items())
            ]

    return frames


def switch_costs(app: QApplication, window: MainWindow, cycles: int) -> dict[str, list[float]]:
    """What each tab switch costs the GUI thread on its own: the window stops polling the farm (the agents
    go on), and after each switch the event loop is run by hand for SWITCH_S, adding up the GUI thread's CPU
    time in every pass that did work (over 0.3 ms: an idle pass costs ~0.03 ms). That is the switch, the
    layout and paint of the tab, and for the task detail the read it starts and the result it shows."""
    window._timer.stop()  # no snapshots: what is left is the switch's own work
    tabs = [(window.agents_view, "agents"), (window.tasks_view, "tasks"), (window.detail, "task detail")]
    costs: dict[str, list[float]] = {name: [] for _, name in tabs}

    def run_loop(seconds: float, count: bool) -> float:
        spent, end = 0.0, time.monotonic() + seconds
        while time.monotonic() < end:
            before = time.thread_time()
            app.processEvents()
            if count and (busy := time.thread_time() - before) > 0.0003:
                spent += busy
            time.sleep(0.001)
        return spent

    for _ in range(cycles):
        for widget, name in tabs:
            run_loop(SWITCH_S, count=False)  # what the last switch started has landed
            before = time.thread_time()
            window.tabs.setCurrentWidget(widget)
            spent = time.thread_time() - before
            costs[name].append((spent + run_loop(SWITCH_S, count=True)) * 1000)
    window._timer.start()
    return costs


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def wait(app: QApplication, until: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not until():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the window")
        app.processEvents()
        time.sleep(0.005)


def idle_baseline(app: QApplication, args: argparse.Namespace, tmp: str) -> list[float]:
    """The probe over the window with no farm behind it: what this machine's load alone does to the loop."""
    settings = QSettings(str(Path(tmp) / "idle.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings)
    window.resize(args.width, args.height)
    window.show()
    probe = Probe()
    probe.start()
    QTimer.singleShot(int(args.baseline_seconds * 1000), app.quit)
    app.exec()
    probe.stop()
    window.close()
    return probe.gaps


def run(args: argparse.Namespace) -> Result:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    with tempfile.TemporaryDirectory(prefix="frameherd-gui-bench-") as tmp:
        baseline = idle_baseline(app, args, tmp) if args.baseline_seconds > 0 else []
        service = FarmService(Path(tmp) / "data")
        service.start()
        started = time.perf_counter()
        task = service.submit_file(BLEND, TaskOptions(frame_start=1, frame_end=args.frames))
        submit_s = time.perf_counter() - started
        stop = threading.Event()
        counts = Counts()
        agents = [ScriptedAgent(service, i, stop, counts, args) for i in range(args.agents)]
        if args.in_memory_frames:
            service.frames = in_memory_frames(service)  # type: ignore[method-assign,assignment]
        settings = QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat)
        window = MainWindow(settings, manager=InProcessFarm(service))
        if args.gc in ("app", "off"):
            quiet_gc()  # where farmgui/ui/app.py does it: after the manager and the window are up
        if args.gc == "off":
            gc.disable()  # an experiment: how much of the stalls is the cyclic collector's
        slots = [SlotTimer(window, name) for name in ("_snapshot_ready", "_detail_ready")]
        window.resize(args.width, args.height)
        window.show()
        try:
            for agent in agents:
                agent.start()
            wait(app, lambda: window.tasks_model.rowCount() == 1, 30)
            window.tasks_view.selectRow(0)
            window.tabs.setCurrentWidget(window.detail)
            wait(app, lambda: len(window.detail.grid.frames) == args.frames, 60)
            wait(app, lambda: sum(a.state == "rendering" for a in window.agents_model.rows) >= args.agents // 2, 60)
            # Before the measured run: app.quit() at its end closes the window (Qt 6 quits by closing windows).
            costs = switch_costs(app, window, args.switch_cycles) if args.switch_cycles else {}
            for slot in slots:
                slot.ms.clear()
                slot.at.clear()
            gc_timer = GcTimer()
            probe = Probe()
            tabs = TabCycle(window, args.tab_seconds)
            frames_before = counts.frames
            load_before = os.getloadavg()
            cpu_before = time.process_time()
            probe.start()
            QTimer.singleShot(int(args.seconds * 1000), app.quit)
            app.exec()  # the real event loop, as the app runs it
            probe.stop()
            cpu_s = time.process_time() - cpu_before
            tabs.timer.stop()
            gc_timer.close()
            if args.screenshot:
                window.tabs.setCurrentWidget(window.detail)
                app.processEvents()
                window.grab().save(args.screenshot)
            frames_done = counts.frames - frames_before
            load = (load_before, os.getloadavg())
        finally:
            stop.set()
            for agent in agents:
                agent.join(timeout=10)
            window.close()
            service.close()
    return Result(
        task["task_key"], submit_s, probe, slots, gc_timer, tabs, counts, frames_done, cpu_s, load, baseline, costs
    )


def report(args: argparse.Namespace, r: Result) -> None:
    gaps = r.probe.gaps
    worst = max(gaps, default=0.0)
    print(f"Control station responsiveness, {datetime.now(UTC):%a %b %d %H:%M:%S UTC %Y}")
    print(
        f"machine: {os.cpu_count()} cores, load average {r.load[0][0]:.1f} before and {r.load[1][0]:.1f} after; "
        f"{platform.machine()} {platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"Qt platform {QApplication.platformName()}"
    )
    print(
        f"farm: {args.agents} scripted agents, task {r.task_key[:8]} of {args.frames} frames "
        f"(submitted in {r.submit_s:.2f} s), {args.frame_seconds:g} s/frame, heartbeat every {args.beat_seconds:g} s; "
        f"gc: {args.gc}{'; frames read from memory (experiment)' if args.in_memory_frames else ''}"
    )
    print(
        f"during {args.seconds:g} s: {r.frames_done} frames accepted ({r.frames_done / args.seconds:.1f}/s), "
        f"{r.counts.beats} heartbeats, {r.counts.requests} work requests, {r.counts.rejected} uploads rejected; "
        f"process CPU {r.cpu_s:.1f} s ({r.cpu_s / args.seconds:.0%} of one core)"
    )
    if r.baseline:
        print(
            f"baseline, the window idle with no farm for {args.baseline_seconds:g} s: "
            f"gap p50 {pct(r.baseline, 50):.1f} ms, p99 {pct(r.baseline, 99):.1f} ms, max {max(r.baseline):.1f} ms "
            "(this machine's own noise)"
        )
    print(f"probe: {len(gaps)} ticks of a {PROBE_MS} ms timer (ideal {args.seconds * 1000 / PROBE_MS:.0f})")
    print(
        f"  gap p50 {pct(gaps, 50):.1f} ms, p99 {pct(gaps, 99):.1f} ms, p99.9 {pct(gaps, 99.9):.1f} ms, "
        f"max {worst:.1f} ms; gaps over {GOAL_MS:g} ms: {sum(g > GOAL_MS for g in gaps)}"
    )
    cpu = r.probe.cpu
    print(
        f"  the GUI thread's own CPU time within one gap: p99 {pct(cpu, 99):.1f} ms, max {max(cpu, default=0):.1f} ms "
        "(the rest of a gap is waiting: for the GIL, or for a core)"
    )
    steady = [g for g, at in zip(gaps, r.probe.at, strict=True) if not r.tabs.near_switch(at - g / 1000, at)]
    print(
        f"  leaving out the {SETTLE_S:g} s after each tab switch (a user's action: a whole tab is laid out and "
        f"painted): p99 {pct(steady, 99):.1f} ms, max {max(steady, default=0):.1f} ms, "
        f"over {GOAL_MS:g} ms: {sum(g > GOAL_MS for g in steady)}"
    )
    switches, between = r.tabs.switch_cpu(r.probe)
    quiet = pct(between, 50)
    per_tab = "; ".join(
        f"to {name} p50 {pct(ms, 50):.1f} ms (+{pct(ms, 50) - quiet:.1f}), max {max(ms):.1f} ms ({len(ms)})"
        for name, ms in switches.items()
        if ms
    )
    print(f"  tab switches, the GUI thread's CPU time in the {SETTLE_S:g} s after one: {per_tab}")
    print(
        f"    (+: above the same {SETTLE_S:g} s halfway between switches, the probe's own ticks and the periodic "
        f"refreshes: p50 {quiet:.1f} ms, max {max(between, default=0):.1f} ms ({len(between)}))"
    )
    if r.switch_costs:
        alone = "; ".join(
            f"to {name} p50 {pct(ms, 50):.1f} ms, min {min(ms):.1f}, max {max(ms):.1f}"
            for name, ms in r.switch_costs.items()
        )
        print(
            f"  a switch alone (no polling, {len(next(iter(r.switch_costs.values())))} each), GUI-thread CPU: {alone}"
        )
    for name in r.tabs.names:
        shown = [g for g, at in zip(gaps, r.probe.at, strict=True) if r.tabs.shown_at(at) == name]
        if shown:
            print(
                f"  while {name} shown: p99 {pct(shown, 99):.1f} ms, max {max(shown):.1f} ms, "
                f"over {GOAL_MS:g} ms: {sum(g > GOAL_MS for g in shown)}"
            )
    for slot in r.slots:
        if slot.ms:
            print(
                f"  GUI thread in {slot.name}: {len(slot.ms)} calls, p50 {pct(slot.ms, 50):.1f} ms, "
                f"p99 {pct(slot.ms, 99):.1f} ms, max {max(slot.ms):.1f} ms"
            )
    worst_gc = ", ".join(
        f"{w:.0f} ({c:.0f})" for w, c in sorted(zip(r.gc.wall_ms, r.gc.cpu_ms, strict=True), reverse=True)[:5]
    )
    print(
        f"  Python GC: {r.gc.young} young collections, {len(r.gc.wall_ms)} full; "
        f"slowest full, wall (CPU) ms: {worst_gc or '-'}"
    )
    if worst > GOAL_MS:
        for gap, at, busy in sorted(zip(gaps, r.probe.at, cpu, strict=True), reverse=True)[:5]:
            near = [
                f"{s.name} {ms:.0f} ms"
                for s in r.slots
                for ms, t in zip(s.ms, s.at, strict=True)
                if at - gap / 1000 - 0.001 <= t <= at + 0.001
            ]
            print(
                f"  stall of {gap:.0f} ms ({busy:.0f} ms of it GUI-thread CPU) while {r.tabs.shown_at(at)} shown"
                f"{' (a tab switch)' if r.tabs.near_switch(at - gap / 1000, at) else ''}; "
                f"GUI slots that ended in it: {', '.join(near) or 'none'}"
            )
    verdict = "ok" if worst <= GOAL_MS else "MISSED"
    print(f"goal: max gap <= {GOAL_MS:g} ms: {verdict} (max {worst:.1f} ms, p99 {pct(gaps, 99):.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to measure")
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--frame-seconds", type=float, default=2.0, help="render time of one frame (+-30 %%)")
    parser.add_argument("--beat-seconds", type=float, default=p.HEARTBEAT_INTERVAL_S)
    parser.add_argument("--baseline-seconds", type=float, default=10.0, help="probe the idle window first (0: skip)")
    parser.add_argument("--tab-seconds", type=float, default=5.0, help="switch the shown tab this often")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument(
        "--gc",
        choices=("app", "default", "off"),
        default="app",
        help="app: as farmgui's start-up tunes it; default: untouched; off: no cyclic collection (an experiment)",
    )
    parser.add_argument(
        "--in-memory-frames",
        action="store_true",
        help="an experiment: answer FarmService.frames() from the scheduler's memory instead of the ORM",
    )
    parser.add_argument(
        "--switch-cycles",
        type=int,
        default=0,
        help="before the run, switch to each tab this many times with the window not polling, and print what "
        "each switch costs the GUI thread alone (5 s a cycle)",
    )
    parser.add_argument("--screenshot", help="save the window (task detail) at the end to this PNG")
    args = parser.parse_args()
    report(args, run(args))


if __name__ == "__main__":
    main()
