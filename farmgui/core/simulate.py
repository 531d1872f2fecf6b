"""The farm simulator: the production ``Scheduler`` driven by simulated agents on a virtual clock.

``farmgui simulate SPEC.json [--strategy adaptive|fixed:N|static] [--json]`` renders one task on a
farm described by a spec::

    {"frames": [seconds of work per frame on a speed-1.0 agent, ...],
     "agents": [{"name": "pc1", "speed": 1.0, "startup": 8.0, "join_at": 0, "fail_at": null, "rejoin_at": null}],
     "transfer": 2.0}

(optional: ``"heartbeat_timeout"``, the manager's, 15 s by default). The scheduler is the very class
the manager runs, and it sees only what the manager sees: agents saying hello and asking for work
(with the tasks they have a Blender open for and how many frames they still hold), a heartbeat every
two seconds with the progress of the frame being rendered and the frames queued, finished frames with
their measured render time, and silence. Frame costs and agent speeds stay in here.

A simulated agent works like ``agent/service.py``: it downloads the file once (``transfer``), starts
Blender when it first renders a frame of the task (``startup``) and keeps it for the next chunks, asks
for more work while one frame is still queued, drops the frames a heartbeat reply takes away (and
kills its Blender when that is the frame being rendered), and when idle asks again every second.
``fail_at`` makes it go silent (the frame in progress is lost; the manager notices through ``expire()``
after its heartbeat timeout), ``rejoin_at`` brings it back with its file cache but a new Blender.

Strategies: ``adaptive`` (ours: ``ChunkPolicy()``, persistent sessions, end-of-task duplicates),
``fixed:N`` (Flamenco/Deadline: chunks of N frames, a new Blender per chunk, no asking ahead, no
duplicates) and ``static`` (the range split evenly over the agents there at the start).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import IntEnum
from pathlib import Path
from typing import Any

from agent.protocol import HEARTBEAT_INTERVAL_S

from .chunking import ChunkPolicy
from .scheduler import Outcome, Scheduler, TaskRun

TASK_ID = "task"
BLENDER = "4.2"
IDLE_RETRY_S = 1.0
"""An agent with nothing to do asks again after this long (``agent/service.py``'s idle sleep)."""
TICK_S = 1.0
"""The manager's maintenance round (``FarmService.start``): ``expire()`` runs this often."""


class SpecError(ValueError):
    """The spec is not a farm the simulator can run; ``where`` names the offending field."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where


# -- the spec ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentSpec:
    name: str
    speed: float = 1.0
    """Work seconds per wall second (a frame of cost c takes c / speed)."""
    startup: float = 0.0
    """Starting Blender and loading the file, each time a process starts."""
    join_at: float = 0.0
    fail_at: float | None = None
    rejoin_at: float | None = None


@dataclass(frozen=True, slots=True)
class FarmSpec:
    frames: tuple[float, ...]
    agents: tuple[AgentSpec, ...]
    transfer: float = 0.0
    heartbeat_timeout: float = 15.0

    @classmethod
    def from_dict(cls, data: object) -> FarmSpec:
        if not isinstance(data, dict):
            raise SpecError("a spec is a JSON object with 'frames' and 'agents'")
        frames_raw = data.get("frames")
        if not isinstance(frames_raw, list) or not frames_raw:
            raise SpecError("a non-empty list of seconds per frame is needed", "frames")
        frames = tuple(_number(v, f"frames[{i}]", minimum=0.0) for i, v in enumerate(frames_raw))
        agents_raw = data.get("agents")
        if not isinstance(agents_raw, list) or not agents_raw:
            raise SpecError("a non-empty list of agents is needed", "agents")
        agents = tuple(_agent(a, i) for i, a in enumerate(agents_raw))
        names = [a.name for a in agents]
        if len(set(names)) != len(names):
            raise SpecError("agent names must be unique", "agents")
        transfer = _number(data.get("transfer", 0.0), "transfer", minimum=0.0)
        timeout = _number(data.get("heartbeat_timeout", 15.0), "heartbeat_timeout", minimum=0.0)
        if timeout <= HEARTBEAT_INTERVAL_S:
            raise SpecError(f"must be longer than the {HEARTBEAT_INTERVAL_S:g} s heartbeat", "heartbeat_timeout")
        return cls(frames, agents, transfer, timeout)

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": list(self.frames),
            "agents": [asdict(a) for a in self.agents],
            "transfer": self.transfer,
            "heartbeat_timeout": self.heartbeat_timeout,
        }


def _number(value: object, where: str, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(f"expected a number, got {value!r}", where)
    if minimum is not None and value < minimum:
        raise SpecError(f"must be at least {minimum:g}, got {value!r}", where)
    return float(value)


def _optional(value: object, where: str) -> float | None:
    return None if value is None else _number(value, where, minimum=0.0)


def _agent(raw: object, index: int) -> AgentSpec:
    where = f"agents[{index}]"
    if not isinstance(raw, dict):
        raise SpecError("an agent is an object with at least a name", where)
    name = raw.get("name", f"agent{index + 1}")
    if not isinstance(name, str) or not name:
        raise SpecError("the name must be a non-empty string", f"{where}.name")
    speed = _number(raw.get("speed", 1.0), f"{where}.speed")
    if speed <= 0:
        raise SpecError("must be above 0", f"{where}.speed")
    agent = AgentSpec(
        name,
        speed,
        _number(raw.get("startup", 0.0), f"{where}.startup", minimum=0.0),
        _number(raw.get("join_at", 0.0), f"{where}.join_at", minimum=0.0),
        _optional(raw.get("fail_at"), f"{where}.fail_at"),
        _optional(raw.get("rejoin_at"), f"{where}.rejoin_at"),
    )
    if agent.fail_at is not None and agent.fail_at < agent.join_at:
        raise SpecError("fail_at is before join_at", f"{where}.fail_at")
    if agent.rejoin_at is not None and (agent.fail_at is None or agent.rejoin_at < agent.fail_at):
        raise SpecError("rejoin_at needs an earlier fail_at", f"{where}.rejoin_at")
    return agent


def load_spec(path: Path) -> FarmSpec:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"cannot read the spec: {exc}", str(path)) from exc
    return FarmSpec.from_dict(data)


# -- strategies --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Strategy:
    kind: str
    """``adaptive``, ``fixed`` or ``static``."""
    frames: int | None = None
    """N of ``fixed:N``."""

    @classmethod
    def parse(cls, text: str) -> Strategy:
        kind, _, count = text.strip().partition(":")
        if kind in ("adaptive", "static") and not count:
            return cls(kind)
        if kind == "fixed" and count.isdigit() and int(count) >= 1:
            return cls(kind, int(count))
        raise SpecError(f"unknown strategy {text!r} (adaptive, fixed:N with N >= 1, or static)", "strategy")

    def __str__(self) -> str:
        return f"fixed:{self.frames}" if self.kind == "fixed" else self.kind

    @property
    def policy(self) -> ChunkPolicy:
        if self.kind == "fixed":
            return ChunkPolicy(fixed_frames=self.frames)
        if self.kind == "static":
            return ChunkPolicy(split_evenly=True)
        return ChunkPolicy()

    @property
    def process_per_chunk(self) -> bool:
        """Flamenco/Deadline: each chunk is a new Blender process, so start-up is paid per chunk."""
        return self.kind == "fixed"

    @property
    def asks_ahead(self) -> bool:
        """Our agents ask for the next chunk while one frame is still queued; a fixed-chunk worker does not."""
        return self.kind != "fixed"


ADAPTIVE = Strategy("adaptive")


# -- results -----------------------------------------------------------------------------------


@dataclass(slots=True)
class AgentResult:
    speed: float
    frames_done: int = 0
    """Frames of this agent the manager accepted."""
    renders: int = 0
    """Frames it started rendering (lost and duplicate ones included)."""
    render_seconds: float = 0.0
    lost_seconds: float = 0.0
    """Render time that produced no accepted frame (lost with a failure, abandoned, or a late duplicate)."""
    startups: int = 0
    startup_seconds: float = 0.0
    transfer_seconds: float = 0.0
    online_seconds: float = 0.0

    @property
    def busy_seconds(self) -> float:
        return self.render_seconds + self.startup_seconds + self.transfer_seconds

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["busy_seconds"] = self.busy_seconds
        data["idle_seconds"] = max(0.0, self.online_seconds - self.busy_seconds)
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in data.items()}


@dataclass(slots=True)
class SimResult:
    strategy: str
    makespan: float
    """Virtual seconds from the start until the last frame was accepted (inf when not all were)."""
    frames_total: int
    frames_done: int
    frames_rendered: int
    """Renders started, duplicates and work lost with failing agents included."""
    lost_seconds: float
    lower_bound: float
    duplicates: int = 0
    """Renders started from deliberate end-of-task duplicates."""
    duplicate_lost_seconds: float = 0.0
    """All the render time of the losing side of duplicates (the original or the duplicate), including
    what an original had rendered before it was duplicated."""
    duplicate_overlap_seconds: float = 0.0
    """Render time spent twice: while a duplicate and its original both rendered the frame."""
    preempted: int = 0
    """Frames moved from an agent that had begun them (long poles, see ``Scheduler._long_pole``)."""
    preempted_lost_seconds: float = 0.0
    """Render time those agents had spent on them."""
    failure_lost_seconds: float = 0.0
    """Render time lost with agents that failed."""
    redone_after_failure: int = 0
    """Renders of frames whose earlier render was lost with a failing agent."""
    unplanned_rerenders: int = 0
    """Frames rendered again for neither reason (e.g. a moved frame its old agent had already begun)."""
    startups: int = 0
    work_seconds: float = 0.0
    """Render seconds of the accepted frames."""
    complete: bool = True
    per_agent: dict[str, AgentResult] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.makespan / self.lower_bound if self.lower_bound > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "makespan": _round(self.makespan),
            "frames_done": self.frames_done,
            "frames_rendered": self.frames_rendered,
            "lost_seconds": _round(self.lost_seconds),
            "per_agent": {name: r.to_dict() for name, r in self.per_agent.items()},
            "strategy": self.strategy,
            "frames_total": self.frames_total,
            "complete": self.complete,
            "lower_bound": _round(self.lower_bound),
            "ratio": _round(self.ratio),
            "duplicates": self.duplicates,
            "duplicate_lost_seconds": _round(self.duplicate_lost_seconds),
            "duplicate_overlap_seconds": _round(self.duplicate_overlap_seconds),
            "preempted": self.preempted,
            "preempted_lost_seconds": _round(self.preempted_lost_seconds),
            "failure_lost_seconds": _round(self.failure_lost_seconds),
            "redone_after_failure": self.redone_after_failure,
            "unplanned_rerenders": self.unplanned_rerenders,
            "startups": self.startups,
            "work_seconds": _round(self.work_seconds),
        }
        return data


def _round(value: float) -> float | None:
    """JSON has no infinity: an unfinished run's makespan is null."""
    return round(value, 3) if math.isfinite(value) else None


# -- the lower bound ---------------------------------------------------------------------------


def _working_intervals(agent: AgentSpec, transfer: float) -> list[tuple[float, float]]:
    """When an agent could render at best: after its download and one start-up, until it fails."""
    start = agent.join_at + transfer + agent.startup
    end = agent.fail_at if agent.fail_at is not None else math.inf
    spans = [(start, end)] if end > start else []
    if agent.fail_at is not None and agent.rejoin_at is not None:
        spans.append((agent.rejoin_at + agent.startup, math.inf))
    return spans


def lower_bound(spec: FarmSpec) -> float:
    """No schedule finishes before this (the benchmark's yardstick).

    The larger of: the time at which the agents' total capacity, each after its transfer and one
    start-up (and counting only the time it is up), covers the total work; and the earliest time any
    agent could have finished the largest frame (join + transfer + start-up + largest frame / speed;
    with equal start-ups this is the fastest agent's).
    """
    work = sum(spec.frames)
    spans = [(a.speed, s, e) for a in spec.agents for s, e in _working_intervals(a, spec.transfer)]

    def capacity(t: float) -> float:
        return sum(speed * max(0.0, min(t, e) - s) for speed, s, e in spans)

    largest = max(spec.frames)
    single = min(a.join_at + spec.transfer + a.startup + largest / a.speed for a in spec.agents)
    if not spans or capacity(1e18) < work:
        return math.inf
    lo, hi = 0.0, 1.0
    while capacity(hi) < work:
        lo, hi = hi, hi * 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if capacity(mid) >= work:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-9 * max(1.0, hi):
            break
    return max(hi, single)


# -- the simulation ----------------------------------------------------------------------------


class _Event(IntEnum):
    # At equal times: an agent fails before it finishes anything, and the manager's round runs last.
    FAIL = 0
    JOIN = 1
    DONE = 2
    WAKE = 3
    HEARTBEAT = 4
    TICK = 5


@dataclass(slots=True)
class _Job:
    attempt: str
    frame: int
    duplicate: bool
    render_start: float = 0.0
    render_end: float = 0.0


@dataclass(slots=True)
class _Agent:
    spec: AgentSpec
    result: AgentResult
    online: bool = False
    epoch: int = 0
    """Bumped when the agent dies or drops its current job: older events of it are ignored."""
    online_since: float = 0.0
    file_ready_at: float | None = None
    warm: bool = False
    """A Blender with the task loaded is running (persistent sessions)."""
    process_attempt: str | None = None
    """``fixed:N``: the chunk whose Blender is running."""
    queue: deque[tuple[str, int]] = field(default_factory=deque)
    """(attempt, frame) pairs held, in render order: what its heartbeat lists."""
    current: _Job | None = None
    startup_end: float = 0.0
    parked_at: float | None = None
    """Idle with nothing it could be given (see ``Simulation._park``)."""
    heartbeat_at: float = 0.0
    """Its next heartbeat, kept while parked so that it resumes in phase."""


class Simulation:
    """One run of one strategy on one farm; ``run()`` returns the result."""

    def __init__(self, spec: FarmSpec, strategy: Strategy = ADAPTIVE) -> None:
        self.spec = spec
        self.strategy = strategy
        self.now = 0.0
        self.scheduler = Scheduler(
            self._clock,
            strategy.policy,
            heartbeat_timeout_s=spec.heartbeat_timeout,
            duplicates=strategy.kind == "adaptive",
        )
        self.costs = dict(enumerate(spec.frames, start=1))
        self.scheduler.add_task(TASK_ID, self.costs, blender_version=BLENDER)
        self.task = self.scheduler.tasks[TASK_ID]
        self.agents = [_Agent(a, AgentResult(a.speed)) for a in spec.agents]
        self._events: list[tuple[float, int, int, int, int]] = []
        self._seq = 0
        self._pending_arrivals = 0
        # Per frame: renders started, and of them deliberate duplicates and ones cut short by a failure.
        self._renders: dict[int, int] = {}
        self._planned_extra: dict[int, int] = {}
        self._lost_to_failure: set[int] = set()
        self._dup_frames: set[int] = set()
        self._duplicate_attempts: set[str] = set()
        self._preempted_frames: set[int] = set()
        self._accepted: dict[int, tuple[float, float]] = {}
        """Frame -> (start, end) of the render that was accepted."""
        self._rendering: dict[int, list[_Job]] = {}
        """Frame -> the jobs on it that agents are working on now (two while a duplicate runs)."""
        self._finished_at: float | None = None
        self._parked: set[int] = set()
        self._ticks = 0
        self.result = SimResult(str(strategy), math.inf, len(spec.frames), 0, 0, 0.0, lower_bound(spec))

    def _clock(self) -> float:
        return self.now

    def _push(self, at: float, kind: _Event, agent: int = -1, epoch: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, int(kind), self._seq, agent, epoch))

    # -- the loop ----------------------------------------------------------------------------
    def run(self, time_limit: float | None = None) -> SimResult:
        limit = self._default_limit() if time_limit is None else time_limit
        for index, agent in enumerate(self.agents):
            self._push(agent.spec.join_at, _Event.JOIN, index)
            self._pending_arrivals += 1
            if agent.spec.fail_at is not None:
                self._push(agent.spec.fail_at, _Event.FAIL, index)
                if agent.spec.rejoin_at is not None:
                    self._push(agent.spec.rejoin_at, _Event.JOIN, index)
                    self._pending_arrivals += 1
        self._push(TICK_S, _Event.TICK)
        handlers: dict[int, Callable[[int, int], None]] = {
            _Event.FAIL: self._fail,
            _Event.JOIN: self._join,
            _Event.DONE: self._done,
            _Event.WAKE: self._wake,
            _Event.HEARTBEAT: self._heartbeat,
            _Event.TICK: self._tick,
        }
        events = self._events
        while events and self._finished_at is None:
            at, kind, _, index, epoch = heapq.heappop(events)
            if at > limit:
                break
            self.now = at
            if kind == _Event.TICK and self._pending_arrivals == 0 and not any(a.online for a in self.agents):
                break  # nobody left and nobody coming: the task cannot finish
            handlers[kind](index, epoch)
        return self._finish()

    def _default_limit(self) -> float:
        """Far beyond any sane schedule: the slowest agent alone, each frame its own Blender."""
        spec = self.spec
        last_arrival = max(max(a.join_at, a.rejoin_at or 0.0) for a in spec.agents)
        slowest = min(a.speed for a in spec.agents)
        most_startup = max(a.startup for a in spec.agents)
        alone = spec.transfer + len(spec.frames) * most_startup + sum(spec.frames) / slowest
        return last_arrival + 2 * alone + 100 * spec.heartbeat_timeout + 3600.0

    def _finish(self) -> SimResult:
        result = self.result
        end = self._finished_at if self._finished_at is not None else self.now
        result.makespan = self._finished_at if self._finished_at is not None else math.inf
        result.complete = self._finished_at is not None
        result.frames_done = self.task.done_count
        for agent in self.agents:
            if agent.online:
                agent.result.online_seconds += end - agent.online_since
                if agent.current is not None and result.complete:
                    # Still on a frame another agent delivered: the losing side of a duplicate.
                    self._stop_current(agent, failed=False)
            result.per_agent[agent.spec.name] = agent.result
        result.frames_rendered = sum(self._renders.values())
        result.lost_seconds = sum(a.result.lost_seconds for a in self.agents)
        result.startups = sum(a.result.startups for a in self.agents)
        result.unplanned_rerenders = sum(
            max(0, count - 1 - self._planned_extra.get(frame, 0)) for frame, count in self._renders.items()
        )
        return result

    # -- events ------------------------------------------------------------------------------
    def _join(self, index: int, _epoch: int) -> None:
        agent = self.agents[index]
        self._pending_arrivals -= 1
        agent.online = True
        agent.online_since = self.now
        agent.epoch += 1
        self.scheduler.agent_online(agent.spec.name, [BLENDER])
        # The heartbeat thread waits one interval before its first beat.
        agent.heartbeat_at = self.now + HEARTBEAT_INTERVAL_S
        self._push(agent.heartbeat_at, _Event.HEARTBEAT, index, agent.epoch)
        # It asks for work right after its hello; agents joining at the same moment all say hello first.
        self._push(self.now, _Event.WAKE, index, agent.epoch)

    def _fail(self, index: int, _epoch: int) -> None:
        """The PC dies: no goodbye, the frame in progress and the queue are gone, the manager is not told."""
        agent = self.agents[index]
        if not agent.online:
            return
        agent.online = False
        agent.result.online_seconds += self.now - agent.online_since
        agent.epoch += 1
        agent.parked_at = None
        self._parked.discard(index)
        if agent.file_ready_at is not None and agent.file_ready_at > self.now:
            agent.result.transfer_seconds -= agent.file_ready_at - self.now
            agent.file_ready_at = None  # the download did not finish
        if agent.current is not None:
            self._stop_current(agent, failed=True)
        agent.queue.clear()
        agent.warm = False
        agent.process_attempt = None

    def _wake(self, index: int, epoch: int) -> None:
        agent = self.agents[index]
        if agent.online and epoch == agent.epoch and agent.current is None:
            self._step(index)

    def _tick(self, _index: int, _epoch: int) -> None:
        self._ticks += 1
        if self._parked and self._ticks % 5 == 0:
            # What the skipped heartbeats of parked agents did: keep them seen (every 5 s is enough
            # for a 15 s timeout, and expire() is the only reader).
            for index in self._parked:
                self.scheduler.seen(self.agents[index].spec.name)
        self.scheduler.expire()
        if self._parked and self.task.queued_count > 0:
            self._unpark()
        self._push(self.now + TICK_S, _Event.TICK)

    def _park(self, index: int) -> None:
        """An idle agent of a strategy without duplicates, while no frame is queued, asks in vain.

        Its asking every second and its empty heartbeats change nothing but when it was last seen, so
        they are skipped (a fixed:50 run on 64 agents spent minutes in them) until frames come back to
        the queue, which only ``expire()`` does here; it then resumes on its own one-second rhythm.
        """
        agent = self.agents[index]
        agent.parked_at = self.now
        self._parked.add(index)

    def _unpark(self) -> None:
        for index in sorted(self._parked):
            agent = self.agents[index]
            since = agent.parked_at if agent.parked_at is not None else self.now
            agent.parked_at = None
            wake = since + IDLE_RETRY_S * max(1, math.ceil((self.now - since) / IDLE_RETRY_S - 1e-9))
            self._push(wake, _Event.WAKE, index, agent.epoch)
            beat = agent.heartbeat_at
            if beat <= self.now:
                beat += HEARTBEAT_INTERVAL_S * math.ceil((self.now - beat) / HEARTBEAT_INTERVAL_S + 1e-9)
            agent.heartbeat_at = beat
            self._push(beat, _Event.HEARTBEAT, index, agent.epoch)
        self._parked.clear()

    def _heartbeat(self, index: int, epoch: int) -> None:
        """What ``FarmService.heartbeat`` does with an agent's beat, and the agent with the reply."""
        agent = self.agents[index]
        if not agent.online or epoch != agent.epoch:
            return
        agent.heartbeat_at = self.now + HEARTBEAT_INTERVAL_S
        if agent.parked_at is None:
            self._push(agent.heartbeat_at, _Event.HEARTBEAT, index, agent.epoch)
        name = agent.spec.name
        known = self.scheduler.agents.get(name)
        if known is None or not known.online:
            # The manager took it for lost: it says hello again and keeps what it holds.
            self.scheduler.agent_online(name, [BLENDER])
            return
        self.scheduler.seen(name)
        current = agent.current
        keep = current is None or self.scheduler.progress(name, current.attempt, current.frame, self._progress(current))
        if agent.queue:
            dropped = set(self.scheduler.abandoned(name, agent.queue))
            if dropped:
                agent.queue = deque(pair for pair in agent.queue if pair not in dropped)
        if not keep:
            # Someone else delivered it (or it was moved): the agent kills that Blender and goes on.
            self._stop_current(agent, failed=False)
            agent.warm = False
            agent.process_attempt = None
            agent.epoch += 1
            agent.heartbeat_at = self.now + HEARTBEAT_INTERVAL_S
            self._push(agent.heartbeat_at, _Event.HEARTBEAT, index, agent.epoch)
            self._step(index)

    def _progress(self, job: _Job) -> float:
        if self.now <= job.render_start:
            return 0.0
        return min(1.0, (self.now - job.render_start) / max(job.render_end - job.render_start, 1e-9))

    def _done(self, index: int, epoch: int) -> None:
        agent = self.agents[index]
        job = agent.current
        if not agent.online or epoch != agent.epoch or job is None:
            return
        agent.current = None
        self._rendering[job.frame].remove(job)
        seconds = job.render_end - job.render_start
        agent.result.render_seconds += seconds
        outcome = self.scheduler.frame_done(agent.spec.name, TASK_ID, job.frame, seconds, job.attempt)
        if outcome is Outcome.ACCEPTED:
            agent.result.frames_done += 1
            self.result.work_seconds += seconds
            self._accepted[job.frame] = (job.render_start, job.render_end)
        else:
            self._lose(agent, job, seconds)
        if self.task.run is TaskRun.DONE:
            self._finished_at = self.now
            return
        self._step(index)

    # -- the agent's work loop ---------------------------------------------------------------
    def _step(self, index: int) -> None:
        """``AgentCore._work_loop`` once: ask for work if the queue runs low, then start the next frame."""
        agent = self.agents[index]
        threshold = 1 if self.strategy.asks_ahead else 0
        if len(agent.queue) <= threshold:
            warm = [TASK_ID] if agent.warm and not self.strategy.process_per_chunk else []
            work = self.scheduler.request_work(agent.spec.name, warm, len(agent.queue))
            if work is not None:
                agent.queue.extend((work.attempt, f) for f in work.frames)
                if work.duplicate:
                    self._duplicate_attempts.add(work.attempt)
                if work.preempted:
                    self.result.preempted += 1
                    for frame in work.frames:
                        # The render it was taken from is a deliberate second one.
                        self._preempted_frames.add(frame)
                        self._planned_extra[frame] = self._planned_extra.get(frame, 0) + 1
        if not agent.queue:
            if not self.scheduler.duplicates and self.task.queued_count == 0:
                self._park(index)
            else:
                self._push(self.now + IDLE_RETRY_S, _Event.WAKE, index, agent.epoch)
            return
        attempt, frame = agent.queue.popleft()
        job = _Job(attempt, frame, attempt in self._duplicate_attempts)
        spec, result = agent.spec, agent.result
        start = self.now
        if agent.file_ready_at is None:
            agent.file_ready_at = start + self.spec.transfer
            result.transfer_seconds += self.spec.transfer
        start = max(start, agent.file_ready_at)
        needs_blender = agent.process_attempt != job.attempt if self.strategy.process_per_chunk else not agent.warm
        if needs_blender:
            result.startups += 1
            result.startup_seconds += spec.startup
            agent.startup_end = start + spec.startup
            start = agent.startup_end
            agent.warm = True
            agent.process_attempt = job.attempt
        job.render_start = start
        job.render_end = start + self.costs[job.frame] / spec.speed
        agent.current = job
        self._push(job.render_end, _Event.DONE, index, agent.epoch)
        self._count_render(agent, job)

    def _count_render(self, agent: _Agent, job: _Job) -> None:
        frame = job.frame
        self._rendering.setdefault(frame, []).append(job)
        agent.result.renders += 1
        self._renders[frame] = self._renders.get(frame, 0) + 1
        result = self.result
        if job.duplicate:
            result.duplicates += 1
            self._dup_frames.add(frame)
            self._planned_extra[frame] = self._planned_extra.get(frame, 0) + 1
        elif frame in self._lost_to_failure:
            result.redone_after_failure += 1
            self._lost_to_failure.discard(frame)

    def _stop_current(self, agent: _Agent, *, failed: bool) -> None:
        """The current job ends unfinished: count what was spent on it."""
        job = agent.current
        if job is None:
            return
        agent.current = None
        self._rendering[job.frame].remove(job)
        if self.now < agent.startup_end:
            agent.result.startup_seconds -= agent.startup_end - self.now  # start-up cut short
            agent.startup_end = self.now
        if self.now <= job.render_start:
            # It never began rendering: not a render at all.
            self._uncount_render(agent, job)
            return
        spent = self.now - job.render_start
        agent.result.render_seconds += spent
        if failed:
            self._lost_to_failure.add(job.frame)
            self._planned_extra[job.frame] = self._planned_extra.get(job.frame, 0) + 1
            self.result.failure_lost_seconds += spent
            agent.result.lost_seconds += spent
        else:
            self._lose(agent, job, spent)

    def _uncount_render(self, agent: _Agent, job: _Job) -> None:
        frame = job.frame
        agent.result.renders -= 1
        self._renders[frame] -= 1
        if job.duplicate:
            self.result.duplicates -= 1
            self._planned_extra[frame] -= 1

    def _lose(self, agent: _Agent, job: _Job, seconds: float) -> None:
        """A render that produced nothing: ``seconds`` of it, ending now."""
        agent.result.lost_seconds += seconds
        if job.frame in self._preempted_frames and not job.duplicate:
            self.result.preempted_lost_seconds += seconds
        if job.frame in self._dup_frames:
            self.result.duplicate_lost_seconds += seconds
            won = self._accepted.get(job.frame)
            if won is not None:
                overlap = min(self.now, won[1]) - max(job.render_start, won[0])
                self.result.duplicate_overlap_seconds += max(0.0, overlap)
            else:
                # Stopped while the other copy goes on (the scheduler kept the one that would finish first).
                for other in self._rendering.get(job.frame, ()):
                    overlap = self.now - max(job.render_start, other.render_start)
                    self.result.duplicate_overlap_seconds += max(0.0, overlap)


def simulate(spec: FarmSpec, strategy: Strategy | str = ADAPTIVE, time_limit: float | None = None) -> SimResult:
    """Render the spec's task on its farm with one strategy; the scheduler is the manager's own."""
    if isinstance(strategy, str):
        strategy = Strategy.parse(strategy)
    return Simulation(spec, strategy).run(time_limit)


# -- the command -------------------------------------------------------------------------------


def summary(result: SimResult) -> str:
    """A readable report of one run."""
    lines = [
        f"strategy {result.strategy}: {result.frames_total} frames on {len(result.per_agent)} agents",
        (
            f"makespan {result.makespan:.1f} s, lower bound {result.lower_bound:.1f} s ({result.ratio:.3f}x)"
            if result.complete
            else f"NOT FINISHED: {result.frames_done} of {result.frames_total} frames done"
        ),
        (
            f"frames done {result.frames_done}, rendered {result.frames_rendered} "
            f"({result.duplicates} deliberate duplicates, {result.preempted} long frames moved, "
            f"{result.redone_after_failure} redone after failures, "
            f"{result.unplanned_rerenders} unplanned), {result.startups} Blender start-ups"
        ),
        (
            f"lost {result.lost_seconds:.1f} s of render time ({result.failure_lost_seconds:.1f} s with failures, "
            f"{result.duplicate_lost_seconds:.1f} s on the losing side of duplicates, of which "
            f"{result.duplicate_overlap_seconds:.1f} s while both rendered); accepted work {result.work_seconds:.1f} s"
        ),
        "",
        f"{'agent':<16} {'speed':>6} {'frames':>7} {'renders':>8} {'start-ups':>9} {'busy %':>7} {'lost s':>8}",
    ]
    for name, agent in result.per_agent.items():
        busy = 100 * agent.busy_seconds / agent.online_seconds if agent.online_seconds > 0 else 0.0
        lines.append(
            f"{name:<16} {agent.speed:>6.2f} {agent.frames_done:>7} {agent.renders:>8} "
            f"{agent.startups:>9} {busy:>6.1f}% {agent.lost_seconds:>8.1f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="farmgui simulate",
        description="Simulate a farm rendering one task with the manager's own scheduler on a virtual clock.",
    )
    parser.add_argument("spec", type=Path, metavar="SPEC.json", help="frames, agents and transfer time")
    parser.add_argument("--strategy", default="adaptive", help="adaptive (default), fixed:N or static")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        strategy = Strategy.parse(args.strategy)
        spec = load_spec(args.spec)
    except SpecError as exc:
        sys.stderr.write(f"farmgui simulate: {exc}\n")
        return 2
    result = simulate(spec, strategy)
    sys.stdout.write((json.dumps(result.to_dict(), indent=2) if args.json else summary(result)) + "\n")
    return 0 if result.complete else 1
