"""The TaskScheduler's brain: which agent renders which frames, and what happens when things fail.

Pure and in memory, driven by an injected clock: the manager service persists what it decides, and
the farm simulator (``farmgui simulate``) drives the very same class on a virtual clock. It sees
only what a real manager sees: agents asking for work, heartbeats with progress, finished frames
with their measured times, failures, and silence.

One method call is one unit of work (Flamenco's "find, then assign"); "no work" is a normal answer.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from operator import itemgetter

from .chunking import ChunkPolicy, adaptive_chunk_frames, even_share_frames, preview_first_order

MAX_FAILURES_PER_AGENT = 3
"""An agent that fails this many frames of a task is taken off it."""
MAX_AGENTS_FAILING_A_FRAME = 3
"""A frame fails its task only once this many different agents failed it."""
DUPLICATE_GAIN = 0.7
"""Duplicate a running frame only when the idle agent would finish it in < 70% of the remaining time."""
DUPLICATE_EVIDENCE_FRAMES = 2
"""Duplicate only between agents measured on at least this many frames of the task each: one frame
says more about that frame than about the agent (on a ramped shot, equal agents looked 2x apart)."""
STEAL_MARGIN_S = 5.0
"""Move a queued frame only if its agent would not begin it within this long: what the scheduler knows
of an agent is up to a heartbeat (2 s) old, and a frame it has begun meanwhile would be rendered twice."""
LONG_POLE_WEIGHT = 2.0
"""Only a frame at least this much heavier than its agent's average is a long pole worth duplicating
before the end: the ordinary frames of slow agents are left to the end-of-task rules (duplicating them
early wasted 3% of a 150-frame task for nothing)."""
LONG_POLE_GAIN = 0.85
"""Move a long pole when the asking agent and the rest of the farm would be done in under 85 % of its time
(0.7 left a 20x frame on a 6x agent when an 8x one asked: 4 of 8 seeds had a 12-agent farm 1.3-1.75x its
bound; 0.9 moved frames for little gain, losing up to 4 % of a farm's work)."""
LONG_POLE_SLACK = 1.25
"""A long frame is duplicated by the asking agent unless another would finish it this much sooner."""
LEASE_SILENCE_HEARTBEATS = 2.0
"""A lease an online agent has not mentioned for this many heartbeat timeouts is one it no longer
holds (it restarted before the manager noticed it was gone): its frames go back to the queue."""
RATE_MIN_PROGRESS = 0.05
"""A frame's progress rate is trusted once it is past this much progress..."""
RATE_MIN_SPAN_S = 10.0
"""...or measured over this long (five heartbeats): a 20x frame on a 3x agent took 200 s to reach 5 %."""
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
    first_progress: dict[int, tuple[float, float]] = field(default_factory=dict)
    """(when, value) of each frame's first progress above 0: its rate from then on leaves out the
    start of Blender and the download, which a frame's first heartbeats include."""
    reported_at: float | None = None
    """When the agent last showed it still holds this lease (a heartbeat or a result); None: not yet."""
    measures_startup: bool = False
    """Issued to an idle agent with no Blender for the task: its first result's delay is its start-up."""
    cold: bool = False
    """Issued to an agent with no Blender for the task: its first frame waits for Blender to start."""


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
    timed: dict[str, float] = field(default_factory=dict)
    """Agent id -> this frame's whole render time on it, from the progress rate of a copy that was stopped
    because the other copy would finish first (what a later duplicate of it is judged by)."""


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
    measured: dict[str, int] = field(default_factory=dict)
    """How many frames of this task each agent's ``spf`` comes from."""
    spf_sum: float = 0.0
    """Sum of ``spf``'s values (for their mean without a loop per request)."""
    cursor: int = 0
    """Index into ``order`` before which no frame is queued (a scan shortcut)."""
    position: dict[int, int] = field(default_factory=dict)
    """Frame number -> its index in ``order``."""
    counts: dict[FrameState, int] = field(default_factory=dict)
    """Frames in each state, kept by ``set_state`` so that no request counts all frames (a 20,000-frame
    task made every result O(frames): 20,000 frames on 64 simulated agents took minutes, now seconds)."""
    done_by_count: dict[str, int] = field(default_factory=dict)
    """Agent id -> frames of this task it delivered (kept by ``credit``: a progress poll walked all frames)."""
    renders_total: int = 0
    """Renders started, repeats and duplicates included (the sum of the slots' ``renders``)."""

    def __post_init__(self) -> None:
        if not self.position:
            self.position = {n: i for i, n in enumerate(self.order)}
        if not self.counts:
            self.recount()

    def recount(self) -> None:
        self.counts = dict.fromkeys(FrameState, 0)
        for slot in self.frames.values():
            self.counts[slot.state] += 1

    @property
    def done_count(self) -> int:
        return self.counts[FrameState.DONE]

    @property
    def queued_count(self) -> int:
        return self.counts[FrameState.QUEUED]

    def set_state(self, slot: FrameSlot, state: FrameState) -> None:
        """Every frame state change goes through here (it keeps ``counts`` and ``cursor``)."""
        self.counts[slot.state] -= 1
        self.counts[state] += 1
        slot.state = state
        if state is FrameState.QUEUED:
            self.cursor = min(self.cursor, self.position.get(slot.number, 0))

    def credit(self, slot: FrameSlot, agent_id: str | None) -> None:
        """Record who delivered a done frame."""
        if slot.done_by:
            self.done_by_count[slot.done_by] -= 1
        slot.done_by = agent_id
        if agent_id:
            self.done_by_count[agent_id] = self.done_by_count.get(agent_id, 0) + 1

    def queued(self) -> Iterator[int]:
        order, frames = self.order, self.frames
        cursor = self.cursor
        while cursor < len(order) and frames[order[cursor]].state is not FrameState.QUEUED:
            cursor += 1
        self.cursor = cursor
        for number in order[cursor:]:
            if frames[number].state is FrameState.QUEUED:
                yield number


@dataclass
class AgentEntry:
    agent_id: str
    blenders: tuple[tuple[int, int], ...]
    """(major, minor) of each Blender it has, sorted (``Scheduler.agent_online``)."""
    last_seen: float
    online: bool = True
    enabled: bool = True
    warm: set[str] = field(default_factory=set)
    startup_s: float | None = None
    speed: float | None = None
    """Render speed relative to the farm (1.0 = average); learned across tasks."""

    def opens(self, file_version: tuple[int, int]) -> bool:
        """``can_open`` by its newest Blender (``blenders`` is sorted): it runs for every agent in every
        ``_farm_rate``, 1.2 M calls in benchmarks/manager_scale.py's profile, and ``can_open``'s generator was most
        of their cost."""
        return bool(self.blenders) and self.blenders[-1] >= file_version


@dataclass(frozen=True)
class Assignment:
    task_id: str
    attempt: str
    frames: list[int]
    duplicate: bool = False
    """Another agent renders this frame too; the first result wins."""
    preempted: bool = False
    """Taken from an agent that had begun it (a long pole, see ``Scheduler._long_pole``); it drops it."""


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
        self._startup_sum = 0.0
        self._startup_count = 0
        """Sum and count of the agents' known start-ups (``_typical_startup`` without a loop)."""
        self.attempt_prefix = ""
        """Makes attempt ids unique across manager restarts (the service sets a random one)."""
        self._rate_memo: dict[str, float] | None = None
        """``_farm_rate``'s answers, kept while one ``request_work`` runs."""

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
                task.set_state(slot, FrameState.QUEUED)
                slot.failed_by.clear()
                count += 1
        task.blocked.clear()
        task.failures_by_agent.clear()
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
        """Mark agents silent for longer than the heartbeat timeout as lost; returns their ids.

        Also requeues the frames of leases that an agent still online has stopped mentioning in its
        heartbeats (see ``LEASE_SILENCE_HEARTBEATS``).
        """
        now = self.clock()
        lost = [a.agent_id for a in self.agents.values() if a.online and now - a.last_seen > self.heartbeat_timeout_s]
        for agent_id in lost:
            self.agent_lost(agent_id)
        limit = LEASE_SILENCE_HEARTBEATS * self.heartbeat_timeout_s
        for lease in list(self.leases.values()):
            last = lease.reported_at if lease.reported_at is not None else lease.issued_at
            agent = self.agents.get(lease.agent_id)
            if agent is not None and agent.online and now - last > limit:
                self._end_lease(lease)
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
        return task.run is TaskRun.ACTIVE and agent.agent_id not in task.blocked and agent.opens(task.blender_version)

    def _ordered_tasks(self) -> list[TaskEntry]:
        return sorted(self.tasks.values(), key=lambda t: (-t.priority, t.submitted, t.task_id))

    def waiting_reason(self, task_id: str) -> str | None:
        """Why a task gets no agent, in words ("needs Blender >= 5.0; agents have 3.4")."""
        task = self.tasks[task_id]
        online = [a for a in self.agents.values() if a.online and a.enabled]
        if not online:
            return "no agent is online"
        if not any(a.opens(task.blender_version) for a in online):
            have = sorted({f"{v[0]}.{v[1]}" for a in online for v in a.blenders})
            need = f"{task.blender_version[0]}.{task.blender_version[1]}"
            return f"needs Blender >= {need}; agents have {', '.join(have) or 'none'}"
        if all(a.agent_id in task.blocked for a in online if a.opens(task.blender_version)):
            return "every agent that could render it failed it 3 times (clear the block list to retry)"
        return None

    def request_work(self, agent_id: str, warm_tasks: Iterable[str] = (), queued_frames: int = 0) -> Assignment | None:
        """Find, then assign: the next frames for this agent, or None when there is nothing to do."""
        agent = self.agents.get(agent_id)
        if agent is None or not agent.online or not agent.enabled:
            return None
        agent.last_seen = self.clock()
        agent.warm = {t for t in warm_tasks if t in self.tasks}
        self._rate_memo = {}
        try:
            return self._find_work(agent, queued_frames)
        finally:
            self._rate_memo = None

    def _find_work(self, agent: AgentEntry, queued_frames: int) -> Assignment | None:
        for task in self._ordered_tasks():
            if not self._eligible(task, agent):
                continue
            if self.duplicates:
                pole = self._long_pole(task, agent, queued_frames)
                if pole is not None:
                    return pole
            frames = self._take_queued(task, agent, queued_frames)
            if frames:
                return self._lease(task, agent, frames, measures_startup=queued_frames == 0)
        if queued_frames == 0 and self.duplicates:
            return self._duplicate_or_steal(agent) or self._hedge(agent)
        return None

    def _spf(self, task: TaskEntry, agent: AgentEntry) -> float | None:
        measured = task.spf.get(agent.agent_id)
        if measured is not None:
            return measured
        if task.spf and agent.speed is not None:
            return (task.spf_sum / len(task.spf)) / agent.speed
        return None

    def _farm_rate(self, task: TaskEntry) -> float:
        """Frames per second the farm renders this task at (measured agents only).

        O(agents); one work request asked for it up to four times (``_long_pole``, ``_take_queued``, ``_tail_share``,
        ``_hedge``), so ``request_work`` keeps each task's answer for the length of the request (nothing it reads
        changes within one).
        """
        memo = self._rate_memo
        if memo is not None and task.task_id in memo:
            return memo[task.task_id]
        rate = 0.0
        for agent in self.agents.values():
            if agent.online and agent.enabled and self._eligible(task, agent):
                spf = self._spf(task, agent)
                if spf:
                    rate += 1 / spf
        if memo is not None:
            memo[task.task_id] = rate
        return rate

    def _take_queued(self, task: TaskEntry, agent: AgentEntry, queued_frames: int = 0) -> list[int]:
        queued = task.queued()
        first = next(queued, None)
        if first is None:
            return []
        remaining = task.queued_count
        if self.policy.split_evenly:
            count = even_share_frames(remaining, self._agents_without_lease(task, agent))
        else:
            mine = self._spf(task, agent)
            count = adaptive_chunk_frames(self.policy, mine, remaining, self._farm_rate(task), queued_frames)
            # An agent not measured yet counts as an average one in the plan for the last frames.
            guess = mine if mine is not None or not task.spf else task.spf_sum / len(task.spf)
            if guess is not None and self.policy.fixed_frames is None:
                tail = self._tail_share(task, agent, guess, remaining)
                if tail is not None:
                    count = min(count, tail)
        if count <= 0:
            return []
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

    def _tail_share(self, task: TaskEntry, asking: AgentEntry, mine: float, remaining: int) -> int | None:
        """At the end of a task: how many of the last frames this agent should take, or None (not the end).

        The end is when the farm would render all queued frames in less than two of this agent's
        frames (for a slow agent it comes sooner). The last frames go, one by one, to whichever
        measured agent would finish each first, counting what every agent still has to render; an
        agent that would finish none of them first gets none and waits (or duplicates). Without this a
        slow agent asking at the right moment took the very last frame and the others waited for it.
        """
        online = [
            a for a in self.agents.values() if a is not asking and a.online and a.enabled and self._eligible(task, a)
        ]
        rate = self._farm_rate(task)
        near = remaining <= 2 * (len(online) + 1) or (rate > 0 and remaining / rate < 2 * mine)
        if not near or remaining > 50 * (len(online) + 1):
            return None
        busy = self._busy(task)
        # Only agents at work on this task: one busy with another task may not ask for a long while.
        agents = [a for a in online if a.agent_id in busy or task.task_id in a.warm]
        plan: list[tuple[float, int, float]] = []  # (when the next frame would be done, index, seconds per frame)
        for index, a in enumerate([asking, *agents]):
            spf = mine if a is asking else self._spf(task, a)
            if spf is not None:
                startup = a.startup_s if a.startup_s is not None else self._typical_startup()
                cold = 0.0 if task.task_id in a.warm or a.agent_id in busy else startup
                plan.append((busy.get(a.agent_id, 0.0) + cold + spf, index, spf))
        heapq.heapify(plan)
        share = 0
        for _ in range(remaining):
            done_at, index, spf = heapq.heappop(plan)
            share += index == 0
            heapq.heappush(plan, (done_at + spf, index, spf))
        return share

    def _typical_startup(self) -> float:
        """The mean start-up of the agents whose start-up is known (for one whose is not)."""
        return self._startup_sum / self._startup_count if self._startup_count else 0.0

    def _busy(self, task: TaskEntry) -> dict[str, float]:
        """Agent id -> the seconds it still needs for the frames of ``task`` it holds (measured agents)."""
        now = self.clock()
        busy: dict[str, float] = {}
        for lease in self.leases.values():
            if lease.task_id != task.task_id:
                continue
            owner = self.agents.get(lease.agent_id)
            spf = self._spf(task, owner) if owner is not None else None
            if spf is None:
                continue
            held = 0.0
            for number in lease.frames:
                held += self._running(lease, number, spf, now)[0] if number in lease.started else spf
            busy[lease.agent_id] = busy.get(lease.agent_id, 0.0) + held
        return busy

    def _agents_without_lease(self, task: TaskEntry, asking: AgentEntry) -> int:
        """Agents that could render ``task`` and hold none of it, the asking one included."""
        holders = {lease.agent_id for lease in self.leases.values() if lease.task_id == task.task_id}
        return sum(
            1
            for a in self.agents.values()
            if a.online and a.enabled and self._eligible(task, a) and (a is asking or a.agent_id not in holders)
        )

    def _others_can_take(self, task: TaskEntry, agent: AgentEntry) -> bool:
        return any(
            a.agent_id != agent.agent_id and a.online and a.enabled and self._eligible(task, a)
            for a in self.agents.values()
        )

    def _lease(
        self,
        task: TaskEntry,
        agent: AgentEntry,
        frames: list[int],
        duplicate: bool = False,
        measures_startup: bool = False,
    ) -> Assignment:
        attempt = f"{self.attempt_prefix}{next(self._attempts)}"
        lease = Lease(attempt, agent.agent_id, task.task_id, list(frames), self.clock())
        lease.cold = task.task_id not in agent.warm
        lease.measures_startup = measures_startup and lease.cold
        self.leases[attempt] = lease
        for number in frames:
            slot = task.frames[number]
            slot.leases.add(attempt)
            if slot.state is FrameState.QUEUED:
                task.set_state(slot, FrameState.ASSIGNED)
        return Assignment(task.task_id, attempt, list(frames), duplicate)

    def _duplicate_or_steal(self, idle: AgentEntry) -> Assignment | None:
        """Near the end of a task: take over frames another agent would finish later than this one.

        Each other agent's frames are walked in its render order (its leases in the order they were
        issued), adding up when it would finish each. A frame it has not begun is moved to the idle
        agent; one it renders is duplicated (first result wins). Either only when the idle agent would
        finish it in under ``DUPLICATE_GAIN`` of that time, for the frame with the largest gain. The idle
        agent's time for a running frame is the frame's own time on its owner (from the owner's
        progress) scaled by the two agents' measured speeds, so a heavy frame is not mistaken for a slow
        agent (on equal agents that wasted up to a fifth of a 50-frame task on pointless duplicates).
        Once both copies show a progress rate, ``_settle`` stops the one that would finish later. Frames
        whose owner is not measured on the task, or with no rate long past their expected end, are
        ``_hedge``'s.
        """
        now = self.clock()
        best: tuple[float, Lease, int, bool] | None = None
        if idle.speed is None and not any(idle.agent_id in t.spf for t in self.tasks.values()):
            return None  # never measured: nothing to compare with (most of a 50-frame, 64-agent farm)
        by_owner: dict[str, list[Lease]] = {}
        for lease in self.leases.values():
            if lease.agent_id != idle.agent_id:
                by_owner.setdefault(lease.agent_id, []).append(lease)
        # Per task: the idle agent's seconds per frame (None: not eligible or unknown), its start-up if
        # it has no Blender for the task, and whether it is measured well enough to duplicate.
        mine_by_task: dict[str, tuple[float | None, float, bool]] = {}
        for owner_id, leases in by_owner.items():
            owner = self.agents.get(owner_id)
            if owner is None:
                continue
            finish = 0.0  # from now until the owner would finish the frame, through its whole queue
            for lease in leases:
                task = self.tasks.get(lease.task_id)
                if task is None:
                    continue
                if task.task_id not in mine_by_task:
                    mine_by_task[task.task_id] = (
                        self._spf(task, idle) if self._eligible(task, idle) else None,
                        0.0 if task.task_id in idle.warm else (idle.startup_s or 0.0),
                        self._well_measured(task, idle),
                    )
                mine, cold, trusted = mine_by_task[task.task_id]
                theirs = self._spf(task, owner) or mine
                if theirs is None:
                    break  # nothing to estimate its queue with: the frames after this are unknown too
                trusted = trusted and self._well_measured(task, owner)
                if not trusted and len(lease.started) == len(lease.frames) and lease is leases[-1]:
                    break  # only frames begun, which it may not duplicate: nothing here for it
                for number in lease.frames:
                    begins = finish
                    started = number in lease.started
                    if started:
                        remaining, weight = self._running(lease, number, theirs, now)
                        finish += remaining
                    else:
                        weight = 1.0
                        finish += theirs
                    if mine is None or (started and not (trusted and weight > 0)):
                        continue
                    if not started and begins < STEAL_MARGIN_S:
                        continue
                    slot = task.frames[number]
                    if slot.state is FrameState.DONE or len(slot.leases) > 1 or idle.agent_id in slot.failed_by:
                        continue
                    cost = mine * weight + cold
                    gain = finish - cost
                    if cost < DUPLICATE_GAIN * finish and (best is None or gain > best[0]):
                        best = (gain, lease, number, started)
        if best is None:
            return None
        _, lease, number, started = best
        task = self.tasks[lease.task_id]
        if not started:
            # Not begun: move it rather than render it twice; the owner hears so by heartbeat.
            self._take_back(task, lease, number)
        return self._lease(task, idle, [number], duplicate=started)

    def _take_back(self, task: TaskEntry, lease: Lease, number: int) -> None:
        """Take a frame from a lease without requeueing it (it was given to another agent); the agent hears
        so at its next heartbeat (``progress`` or ``abandoned``)."""
        lease.frames.remove(number)
        lease.started.pop(number, None)
        task.frames[number].leases.discard(lease.attempt)
        if not lease.frames:
            self.leases.pop(lease.attempt, None)

    def _hedge(self, idle: AgentEntry) -> Assignment | None:
        """Duplicate the running frame that sets a task's end when its owner cannot be judged by measurement.

        ``_duplicate_or_steal`` needs both agents measured on ``DUPLICATE_EVIDENCE_FRAMES`` frames and the
        frame's progress rate. Without them a frame can hold the whole task: a 20x frame handed at the start
        to a 3x agent of 64 (50 frames, one for each agent: nobody is measured when it matters) ran 2.6x the
        task's ideal time, and a slow agent's frame at 0 % while its Blender loads kept the others waiting
        (issue #7). So an idle agent measured on the task duplicates the frame that would be done last when
        either its owner has finished no frame of the task (the frame's progress rate is all there is), or
        it has shown no rate for longer than its owner's start-up and time per frame (the farm's, where the
        owner's are unknown) lead to expect; and only when the idle agent, counted as rendering an average
        frame of its own unless a copy of this frame was timed, and the rest of the task would both be done
        in under ``DUPLICATE_GAIN`` of the frame's remaining time (so a slow agent's ordinary frame, done
        before the frame that sets the end, is left alone), and no idle agent measured faster is there to
        take it. Which copy is kept is then measured, not guessed: once both show a progress rate (one
        frame on two agents: their true speed ratio), ``_settle`` stops the one that would finish later, so
        a wrong guess costs a few heartbeats of rendering twice, not the frame.
        """
        now = self.clock()
        holders: set[str] | None = None
        for task in self._ordered_tasks():
            mine = task.spf.get(idle.agent_id)
            if mine is None or not self._eligible(task, idle):
                continue
            if holders is None:
                holders = {held.agent_id for held in self.leases.values()}
            if self._faster_idle(task, idle, holders, mine / LONG_POLE_SLACK):
                continue  # it will ask within a second (checked first: 64 idle agents asking made this costly)
            ends = self._ends(task, now)
            if not ends:
                continue
            last = max(ends, key=lambda n: ends[n][0])
            end, lease = ends[last]
            slot = task.frames[last]
            owner = self.agents.get(lease.agent_id)
            if (
                owner is None
                or owner is idle
                or last not in lease.started
                or len(slot.leases) > 1
                or idle.agent_id in slot.failed_by
                or idle.agent_id in slot.timed
            ):
                continue
            rated = self._rate(lease, last) is not None
            theirs = self._spf(task, owner)
            if rated and task.measured.get(owner.agent_id, 0):
                continue  # an owner measured on the task is judged by _duplicate_or_steal's rules of evidence
            if not rated and now - lease.started[last] <= self._expected(lease, last, theirs or self._mean_spf(task)):
                continue  # at 0 %, but not for longer than expected yet
            # The frame's weight where its owner's speed is known (from other tasks), else an average frame.
            weight = (self._running(lease, last, theirs, now)[1] if rated and theirs is not None else 0.0) or 1.0
            rest = max((e for n, (e, _) in ends.items() if n != last), default=0.0)
            if task.queued_count:
                rate = self._farm_rate(task)
                rest = max(rest, task.queued_count / rate) if rate > 0 else end
            cost = self._hedge_cost(task, slot, idle, mine * weight)
            if max(cost, rest) >= DUPLICATE_GAIN * end:
                continue
            for other in self.agents.values():
                spf = task.spf.get(other.agent_id)
                if (
                    spf is None
                    or other is idle
                    or other.agent_id in holders
                    or not (other.online and other.enabled)
                    or not self._eligible(task, other)
                    or other.agent_id in slot.failed_by
                    or other.agent_id in slot.timed
                ):
                    continue
                if self._hedge_cost(task, slot, other, spf * weight) < cost / LONG_POLE_SLACK:
                    return None  # a faster idle agent will ask within a second
            return self._lease(task, idle, [last], duplicate=True)
        return None

    def _faster_idle(self, task: TaskEntry, asking: AgentEntry, holders: set[str], below: float) -> bool:
        """Whether an agent idle with a warm Blender for ``task`` renders it in under ``below`` s a frame."""
        for other in self.agents.values():
            spf = task.spf.get(other.agent_id)
            if (
                spf is not None
                and spf < below
                and other is not asking
                and other.agent_id not in holders
                and other.online
                and other.enabled
                and task.task_id in other.warm
                and self._eligible(task, other)
            ):
                return True
        return False

    def _hedge_cost(self, task: TaskEntry, slot: FrameSlot, agent: AgentEntry, guess: float) -> float:
        """Seconds ``agent`` would take to render a frame from now: its start-up unless warm, then the frame's
        time where a copy of it was timed on another agent (scaled by the two agents' measured speeds), or
        ``guess``."""
        cold = 0.0 if task.task_id in agent.warm else (agent.startup_s or self._typical_startup())
        spf = task.spf.get(agent.agent_id)
        scaled = [t * spf / task.spf[a] for a, t in slot.timed.items() if spf is not None and a in task.spf]
        return cold + (min(scaled) if scaled else guess)

    @staticmethod
    def _mean_spf(task: TaskEntry) -> float:
        return task.spf_sum / len(task.spf) if task.spf else 0.0

    def _ends(self, task: TaskEntry, now: float) -> dict[int, tuple[float, Lease]]:
        """Frame -> (seconds from now until it would be done, the lease that would finish it first), for
        every frame of ``task`` an agent holds: each agent's frames in its render order, an agent not
        measured yet counting as an average one; empty when no agent is measured on the task. A later
        copy of a frame (a duplicate) counts only once it shows a progress rate: until then what it would
        take is a guess."""
        typical = self._mean_spf(task)
        if typical <= 0:
            return {}
        queue: dict[str, float] = {}
        ends: dict[int, tuple[float, Lease]] = {}
        for lease in self.leases.values():
            if lease.task_id != task.task_id:
                continue
            owner = self.agents.get(lease.agent_id)
            theirs = (self._spf(task, owner) if owner is not None else None) or typical
            finish = queue.get(lease.agent_id, 0.0)
            for number in lease.frames:
                finish += self._running(lease, number, theirs, now)[0] if number in lease.started else theirs
                known = ends.get(number)
                if known is None or (finish < known[0] and self._rate(lease, number) is not None):
                    ends[number] = (finish, lease)
            queue[lease.agent_id] = finish
        return ends

    def _settle(self, task: TaskEntry, slot: FrameSlot, now: float) -> None:
        """A frame rendered twice, both copies showing a progress rate: stop the one that would finish later.

        The two rates of one frame are the two agents' true speed ratio, whatever the frame's weight, so
        this is where a duplicate on a guess (``_hedge``) is proven right or wrong; the loser's time for
        the frame is kept (``FrameSlot.timed``) so that no agent as slow duplicates it again.
        """
        copies: list[tuple[float, float, Lease, float]] = []
        for attempt in slot.leases:
            lease = self.leases.get(attempt)
            rate = self._rate(lease, slot.number) if lease is not None and slot.number in lease.started else None
            if lease is None or rate is None:
                return
            per_s, progress, at = rate
            # The earlier copy wins a tie: it is further on.
            copies.append((abs((1.0 - progress) / per_s - (now - at)), lease.issued_at, lease, per_s))
        copies.sort(key=itemgetter(0, 1))
        for _, _, lease, per_s in copies[1:]:
            slot.timed[lease.agent_id] = 1.0 / per_s
            self._take_back(task, lease, slot.number)

    def _long_pole(self, task: TaskEntry, asking: AgentEntry, queued_frames: int) -> Assignment | None:
        """Move now a heavy running frame that would end after everything else (a 20x frame on a slow agent).

        Such a frame sets the end of the task; waiting until the rest is done to duplicate it wastes the
        time in between (a 20x frame on a 1x agent of eight kept the task going 15% past its ideal end).
        Only a frame at least ``LONG_POLE_WEIGHT`` times its agent's average, whose remaining time is
        longer than the farm needs for the frames still queued, when both the asking agent (after what
        it holds) and the rest of the farm would be done in under ``LONG_POLE_GAIN`` of that time: the
        farm without the asking agent while it renders the frame, and without the owner while it starts
        Blender again (an agent told to drop the frame it renders stops that Blender). And only when no
        other agent would finish it much sooner (it will ask in its turn). The owner's work on it so far
        is lost; its heartbeat reply tells it to drop the frame.
        """
        mine = self._spf(task, asking)
        if mine is None or not self._well_measured(task, asking):
            return None
        rate = self._farm_rate(task)
        if rate <= 0:
            return None
        drained = task.queued_count / rate
        now = self.clock()
        ahead = queued_frames * mine + (0.0 if task.task_id in asking.warm else (asking.startup_s or 0.0))
        best: tuple[float, Lease, int] | None = None
        for lease in self.leases.values():
            if lease.task_id != task.task_id or lease.agent_id == asking.agent_id or not lease.started:
                continue
            owner = self.agents.get(lease.agent_id)
            theirs = self._spf(task, owner) if owner is not None else None
            if owner is None or theirs is None or not self._well_measured(task, owner):
                continue
            for number in lease.started:
                slot = task.frames[number]
                if slot.state is FrameState.DONE or len(slot.leases) > 1 or asking.agent_id in slot.failed_by:
                    continue
                remaining, weight = self._running(lease, number, theirs, now)
                if weight < LONG_POLE_WEIGHT or remaining <= drained:
                    continue
                cost = ahead + mine * weight
                restart = owner.startup_s or 0.0
                drained_with = drained + (cost / mine + restart / theirs) / rate
                done = max(cost, drained_with)
                if done < LONG_POLE_GAIN * remaining and (best is None or remaining - done > best[0]):
                    best = (remaining - done, lease, number)
        if best is None:
            return None
        _, lease, number = best
        theirs = self._spf(task, self.agents[lease.agent_id]) or mine
        weight = self._running(lease, number, theirs, now)[1]
        mine_done = ahead + mine * weight
        busy = self._busy(task)
        for other in self.agents.values():
            if other is asking or other.agent_id == lease.agent_id or not (other.online and other.enabled):
                continue
            spf = self._spf(task, other)
            if spf is None or not self._eligible(task, other) or not self._well_measured(task, other):
                continue
            cold = 0.0 if task.task_id in other.warm else (other.startup_s or 0.0)
            if busy.get(other.agent_id, 0.0) + cold + spf * weight < mine_done / LONG_POLE_SLACK:
                return None
        # Moved, not duplicated: an agent this much faster wins by far, and rendering it on both would
        # only keep the slow one from the frames still queued (and count twice: 5 % of a 150-frame task).
        self._take_back(task, lease, number)
        work = self._lease(task, asking, [number])
        return Assignment(work.task_id, work.attempt, work.frames, preempted=True)

    @staticmethod
    def _well_measured(task: TaskEntry, *agents: AgentEntry) -> bool:
        return all(task.measured.get(a.agent_id, 0) >= DUPLICATE_EVIDENCE_FRAMES for a in agents)

    def _running(self, lease: Lease, number: int, theirs: float, now: float) -> tuple[float, float]:
        """A running frame: (seconds its owner still needs, its weight: its time over the owner's average).

        Both come from the frame's progress rate since its first progress report (so not counting
        Blender's start); a frame past its expected end by some time is expected to need as long
        again (a stuck frame looks ever slower). Weight 0: no rate yet (no duplicate judged by weight):
        the frame is expected to take ``_expected``, and past that, as long again as it is overdue.
        """
        rate = self._rate(lease, number)
        if rate is None:
            return abs(self._expected(lease, number, theirs) - (now - lease.started[number])), 0.0
        per_s, progress, at = rate
        left = (1.0 - progress) / per_s - (now - at)
        return abs(left), (1.0 / per_s) / theirs if theirs > 0 else 1.0

    @staticmethod
    def _rate(lease: Lease, number: int) -> tuple[float, float, float] | None:
        """(progress per second, last progress, when) of a running frame, from its progress since its first
        report above 0 (not counting Blender's start); None before it has shown one."""
        progress = lease.progress.get(number, 0.0)
        at = lease.progress_at.get(number)
        first = lease.first_progress.get(number)
        if first is None or at is None or at <= first[0] or progress <= first[1]:
            return None
        if progress <= RATE_MIN_PROGRESS and at - first[0] < RATE_MIN_SPAN_S:
            return None
        return (progress - first[1]) / (at - first[0]), progress, at

    def _expected(self, lease: Lease, number: int, theirs: float) -> float:
        """Seconds from its start a frame without a progress rate is expected to take on its owner: the
        owner's time per frame, after its start-up if the lease began with one and this is its first frame."""
        if lease.cold and lease.frames and number == lease.frames[0]:
            owner = self.agents.get(lease.agent_id)
            known = owner.startup_s if owner is not None else None
            return theirs + (known if known is not None else self._typical_startup())
        return theirs

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
        lease.reported_at = now
        if frame not in lease.started:
            lease.started[frame] = now
            slot.renders += 1
            task.renders_total += 1
        if value > lease.progress.get(frame, -1.0):
            lease.progress[frame] = value
            lease.progress_at[frame] = now
            if value > 0 and frame not in lease.first_progress:
                lease.first_progress[frame] = (now, value)
        if slot.state is FrameState.ASSIGNED:
            task.set_state(slot, FrameState.RENDERING)
        if len(slot.leases) > 1:
            self._settle(task, slot, now)
            return frame in lease.frames
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
            now = self.clock()
            lease.reported_at = now
            lease.cold = False
            if lease.measures_startup:
                # The first result of a lease issued to an idle agent with no Blender for the task: what
                # it took beyond the render was the download and the start of Blender.
                lease.measures_startup = False
                if now - lease.issued_at - seconds > 0:
                    self.set_startup(agent_id, now - lease.issued_at - seconds)
            lease.frames.remove(frame)
            lease.started.pop(frame, None)
            slot.leases.discard(lease.attempt)
            if not lease.frames:
                self.leases.pop(lease.attempt, None)
        if slot.state is FrameState.DONE:
            return Outcome.DUPLICATE
        if lease is None:
            slot.renders += 1  # a late result from an attempt we had given up on
            task.renders_total += 1
        task.set_state(slot, FrameState.DONE)
        task.credit(slot, agent_id)
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
        new = seconds if old is None else old + _EMA * (seconds - old)
        task.spf[agent_id] = new
        task.spf_sum += new - (old or 0.0)
        task.measured[agent_id] = task.measured.get(agent_id, 0) + 1
        # Only this agent's speed: the others' follow at their next frame (updating all 64 agents'
        # at every frame was a fifth of the time of a 20,000-frame simulation).
        agent = self.agents.get(agent_id)
        if agent is not None:
            agent.speed = (task.spf_sum / len(task.spf)) / new

    def set_startup(self, agent_id: str, seconds: float) -> None:
        agent = self.agents.get(agent_id)
        if agent is not None:
            old = agent.startup_s
            agent.startup_s = seconds if old is None else old + _EMA * (seconds - old)
            self._startup_sum += agent.startup_s - (old or 0.0)
            self._startup_count += old is None

    def frame_not_stored(self, task_id: str, frame: int) -> bool:
        """A frame taken as done whose result the manager could not keep (its database row was not written): queued
        again, so that its agent's resend, or another render, is taken. False when there was nothing to undo."""
        task = self.tasks.get(task_id)
        slot = task.frames.get(frame) if task is not None else None
        if task is None or slot is None or slot.state is not FrameState.DONE:
            return False
        task.credit(slot, None)
        task.set_state(slot, FrameState.QUEUED)
        slot.seconds = None
        if task.run is TaskRun.DONE:
            task.run = TaskRun.ACTIVE
        return True

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
            task.set_state(slot, FrameState.QUEUED)
        if len(slot.failed_by) >= MAX_AGENTS_FAILING_A_FRAME:
            task.set_state(slot, FrameState.FAILED)
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
            task.set_state(slot, FrameState.QUEUED)
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
        pairs = list(held)
        if not pairs:
            return []
        # Set operations, not a Python loop per pair: every heartbeat lists all the frames an agent has
        # queued (a static split on 64 agents: ~300 each); this made such a simulation 2.5x faster.
        valid: set[tuple[str, int]] = set()
        for attempt in set(map(itemgetter(0), pairs)):
            lease = self.leases.get(attempt)
            if lease is not None and lease.agent_id == agent_id:
                lease.reported_at = self.clock()
                valid.update(zip(itertools.repeat(attempt), lease.frames, strict=False))
        if valid.issuperset(pairs):
            return []
        return [pair for pair in pairs if pair not in valid]

    # -- progress ----------------------------------------------------------------------------
    def workers(self, task_id: str) -> list[tuple[str, float, float]]:
        """Per agent: (agent id, share of the task assigned to it, its progress on that share)."""
        task = self.tasks[task_id]
        total = len(task.frames) or 1
        assigned: dict[str, float] = {a: n for a, n in task.done_by_count.items() if n}
        done: dict[str, float] = dict(assigned)
        for lease in self._leases_of_task(task_id):
            for number in lease.frames:
                assigned[lease.agent_id] = assigned.get(lease.agent_id, 0) + 1
                done[lease.agent_id] = done.get(lease.agent_id, 0) + lease.progress.get(number, 0.0)
        return [(aid, count / total, done[aid] / count) for aid, count in sorted(assigned.items())]
