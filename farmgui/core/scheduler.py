"""The TaskScheduler's brain: which agent renders which frames, and what happens when things fail.

Pure and in memory, driven by an injected clock: the manager service persists what it decides, and
the farm simulator (``farmgui simulate``) drives the very same class on a virtual clock. It sees
only what a real manager sees: agents asking for work, heartbeats with progress, finished frames
with their measured times, failures, and silence.

One method call is one unit of work (Flamenco's "find, then assign"); "no work" is a normal answer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from .chunking import ChunkPolicy, adaptive_chunk_frames, preview_first_order

MAX_FAILURES_PER_AGENT = 3
"""An agent that fails this many frames of a task is taken off it."""
MAX_AGENTS_FAILING_A_FRAME = 3
"""A frame fails its task only once this many different agents failed it."""
DUPLICATE_GAIN = 0.7
"""Duplicate a running frame only when the idle agent would finish it in < 70% of the remaining time."""
_EMA = 0.3


class FrameState(StrEnum):
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RENDERING = "rendering"
    DONE = "done"
    FAILED = "failed"


class TaskRun(StrEnum):
    """The scheduler's view of a task (the full stage model lives in ``states.py``)."""

    ACTIVE = "active"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class Lease:
    """Frames handed to one agent in one assignment; ``attempt`` names it on the wire."""

    attempt: str
    agent_id: str
    task_id: str
    frames: list[int]
    """Not finished yet, in render order."""
    issued_at: float
    started: dict[int, float] = field(default_factory=dict)
    progress: dict[int, float] = field(default_factory=dict)
    progress_at: dict[int, float] = field(default_factory=dict)


@dataclass
class FrameSlot:
    number: int
    state: FrameState = FrameState.QUEUED
    leases: set[str] = field(default_factory=set)
    """Attempts holding this frame (two while an end-of-task duplicate runs)."""
    failed_by: dict[str, str] = field(default_factory=dict)
    """Agent id -> the error it reported."""
    done_by: str | None = None
    seconds: float | None = None
    renders: int = 0
    """Renders started, repeats and duplicates included."""


@dataclass
class TaskEntry:
    task_id: str
    frames: dict[int, FrameSlot]
    order: list[int]
    priority: int
    submitted: float
    blender_version: tuple[int, int]
    frame_timeout_s: float | None = None
    run: TaskRun = TaskRun.ACTIVE
    error: str | None = None
    failures_by_agent: dict[str, int] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)
    spf: dict[str, float] = field(default_factory=dict)
    """Measured seconds per frame of each agent on this task (exponential moving average)."""
    cursor: int = 0
    """Index into ``order`` before which no frame is queued (a scan shortcut)."""

    @property
    def done_count(self) -> int:
        return sum(1 for f in self.frames.values() if f.state is FrameState.DONE)

    def queued(self) -> Iterator[int]:
        for number in self.order[self.cursor :]:
            if self.frames[number].state is FrameState.QUEUED:
                yield number


@dataclass
class AgentEntry:
    agent_id: str
    blenders: tuple[tuple[int, int], ...]
    last_seen: float
    online: bool = True
    enabled: bool = True
    warm: set[str] = field(default_factory=set)
    startup_s: float | None = None
    speed: float | None = None
    """Render speed relative to the farm (1.0 = average); learned across tasks."""


@dataclass(frozen=True)
class Assignment:
    task_id: str
    attempt: str
    frames: list[int]
    duplicate: bool = False


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    """The frame was already done: the result is dropped (first result wins)."""
    UNKNOWN = "unknown"
    """No such task or frame, or the task is no longer rendering."""
    RETRY = "retry"
    AGENT_BLOCKED = "agent-blocked"
    TASK_FAILED = "task-failed"


def can_open(agent_blenders: Iterable[tuple[int, int]], file_version: tuple[int, int]) -> bool:
    """A Blender opens files of its own version or older; a file from a newer version it cannot."""
    return any(b >= file_version for b in agent_blenders)


def version_tuple(text: str) -> tuple[int, int]:
    major, _, rest = text.partition(".")
    minor = rest.split(".", 1)[0]
    return int(major), int(minor or 0)


class Scheduler:
    """Frames of every task, the agents, and the leases between them."""

    def __init__(
        self,
        clock: Callable[[], float],
        policy: ChunkPolicy | None = None,
        heartbeat_timeout_s: float = 15.0,
        duplicates: bool = True,
    ) -> None:
        self.clock = clock
        self.policy = policy or ChunkPolicy()
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.duplicates = duplicates
        self.tasks: dict[str, TaskEntry] = {}
        self.agents: dict[str, AgentEntry] = {}
        self.leases: dict[str, Lease] = {}
        self._attempts = itertools.count(1)
        self.attempt_prefix = ""
        """Makes attempt ids unique across manager restarts (the service sets a random one)."""

    # -- tasks -------------------------------------------------------------------------------
    def add_task(
        self,
        task_id: str,
        frames: Iterable[int],
        *,
        priority: int = 0,
        submitted: float | None = None,
        blender_version: str = "0.0",
        preview_first: bool = False,
        frame_timeout_s: float | None = None,
        done: dict[int, float | None] | None = None,
    ) -> TaskEntry:
        """Queue a task. ``done`` (frame -> seconds) restores frames finished before a restart."""
        numbers = list(dict.fromkeys(frames))
        order = preview_first_order(numbers) if preview_first else numbers
        slots = {n: FrameSlot(n) for n in numbers}
        for number, seconds in (done or {}).items():
            if number in slots:
                slots[number].state = FrameState.DONE
                slots[number].seconds = seconds
        entry = TaskEntry(
            task_id,
            slots,
            order,
            priority,
            self.clock() if submitted is None else submitted,
            version_tuple(blender_version),
            frame_timeout_s,
        )
        self.tasks[task_id] = entry
        if all(f.state is FrameState.DONE for f in slots.values()):
            entry.run = TaskRun.DONE
        return entry

    def set_priority(self, task_id: str, priority: int) -> None:
        self.tasks[task_id].priority = priority

    def pause_task(self, task_id: str) -> None:
        """Hand out no new frames; frames being rendered finish."""
        task = self.tasks[task_id]
        if task.run is TaskRun.ACTIVE:
            task.run = TaskRun.PAUSED
            for lease in self._leases_of_task(task_id):
                self._release_unstarted(lease)

    def resume_task(self, task_id: str) -> None:
        task = self.tasks[task_id]
        if task.run is TaskRun.PAUSED:
            task.run = TaskRun.ACTIVE

    def cancel_task(self, task_id: str) -> list[Lease]:
        """Stop a task; returns the leases whose agents must abandon their frames."""
        task = self.tasks[task_id]
        task.run = TaskRun.CANCELLED
        return self._drop_task_leases(task_id)

    def remove_task(self, task_id: str) -> None:
        self._drop_task_leases(task_id)
        self.tasks.pop(task_id, None)

    def retry_failed(self, task_id: str) -> int:
        """Requeue a failed task's failed frames, clearing its block list; returns how many."""
        task = self.tasks[task_id]
        count = 0
        for slot in task.frames.values():
            if slot.state is FrameState.FAILED:
                slot.state = FrameState.QUEUED
                slot.failed_by.clear()
                count += 1
        task.blocked.clear()
        task.failures_by_agent.clear()
        task.cursor = 0
        if task.run is TaskRun.FAILED:
            task.run = TaskRun.ACTIVE
            task.error = None
        return count

    def clear_blocklist(self, task_id: str) -> None:
        task = self.tasks[task_id]
        task.blocked.clear()
        task.failures_by_agent.clear()

    # -- agents ------------------------------------------------------------------------------
    def agent_online(self, agent_id: str, blenders: Iterable[str]) -> AgentEntry:
        """An agent said hello (or came back): it may take work."""
        versions = tuple(sorted({version_tuple(b) for b in blenders}))
        agent = self.agents.get(agent_id)
        if agent is None:
            agent = self.agents[agent_id] = AgentEntry(agent_id, versions, self.clock())
        else:
            agent.blenders = versions
            agent.last_seen = self.clock()
            if not agent.online:
                agent.warm.clear()  # a restarted agent lost its Blender sessions
        agent.online = True
        return agent

    def set_agent_enabled(self, agent_id: str, enabled: bool) -> None:
        agent = self.agents[agent_id]
        agent.enabled = enabled
        if not enabled:
            for lease in list(self.leases.values()):
                if lease.agent_id == agent_id:
                    self._release_unstarted(lease)

    def agent_lost(self, agent_id: str) -> list[int]:
        """An agent went silent or away: its unfinished frames go back to the queue at once."""
        agent = self.agents.get(agent_id)
        if agent is not None:
            agent.online = False
            agent.warm.clear()
        requeued: list[int] = []
        for lease in [lease for lease in self.leases.values() if lease.agent_id == agent_id]:
            requeued += self._end_lease(lease)
        return requeued

    def seen(self, agent_id: str) -> None:
        agent = self.agents.get(agent_id)
        if agent is not None:
            agent.last_seen = self.clock()

    def expire(self) -> list[str]:
        """Mark agents silent for longer than the heartbeat timeout as lost; returns their ids."""
        now = self.clock()
        lost = [a.agent_id for a in self.agents.values() if a.online and now - a.last_seen > self.heartbeat_timeout_s]
        for agent_id in lost:
            self.agent_lost(agent_id)
        return lost

    def stalled(self) -> list[tuple[Lease, int]]:
        """Frames that made no progress for their task's frame timeout: stop and move them."""
        now = self.clock()
        found: list[tuple[Lease, int]] = []
        for lease in list(self.leases.values()):
            task = self.tasks.get(lease.task_id)
            if task is None or task.frame_timeout_s is None:
                continue
            for frame, started in list(lease.started.items()):
                last = lease.progress_at.get(frame, started)
                if now - last > task.frame_timeout_s:
                    found.append((lease, frame))
        return found

    # -- work --------------------------------------------------------------------------------
    def _eligible(self, task: TaskEntry, agent: AgentEntry) -> bool:
        return (
            task.run is TaskRun.ACTIVE
            and agent.agent_id not in task.blocked
            and can_open(agent.blenders, task.blender_version)
        )

    def _ordered_tasks(self) -> list[TaskEntry]:
        return sorted(self.tasks.values(), key=lambda t: (-t.priority, t.submitted, t.task_id))

    def waiting_reason(self, task_id: str) -> str | None:
        """Why a task gets no agent, in words ("needs Blender >= 5.0; agents have 3.4")."""
        task = self.tasks[task_id]
        online = [a for a in self.agents.values() if a.online and a.enabled]
        if not online:
            return "no agent is online"
        if not any(can_open(a.blenders, task.blender_version) for a in online):
            have = sorted({f"{v[0]}.{v[1]}" for a in online for v in a.blenders})
            need = f"{task.blender_version[0]}.{task.blender_version[1]}"
            return f"needs Blender >= {need}; agents have {', '.join(have) or 'none'}"
        if all(a.agent_id in task.blocked for a in online if can_open(a.blenders, task.blender_version)):
            return "every agent that could render it failed it 3 times (clear the block list to retry)"
        return None

    def request_work(self, agent_id: str, warm_tasks: Iterable[str] = (), queued_frames: int = 0) -> Assignment | None:
        """Find, then assign: the next frames for this agent, or None when there is nothing to do."""
        agent = self.agents.get(agent_id)
        if agent is None or not agent.online or not agent.enabled:
            return None
        agent.last_seen = self.clock()
        agent.warm = {t for t in warm_tasks if t in self.tasks}
        for task in self._ordered_tasks():
            if not self._eligible(task, agent):
                continue
            frames = self._take_queued(task, agent)
            if frames:
                return self._lease(task, agent, frames)
        if queued_frames == 0 and self.duplicates:
            return self._duplicate_or_steal(agent)
        return None

    def _spf(self, task: TaskEntry, agent: AgentEntry) -> float | None:
        measured = task.spf.get(agent.agent_id)
        if measured is not None:
            return measured
        if task.spf and agent.speed is not None:
            return (sum(task.spf.values()) / len(task.spf)) / agent.speed
        return None

    def _farm_rate(self, task: TaskEntry) -> float:
        """Frames per second the farm renders this task at (measured agents only)."""
        rate = 0.0
        for agent in self.agents.values():
            if agent.online and agent.enabled and self._eligible(task, agent):
                spf = self._spf(task, agent)
                if spf:
                    rate += 1 / spf
        return rate

    def _take_queued(self, task: TaskEntry, agent: AgentEntry) -> list[int]:
        queued = task.queued()
        first = next(queued, None)
        if first is None:
            task.cursor = len(task.order)
            return []
        task.cursor = task.order.index(first, task.cursor)
        remaining = sum(1 for f in task.frames.values() if f.state is FrameState.QUEUED)
        count = adaptive_chunk_frames(self.policy, self._spf(task, agent), remaining, self._farm_rate(task))
        picked: list[int] = []
        for number in itertools.chain([first], queued):
            slot = task.frames[number]
            # A frame this agent already failed goes to someone else when others can take it.
            if agent.agent_id in slot.failed_by and self._others_can_take(task, agent):
                continue
            picked.append(number)
            if len(picked) >= count:
                break
        return picked

    def _others_can_take(self, task: TaskEntry, agent: AgentEntry) -> bool:
        return any(
            a.agent_id != agent.agent_id and a.online and a.enabled and self._eligible(task, a)
            for a in self.agents.values()
        )

    def _lease(self, task: TaskEntry, agent: AgentEntry, frames: list[int], duplicate: bool = False) -> Assignment:
        attempt = f"{self.attempt_prefix}{next(self._attempts)}"
        lease = Lease(attempt, agent.agent_id, task.task_id, list(frames), self.clock())
        self.leases[attempt] = lease
        for number in frames:
            slot = task.frames[number]
            slot.leases.add(attempt)
            if slot.state is FrameState.QUEUED:
                slot.state = FrameState.ASSIGNED
        return Assignment(task.task_id, attempt, list(frames), duplicate)

    def _duplicate_or_steal(self, idle: AgentEntry) -> Assignment | None:
        """Near the end of a task: take over frames another agent would finish later than this one."""
        now = self.clock()
        best: tuple[float, Lease, int, bool] | None = None
        for lease in self.leases.values():
            task = self.tasks.get(lease.task_id)
            owner = self.agents.get(lease.agent_id)
            if task is None or owner is None or lease.agent_id == idle.agent_id or not self._eligible(task, idle):
                continue
            mine = self._spf(task, idle)
            if mine is None:
                continue
            cost = mine + (0.0 if task.task_id in idle.warm else (idle.startup_s or 0.0))
            theirs = self._spf(task, owner) or mine
            # Time until the owner would finish each of its frames, in its queue order.
            finish = 0.0
            for number in lease.frames:
                slot = task.frames[number]
                if number in lease.started:
                    elapsed = now - lease.started[number]
                    progress = lease.progress.get(number, 0.0)
                    total = elapsed / progress if progress > 0.05 else max(theirs, elapsed)
                    finish += max(total - elapsed, 0.0)
                    started = True
                else:
                    finish += theirs
                    started = False
                if slot.state is FrameState.DONE or len(slot.leases) > 1 or idle.agent_id in slot.failed_by:
                    continue
                gain = finish - cost
                if cost < DUPLICATE_GAIN * finish and (best is None or gain > best[0]):
                    best = (gain, lease, number, started)
        if best is None:
            return None
        _, lease, number, started = best
        task = self.tasks[lease.task_id]
        if not started:
            # Not begun: move it rather than render it twice; the owner hears so by heartbeat.
            lease.frames.remove(number)
            task.frames[number].leases.discard(lease.attempt)
            if not lease.frames:
                self.leases.pop(lease.attempt, None)
        return self._lease(task, idle, [number], duplicate=started)

    # -- results -----------------------------------------------------------------------------
    def progress(self, agent_id: str, attempt: str, frame: int, value: float) -> bool:
        """A heartbeat's progress for one frame. False: the agent should abandon it."""
        self.seen(agent_id)
        lease = self.leases.get(attempt)
        if lease is None or lease.agent_id != agent_id or frame not in lease.frames:
            return False
        task = self.tasks.get(lease.task_id)
        if task is None or task.run not in (TaskRun.ACTIVE, TaskRun.PAUSED):
            return False
        slot = task.frames[frame]
        if slot.state is FrameState.DONE:
            return False
        now = self.clock()
        if frame not in lease.started:
            lease.started[frame] = now
            slot.renders += 1
        if value > lease.progress.get(frame, -1.0):
            lease.progress[frame] = value
            lease.progress_at[frame] = now
        if slot.state is FrameState.ASSIGNED:
            slot.state = FrameState.RENDERING
        return True

    def frame_done(
        self, agent_id: str, task_id: str, frame: int, seconds: float, attempt: str | None = None
    ) -> Outcome:
        """A frame arrived. The first result wins; a late or duplicate one is reported as such."""
        self.seen(agent_id)
        task = self.tasks.get(task_id)
        if task is None or frame not in task.frames or task.run is TaskRun.CANCELLED:
            return Outcome.UNKNOWN
        slot = task.frames[frame]
        lease = self.leases.get(attempt) if attempt else None
        if lease is not None and frame in lease.frames:
            lease.frames.remove(frame)
            lease.started.pop(frame, None)
            slot.leases.discard(lease.attempt)
            if not lease.frames:
                self.leases.pop(lease.attempt, None)
        if slot.state is FrameState.DONE:
            return Outcome.DUPLICATE
        if lease is None:
            slot.renders += 1  # a late result from an attempt we had given up on
        slot.state = FrameState.DONE
        slot.done_by = agent_id
        slot.seconds = seconds
        self._learn(task, agent_id, seconds)
        # Other attempts at this frame (duplicates) are now pointless.
        for other in list(slot.leases):
            other_lease = self.leases.get(other)
            if other_lease is not None and frame in other_lease.frames:
                other_lease.frames.remove(frame)
                other_lease.started.pop(frame, None)
                if not other_lease.frames:
                    self.leases.pop(other, None)
        slot.leases.clear()
        if task.done_count == len(task.frames):
            task.run = TaskRun.DONE
        return Outcome.ACCEPTED

    def _learn(self, task: TaskEntry, agent_id: str, seconds: float) -> None:
        if seconds <= 0:
            return
        old = task.spf.get(agent_id)
        task.spf[agent_id] = seconds if old is None else old + _EMA * (seconds - old)
        mean = sum(task.spf.values()) / len(task.spf)
        for aid, spf in task.spf.items():
            agent = self.agents.get(aid)
            if agent is not None:
                agent.speed = mean / spf

    def set_startup(self, agent_id: str, seconds: float) -> None:
        agent = self.agents.get(agent_id)
        if agent is not None:
            agent.startup_s = (
                seconds if agent.startup_s is None else agent.startup_s + _EMA * (seconds - agent.startup_s)
            )

    def frame_failed(self, agent_id: str, task_id: str, frame: int, error: str, attempt: str | None = None) -> Outcome:
        """A frame failed on an agent: retry elsewhere, block the agent, or fail the task."""
        self.seen(agent_id)
        task = self.tasks.get(task_id)
        if task is None or frame not in task.frames or task.run is not TaskRun.ACTIVE:
            return Outcome.UNKNOWN
        slot = task.frames[frame]
        lease = self.leases.get(attempt) if attempt else None
        if lease is not None and frame in lease.frames:
            lease.frames.remove(frame)
            lease.started.pop(frame, None)
            slot.leases.discard(lease.attempt)
            if not lease.frames:
                self.leases.pop(lease.attempt, None)
        if slot.state is FrameState.DONE:
            return Outcome.DUPLICATE
        slot.failed_by[agent_id] = error
        task.failures_by_agent[agent_id] = task.failures_by_agent.get(agent_id, 0) + 1
        if not slot.leases:
            slot.state = FrameState.QUEUED
            task.cursor = 0
        if len(slot.failed_by) >= MAX_AGENTS_FAILING_A_FRAME:
            slot.state = FrameState.FAILED
            task.run = TaskRun.FAILED
            task.error = f"frame {frame} failed on {len(slot.failed_by)} agents: {error}"
            self._drop_task_leases(task_id)
            return Outcome.TASK_FAILED
        if task.failures_by_agent[agent_id] >= MAX_FAILURES_PER_AGENT:
            task.blocked.add(agent_id)
            for other in self._leases_of_task(task_id):
                if other.agent_id == agent_id:
                    self._end_lease(other)
            return Outcome.AGENT_BLOCKED
        return Outcome.RETRY

    # -- lease bookkeeping -------------------------------------------------------------------
    def _leases_of_task(self, task_id: str) -> list[Lease]:
        return [lease for lease in self.leases.values() if lease.task_id == task_id]

    def _requeue(self, task: TaskEntry, number: int, attempt: str) -> bool:
        slot = task.frames[number]
        slot.leases.discard(attempt)
        if slot.state in (FrameState.ASSIGNED, FrameState.RENDERING) and not slot.leases:
            slot.state = FrameState.QUEUED
            task.cursor = 0
            return True
        return False

    def _end_lease(self, lease: Lease) -> list[int]:
        """Drop a lease, requeueing its unfinished frames; returns them."""
        self.leases.pop(lease.attempt, None)
        task = self.tasks.get(lease.task_id)
        if task is None:
            return []
        return [n for n in lease.frames if self._requeue(task, n, lease.attempt)]

    def _release_unstarted(self, lease: Lease) -> None:
        task = self.tasks.get(lease.task_id)
        if task is None:
            return
        for number in [n for n in lease.frames if n not in lease.started]:
            lease.frames.remove(number)
            self._requeue(task, number, lease.attempt)
        if not lease.frames:
            self.leases.pop(lease.attempt, None)

    def _drop_task_leases(self, task_id: str) -> list[Lease]:
        dropped = self._leases_of_task(task_id)
        for lease in dropped:
            self._end_lease(lease)
        return dropped

    def abandoned(self, agent_id: str, held: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
        """Of the (attempt, frame) pairs an agent holds, those it should drop."""
        result = []
        for attempt, frame in held:
            lease = self.leases.get(attempt)
            if lease is None or lease.agent_id != agent_id or frame not in lease.frames:
                result.append((attempt, frame))
        return result

    # -- progress ----------------------------------------------------------------------------
    def workers(self, task_id: str) -> list[tuple[str, float, float]]:
        """Per agent: (agent id, share of the task assigned to it, its progress on that share)."""
        task = self.tasks[task_id]
        total = len(task.frames) or 1
        assigned: dict[str, float] = {}
        done: dict[str, float] = {}
        for slot in task.frames.values():
            if slot.state is FrameState.DONE and slot.done_by:
                assigned[slot.done_by] = assigned.get(slot.done_by, 0) + 1
                done[slot.done_by] = done.get(slot.done_by, 0) + 1
        for lease in self._leases_of_task(task_id):
            for number in lease.frames:
                assigned[lease.agent_id] = assigned.get(lease.agent_id, 0) + 1
                done[lease.agent_id] = done.get(lease.agent_id, 0) + lease.progress.get(number, 0.0)
        return [(aid, count / total, done[aid] / count) for aid, count in sorted(assigned.items())]
