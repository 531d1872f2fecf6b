"""The agents' endpoints (farmgui/core/agent_api.py): plain Starlette routes ahead of FastAPI's, answering exactly as
the OpenAPI document says (tests/farmgui/test_schemathesis.py holds them to it; these are the cases by name)."""

from __future__ import annotations

import hashlib
import json

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from starlette.routing import Route

from agent import protocol as p
from farmgui.core.agent_api import check_values
from farmgui.core.api_errors import ApiError
from farmgui.core.models import Frame
from farmgui.core.scheduler import FrameState
from farmgui.core.service import FarmService
from tests.pngs import png_bytes

from .conftest import AUTH, TOKEN
from .test_api import ScriptedAgent, submit


def test_the_agent_routes_are_matched_first_and_still_documented(client: TestClient) -> None:
    app = client.app
    hot = {p.MANAGER_HEARTBEAT, p.MANAGER_WORK, p.MANAGER_FRAME, p.MANAGER_FRAME_FAILED, p.MANAGER_HELLO}
    first = app.router.routes[: len(hot)]  # type: ignore[attr-defined]
    assert {r.path for r in first} == hot
    assert all(type(r) is Route for r in first), "plain Starlette routes: no dependency solving"
    paths = client.get("/openapi.json", headers=AUTH).json()["paths"]
    assert hot <= set(paths)
    frame_doc = paths[p.MANAGER_FRAME]["put"]
    assert [x["name"] for x in frame_doc["parameters"]] == [
        "task_id",
        "frame",
        p.HEADER_AGENT_ID,
        p.HEADER_SHA256,
        p.HEADER_RENDER_SECONDS,
        p.HEADER_EXTENSION,
        p.HEADER_ATTEMPT,
    ]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic " + TOKEN, "Bearer wrong-token", "bearer" + TOKEN],
)
def test_the_token_is_checked_as_httpbearer_checks_it(client: TestClient, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    beat = p.Heartbeat("a1", p.AgentState.IDLE).to_dict()
    r = client.post(p.MANAGER_HEARTBEAT, json=beat, headers=headers)
    assert r.status_code == 401
    assert r.json() == {"error": "missing or wrong farm token"}
    assert r.headers["www-authenticate"] == "Bearer"


def test_the_scheme_is_case_insensitive(client: TestClient) -> None:
    beat = p.Heartbeat("a1", p.AgentState.IDLE).to_dict()
    r = client.post(p.MANAGER_HEARTBEAT, json=beat, headers={"Authorization": "bEaReR " + TOKEN})
    assert r.status_code == 200
    assert r.json()["known"] is False  # no hello yet


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"agent_id": "\\ud800", "state": "idle"}', "Heartbeat: : Invalid JSON: "),  # the parser refuses it
        (
            '{"agent_id": "a1", "state": "rendering", "running": [{"task_id": "t", "attempt": "x", "frame": 1,'
            ' "progress": Infinity}]}',
            "not finite",
        ),
        (
            '{"agent_id": "a1", "state": "rendering", "queued": [{"task_id": "t", "attempt": "x",'
            ' "frame": 1099511627776, "progress": 0.0}]}',
            "out of range (32 bits)",
        ),
        ('{"agent_id": 5, "state": "idle"}', "Heartbeat: agent_id: Input should be a valid string"),
        ("not json", "Heartbeat: "),
    ],
)
def test_bad_messages_are_400_with_the_reason(client: TestClient, body: str, message: str) -> None:
    r = client.post(p.MANAGER_HEARTBEAT, content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]


def test_values_the_types_cannot_refuse_are_checked_in_nested_messages() -> None:
    """``check_values`` on messages built directly (a lone surrogate never gets past the JSON parser, but the check
    does not rely on that)."""

    def beat(**progress: object) -> p.Heartbeat:
        values: dict[str, object] = {"task_id": "t", "attempt": "x", "frame": 1, "progress": 0.5, **progress}
        return p.Heartbeat("a1", p.AgentState.RENDERING, queued=[p.FrameProgress(**values)])  # type: ignore[arg-type]

    check_values(beat())
    for bad, reason in [
        (beat(task_id="\ud800"), "lone surrogate"),
        (beat(progress=float("nan")), "not finite"),
        (beat(frame=-(2**31) - 1), "32 bits"),
    ]:
        with pytest.raises(ApiError, match=reason) as caught:
            check_values(bad)
        assert caught.value.status == 400


def test_unknown_fields_from_a_newer_agent_are_ignored_whatever_they_hold(client: TestClient) -> None:
    body = json.dumps({"agent_id": "a1", "state": "idle", "future": [2**62, "x"]})
    r = client.post(p.MANAGER_HEARTBEAT, content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def test_a_message_over_the_limit_is_413(client: TestClient) -> None:
    body = json.dumps({"agent_id": "a" * (1 << 20), "state": "idle"})
    r = client.post(p.MANAGER_HEARTBEAT, content=body, headers=AUTH)
    assert r.status_code == 413


def _upload_headers(body: bytes, **changes: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        **AUTH,
        p.HEADER_AGENT_ID: "a1",
        p.HEADER_SHA256: hashlib.sha256(body).hexdigest(),
        p.HEADER_RENDER_SECONDS: "1.5",
        p.HEADER_EXTENSION: "png",
        **changes,
    }
    return {k: v for k, v in headers.items() if v is not None}


@pytest.mark.parametrize(
    ("frame", "changes", "error"),
    [
        ("abc", {}, "path.frame: Input should be a valid integer"),
        ("1048575", {}, "path.frame: Input should be within"),
        ("-1048575", {}, "path.frame: Input should be within"),
        ("1", {p.HEADER_AGENT_ID: None}, "header.x-frameherd-agent: Field required"),
        ("1", {p.HEADER_SHA256: "xyz"}, "header.x-frameherd-sha256: String should match pattern"),
        ("1", {p.HEADER_RENDER_SECONDS: "-1"}, "header.x-frameherd-render-seconds"),
        ("1", {p.HEADER_RENDER_SECONDS: "nan"}, "header.x-frameherd-render-seconds"),
        ("1", {p.HEADER_RENDER_SECONDS: "soon"}, "header.x-frameherd-render-seconds: Input should be a valid number"),
        ("1", {p.HEADER_EXTENSION: "../png"}, "header.x-frameherd-extension: String should match pattern"),
    ],
)
def test_upload_parameters_are_422_and_write_nothing(
    client: TestClient, service: FarmService, frame: str, changes: dict[str, str | None], error: str
) -> None:
    key = submit(client)
    body = png_bytes(shade=1)
    r = client.put(
        f"{p.MANAGER_AGENT_PREFIX}/tasks/{key}/frames/{frame}", content=body, headers=_upload_headers(body, **changes)
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"].startswith(error)
    assert not list((service.data_dir / "tasks").rglob("*.png"))
    assert not list((service.data_dir / "tasks").rglob(".upload-*"))


def test_an_accepted_upload_is_in_the_database_when_it_is_answered(client: TestClient, service: FarmService) -> None:
    key = submit(client, frame_start=1, frame_end=3)
    agent = ScriptedAgent(client, "a1")
    work = agent.work()
    assert work is not None
    for frame in work.frames:
        assert agent.upload(work, frame)["accepted"]
        with service.engine.connect() as conn:  # a connection of its own: sees only what is committed
            state, by, path = conn.execute(
                sa.select(Frame.state, Frame.agent_id, Frame.path).where(Frame.task_id == key, Frame.number == frame)
            ).one()
        assert (state, by) == (FrameState.DONE, "a1")
        assert path is not None
        assert (service.data_dir / path).is_file()
    assert not list((service.data_dir / "tasks").rglob(".upload-*")), "no temporary file left"


def test_a_damaged_upload_is_400_and_leaves_nothing(client: TestClient, service: FarmService) -> None:
    key = submit(client)
    agent = ScriptedAgent(client, "a1")
    work = agent.work()
    assert work is not None
    result = agent.upload(work, work.frames[0], data=b"not the bytes", sha="0" * 64)
    assert result["status"] == 400
    assert "damaged in transit" in result["error"]
    assert not [f for f in (service.data_dir / "tasks" / key).rglob("*") if f.is_file()]
