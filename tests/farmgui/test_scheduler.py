"""The scheduler on a fake clock: chunking, priorities, versions, failures, redistribution."""

from __future__ import annotations

import pytest

from farmgui.core.chunking import ChunkPolicy, adaptive_chunk_frames, even_share_frames, preview_first_order
from farmgui.core.scheduler import Assignment, FrameState, Outcome, Scheduler, TaskRun

from .conftest import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock(1000.0)


@pytest.fixture
def sched(clock: Clock) -> Scheduler:
    return Scheduler(clock)


def finish(sched: Scheduler, clock: Clock, agent: str, seconds: float) -> list[int]:
    """Let ``agent`` take one assignment and render it, each frame taking ``seconds``."""
    work = sched.request_work(agent)
    assert work is not None
    for frame in work.frames:
        assert sched.progress(agent, work.attempt, frame, 0.5)
        clock.now += seconds
        assert sched.frame_done(agent, work.task_id, frame, seconds, work.attempt) is Outcome.ACCEPTED
    return work.frames


def test_preview_first_order() -> None:
    assert preview_first_order([1, 2, 3, 4, 5, 6, 7, 8, 9]) == [1, 9, 5, 3, 7, 2, 4, 6, 8]
    assert sorted(preview_first_order(list(range(1000)))) == list(range(1000))


def test_chunk_rules() -> None:
    policy = ChunkPolicy()
    assert adaptive_chunk_frames(policy, None, 100, 0.0) == 1, "an unmeasured agent gets one frame"
    assert adaptive_chunk_frames(policy, 1.0, 1000, 2.0) == 120, "capped at max_chunk_s"
    assert adaptive_chunk_frames(policy, 1.0, 40, 4.0) == 2.0 / 1.0, "a quarter of the time left, at least min_chunk_s"
    assert adaptive_chunk_frames(policy, 1.0, 3, 3.0) == 1, "one frame at the very end"
    assert adaptive_chunk_frames(ChunkPolicy(fixed_frames=10), 1.0, 7, 3.0) == 7
    assert adaptive_chunk_frames(policy, 1.0, 0, 3.0) == 0


def test_first_chunk_measures_then_grows(sched: Scheduler, clock: Clock) -> None:
    sched.add_task("t", range(1, 1001), blender_version="4.2")
    sched.agent_online("a", ["4.2"])
    assert finish(sched, clock, "a", 1.0) == [1]
    second = sched.request_work("a")
    assert second is not None
    assert len(second.frames) > 10


def test_priority_then_submission_order(sched: Scheduler, clock: Clock) -> None:
    sched.add_task("old", range(10), blender_version="4.2")
    clock.now += 1
    sched.add_task("new", range(10), blender_version="4.2")
    clock.now += 1
    sched.add_task("urgent", range(10), priority=5, blender_version="4.2")
    sched.agent_online("a", ["4.2"])
    work = sched.request_work("a")
    assert work is not None
    assert work.task_id == "urgent"
    sched.set_priority("urgent", -1)
    sched.agent_online("b", ["4.2"])
    work = sched.request_work("b")
    assert work is not None
    assert work.task_id == "old"


def test_version_aware(sched: Scheduler) -> None:
    sched.add_task("five", range(5), blender_version="5.0")
    sched.agent_online("old", ["3.4"])
    assert sched.request_work("old") is None
    assert sched.waiting_reason("five") == "needs Blender >= 5.0; agents have 3.4"
    sched.add_task("two79", range(5), blender_version="2.79")
    work = sched.request_work("old")
    assert work is not None
    assert work.task_id == "two79", "a newer Blender opens an older file"
    sched.agent_online("new", ["3.4", "5.0"])
    work = sched.request_work("new")
    assert work is not None
    assert work.task_id == "five"
    assert sched.waiting_reason("five") is None


def test_lost_agent_frames_go_back_finished_ones_stay(sched: Scheduler, clock: Clock) -> None:
    sched.add_task("t", range(1, 101), blender_version="4.2")
    sched.agent_online("a", ["4.2"])
    sched.agent_online("b", ["4.2"])
    done = finish(sched, clock, "a", 1.0)
    work = sched.request_work("a")
    assert work is not None
    sched.progress("a", work.attempt, work.frames[0], 0.3)
    clock.now += 16
    sched.seen("b")
    assert sched.expire() == ["a"]
    task = sched.tasks["t"]
    assert all(task.frames[f].state is FrameState.QUEUED for f in work.frames)
    assert all(task.frames[f].state is FrameState.DONE for f in done)
    # b picks the requeued frames up first (they come first in render order).
    again = sched.request_work("b")
    assert again is not None
    assert again.frames[0] == work.frames[0]
    # a comes back and delivers its late frame: accepted once, then a duplicate.
    sched.agent_online("a", ["4.2"])
    assert sched.frame_done("a", "t", work.frames[0], 2.0, work.attempt) is Outcome.ACCEPTED
    assert sched.frame_done("b", "t", work.frames[0], 2.0, again.attempt) is Outcome.DUPLICATE
    assert sched.abandoned("a", [(work.attempt, work.frames[1])]) == [(work.attempt, work.frames[1])]


def test_agent_blocked_after_three_failures_and_task_fails_on_three_agents(sched: Scheduler) -> None:
    sched.add_task("t", range(1, 11), blender_version="3.4")
    for agent in ("a", "b", "c", "d"):
        sched.agent_online(agent, ["3.4"])
    outcomes = []
    for _ in range(3):
        work = sched.request_work("a")
        assert work is not None
        outcomes.append(sched.frame_failed("a", "t", work.frames[0], "Error: boom", work.attempt))
    assert outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.AGENT_BLOCKED]
    assert sched.request_work("a") is None
    # Frame 1 failed on a already; failing on two more agents fails the task, with Blender's words.
    frame = 1
    results = []
    for agent in ("b", "c"):
        work = sched.request_work(agent)
        assert work is not None
        assert frame in work.frames
        results.append(sched.frame_failed(agent, "t", frame, "Error: Build without OpenImageDenoiser", work.attempt))
    assert results == [Outcome.RETRY, Outcome.TASK_FAILED]
    task = sched.tasks["t"]
    assert task.run is TaskRun.FAILED
    assert task.error is not None
    assert "OpenImageDenoiser" in task.error
    assert sched.retry_failed("t") == 1
    assert sched.tasks["t"].run is TaskRun.ACTIVE, "retrying reactivates the task"
    assert sched.request_work("a") is not None, "retrying clears the block list"


def test_failed_frame_goes_to_another_agent(sched: Scheduler) -> None:
    sched.add_task("t", [1, 2], blender_version="3.4")
    sched.agent_online("a", ["3.4"])
    sched.agent_online("b", ["3.4"])
    work = sched.request_work("a")
    assert work is not None
    assert work.frames == [1]
    assert sched.frame_failed("a", "t", 1, "Error: x", work.attempt) is Outcome.RETRY
    work = sched.request_work("a")
    assert work is not None
    assert work.frames == [2], "a does not get back the frame it failed while b can take it"
    work = sched.request_work("b")
    assert work is not None
    assert work.frames == [1]


def render_all(sched: Scheduler, clock: Clock, agent: str, seconds: float) -> Assignment | None:
    """Let ``agent`` render whatever it is given until it gets nothing, or a duplicate (returned)."""
    while True:
        work = sched.request_work(agent, warm_tasks=["t"])
        if work is None or work.duplicate:
            return work
        for frame in work.frames:
            clock.now += seconds
            sched.frame_done(agent, "t", frame, seconds, work.attempt)


def test_end_of_task_duplicate_first_result_wins(sched: Scheduler, clock: Clock) -> None:
    sched.add_task("t", range(1, 41), blender_version="4.2")
    sched.agent_online("fast", ["4.2"])
    sched.agent_online("slow", ["4.2"])
    for _ in range(2):
        finish(sched, clock, "fast", 1.0)
        finish(sched, clock, "slow", 10.0)
    slow = sched.request_work("slow", warm_tasks=["t"])
    assert slow is not None
    assert len(slow.frames) == 1
    assert sched.progress("slow", slow.attempt, slow.frames[0], 0.01)
    assert render_all(sched, clock, "fast", 0.0) is None, "too little progress to judge the frame by"
    clock.now += 2
    assert sched.progress("slow", slow.attempt, slow.frames[0], 0.2)
    dup = sched.request_work("fast", warm_tasks=["t"])
    assert dup is not None
    assert dup.frames == [slow.frames[0]]
    assert dup.duplicate
    assert sched.frame_done("fast", "t", dup.frames[0], 1.0, dup.attempt) is Outcome.ACCEPTED
    assert sched.progress("slow", slow.attempt, slow.frames[0], 0.5) is False, "the slow agent is told to stop"
    assert sched.frame_done("slow", "t", slow.frames[0], 10.0, slow.attempt) is Outcome.DUPLICATE
    assert sched.tasks["t"].run is TaskRun.DONE


def test_no_duplicate_on_one_frame_of_evidence(sched: Scheduler, clock: Clock) -> None:
    """Two equal agents whose first frames differed (a ramped shot) must not duplicate each other."""
    sched.add_task("t", range(1, 21), blender_version="4.2")
    sched.agent_online("a", ["4.2"])
    sched.agent_online("b", ["4.2"])
    finish(sched, clock, "a", 2.0)
    finish(sched, clock, "b", 8.0)
    work = sched.request_work("b", warm_tasks=["t"])
    assert work is not None
    sched.progress("b", work.attempt, work.frames[0], 0.01)
    clock.now += 4
    sched.progress("b", work.attempt, work.frames[0], 0.5)
    assert render_all(sched, clock, "a", 2.0) is None


def test_the_last_frames_go_to_the_agents_that_finish_them_first(sched: Scheduler, clock: Clock) -> None:
    sched.add_task("t", range(1, 9), blender_version="4.2")
    sched.agent_online("fast", ["4.2"])
    sched.agent_online("slow", ["4.2"])
    finish(sched, clock, "fast", 1.0)
    finish(sched, clock, "slow", 10.0)
    held = sched.request_work("fast", warm_tasks=["t"])
    assert held is not None
    assert sched.tasks["t"].queued_count > 0
    assert sched.request_work("slow", warm_tasks=["t"]) is None, "fast would finish every frame left first"
    for frame in held.frames:
        clock.now += 1
        sched.frame_done("fast", "t", frame, 1.0, held.attempt)
    assert render_all(sched, clock, "fast", 1.0) is None
    assert sched.tasks["t"].run is TaskRun.DONE
    assert all(sched.tasks["t"].frames[n].done_by == "fast" for n in range(3, 9))


def test_unstarted_frames_are_moved_not_duplicated(sched: Scheduler, clock: Clock) -> None:
    sched.add_task("t", range(1, 401), blender_version="4.2")
    sched.agent_online("a", ["4.2"])
    sched.agent_online("b", ["4.2"])
    finish(sched, clock, "a", 4.0)
    finish(sched, clock, "b", 1.0)
    held = sched.request_work("a")
    assert held is not None
    assert len(held.frames) > 3
    rest = sched.request_work("b")
    while rest is not None and rest.frames:
        for frame in rest.frames:
            sched.frame_done("b", "t", frame, 1.0, rest.attempt)
        rest = sched.request_work("b", warm_tasks=["t"])
        if rest is not None and rest.duplicate:
            break
    task = sched.tasks["t"]
    renders = sum(f.renders for f in task.frames.values())
    assert renders <= len(task.frames)
    moved = sched.abandoned("a", [(held.attempt, f) for f in held.frames])
    assert moved, "a is told which frames moved"
    assert (held.attempt, held.frames[0]) not in moved, "not the frame a begins within a heartbeat or two"


def test_stalled_frame(clock: Clock) -> None:
    sched = Scheduler(clock)
    sched.add_task("t", [1], blender_version="4.2", frame_timeout_s=60)
    sched.agent_online("a", ["4.2"])
    work = sched.request_work("a")
    assert work is not None
    sched.progress("a", work.attempt, 1, 0.2)
    clock.now += 30
    assert sched.stalled() == []
    clock.now += 31
    stalled = sched.stalled()
    assert [(lease.attempt, frame) for lease, frame in stalled] == [(work.attempt, 1)]


def test_pause_resume_cancel(sched: Scheduler) -> None:
    sched.add_task("t", range(10), blender_version="4.2")
    sched.agent_online("a", ["4.2"])
    sched.pause_task("t")
    assert sched.request_work("a") is None
    sched.resume_task("t")
    work = sched.request_work("a")
    assert work is not None
    dropped = sched.cancel_task("t")
    assert [lease.attempt for lease in dropped] == [work.attempt]
    assert sched.progress("a", work.attempt, work.frames[0], 0.5) is False
    assert sched.frame_done("a", "t", work.frames[0], 1.0, work.attempt) is Outcome.UNKNOWN


def test_restart_keeps_done_frames(sched: Scheduler) -> None:
    sched.add_task("t", range(1, 6), blender_version="4.2", done={1: 2.0, 2: 2.0})
    sched.agent_online("a", ["4.2"])
    work = sched.request_work("a")
    assert work is not None
    assert 1 not in work.frames
    assert 2 not in work.frames


def test_every_frame_exactly_once_with_mixed_speeds(sched: Scheduler, clock: Clock) -> None:
    sched.add_task("t", range(1, 301), blender_version="4.2")
    speeds = {"a": 1.0, "b": 2.0, "c": 4.0}
    for agent in speeds:
        sched.agent_online(agent, ["4.2"])
    # A tiny discrete-event loop: each agent renders its queue, one frame per step of its own duration.
    busy_until = dict.fromkeys(speeds, clock.now)
    queues: dict[str, tuple[str, list[int]]] = {}
    delivered: list[int] = []
    for _ in range(10_000):
        if sched.tasks["t"].run is TaskRun.DONE:
            break
        agent = min(busy_until, key=lambda a: busy_until[a])
        clock.now = busy_until[agent]
        if agent not in queues or not queues[agent][1]:
            work = sched.request_work(agent, warm_tasks=["t"])
            if work is None:
                busy_until[agent] += 0.5
                continue
            queues[agent] = (work.attempt, list(work.frames))
        attempt, frames = queues[agent]
        frame = frames.pop(0)
        if not sched.progress(agent, attempt, frame, 0.0):
            continue
        busy_until[agent] += speeds[agent]
        clock.now = busy_until[agent]
        if sched.frame_done(agent, "t", frame, speeds[agent], attempt) is Outcome.ACCEPTED:
            delivered.append(frame)
    assert sorted(delivered) == list(range(1, 301))
    shares = {agent: share for agent, share, _ in sched.workers("t")}
    assert shares["c"] < shares["b"] < shares["a"], "faster agents render more"
    assert abs(sum(shares.values()) - 1.0) < 1e-9


def test_chunks_top_up_what_the_agent_holds() -> None:
    policy = ChunkPolicy()
    full = adaptive_chunk_frames(policy, 1.0, 1000, 2.0)
    assert adaptive_chunk_frames(policy, 1.0, 1000, 2.0, queued_frames=5) == full - 5
    assert adaptive_chunk_frames(policy, 1.0, 3, 3.0, queued_frames=1) == 0, "at the end: nothing more to hold"


def test_even_share() -> None:
    assert even_share_frames(100, 4) == 25
    assert even_share_frames(75, 3) == 25
    assert even_share_frames(10, 0) == 10
    assert even_share_frames(0, 3) == 0


def test_static_split_gives_each_agent_present_one_contiguous_share(clock: Clock) -> None:
    sched = Scheduler(clock, ChunkPolicy(split_evenly=True), duplicates=False)
    sched.add_task("t", range(1, 101), blender_version="4.2")
    for agent in "abcd":
        sched.agent_online(agent, ["4.2"])
    shares = []
    for agent in "abcd":
        work = sched.request_work(agent)
        assert work is not None
        shares.append(work.frames)
    assert shares == [list(range(1 + 25 * i, 26 + 25 * i)) for i in range(4)]
    sched.agent_online("late", ["4.2"])
    assert sched.request_work("late") is None


def test_counts_follow_every_state_change(sched: Scheduler, clock: Clock) -> None:
    sched.add_task("t", range(1, 21), blender_version="4.2", done={1: 1.0})
    sched.agent_online("a", ["4.2"])
    sched.agent_online("b", ["4.2"])
    finish(sched, clock, "a", 1.0)
    work = sched.request_work("a")
    assert work is not None
    sched.progress("a", work.attempt, work.frames[0], 0.5)
    sched.frame_failed("a", "t", work.frames[0], "Error: x", work.attempt)
    other = sched.request_work("b")
    assert other is not None
    clock.now += 16
    sched.seen("b")
    sched.expire()
    task = sched.tasks["t"]
    for state in FrameState:
        assert task.counts[state] == sum(1 for f in task.frames.values() if f.state is state), state
    assert task.done_count == 2
    first_queued = next(task.queued())
    assert all(task.frames[n].state is not FrameState.QUEUED for n in task.order[: task.order.index(first_queued)])


def test_a_lease_the_agent_stopped_mentioning_goes_back(sched: Scheduler, clock: Clock) -> None:
    """An agent restarted before the manager noticed: it no longer holds its frames, though it is online."""
    sched.add_task("t", range(1, 41), blender_version="4.2")
    sched.agent_online("a", ["4.2"])
    finish(sched, clock, "a", 1.0)
    old = sched.request_work("a")
    assert old is not None
    sched.progress("a", old.attempt, old.frames[0], 0.1)
    sched.agent_online("a", ["4.2"])  # hello again after the restart
    for _ in range(15):  # it heartbeats, holding nothing of the old lease
        clock.now += 2
        sched.seen("a")
        assert sched.abandoned("a", []) == []
        sched.expire()
    assert old.attempt in sched.leases, "kept while it might still be mentioned"
    for _ in range(2):
        clock.now += 2
        sched.seen("a")
        sched.expire()
    assert old.attempt not in sched.leases
    assert all(sched.tasks["t"].frames[n].state is FrameState.QUEUED for n in old.frames)


def test_a_lease_still_mentioned_is_kept(sched: Scheduler, clock: Clock) -> None:
    sched.add_task("t", range(1, 41), blender_version="4.2")
    sched.agent_online("a", ["4.2"])
    finish(sched, clock, "a", 1.0)
    work = sched.request_work("a")
    assert work is not None
    for _ in range(40):
        clock.now += 2
        assert sched.progress("a", work.attempt, work.frames[0], 0.5)
        assert sched.abandoned("a", [(work.attempt, f) for f in work.frames[1:]]) == []
        sched.expire()
    assert work.attempt in sched.leases


def test_startup_is_learned_from_the_first_result(sched: Scheduler, clock: Clock) -> None:
    sched.add_task("t", range(1, 11), blender_version="4.2")
    sched.agent_online("a", ["4.2"])
    work = sched.request_work("a")
    assert work is not None
    clock.now += 7.0 + 3.0  # Blender starts in 7 s, the frame renders in 3 s
    sched.frame_done("a", "t", work.frames[0], 3.0, work.attempt)
    assert sched.agents["a"].startup_s == pytest.approx(7.0)
    warm = sched.request_work("a", warm_tasks=["t"])
    assert warm is not None
    clock.now += 3.0 * len(warm.frames)
    for frame in warm.frames:
        sched.frame_done("a", "t", frame, 3.0, warm.attempt)
    assert sched.agents["a"].startup_s == pytest.approx(7.0), "a warm agent's results say nothing of start-up"


def test_a_heavy_frame_on_a_slow_agent_is_moved_to_a_fast_one(sched: Scheduler, clock: Clock) -> None:
    sched.add_task("t", range(1, 31), blender_version="4.2")
    sched.agent_online("fast", ["4.2"])
    sched.agent_online("slow", ["4.2"])
    for _ in range(2):
        finish(sched, clock, "fast", 1.0)
        finish(sched, clock, "slow", 4.0)
    heavy = sched.request_work("slow", warm_tasks=["t"])
    assert heavy is not None
    frame = heavy.frames[0]
    assert sched.progress("slow", heavy.attempt, frame, 0.01)
    clock.now += 8
    assert sched.progress("slow", heavy.attempt, frame, 0.11)  # 80 s on an agent that takes 4 s a frame
    assert sched.tasks["t"].queued_count > 0
    moved = sched.request_work("fast", warm_tasks=["t"])
    assert moved is not None
    assert moved.frames == [frame]
    assert moved.preempted
    assert not moved.duplicate
    assert sched.progress("slow", heavy.attempt, frame, 0.2) is False, "the slow agent drops it"
    assert sched.frame_done("fast", "t", frame, 20.0, moved.attempt) is Outcome.ACCEPTED


def test_an_ordinary_frame_is_not_moved(sched: Scheduler, clock: Clock) -> None:
    sched.add_task("t", range(1, 31), blender_version="4.2")
    sched.agent_online("fast", ["4.2"])
    sched.agent_online("slow", ["4.2"])
    for _ in range(2):
        finish(sched, clock, "fast", 1.0)
        finish(sched, clock, "slow", 4.0)
    work = sched.request_work("slow", warm_tasks=["t"])
    assert work is not None
    sched.progress("slow", work.attempt, work.frames[0], 0.01)
    clock.now += 2
    sched.progress("slow", work.attempt, work.frames[0], 0.5)
    other = sched.request_work("fast", warm_tasks=["t"])
    assert other is not None
    assert not other.preempted
    assert work.frames[0] not in other.frames


def test_a_slow_agent_at_zero_percent_does_not_hold_the_task_back(sched: Scheduler, clock: Clock) -> None:
    """Issue #7 (multihost scenario 6): a3's Blender starts 4x slower, so the first frame it was given sits at 0 %
    (a started frame without a progress rate) while a1 and a2 render everything else; once they run out of work,
    one of them duplicates it instead of waiting for a3."""
    sched.add_task("t", range(1, 13), blender_version="4.2")
    for name in ("a1", "a2", "a3"):
        sched.agent_online(name, ["4.2"])
    first = {name: sched.request_work(name) for name in ("a1", "a2", "a3")}
    clock.now += 0.5
    for name, work in first.items():
        assert work is not None
        assert len(work.frames) == 1
        assert sched.progress(name, work.attempt, work.frames[0], 0.0), "Blender starting"
    slow = first["a3"]
    assert slow is not None
    held = slow.frames[0]
    clock.now += 1.5  # a1 and a2: Blender started in 1.5 s, the frame rendered in 0.5 s
    for name in ("a1", "a2"):
        work = first[name]
        assert work is not None
        assert sched.frame_done(name, "t", work.frames[0], 0.5, work.attempt) is Outcome.ACCEPTED
    queues: dict[str, list[tuple[str, int]]] = {"a1": [], "a2": []}
    task = sched.tasks["t"]
    only_a3_left: float | None = None
    dup: tuple[str, Assignment] | None = None
    beat = clock.now
    while dup is None and clock.now < 1060:
        for name, queue in queues.items():
            if not queue:
                work = sched.request_work(name, warm_tasks=["t"])
                if work is not None and work.duplicate:
                    dup = (name, work)
                    break
                if work is not None:
                    queue += [(work.attempt, f) for f in work.frames]
        clock.now += 0.5
        for name, queue in queues.items():
            if queue:
                attempt, frame = queue.pop(0)
                assert sched.frame_done(name, "t", frame, 0.5, attempt) is Outcome.ACCEPTED
        if only_a3_left is None and task.done_count == len(task.frames) - 1:
            only_a3_left = clock.now
        if clock.now - beat >= 2.0:
            beat = clock.now
            assert sched.progress("a3", slow.attempt, held, 0.0), "still loading: a3 keeps its frame"
    assert dup is not None, "a1 or a2 took over what a3 held"
    assert only_a3_left is not None
    assert clock.now - only_a3_left < 4.0, "within the multihost scenario's 4 s (an idle agent asks every second)"
    name, work = dup
    assert work.frames == [held]
    assert sched.frame_done(name, "t", held, 0.5, work.attempt) is Outcome.ACCEPTED
    assert task.run is TaskRun.DONE
    assert sched.progress("a3", slow.attempt, held, 0.0) is False, "a3 is told to drop it"
    assert task.frames[held].done_by == name


def start_one_frame_each(sched: Scheduler, clock: Clock, agents: list[str], frames: int) -> dict[str, Assignment]:
    """More agents than frames: each of the first ``frames`` agents is given one frame and starts it at once."""
    sched.add_task("t", range(1, frames + 1), blender_version="4.2")
    for name in agents:
        sched.agent_online(name, ["4.2"])
    given: dict[str, Assignment] = {}
    for name in agents:
        work = sched.request_work(name)
        if work is not None:
            assert len(work.frames) == 1
            given[name] = work
            assert sched.progress(name, work.attempt, work.frames[0], 0.01)
    return given


def test_a_heavy_frame_on_an_unmeasured_agent_is_duplicated_then_the_slower_copy_stopped(
    sched: Scheduler, clock: Clock
) -> None:
    """Issue #6, farm f12: more agents than frames, so nobody is measured when it matters, and a 20x frame went to
    a slow agent. The fastest idle agent duplicates the frame that sets the task's end (not a slow agent's
    ordinary frame, done long before it), and once both copies show a progress rate the slower one is stopped."""
    given = start_one_frame_each(sched, clock, ["heavy", "fast", "mid", "plain"], 4)
    clock.now += 5
    assert sched.frame_done("fast", "t", given["fast"].frames[0], 5.0, given["fast"].attempt) is Outcome.ACCEPTED
    clock.now += 5
    assert sched.frame_done("mid", "t", given["mid"].frames[0], 10.0, given["mid"].attempt) is Outcome.ACCEPTED
    heavy, plain = given["heavy"], given["plain"]
    assert sched.request_work("fast", warm_tasks=["t"]) is None, "no progress rate yet: nothing to judge"
    clock.now += 2
    assert sched.progress("heavy", heavy.attempt, heavy.frames[0], 0.022)  # 1000 s for the frame here
    assert sched.progress("plain", plain.attempt, plain.frames[0], 0.4)  # 30 s: done long before it
    assert sched.request_work("mid", warm_tasks=["t"]) is None, "left to the idle agent measured faster"
    dup = sched.request_work("fast", warm_tasks=["t"])
    assert dup is not None
    assert dup.duplicate
    assert dup.frames == heavy.frames
    assert sched.request_work("mid", warm_tasks=["t"]) is None, "the slow agent's ordinary frame is left alone"
    clock.now += 2
    assert sched.progress("fast", dup.attempt, heavy.frames[0], 0.01)
    clock.now += 10
    assert sched.progress("heavy", heavy.attempt, heavy.frames[0], 0.034)
    assert sched.progress("fast", dup.attempt, heavy.frames[0], 0.11), "100 s for the frame here: it is kept"
    assert sched.progress("heavy", heavy.attempt, heavy.frames[0], 0.034) is False, "the slower copy is stopped"
    assert sched.tasks["t"].frames[heavy.frames[0]].timed == {"heavy": pytest.approx(1000.0)}
    assert sched.frame_done("fast", "t", heavy.frames[0], 100.0, dup.attempt) is Outcome.ACCEPTED


def test_a_duplicate_that_turns_out_slower_is_stopped_and_not_tried_again(sched: Scheduler, clock: Clock) -> None:
    """The frame was heavy, not its agent slow: the duplicate shows it renders the frame no faster, so it is the
    copy stopped, and neither it nor an idle agent measured as fast duplicates the frame again."""
    given = start_one_frame_each(sched, clock, ["owner", "a", "b"], 3)
    clock.now += 10
    for name in ("a", "b"):
        assert sched.frame_done(name, "t", given[name].frames[0], 10.0, given[name].attempt) is Outcome.ACCEPTED
    owner = given["owner"]
    clock.now += 2
    assert sched.progress("owner", owner.attempt, owner.frames[0], 0.12)  # 100 s for the frame
    dup = sched.request_work("a", warm_tasks=["t"])
    assert dup is not None
    assert dup.duplicate
    clock.now += 2
    assert sched.progress("a", dup.attempt, owner.frames[0], 0.01)
    clock.now += 10
    assert sched.progress("owner", owner.attempt, owner.frames[0], 0.24)
    assert sched.progress("a", dup.attempt, owner.frames[0], 0.11) is False, "as slow, and 10 s behind: stopped"
    assert sched.request_work("a", warm_tasks=["t"]) is None
    assert sched.request_work("b", warm_tasks=["t"]) is None, "timed on a, b would be no faster"
    assert sched.progress("owner", owner.attempt, owner.frames[0], 0.36)
