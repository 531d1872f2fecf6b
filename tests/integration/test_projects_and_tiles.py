"""Issue 9 on a real farm (manager and agents as processes, Debian's Blender 3.4):

* a .blend with textures (relative, ``//../``, absolute) and a linked library is packed into a zip project,
  its folder is moved away, the zip is submitted: the frame the farm renders equals the frame Blender renders
  locally from the original folder;
* a still split into tiles over two agents is stitched into one image equal, pixel for pixel, to Blender's
  own render of that frame on one machine.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from farmgui.core.packing import pack_project
from tests.farmgui.test_packing import blender_script, render_frame, run

from .farm import TOKEN, Agent, Manager, no_processes_left

pytestmark = [pytest.mark.blender, pytest.mark.slow]


def pixels(path: Path) -> npt.NDArray[np.uint8]:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA"))


def test_a_packed_project_renders_on_the_farm_as_on_the_artists_pc(tmp_path: Path, blender_exe: Path) -> None:
    work = tmp_path / "artist"
    work.mkdir()
    run(blender_script(blender_exe, "render", str(work)), cwd=work)
    main = work / "world/project/shots/main.blend"
    local = render_frame(blender_exe, main, work / "renders/local")
    report = pack_project(main, tmp_path / "upload/project.zip")  # what the CLI's --pack does below
    assert not report.missing
    with no_processes_left(tmp_path):
        agent = Agent(tmp_path, "a", bpy=False)
        manager = Manager(tmp_path / "manager", [agent])
        try:
            # What a user types: the CLI packs the .blend with its files, then uploads the zip.
            submitted = subprocess.run(
                [sys.executable, "-m", "farmgui", "--url", f"http://127.0.0.1:{manager.port}", "--token", TOKEN,
                 "submit", str(main), "--pack", "--frame-start", "1", "--frame-end", "1"],
                capture_output=True, text=True, timeout=120, check=True,
            )  # fmt: skip
            key = submitted.stdout.strip()
            assert "packed" in submitted.stderr
            (work / "world").rename(work / "moved_away")  # nothing may resolve through the artist's folder now
            task = manager.client.get(f"/api/render-tasks/{key}/").json()
            assert task["data_type"] == "MULTI_FILE"
            assert task["main_blend"] == report.main_blend
            done = manager.wait_stage(key, {"finished", "failed"}, 240)
            assert done["stage"] == "finished", done
            archive = manager.download(key, tmp_path / "frames.zip")
        finally:
            manager.stop()
            agent.stop()
    with zipfile.ZipFile(archive) as zf:
        assert zf.namelist() == ["frame_000001.png"]
        farm = tmp_path / "farm.png"
        farm.write_bytes(zf.read("frame_000001.png"))
    assert np.array_equal(pixels(farm), pixels(local))


def test_a_zip_with_two_blends_needs_the_main_one_named(tmp_path: Path, scenes_34: Path) -> None:
    project = tmp_path / "two.zip"
    with zipfile.ZipFile(project, "w") as zf:
        zf.write(scenes_34 / "png.blend", "a.blend")
        zf.write(scenes_34 / "slow.blend", "b.blend")
    with no_processes_left(tmp_path):
        manager = Manager(tmp_path / "manager", [])
        try:
            with project.open("rb") as f:
                refused = manager.client.post("/api/render-tasks/run_task/", files={"file": ("two.zip", f)}, data={})
            assert refused.status_code == 400
            assert "a.blend" in refused.text
            assert "b.blend" in refused.text
            key = manager.submit(project, main_blend="a.blend")
            task = manager.client.get(f"/api/render-tasks/{key}/").json()
            assert (task["main_blend"], task["start"], task["end"]) == ("a.blend", 1, 8)
        finally:
            manager.stop()


def test_a_still_split_over_two_agents_equals_one_machines_render(tmp_path: Path, scenes_34: Path) -> None:
    blend = scenes_34 / "png.blend"
    local_prefix = tmp_path / "local" / "frame_"
    subprocess.run(
        ["blender", "-b", "-Y", str(blend), "-o", f"{local_prefix}####", "-f", "3"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    local = tmp_path / "local" / "frame_0003.png"
    with no_processes_left(tmp_path):
        first, second = Agent(tmp_path, "a", bpy=False), Agent(tmp_path, "b", bpy=False)
        manager = Manager(tmp_path / "manager", [first, second])
        try:
            key = manager.submit(blend, frame_start=3, frame_end=3, tiles=5)
            task = manager.client.get(f"/api/render-tasks/{key}/").json()
            assert (task["tiles"], task["frames_total"]) == (5, 5)
            done = manager.wait_stage(key, {"finished", "failed"}, 240)
            assert done["stage"] == "finished", done
            result = manager.download(key, tmp_path / "result.png")
            tiles = {f["frame"]: f["agent"] for f in manager.frames(key)}
        finally:
            manager.stop()
            first.stop()
            second.stop()
    assert sorted(tiles) == [0, 1, 2, 3, 4]
    assert np.array_equal(pixels(result), pixels(local))


def test_tiles_are_refused_for_a_frame_range(tmp_path: Path, scenes_34: Path) -> None:
    with no_processes_left(tmp_path):
        manager = Manager(tmp_path / "manager", [])
        try:
            with (scenes_34 / "png.blend").open("rb") as f:
                r = manager.client.post(
                    "/api/render-tasks/run_task/", files={"file": ("png.blend", f)}, data={"tiles": "4"}
                )
            assert r.status_code == 400
            assert "single frame" in r.text
        finally:
            manager.stop()
