"""The manager's REST API and service, driven over HTTP by a scripted agent speaking the real protocol.

(The end-to-end tests with real agents and real Blender are in tests/integration/.)
"""

from __future__ import annotations

import contextlib
import hashlib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from agent import protocol as p
from farmgui.core.api import create_app
from farmgui.core.models import Frame
from farmgui.core.scheduler import FrameState
from farmgui.core.service import FarmService
from tests.conftest import BLENDFILES
from tests.pngs import png_bytes

from .conftest import AUTH, TOKEN, Clock

CAMERA_FILE = BLENDFILES / "gltf-blender-io/36_viewport_material_export.blend"  # 4.5, PNG, has a camera


def submit(client: TestClient, path: Path = CAMERA_FILE, **form: Any) -> str:
    with path.open("rb") as f:
        response = client.post(
            "/api/render-tasks/run_task/",
            files={"file": (path.name, f, "application/octet-stream")},
            data={k: str(v) for k, v in form.items()},
            headers=AUTH,
        )
    assert response.status_code == 201, response.text
    return str(response.json()["task_key"])


class ScriptedAgent:
    """Speaks the agent side of the protocol over HTTP; renders nothing (frames are tiny PNGs)."""

    def __init__(self, client: TestClient, agent_id: str, blenders: tuple[str, ...] = ("4.5.3",)) -> None:
        self.client = client
        self.agent_id = agent_id
        info = p.AgentInfo(
            agent_id, agent_id, "127.0.0.1", 9999, blenders=[p.BlenderVersion(v, "executable") for v in blenders]
        )
        r = client.post(p.MANAGER_HELLO, json=info.to_dict(), headers=AUTH)
        assert r.status_code == 200, r.text

    def work(self, warm: list[str] | None = None) -> p.WorkAssignment | None:
        req = p.WorkRequest(self.agent_id, warm_tasks=warm or [])
        r = self.client.post(p.MANAGER_WORK, json=req.to_dict(), headers=AUTH)
        if r.status_code == 204:
            return None
        assert r.status_code == 200, r.text
        return p.WorkAssignment.from_dict(r.json())

    def beat(self, running: list[p.FrameProgress]) -> p.HeartbeatReply:
        beat = p.Heartbeat(self.agent_id, p.AgentState.RENDERING, running=running)
        r = self.client.post(p.MANAGER_HEARTBEAT, json=beat.to_dict(), headers=AUTH)
        assert r.status_code == 200, r.text
        return p.HeartbeatReply.from_dict(r.json())

    def upload(
        self, work: p.WorkAssignment, frame: int, data: bytes | None = None, sha: str | None = None
    ) -> dict[str, Any]:
        body = data if data is not None else png_bytes(shade=frame)
        headers = {
            **AUTH,
            p.HEADER_AGENT_ID: self.agent_id,
            p.HEADER_ATTEMPT: work.attempt,
            p.HEADER_SHA256: sha or hashlib.sha256(body).hexdigest(),
            p.HEADER_RENDER_SECONDS: "1.5",
            p.HEADER_EXTENSION: "png",
        }
        r = self.client.put(p.MANAGER_FRAME.format(task_id=work.task_id, frame=frame), content=body, headers=headers)
        return {"status": r.status_code, **r.json()}

    def take_all(self, key: str) -> list[tuple[p.WorkAssignment, int]]:
        """Ask for work until there is none: every frame given, with the assignment it came in."""
        held: list[tuple[p.WorkAssignment, int]] = []
        while (work := self.work(warm=[key])) is not None:
            held += [(work, frame) for frame in work.frames]
        return held

    def fail_next(self, count: int, error: str = "Error: boom") -> list[str]:
        """Take ``count`` assignments in turn and report the first frame of each failed: the outcomes."""
        outcomes = []
        for _ in range(count):
            work = self.work()
            assert work is not None
            failure = p.FrameFailure(self.agent_id, work.attempt, error, "render-error")
            url = p.MANAGER_FRAME_FAILED.format(task_id=work.task_id, frame=work.frames[0])
            outcomes.append(self.client.post(url, json=failure.to_dict(), headers=AUTH).json()["outcome"])
        return outcomes

    def render_all(self, work: p.WorkAssignment) -> None:
        for frame in work.frames:
            self.beat([p.FrameProgress(work.task_id, work.attempt, frame, 0.5)])
            assert self.upload(work, frame)["accepted"]


def test_every_endpoint_needs_the_token(client: TestClient) -> None:
    doc = client.get("/openapi.json", headers=AUTH).json()
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    checked = 0
    for path, operations in doc["paths"].items():
        url = path.replace("{task_key}", "x").replace("{task_id}", "x").replace("{frame}", "1")
        url = url.replace("{agent_id}", "x").replace("{sha256}", "0" * 64)
        for method in operations:
            assert operations[method].get("security"), f"{method} {path} does not document the token"
            for headers in ({}, p.bearer("wrong")):
                r = client.request(method.upper(), url, headers=headers)
                assert r.status_code == 401, (method, url, r.status_code)
                assert "error" in r.json()
                checked += 1
    assert checked >= 2 * 20
    assert client.get("/openapi.json").status_code == 401
    assert "/api/render-tasks/run_task/" in doc["paths"]
    root = client.get("/api/", headers=AUTH).json()
    assert any(e["path"] == "/api/render-tasks/{task_key}/progress/" for e in root["endpoints"])


def test_bad_uploads_get_a_reason_and_leave_nothing(client: TestClient, service: FarmService, tmp_path: Path) -> None:
    cases = {
        "notes.blend": b"hello, not a blend file",
        "empty.blend": b"",
        "cut.blend": CAMERA_FILE.read_bytes()[:5000],
    }
    for name, data in cases.items():
        r = client.post("/api/render-tasks/run_task/", files={"file": (name, data)}, headers=AUTH)
        assert r.status_code == 400, (name, r.text)
        assert r.json()["error"]
    r = client.post(
        "/api/render-tasks/run_task/",
        files={"file": ("x.blend", CAMERA_FILE.read_bytes())},
        data={"scene": "Nope"},
        headers=AUTH,
    )
    assert r.status_code == 400
    assert "no scene called 'Nope'" in r.json()["error"]
    r = client.post(
        "/api/render-tasks/run_task/",
        files={"file": ("x.blend", CAMERA_FILE.read_bytes())},
        data={"frame_start": 10, "frame_end": 5},
        headers=AUTH,
    )
    assert r.status_code == 400
    assert "empty frame range" in r.json()["error"]
    no_camera = BLENDFILES / "bat/basic_file.blend"
    r = client.post("/api/render-tasks/run_task/", files={"file": ("x.blend", no_camera.read_bytes())}, headers=AUTH)
    assert r.status_code == 400
    assert "no camera" in r.json()["error"]
    assert list((service.data_dir / "uploads").iterdir()) == []
    assert list((service.data_dir / "files").iterdir()) == []
    # Each refusal is on record: the task failed, with the reason, in the list and its log.
    tasks = client.get("/api/render-tasks/", headers=AUTH).json()
    assert {t["stage"] for t in tasks} == {"failed"}
    assert all(t["error"] for t in tasks)
    events = client.get(f"/api/render-tasks/{tasks[0]['task_key']}/events/", headers=AUTH).json()
    assert events[0]["level"] == "error"


def test_render_a_task_with_two_agents(client: TestClient, service: FarmService) -> None:
    key = submit(client, frame_start=1, frame_end=8)
    progress = client.get(f"/api/render-tasks/{key}/progress/", headers=AUTH).json()
    assert progress["stage"] == "queued"
    assert progress["stage_progress"] is None
    assert progress["frames_total"] == 8
    a, b = ScriptedAgent(client, "a"), ScriptedAgent(client, "b")
    work_a = a.work()
    assert work_a is not None
    assert work_a.blender_version == "4.5"
    assert work_a.output_type == "PNG"
    assert not work_a.trusted
    blend = client.get(p.MANAGER_FILE.format(sha256=work_a.file_sha256), headers=AUTH)
    assert blend.content == CAMERA_FILE.read_bytes()
    a.beat([p.FrameProgress(key, work_a.attempt, work_a.frames[0], 0.25)])
    progress = client.get(f"/api/render-tasks/{key}/progress/", headers=AUTH).json()
    assert progress["stage"] == "rendering"
    assert progress["workers"][0]["agent"] == "a"
    a.render_all(work_a)
    while True:
        did = False
        for agent in (a, b):
            work = agent.work(warm=[key])
            if work is not None:
                agent.render_all(work)
                did = True
        if not did:
            break
    service.tick()
    for thread in list(service._merges.values()):
        thread.join(timeout=60)
    progress = client.get(f"/api/render-tasks/{key}/progress/", headers=AUTH).json()
    assert progress["stage"] == "finished", progress
    assert progress["frames_done"] == 8
    assert progress["total_progress"] == 1.0
    download = client.get(f"/api/render-tasks/{key}/download/", headers=AUTH)
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/octet-stream"
    zip_path = service.data_dir / "downloaded.zip"
    zip_path.write_bytes(download.content)
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == [f"frame_{n:06d}.png" for n in range(1, 9)]
    frames = client.get(f"/api/render-tasks/{key}/frames/", headers=AUTH).json()
    assert {f["state"] for f in frames} == {"done"}
    assert {f["agent"] for f in frames} <= {"a", "b"}


def test_download_is_409_until_finished(client: TestClient) -> None:
    key = submit(client, frame_start=1, frame_end=2)
    r = client.get(f"/api/render-tasks/{key}/download/", headers=AUTH)
    assert r.status_code == 409
    assert "not ready" in r.json()["error"]
    assert client.get("/api/render-tasks/nope/progress/", headers=AUTH).status_code == 404


def test_damaged_upload_and_duplicates(client: TestClient, service: FarmService, clock: Clock) -> None:
    key = submit(client, frame_start=1, frame_end=3)
    a, b = ScriptedAgent(client, "a"), ScriptedAgent(client, "b")
    work = a.work()
    assert work is not None
    assert a.upload(work, work.frames[0], sha="0" * 64)["status"] == 400, "a sha256 that does not match is refused"
    a.beat([p.FrameProgress(key, work.attempt, work.frames[0], 0.1)])
    clock.now += 20
    b.beat([])
    service.tick()  # a is lost: its frame goes back to the queue
    again = b.work()
    assert again is not None
    assert again.frames[0] == work.frames[0]
    # a comes back with its late frame: accepted (first result), b's is then a duplicate.
    ScriptedAgent(client, "a")
    assert a.upload(work, work.frames[0])["accepted"]
    second = b.upload(again, again.frames[0])
    assert not second["accepted"]
    assert second["duplicate"]
    reply = b.beat([p.FrameProgress(key, again.attempt, again.frames[0], 0.9)])
    assert [x.frame for x in reply.abandon] == [again.frames[0]]
    frame_files = list((service.data_dir / "tasks" / key / "frames").glob("frame_*"))
    assert len(frame_files) == 1, "exactly one file per finished frame, no leftovers"


def test_failures_reach_the_log_and_the_api(client: TestClient) -> None:
    key = submit(client, frame_start=1, frame_end=1)
    agents = [ScriptedAgent(client, name) for name in ("a", "b", "c")]
    for agent in agents:
        work = agent.work()
        assert work is not None
        failure = p.FrameFailure(
            agent.agent_id,
            work.attempt,
            "Error: Build without OpenImageDenoiser",
            "denoiser-unavailable",
            ["Fra:1 ...", "Error: Build without OpenImageDenoiser"],
        )
        r = client.post(p.MANAGER_FRAME_FAILED.format(task_id=key, frame=1), json=failure.to_dict(), headers=AUTH)
        assert r.status_code == 200
    progress = client.get(f"/api/render-tasks/{key}/progress/", headers=AUTH).json()
    assert progress["stage"] == "failed"
    assert "OpenImageDenoiser" in progress["error"]
    events = client.get(f"/api/render-tasks/{key}/events/", headers=AUTH).json()
    assert sum(e["fault"] == "denoiser-unavailable" for e in events) == 3
    assert events[0]["log_tail"][-1] == "Error: Build without OpenImageDenoiser"
    r = client.post(f"/api/render-tasks/{key}/retry/", headers=AUTH)
    assert r.status_code == 200
    assert r.json()["stage"] == "queued"


def test_version_aware_waiting_reason(client: TestClient) -> None:
    key = submit(client, BLENDFILES / "gltf-blender-io/38_pointcloud_GN.blend", frame_start=1, frame_end=2)
    old = ScriptedAgent(client, "old", blenders=("3.4.1",))
    assert old.work() is None
    task = client.get(f"/api/render-tasks/{key}/", headers=AUTH).json()
    assert task["waiting_reason"] == "needs Blender >= 5.1; agents have 3.4"
    assert task["blender_version"] == "5.1"


@contextlib.contextmanager
def manager_on(data: Path, clock: Clock) -> Iterator[tuple[FarmService, TestClient]]:
    """A manager on ``data`` for the block, closed after it (a restart test opens a second on the same data). A close
    is as good as a kill here: nothing is written on close that was not committed already."""
    service = FarmService(data, clock=clock)
    try:
        with TestClient(create_app(service, TOKEN)) as client:
            yield service, client
    finally:
        service.close()


def test_restart_keeps_finished_frames(tmp_path: Path, clock: Clock) -> None:
    with manager_on(tmp_path / "data", clock) as (_, client):
        key = submit(client, frame_start=1, frame_end=6)
        agent = ScriptedAgent(client, "a")
        work = agent.work()
        assert work is not None
        agent.render_all(work)
        first = set(work.frames)
    with manager_on(tmp_path / "data", clock) as (_, client):
        progress = client.get(f"/api/render-tasks/{key}/progress/", headers=AUTH).json()
        assert progress["frames_done"] == len(first)
        agent = ScriptedAgent(client, "a")
        seen: set[int] = set()
        while (work := agent.work(warm=[key])) is not None:
            seen |= set(work.frames)
            agent.render_all(work)
        assert seen.isdisjoint(first), "no finished frame is rendered again"
        assert seen | first == set(range(1, 7))


def test_failure_counts_survive_a_restart(tmp_path: Path, clock: Clock) -> None:
    """An agent that failed once before a restart is taken off after two more failures, not three."""
    with manager_on(tmp_path / "data", clock) as (_, client):
        submit(client, frame_start=1, frame_end=6)
        agent = ScriptedAgent(client, "a")
        ScriptedAgent(client, "b")
        assert agent.fail_next(1) == ["retry"]
    with manager_on(tmp_path / "data", clock) as (_, client):
        agent = ScriptedAgent(client, "a")
        ScriptedAgent(client, "b")
        assert agent.fail_next(2) == ["retry", "agent-blocked"]


def test_a_failure_on_a_frame_already_delivered_is_not_counted_before_or_after_a_restart(
    tmp_path: Path, clock: Clock
) -> None:
    """An agent lost with a frame, which another agent then delivers, reports the frame failed later: the frame is
    done, so the failure changes nothing and is not counted against the agent. The task's log says so as a warning
    (with Blender's text and the fault), and a restarted manager, rebuilding the counts from the log, agrees."""
    with manager_on(tmp_path / "data", clock) as (service, client):
        key = submit(client, frame_start=1, frame_end=6)
        a = ScriptedAgent(client, "a")
        work_a = a.work()
        assert work_a is not None
        frame = work_a.frames[0]
        clock.now += 100
        service.tick()  # a is lost: its frames go back to the queue
        b = ScriptedAgent(client, "b")
        work_b = b.work()
        assert work_b is not None
        assert frame in work_b.frames
        assert b.upload(work_b, frame)["accepted"]
        late = p.FrameFailure("a", work_a.attempt, "Error: late", "render-error")
        r = client.post(p.MANAGER_FRAME_FAILED.format(task_id=key, frame=frame), json=late.to_dict(), headers=AUTH)
        assert r.json()["outcome"] == "duplicate"
        events = [e for e in client.get(f"/api/render-tasks/{key}/events/", headers=AUTH).json() if e["agent"] == "a"]
        failures = [e for e in events if e["frame"] == frame]
        assert [(e["level"], e["fault"]) for e in failures] == [("warning", "render-error")]
        assert failures[0]["message"] == f"Error: late (not counted: frame {frame} was already rendered)"
    with manager_on(tmp_path / "data", clock) as (_, client):
        a = ScriptedAgent(client, "a")
        assert a.fail_next(3) == ["retry", "retry", "agent-blocked"], "3 failures of its own, as if none before"


def test_a_frame_without_a_stored_result_fails_the_merge_instead_of_leaving_it_out(
    client: TestClient, service: FarmService
) -> None:
    """The scheduler holds every frame as done, but one frame's row never reached the database (its write failed):
    the merge names the frame and fails, rather than delivering a result a frame short."""
    key = submit(client, frame_start=1, frame_end=4)
    agent = ScriptedAgent(client, "a")
    held = agent.take_all(key)
    assert [frame for _, frame in held] == [1, 2, 3, 4]
    for work, frame in held[:3]:
        assert agent.upload(work, frame)["accepted"]
    with service.sessions.begin() as s:  # frame 2's row as if its write had been lost
        s.execute(sa.update(Frame).where(Frame.task_id == key, Frame.number == 2).values(state=FrameState.QUEUED))
    assert agent.upload(*held[3])["accepted"]
    for thread in list(service._merges.values()):
        thread.join(timeout=60)
    progress = client.get(f"/api/render-tasks/{key}/progress/", headers=AUTH).json()
    assert progress["stage"] == "failed"
    assert progress["error"] == (
        "merging failed: 1 frame(s) have no stored result (2): not merging with frames missing"
    )
    assert not (service.data_dir / "tasks" / key / "frames.zip").exists()


def test_a_frame_whose_row_cannot_be_written_is_taken_again_and_the_task_still_finishes_whole(
    service: FarmService,
) -> None:
    """The database refuses frame 2's row (a trigger stands in for a full disk): its upload is answered 503 and the
    frame goes back to the queue, with a warning in the task's log; no merge starts a frame short. Once the database
    takes rows again, the agent's resend is accepted and the task finishes with all four frames."""
    with TestClient(create_app(service, TOKEN), raise_server_exceptions=False) as client:
        key = submit(client, frame_start=1, frame_end=4)
        agent = ScriptedAgent(client, "a")
        held = agent.take_all(key)
        assert [frame for _, frame in held] == [1, 2, 3, 4]
        with service.engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_frame_2 BEFORE UPDATE ON frames WHEN NEW.number = 2 "
                "BEGIN SELECT RAISE(ABORT, 'database or disk is full (test)'); END"
            )
        answers = [agent.upload(*h) for h in held]
        assert [a["status"] for a in answers] == [200, 503, 200, 200]
        assert answers[1]["error"] == "the frame could not be stored (IntegrityError); send it again"
        progress = client.get(f"/api/render-tasks/{key}/progress/", headers=AUTH).json()
        assert (progress["stage"], progress["frames_done"]) == ("rendering", 3)
        assert not service._merges, "no merge a frame short"
        events = client.get(f"/api/render-tasks/{key}/events/", headers=AUTH).json()
        assert [(e["level"], e["frame"]) for e in events if "could not be stored" in e["message"]] == [("warning", 2)]
        with service.engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER refuse_frame_2")
        resend = agent.upload(*held[1])
        assert (resend["status"], resend["accepted"]) == (200, True)
        for thread in list(service._merges.values()):
            thread.join(timeout=60)
        progress = client.get(f"/api/render-tasks/{key}/progress/", headers=AUTH).json()
        assert (progress["stage"], progress["frames_done"]) == ("finished", 4)
        with zipfile.ZipFile(service.data_dir / "tasks" / key / "frames.zip") as zf:
            assert len([n for n in zf.namelist() if n.endswith(".png")]) == 4
