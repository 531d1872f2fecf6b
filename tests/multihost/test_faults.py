"""Fault tolerance on a LAN of network namespaces: issue 7's scenarios 1-7.

Each scenario builds its own LAN (a manager and 3 agent hosts on a bridge), lets zeroconf find the agents,
injects its fault and ends with :meth:`Farm.check_result` (each frame exactly once, every image decodes, the
video's frame count, the stage) and with no process of the scenario left (``farm_on_a_lan``). A scenario that
found a bug runs once in a module fixture, and its outcome is checked by passing tests (and, while a bug is
open, by a test marked ``xfail(strict=True)`` that names it). Heartbeat timeouts are 4 s instead of the default
15 s so that the file fits a CI budget; fault durations scale with it.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent import protocol as p
from tests.integration.farm import processes_mentioning, wait_for

from .lan import Agent, Farm, Slowdown, crashing_blender, farm_on_a_lan, fill, frozen, parse_time

pytestmark = [pytest.mark.multihost, pytest.mark.blender, pytest.mark.slow]

HEARTBEAT_TIMEOUT = 4.0
PAGE = 4096
"""tmpfs allocates whole pages."""
MAINTENANCE_TICK = 1.0
"""The manager looks for silent agents once a second (``FarmService.start``)."""


def held_by(farm: Farm, key: str, agent_id: str) -> set[int]:
    """Frames the manager has given this agent and not got back yet."""
    return {
        f["frame"] for f in farm.api.frames(key) if f["agent"] == agent_id and f["state"] in ("assigned", "rendering")
    }


def done(farm: Farm, key: str) -> list[dict[str, Any]]:
    return [f for f in farm.api.frames(key) if f["state"] == "done"]


def mid_frame(farm: Farm, name: str, key: str) -> bool:
    """Whether this agent renders a frame of this task: it has delivered one already (so it has the file and a
    warm Blender) and its last heartbeat reported another in progress. (Blender 3.4 in the background prints
    sample counts about once a second, so the progress of a sub-second frame reads 0 until it is done.)"""
    agent = next(a for a in farm.api.agents() if a["name"] == name)
    return any(c["task"] == key for c in agent["current"]) and any(
        f["agent"] == agent["agent"] and f["state"] == "done" for f in farm.api.frames(key)
    )


def test_agent_killed_mid_frame(tmp_path: Path, lan_scenes: Path) -> None:
    """Scenario 1: SIGKILL an agent mid-frame; its frames are requeued within the heartbeat timeout and rendered
    by the others."""
    with farm_on_a_lan(tmp_path, ["a1", "a2", "a3"], HEARTBEAT_TIMEOUT) as farm:
        farm.start()
        victim = farm.agents["a2"]
        victim_id = farm.api.agent_id("a2")
        key = farm.api.submit(lan_scenes / "medium_mkv.blend", frame_end=30)
        wait_for("a2 to be mid-frame", lambda: mid_frame(farm, "a2", key), 90, 0.1)
        lost = held_by(farm, key, victim_id)
        assert lost, "a2 holds frames"
        victim.kill()  # the agent's process group; its Blender dies with it (PR_SET_PDEATHSIG)
        killed_at = time.monotonic()
        wait_for("a2's Blender to die with it", lambda: not processes_mentioning(str(victim.work_dir)), 5, 0.1)
        wait_for("a2's frames to go back to the queue", lambda: not held_by(farm, key, victim_id), 30, 0.1)
        requeued_after = time.monotonic() - killed_at

        def taken_over() -> bool:
            frames = {f["frame"]: f for f in farm.api.frames(key)}
            return all(frames[n]["agent"] not in (None, victim_id) for n in lost)

        wait_for("another agent to take a2's frames", taken_over, 30, 0.1)
        taken_after = time.monotonic() - killed_at
        assert requeued_after < HEARTBEAT_TIMEOUT + 2 * MAINTENANCE_TICK + 1, requeued_after
        farm.api.wait_stage(key, {"finished", "failed"}, 180)
        farm.check_result(key, range(1, 31), video=True)
        done_by = {f["frame"]: f["agent"] for f in farm.api.frames(key)}
        assert all(done_by[n] != victim_id for n in lost), "the frames a2 held were rendered elsewhere"
        print(
            f"a2 killed holding {sorted(lost)}: requeued after {requeued_after:.1f} s, "
            f"taken by another agent after {taken_after:.1f} s"
        )


def uploads(agent: Agent, key: str) -> list[tuple[datetime, int]]:
    """(when, frame) of every frame upload in the agent's log (httpx logs each request)."""
    pattern = re.compile(rf"^(\S+ \S+) httpx HTTP Request: PUT \S+/tasks/{key}/frames/(-?\d+) ", re.MULTILINE)
    return [(parse_time(m.group(1)), int(m.group(2))) for m in pattern.finditer(agent.log())]


@dataclass
class LinkCutRun:
    victim_id: str
    cut_before_download: bool
    download_cut_errors: list[dict[str, Any]]
    """a1's error events from the first cut (made while it fetched the task's file) until the second."""
    held: set[int]
    gave_up_s: float
    back_after_s: float
    work_after_s: float
    late: set[int]
    """Frames a1 held at the second cut and uploaded after the link came back."""
    done_by: dict[int, str]
    frames_done: int


@pytest.fixture(scope="module")
def link_cuts(lan_ready: None, tmp_path_factory: pytest.TempPathFactory, lan_scenes: Path) -> LinkCutRun:
    """Scenario 2, run once for the two tests below. a1's cable is pulled twice: for 2 heartbeat timeouts the
    moment it is given its first frames (it is fetching the task's file), and for 3 timeouts (12 s; the issue's
    30 s is 2x the default 15 s timeout) while it renders a frame."""
    root = tmp_path_factory.mktemp("link-cuts")
    frames = 200  # enough that a1 comes back before a2 and a3 have done them all (~0.3 s a frame)
    with farm_on_a_lan(root, ["a1", "a2", "a3"], HEARTBEAT_TIMEOUT) as farm:
        farm.start()
        victim = farm.agents["a1"]
        victim_id = farm.api.agent_id("a1")
        key = farm.api.submit(lan_scenes / "medium.blend", frame_end=frames)
        wait_for("a1's first frames", lambda: victim.assignments(key), 60, 0.01)
        farm.lan.cut(victim.host)
        first_cut = datetime.now()
        cut_before_download = "/api/agent/v1/files/" not in victim.log()
        time.sleep(2 * HEARTBEAT_TIMEOUT)
        farm.lan.restore(victim.host)

        wait_for("a1 to be mid-frame", lambda: mid_frame(farm, "a1", key), 90, 0.1)
        held = held_by(farm, key, victim_id)
        farm.lan.cut(victim.host)
        second_cut = datetime.now(UTC).isoformat()
        cut_at = time.monotonic()
        wait_for("the manager to give a1 up", lambda: "a1" not in farm.api.online(), HEARTBEAT_TIMEOUT + 5, 0.1)
        gave_up = time.monotonic() - cut_at
        assert not held_by(farm, key, victim_id), "a1's frames went back to the queue"
        time.sleep(max(0.0, cut_at + 3 * HEARTBEAT_TIMEOUT - time.monotonic()))
        farm.lan.restore(victim.host)
        restored = datetime.now()
        restored_at = time.monotonic()
        # New work for a1 whether or not the first task still has queued frames by the time a1 is back.
        more = farm.api.submit(lan_scenes / "medium.blend", frame_end=12)
        wait_for("a1 to be back", lambda: "a1" in farm.api.online(), 60, 0.2)
        back_after = time.monotonic() - restored_at

        def new_work() -> bool:
            return any(when > restored for task in (key, more) for when, _ in victim.assignments(task))

        wait_for("a1 to take new work", new_work, 60, 0.2)
        work_after = time.monotonic() - restored_at
        farm.api.wait_stage(key, {"finished", "failed"}, 180)
        farm.check_result(key, range(1, frames + 1), video=False)
        farm.api.wait_stage(more, {"finished", "failed"}, 180)
        farm.check_result(more, range(1, 13), video=False)
        events = farm.api.events(key)
        first_cut_utc = first_cut.astimezone(UTC).isoformat()
        return LinkCutRun(
            victim_id,
            cut_before_download,
            [
                e
                for e in events
                if e["level"] == "error" and e["agent"] == victim_id and first_cut_utc < e["at"] < second_cut
            ],
            held,
            gave_up,
            back_after,
            work_after,
            {frame for when, frame in uploads(victim, key) if when > restored} & held,
            {f["frame"]: f["agent"] for f in farm.api.frames(key)},
            farm.api.progress(key)["frames_done"],
        )


def test_link_cut_then_restored(link_cuts: LinkCutRun) -> None:
    """Scenario 2: the manager gives a1 up within the heartbeat timeout and moves its frames; a1, unaware,
    finishes what it held and uploads it when the link returns; those late frames are dropped (others had done
    them: each frame is stored once); a1 then takes new work at once."""
    run = link_cuts
    assert run.gave_up_s < HEARTBEAT_TIMEOUT + 2 * MAINTENANCE_TICK + 1
    assert run.late, f"a1 delivered what it held ({sorted(run.held)}) after the link came back"
    assert all(run.done_by[n] != run.victim_id for n in run.late), "late frames were dropped: others had done them"
    assert run.frames_done == len(run.done_by)
    assert run.work_after_s < 5
    print(
        f"a1 cut mid-frame holding {sorted(run.held)}: given up after {run.gave_up_s:.1f} s; after the restore "
        f"back in {run.back_after_s:.1f} s, new work in {run.work_after_s:.1f} s; late uploads {sorted(run.late)}"
    )


def test_link_cut_while_fetching_the_file_is_no_render_failure(link_cuts: LinkCutRun) -> None:
    """Scenario 2: a cable pulled while a1 downloads the task's file is a network fault, not a frame that a1
    cannot render: a1 must not be blamed for it."""
    if not link_cuts.cut_before_download:
        pytest.skip("timing: a1 had fetched the file before the cable was pulled")
    assert link_cuts.download_cut_errors == []


def idle_since(agent: Agent, when: datetime) -> bool:
    """Whether the agent's worker, with the manager down since ``when``, has run out of frames: it asks the
    manager for work, fails, and says hello again only when it holds none (``AgentCore._work_loop``)."""
    return agent.logged_since(when, "manager unreachable")


@dataclass
class RestartRun:
    rendered_again: dict[str, list[int]]
    done_before: int
    back_after_s: float
    crasher_errors: list[str]
    """``at`` of each error event of a3, in order."""
    crasher_taken_off: list[str]
    errors_before_kill: int


@pytest.fixture(scope="module")
def manager_restart(lan_ready: None, tmp_path_factory: pytest.TempPathFactory, lan_scenes: Path) -> RestartRun:
    """Scenario 3, run once for the two tests below. a3's Blender crashes on every frame of the task, so the
    kill falls between its first and third failure.

    a3 takes 3-4 s a try (its Blender starts anew after each crash), a1 and a2 well under a second a frame:
    left to their speeds, a1 and a2 could finish the task before a3's third try (1 run in 3 did). So the order
    is set, not raced: a1's and a2's Blenders are frozen (SIGSTOP) from their 4th frame until a3's first crash;
    just before the kill the three agents are disabled (the restarted manager reads that from its database,
    so it gives none of them work); a1 and a2 render what they hold while the manager is down, and deliver it
    from their outboxes once it is back; only then is a3 enabled, alone, until it is taken off, and then a1
    and a2 finish the task. A frame a1 or a2 delivered while a3 was failing it would be no failure of a3's
    (the frame was done) but still an error in the task's log, so the two must not overlap.
    """
    root = tmp_path_factory.mktemp("manager-restart")
    video = lan_scenes / "medium_mkv.blend"
    last = 48
    with farm_on_a_lan(root, ["a1", "a2", "a3"], HEARTBEAT_TIMEOUT) as farm:
        farm.start(options={"a3": {"blender": str(crashing_blender(root / "bin", video))}})
        ids = {name: farm.api.agent_id(name) for name in farm.agents}
        crasher = ids["a3"]
        others = (farm.agents["a1"], farm.agents["a2"])
        key = farm.api.submit(video, frame_end=last)

        def crashes() -> list[dict[str, Any]]:
            return [e for e in farm.api.events(key) if e["level"] == "error" and e["agent"] == crasher]

        def taken_off() -> bool:
            return any(
                e["level"] == "warning" and e["agent"] == crasher and "taken off" in e["message"]
                for e in farm.api.events(key)
            )

        wait_for("4 finished frames", lambda: farm.api.progress(key)["frames_done"] >= 4, 120, 0.1)
        with frozen(*others):
            wait_for("a3's first crash", crashes, 60, 0.1)
            for agent_id in ids.values():
                farm.api.post(f"/api/agents/{agent_id}/disable/")
            # At once: a3's next try needs a new Blender (3 s), so the kill falls before its second crash.
            farm.kill_manager()
            killed, killed_utc = datetime.now(), datetime.now(UTC).isoformat()  # agents' logs, manager's events
        # The agents finish what they hold; their outboxes keep the frames. With the manager down, an agent's
        # worker tries to say hello again only once it has no frame left.
        wait_for("a1 and a2 to render what they hold", lambda: all(idle_since(a, killed) for a in others), 60, 0.2)
        on_disk = {int(f.stem.removeprefix("frame_")) for f in farm.frames_dir(key).glob("frame_*.png")}
        outboxes = {
            a.name: sorted(int(f.stem.split("-", 1)[1]) for f in a.outbox() if f.suffix == ".json") for a in others
        }
        farm.start_manager()
        restarted_at = time.monotonic()
        farm.wait_online(set(farm.agents), 60)
        back_after = time.monotonic() - restarted_at
        # A frame is done for the restarted manager exactly when its file was stored before the kill.
        assert farm.api.done(key) >= on_disk
        wait_for("a1 and a2 to deliver their outboxes", lambda: not any(a.outbox() for a in others), 60, 0.2)
        assert farm.api.progress(key)["stage"] == "rendering", "frames are left for a3 to fail"
        farm.api.post(f"/api/agents/{crasher}/enable/")
        wait_for("a3 to be taken off the task", taken_off, 90, 0.1)
        for name in ("a1", "a2"):
            farm.api.post(f"/api/agents/{ids[name]}/enable/")
        farm.api.wait_stage(key, {"finished", "failed"}, 180)
        farm.check_result(key, range(1, last + 1), video=True)
        assert all(agent.alive() for agent in farm.agents.values()), "no agent was restarted"
        events = farm.api.events(key)
        print(f"frames delivered from the outboxes after the restart: {outboxes}")
        return RestartRun(
            {
                name: sorted({n for when, frames in agent.assignments(key) if when > killed for n in frames} & on_disk)
                for name, agent in farm.agents.items()
            },
            len(on_disk),
            back_after,
            [e["at"] for e in events if e["level"] == "error" and e["agent"] == crasher],
            [
                e["at"]
                for e in events
                if e["level"] == "warning" and e["agent"] == crasher and "taken off" in e["message"]
            ],
            len([e for e in events if e["level"] == "error" and e["agent"] == crasher and e["at"] < killed_utc]),
        )


def test_manager_killed_mid_task_and_restarted(manager_restart: RestartRun) -> None:
    """Scenario 3: SIGKILL the manager mid-task, restart it with the same data directory: the agents come back
    by themselves, the task finishes, and no frame finished before the kill is handed out again."""
    assert manager_restart.rendered_again == {"a1": [], "a2": [], "a3": []}, "finished frames rendered again"
    assert manager_restart.done_before >= 4
    run = manager_restart
    print(f"{run.done_before} frames done before the kill; agents back {run.back_after_s:.1f} s after the restart")


def test_manager_restart_keeps_failure_counts(manager_restart: RestartRun) -> None:
    """Scenario 3: a3, which crashes on every frame, is taken off after 3 failures in all, restart or not."""
    assert 1 <= manager_restart.errors_before_kill < 3
    assert manager_restart.crasher_taken_off, "a3 was taken off the task"
    first = manager_restart.crasher_taken_off[0]
    assert len([at for at in manager_restart.crasher_errors if at <= first]) == 3, manager_restart


def test_blender_crashing_on_one_agent(tmp_path: Path, lan_scenes: Path) -> None:
    """Scenario 4: a3's Blender crashes (a real SIGSEGV) on every frame of one file. Each frame it crashed on is
    rendered by another agent; after 3 crashes a3 is taken off the task; the error reaches the task's events.
    Beside it, a file whose every frame fails (denoising on Debian's 3.4) fails its task once a frame failed on
    3 agents, with Blender's own error text in the API."""
    medium = lan_scenes / "medium.blend"
    wrapper = crashing_blender(tmp_path / "bin", medium)
    with farm_on_a_lan(tmp_path, ["a1", "a2", "a3"], HEARTBEAT_TIMEOUT) as farm:
        farm.start(options={"a3": {"blender": str(wrapper)}})
        crasher = farm.api.agent_id("a3")
        broken = farm.api.submit(lan_scenes / "denoise.blend")
        key = farm.api.submit(medium, frame_end=30)
        failed = farm.api.wait_stage(broken, {"finished", "failed"}, 120)
        farm.api.wait_stage(key, {"finished", "failed"}, 180)
        farm.check_result(key, range(1, 31), video=False)

        events = farm.api.events(key)
        crashes = [e for e in events if e["level"] == "error" and e["agent"] == crasher]
        assert len(crashes) >= 3, events
        assert all(e["fault"] == "crash" and "exited with status -11" in e["message"] for e in crashes), crashes
        assert any("crash report" in line for e in crashes for line in e["log_tail"]), "Blender's own report"
        taken_off = [e["agent"] for e in events if e["level"] == "warning" and "taken off" in e["message"]]
        assert taken_off == [crasher], "a3 taken off the task, once"
        done_by = {f["frame"]: f["agent"] for f in farm.api.frames(key)}
        assert {done_by[e["frame"]] for e in crashes}.isdisjoint({crasher}), "crashed frames rendered elsewhere"
        assert all(a != crasher for a in done_by.values()), "a3 delivered nothing of this file"
        assert len(farm.agents["a3"].assigned_frames(key)) <= 4, "no work for a3 once taken off (<= 1 in flight)"

        assert failed["stage"] == "failed"
        assert "Build without OpenImageDenoiser" in (failed["error"] or ""), failed
        task = farm.api.task(broken)
        assert task["stage"] == "failed"
        assert "Build without OpenImageDenoiser" in task["error"]
        denoise_errors = [e for e in farm.api.events(broken) if e["level"] == "error"]
        assert {e["fault"] for e in denoise_errors} == {"denoiser-unavailable"}
        assert len({e["agent"] for e in denoise_errors}) == 3, "the frame failed the task on its third agent"
        assert not farm.frames_dir(broken).exists() or not list(farm.frames_dir(broken).iterdir())
        print(f"a3 crashed on frames {sorted(e['frame'] for e in crashes)}; the denoising task: {task['error']}")


@dataclass
class DiskFullRun:
    victim_id: str
    events: list[dict[str, Any]]
    done_by: dict[int, str]
    failed_frames: list[int]
    left_on_disk: list[str]
    nearly_full_finished: bool
    """The second task, on a disk with room for one frame but not for the agent's note about it, finished."""
    nearly_full_stuck: list[int]
    worker_died: bool


@pytest.fixture(scope="module")
def disk_full(lan_ready: None, tmp_path_factory: pytest.TempPathFactory, lan_scenes: Path) -> DiskFullRun:
    """Scenario 5, run once for the tests below. a1 works on a 4 MB tmpfs. It fills up while a1 renders the
    first task; then one 4 KB page is freed (a frame of this scene fits in it) and a second task is submitted."""
    root = tmp_path_factory.mktemp("disk-full")
    with farm_on_a_lan(root, ["a1", "a2", "a3"], HEARTBEAT_TIMEOUT) as farm:
        disk = farm.lan.small_disk(root / "agents" / "a1" / "disk", "4m")
        farm.start(options={"a1": {"work_dir": disk}})
        victim_id = farm.api.agent_id("a1")
        key = farm.api.submit(lan_scenes / "medium.blend", frame_end=30)
        wait_for("a1 to deliver a frame", lambda: victim_id in {f["agent"] for f in done(farm, key)}, 90, 0.2)
        filler = fill(disk)
        farm.api.wait_stage(key, {"finished", "failed"}, 180)
        farm.check_result(key, range(1, 31), video=False)
        events = farm.api.events(key)
        left_on_disk = sorted(str(f.relative_to(disk)) for f in disk.rglob("*") if f.is_file())

        assert max(f.stat().st_size for f in farm.frames_dir(key).iterdir()) <= PAGE, "a frame fits in a page"
        os.truncate(filler, filler.stat().st_size - PAGE)
        nearly = farm.api.submit(lan_scenes / "medium.blend", frame_end=12)

        def only_a1_left() -> bool:
            pending = [f for f in farm.api.frames(nearly) if f["state"] != "done"]
            return all(f["agent"] == victim_id for f in pending)

        wait_for("the others to run out of work", only_a1_left, 90, 0.2)
        finished = True
        try:
            farm.api.wait_stage(nearly, {"finished"}, 3 * HEARTBEAT_TIMEOUT)
        except AssertionError:
            finished = False
        else:
            farm.check_result(nearly, range(1, 13), video=False)
        return DiskFullRun(
            victim_id,
            events,
            {f["frame"]: f["agent"] for f in farm.api.frames(key)},
            [e["frame"] for e in events if e["level"] == "error" and e["agent"] == victim_id],
            left_on_disk,
            finished,
            [f["frame"] for f in farm.api.frames(nearly) if f["state"] != "done"],
            "Exception in thread agent-worker" in farm.agents["a1"].log(),
        )


def test_disk_full_moves_the_work_and_keeps_nothing_corrupt(disk_full: DiskFullRun) -> None:
    """Scenario 5: the frames a1 could not write fail (the error and Blender's log reach the task's events), are
    rendered by the others, a1 is taken off the task once, and neither the manager nor a1 keeps a partial frame."""
    assert len(disk_full.failed_frames) >= 3
    assert all(disk_full.done_by[n] != disk_full.victim_id for n in disk_full.failed_frames), "work moved"
    taken_off = [e for e in disk_full.events if e["level"] == "warning" and "taken off" in e["message"]]
    assert [e["agent"] for e in taken_off] == [disk_full.victim_id], "taken off the task once"
    # Only what a1 had before the disk filled, and the filler: no frame in out/ or outbox/.
    assert [f for f in disk_full.left_on_disk if f.startswith(("out/", "outbox/"))] == []


def test_disk_full_error_says_so(disk_full: DiskFullRun) -> None:
    """Scenario 5: the error a user reads names the cause."""
    messages = [e["message"] for e in disk_full.events if e["level"] == "error"]
    assert messages
    assert all(re.search(r"no space|disk (is )?full", m, re.IGNORECASE) for m in messages), messages


def test_disk_nearly_full_is_survived(disk_full: DiskFullRun) -> None:
    """Scenario 5: with room for a frame but not for the agent's note about it, the agent goes on working (or
    fails the frame cleanly) and the task finishes."""
    assert not disk_full.worker_died, "the agent's worker thread died"
    assert disk_full.nearly_full_finished, f"frames {disk_full.nearly_full_stuck} stuck on a1"


def test_slow_agent_does_not_hold_the_task_back(tmp_path: Path, lan_scenes: Path) -> None:
    """Scenario 6: a3's Blender runs 4x slower (SIGSTOP/SIGCONT: 50 ms of every 200 ms), its start-up included.
    The same task takes at most 1.3x as long with a3 on the farm as with a3 disabled: once a1 and a2 run out of
    work, what a3 still holds is duplicated or moved to them.

    Both runs use the same processes (a3 disabled, then enabled), so both pay the same Blender start-ups.
    """
    frames = 12
    with farm_on_a_lan(tmp_path, ["a1", "a2", "a3"], HEARTBEAT_TIMEOUT) as farm:
        farm.start()
        slow = farm.agents["a3"]
        slow_id = farm.api.agent_id("a3")
        farm.api.post(f"/api/agents/{slow_id}/disable/")
        started = time.monotonic()
        alone = farm.api.submit(lan_scenes / "medium.blend", frame_end=frames)
        farm.api.wait_stage(alone, {"finished", "failed"}, 180)
        without = time.monotonic() - started
        farm.check_result(alone, range(1, frames + 1), video=False)

        farm.slowdowns.append(Slowdown(slow, factor=4))
        farm.api.post(f"/api/agents/{slow_id}/enable/")
        started = time.monotonic()
        key = farm.api.submit(lan_scenes / "medium.blend", frame_end=frames)
        only_a3_left: float | None = None  # when every frame not done yet was a3's
        while (progress := farm.api.progress(key))["stage"] not in ("merging", "finished", "failed"):
            pending = [f for f in farm.api.frames(key) if f["state"] != "done"]
            if only_a3_left is None and pending and all(f["agent"] == slow_id for f in pending):
                only_a3_left = time.monotonic()
            assert time.monotonic() - started < 180, progress
            time.sleep(0.1)
        rendered = time.monotonic()
        farm.api.wait_stage(key, {"finished", "failed"}, 60)
        with_slow = time.monotonic() - started
        farm.check_result(key, range(1, frames + 1), video=False)
        held_up = rendered - only_a3_left if only_a3_left is not None else 0.0
        print(
            f"without a3 {without:.1f} s, with a3 4x slower {with_slow:.1f} s ({with_slow / without:.2f}x); "
            f"a1 and a2 waited {held_up:.1f} s for a3's last frame"
        )
        assert slow.assigned_frames(key), "a3 took part"
        assert held_up < 4.0, "a1 and a2 took over what a3 held (an idle agent asks again within 1 s)"
        assert with_slow <= 1.3 * without


def test_agent_joining_mid_task_gets_work_at_once(tmp_path: Path, lan_scenes: Path) -> None:
    """Scenario 7: a3 starts while a task is half done; once zeroconf has brought it to the manager it is given
    queued frames at its first request, and renders them."""
    with farm_on_a_lan(tmp_path, ["a1", "a2", "a3"], HEARTBEAT_TIMEOUT) as farm:
        farm.start(agents=["a1", "a2"])
        key = farm.api.submit(lan_scenes / "medium.blend", frame_end=80)
        wait_for("2 finished frames", lambda: farm.api.progress(key)["frames_done"] >= 2, 120, 0.2)
        joined = time.monotonic()
        newcomer = farm.start_agent("a3")
        farm.wait_online({"a3"}, 60)
        online = time.monotonic()
        wait_for("a3 to get frames", lambda: newcomer.assigned_frames(key), 30, 0.05)
        assigned = time.monotonic()
        farm.check_discovered()
        farm.api.wait_stage(key, {"finished", "failed"}, 180)
        farm.check_result(key, range(1, 81), video=False)
        delivered = [f["frame"] for f in farm.api.frames(key) if f["agent"] == farm.api.agent_id("a3")]
        print(
            f"a3 online {online - joined:.1f} s after its start, first frames {assigned - online:.2f} s later; "
            f"it delivered {len(delivered)} of 80"
        )
        assert assigned - online < 2 * p.HEARTBEAT_INTERVAL_S, "work at its first request after attaching"
        assert delivered, "and it rendered it"
