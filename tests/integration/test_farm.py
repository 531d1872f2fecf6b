"""The whole farm on loopback: a manager, real agents, real Blender (3.4 and bpy 5.0.1), real FFmpeg."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest

from .farm import Agent, Manager, ffprobe, no_processes_left, wait_for

pytestmark = [pytest.mark.blender, pytest.mark.slow]


def test_a_3_4_and_a_5_0_file_rendered_by_two_agents(tmp_path: Path, scenes_34: Path, scenes_50: Path) -> None:
    with no_processes_left(tmp_path):
        only_34 = Agent(tmp_path, "only34", bpy=False)
        both = Agent(tmp_path, "both")
        manager = Manager(tmp_path / "manager", [only_34, both])
        try:
            old = manager.submit(scenes_34 / "video_mkv.blend")  # Blender 3.4 file: MKV / H.264
            new = manager.submit(scenes_50 / "video_mp4.blend")  # Blender 5.0 file (zstd): MP4 / H.264
            done_old = manager.wait_stage(old, {"finished", "failed"}, 300)
            done_new = manager.wait_stage(new, {"finished", "failed"}, 300)
            assert done_old["stage"] == "finished", done_old
            assert done_new["stage"] == "finished", done_new
            video_old = manager.download(old, tmp_path / "old.mkv")
            video_new = manager.download(new, tmp_path / "new.mp4")
            probe_old, probe_new = ffprobe(video_old), ffprobe(video_new)
            assert probe_old["codec_name"] == "h264"
            assert "matroska" in probe_old["format_name"]
            assert probe_old["nb_read_frames"] == "12"
            assert probe_new["codec_name"] == "h264"
            assert "mp4" in probe_new["format_name"]
            assert probe_new["nb_read_frames"] == "10"
            # A 5.0 file is never given to an agent whose newest Blender is 3.4.
            assert only_34.assigned_frames(new) == []
            assert {f["agent"] for f in manager.frames(new)} != set()
            assert sorted(both.assigned_frames(new)) == list(range(1, 11))
            # The agent says which Blender it used: one load per task and agent (a persistent session).
            assert both.log().count("ready in") <= 2
        finally:
            manager.stop()
            only_34.stop()
            both.stop()


def test_manager_killed_mid_task_and_restarted(tmp_path: Path, scenes_34: Path) -> None:
    with no_processes_left(tmp_path):
        agent = Agent(tmp_path, "a", bpy=False)
        data = tmp_path / "manager"
        manager = Manager(data, [agent])
        try:
            key = manager.submit(scenes_34 / "slow.blend")
            wait_for("3 finished frames", lambda: manager.progress(key)["frames_done"] >= 3, 240, 0.5)
            before = {f["frame"] for f in manager.frames(key) if f["state"] == "done"}
            manager.kill()
            killed_at = len(agent.assigned_frames(key))
            time.sleep(2)
            manager = Manager(data, [agent], port=manager.port)
            done = manager.wait_stage(key, {"finished", "failed"}, 300)
            assert done["stage"] == "finished", done
            assigned = agent.assigned_frames(key)
            after_restart = assigned[killed_at:]
            assert not set(after_restart) & before, "a frame finished before the kill was rendered again"
            archive = manager.download(key, tmp_path / "frames.zip")
            with zipfile.ZipFile(archive) as zf:
                assert sorted(zf.namelist()) == [f"frame_{n:06d}.png" for n in range(1, 17)]
                assert all(zf.read(n).startswith(b"\x89PNG") for n in zf.namelist())
        finally:
            manager.stop()
            agent.stop()


def test_agent_killed_mid_frame(tmp_path: Path, scenes_34: Path) -> None:
    with no_processes_left(tmp_path):
        victim = Agent(tmp_path, "victim", bpy=False)
        survivor = Agent(tmp_path, "survivor", bpy=False)
        manager = Manager(tmp_path / "manager", [victim, survivor], heartbeat_timeout=5)
        try:
            key = manager.submit(scenes_34 / "slow.blend")

            def victim_rendering() -> bool:
                agents = manager.client.get("/api/agents/").json()
                return any(a["name"] == "victim" and a["current"] for a in agents)

            wait_for("the victim to be mid-frame", victim_rendering, 240, 0.3)
            victim.kill()  # the agent and its Blender, without a word to the manager
            lost_at = time.monotonic()
            wait_for(
                "the victim's frames to go back to the queue",
                lambda: (
                    not any(
                        f["agent"] == "victim" and f["state"] in ("assigned", "rendering") for f in manager.frames(key)
                    )
                ),
                30,
            )
            assert time.monotonic() - lost_at < 5 + 5, "requeued within the heartbeat timeout (and a maintenance tick)"
            done = manager.wait_stage(key, {"finished", "failed"}, 300)
            assert done["stage"] == "finished", done
            frames = manager.frames(key)
            assert [f["frame"] for f in frames] == list(range(1, 17))
            assert all(f["state"] == "done" for f in frames)
            files = sorted((tmp_path / "manager" / "tasks" / key / "frames").iterdir())
            assert [f.name for f in files] == [f"frame_{n:06d}.png" for n in range(1, 17)], "each frame exactly once"
        finally:
            manager.stop()
            survivor.stop()
            victim.stop()
