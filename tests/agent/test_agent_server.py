"""The agent's HTTP face: every endpoint 401 without the farm token or with a wrong one, works with it.

An agent with no token yet (unpaired) answers 401 to everything, whatever it is sent. No Blender is
needed: the core is made with no installs and never started.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent import protocol as p
from agent.server import create_agent_app
from agent.service import AgentConfig, AgentCore

TOKEN = "agent-test-token-0123456789"
AUTH = p.bearer(TOKEN)
ATTACH = p.AttachRequest("http://192.0.2.10:8700", "manager-1").to_dict()


def make_core(tmp_path: Path, token: str | None) -> AgentCore:
    config = AgentConfig(name="render-pc-1", host="127.0.0.1", port=8765, work_dir=tmp_path / "work", token=token)
    return AgentCore(config, installs=[])


@pytest.fixture
def core(tmp_path: Path) -> Iterator[AgentCore]:
    core = make_core(tmp_path, TOKEN)
    yield core
    core.close()


@pytest.fixture
def client(core: AgentCore) -> Iterator[TestClient]:
    with TestClient(create_agent_app(core)) as c:
        yield c


PAIRING = {("POST", p.AGENT_PAIR_START), ("POST", p.AGENT_PAIR_FINISH)}
"""The only endpoints without the token: how an agent without one gets it (agent/pairing.py)."""


def operations(client: TestClient) -> list[tuple[str, str]]:
    """Every operation that needs the token."""
    doc = client.get("/openapi.json", headers=AUTH).json()
    return [
        (method.upper(), path)
        for path, ops in doc["paths"].items()
        for method in ops
        if (method.upper(), path) not in PAIRING
    ]


def request(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    body = ATTACH if path == p.AGENT_ATTACH else None
    return client.request(method, path, json=body, headers=headers)


def test_the_document_lists_every_endpoint_with_the_token(client: TestClient) -> None:
    doc = client.get("/openapi.json", headers=AUTH).json()
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    assert set(operations(client)) == {
        ("GET", p.AGENT_INFO),
        ("POST", p.AGENT_ATTACH),
        ("POST", p.AGENT_DETACH),
        ("POST", p.AGENT_PAUSE),
        ("POST", p.AGENT_RESUME),
        ("POST", p.AGENT_UNPAIR),
    }
    for path, ops in doc["paths"].items():
        for method, operation in ops.items():
            if (method.upper(), path) in PAIRING:
                assert not operation.get("security"), f"{method} {path} is a pairing step: no token"
            else:
                assert operation.get("security"), f"{method} {path} does not document the token"


@pytest.mark.parametrize(
    "headers",
    [{}, p.bearer("wrong"), p.bearer(TOKEN + "x"), p.bearer(TOKEN[:-1]), {"Authorization": TOKEN}],
    ids=["none", "wrong", "longer", "shorter", "not-bearer"],
)
def test_every_endpoint_is_401_without_the_right_token(
    client: TestClient, core: AgentCore, headers: dict[str, str]
) -> None:
    ops = operations(client)
    for method, path in [*ops, ("GET", "/openapi.json")]:
        r = request(client, method, path, headers)
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.json() == {"error": "missing or wrong farm token"}
        assert r.headers["WWW-Authenticate"] == "Bearer"
    assert core.manager_url is None, "nothing was done"
    assert not core.paused


def test_every_endpoint_works_with_the_token(client: TestClient, core: AgentCore) -> None:
    info = client.get(p.AGENT_INFO, headers=AUTH)
    assert info.status_code == 200
    assert p.AgentInfo.from_dict(info.json()).agent_id == core.agent_id
    assert info.json()["paired"] is True
    assert info.json()["blenders"] == []

    r = client.post(p.AGENT_ATTACH, json=ATTACH, headers=AUTH)
    assert r.status_code == 200, r.text
    assert core.manager_url == "http://192.0.2.10:8700"
    assert core.manager_id == "manager-1"

    r = client.post(p.AGENT_PAUSE, headers=AUTH)
    assert r.status_code == 200
    assert r.json()["state"] == "paused"
    r = client.post(p.AGENT_RESUME, headers=AUTH)
    assert r.status_code == 200
    assert r.json()["state"] == "idle"

    r = client.post(p.AGENT_DETACH, headers=AUTH)
    assert r.status_code == 200
    assert core.manager_url is None


def test_an_unpaired_agent_answers_401_to_any_token(tmp_path: Path) -> None:
    core = make_core(tmp_path, None)
    try:
        with TestClient(create_agent_app(core)) as client:
            for method, path in [
                ("GET", p.AGENT_INFO),
                ("POST", p.AGENT_ATTACH),
                ("POST", p.AGENT_DETACH),
                ("POST", p.AGENT_PAUSE),
                ("POST", p.AGENT_RESUME),
                ("GET", "/openapi.json"),
            ]:
                for headers in ({}, AUTH, p.bearer("")):
                    r = request(client, method, path, headers)
                    assert r.status_code == 401, (method, path, headers)
        assert core.manager_url is None
    finally:
        core.close()


def test_a_bad_attach_body_is_a_400(client: TestClient, core: AgentCore) -> None:
    r = client.post(p.AGENT_ATTACH, json={"manager_url": "http://x"}, headers=AUTH)
    assert r.status_code == 400
    assert "manager_id" in r.json()["error"]
    assert core.manager_url is None


def test_an_attach_body_that_is_not_json_is_a_400(core: AgentCore) -> None:
    with TestClient(create_agent_app(core)) as client:
        r = client.post(p.AGENT_ATTACH, content=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 400
        assert "not JSON" in r.json()["error"]


def test_pairing_gives_an_unpaired_agent_the_token_once(tmp_path: Path) -> None:
    from agent.pairing import pairing_code

    core = make_core(tmp_path, None)
    try:
        with TestClient(create_agent_app(core)) as client:
            assert client.get(p.AGENT_INFO, headers=AUTH).status_code == 401
            manager_nonce = "a" * 32
            r = client.post(p.AGENT_PAIR_START, json=p.PairStart("m1", manager_nonce).to_dict())
            assert r.status_code == 200, r.text
            started = p.PairStarted.from_dict(r.json())
            assert started.agent_id == core.agent_id
            # Both sides compute the same code from what they exchanged; the user compares them.
            code = pairing_code(manager_nonce, started.agent_nonce, core.agent_id)
            assert len(code) == 7
            assert code[3] == "-"
            wrong = p.PairFinish("m1", "0" * 32, TOKEN).to_dict()
            assert client.post(p.AGENT_PAIR_FINISH, json=wrong).status_code == 403
            finish = p.PairFinish("m1", started.agent_nonce, TOKEN + "-long-enough-for-a-farm-token").to_dict()
            r = client.post(p.AGENT_PAIR_FINISH, json=finish)
            assert r.status_code == 200, r.text
            assert r.json()["paired"] is True
            token = TOKEN + "-long-enough-for-a-farm-token"
            assert client.get(p.AGENT_INFO, headers=p.bearer(token)).status_code == 200
            # A replay finds nothing waiting; a second manager cannot take the paired agent over.
            assert client.post(p.AGENT_PAIR_FINISH, json=finish).status_code in (403, 409)
            again = client.post(p.AGENT_PAIR_START, json=p.PairStart("m2", "b" * 32).to_dict())
            assert again.status_code == 409
            # Revoking (with the token) makes it unpaired again.
            assert client.post(p.AGENT_UNPAIR, headers=p.bearer(token)).status_code == 200
            assert core.config.token is None
            assert client.get(p.AGENT_INFO, headers=p.bearer(token)).status_code == 401
    finally:
        core.close()


def test_pairing_requests_expire(tmp_path: Path) -> None:
    from agent.pairing import Pairing, PairingError

    now = [0.0]
    stored: list[str | None] = [None]
    pairing = Pairing("agent-1", lambda: stored[0], lambda t: stored.__setitem__(0, t), clock=lambda: now[0])
    nonce, _ = pairing.start("m1", "c" * 32)
    now[0] += 301
    with pytest.raises(PairingError, match="expired"):
        pairing.finish("m1", nonce, "t" * 40)
    assert stored[0] is None
