"""schemathesis against the manager's served OpenAPI document, over a real loopback server.

The document is fetched the way a client would (``/openapi.json``, behind the token). For every
operation schemathesis generates requests that fit the document (positive) and requests that do
not (negative); each answer must be no 5xx, a documented status with a documented content type, and
a body that fits its schema; invalid requests must be refused with a 4xx; and every operation must
refuse the same request without the token or with a wrong one (the ``ignored_auth`` probe).

Half of the generated requests name things that exist (a queued task, a known agent, a stored file)
instead of random keys, and half of the uploads are a real blend file, so the answers checked are
not only 404s and 400s. Generation is derandomized: CI sees the same requests every run;
``FRAMEHERD_SCHEMATHESIS_EXAMPLES=200`` explores further (default 8 per operation and mode: about
40 s in all on two shared cores).

Not checked: ``positive_data_acceptance`` (a request that fits the document is accepted). The
document cannot say what makes a blend file valid or a frame's sha256 match its bytes, so such
requests are rightly refused with a documented 400.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from agent import protocol as p
from agent.httpserver import ServerThread
from farmgui.core.api import create_app
from farmgui.core.service import FarmService
from tests.conftest import BLENDFILES

TOKEN = "schemathesis-token-0123456789"
AUTH = p.bearer(TOKEN)
CAMERA_FILE = BLENDFILES / "gltf-blender-io/36_viewport_material_export.blend"  # 4.5, PNG, has a camera
EXAMPLES = int(os.environ.get("FRAMEHERD_SCHEMATHESIS_EXAMPLES", "8"))
CHECKS: list[Callable[..., Any]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    missing_required_header,
    ignored_auth,
    unsupported_method,
]


@dataclass
class Farm:
    service: FarmService
    url: str
    schema: Any
    known: dict[str, str]
    """Path parameter name -> the key of something that exists."""


@pytest.fixture(scope="module")
def farm_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FarmService, dict[str, str]]]:
    """One farm for the whole module (no threads of its own): a queued task and two known agents."""
    service = FarmService(tmp_path_factory.mktemp("schemathesis") / "data")
    try:
        task = service.submit_file(CAMERA_FILE)
        agent = p.AgentInfo("agent-1", "agent-1", "127.0.0.1", 9999, blenders=[p.BlenderVersion("4.5.3", "executable")])
        service.hello(agent)
        service.hello(p.AgentInfo("worker", "worker", "127.0.0.1", 9998, blenders=agent.blenders))
        known = {
            "task_key": task["task_key"],
            "task_id": task["task_key"],
            "agent_id": agent.agent_id,
            "sha256": task["file_sha256"],
            "worker": "worker",  # never disabled by the generated requests (agent-1 is): it gets work
        }
        yield service, known
    finally:
        service.close()


@pytest.fixture
def farm(farm_service: tuple[FarmService, dict[str, str]]) -> Iterator[Farm]:
    """Its HTTP server, per test: stopping it also ends the server's worker threads."""
    service, known = farm_service
    with ServerThread(create_app(service, TOKEN), "127.0.0.1", 0) as server:
        url = f"http://127.0.0.1:{server.port}"
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=AUTH)
        yield Farm(service, url, schema, known)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def _operations(farm: Farm) -> list[Any]:
    return [result.ok() for result in farm.schema.get_all_operations()]


def _strategy(farm: Farm, operation: Any, mode: GenerationMode) -> st.SearchStrategy[Any]:
    """Random keys, or keys of things that exist; for uploads, random bytes or a real blend file."""
    names = {param.name for param in operation.path_parameters}
    known = {name: value for name, value in farm.known.items() if name in names}
    strategies = [operation.as_strategy(generation_mode=mode)]
    if known:
        strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=known))
    cases = st.one_of(strategies)
    if operation.path == "/api/render-tasks/run_task/" and mode is GenerationMode.POSITIVE:
        blend = CAMERA_FILE.read_bytes()  # the file's own settings: a 201
        strategies.append(operation.as_strategy(generation_mode=mode, body={"file": blend}))
        cases = st.one_of(strategies)
    if operation.path == p.MANAGER_WORK and mode is GenerationMode.POSITIVE:
        request = p.WorkRequest(farm.known["worker"]).to_dict()  # frames of a queued task
        cases = st.one_of([*strategies, operation.as_strategy(generation_mode=mode, body=request)])
    return cases


def _run(farm: Farm, session: requests.Session, mode: GenerationMode) -> None:
    failures: list[str] = []
    for operation in _operations(farm):

        @given(case=_strategy(farm, operation, mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            print_blob=True,
        )
        def check(case: Any) -> None:
            case.call_and_validate(session=session, headers=AUTH, checks=CHECKS)

        try:
            check()
        except BaseException as exc:  # schemathesis raises an ExceptionGroup of failures; collect them all
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(f"== {operation.label} ({mode.value})\n{exc}")
    assert not failures, "\n\n".join(failures)


def test_the_document_describes_every_route(farm: Farm, session: requests.Session) -> None:
    labels = {op.label for op in _operations(farm)}
    assert len(labels) >= 20
    assert "PUT /api/agent/v1/tasks/{task_id}/frames/{frame}" in labels
    doc = session.get(f"{farm.url}/openapi.json", headers=AUTH).json()
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert operation.get("security"), f"{method} {path} does not document the token"
            assert "401" in operation["responses"], f"{method} {path} does not document the 401"
            errors = {code for code in operation["responses"] if code.startswith("4")}
            for code in errors:
                schema = operation["responses"][code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, code)
    assert "HTTPValidationError" not in doc["components"]["schemas"], "every 422 is our {error} body"


def test_requests_that_fit_the_document(farm: Farm, session: requests.Session) -> None:
    _run(farm, session, GenerationMode.POSITIVE)


def test_requests_that_do_not_fit_the_document(farm: Farm, session: requests.Session) -> None:
    _run(farm, session, GenerationMode.NEGATIVE)


def test_no_upload_leaves_a_file_behind_or_escapes(farm: Farm) -> None:
    """After all the generated uploads: no partial upload, no frame of a task that is not rendering."""
    data = farm.service.data_dir
    assert list((data / "uploads").iterdir()) == []
    task_dirs = {d.name for d in (data / "tasks").iterdir()}
    assert task_dirs <= {farm.known["task_key"]}, "frame uploads for unknown tasks wrote nothing"
    assert not (data / "frames").exists(), "a task id of '..' did not reach outside tasks/"
    for leftover in data.rglob(".upload-*"):
        pytest.fail(f"a partial frame upload was left behind: {leftover}")


def _with_infinite_fps_base(source: Path, target: Path) -> None:
    """A copy of ``source`` whose current scene's ``RenderData.frs_sec_base`` is +inf."""
    import struct

    from blendfile import BlendFile

    with BlendFile.open(source) as bfile:
        glob = bfile.struct_view(bfile.find_blocks(b"GLOB")[0])
        block = bfile.block_at(glob.get_pointer("curscene")) or bfile.find_blocks(b"SC")[0]
        scene = bfile.struct_view(block)
        render_data = bfile.sdna.struct_by_name("RenderData")
        r_field = scene.dna.field("r")
        assert render_data is not None
        assert r_field is not None
        base_field = render_data.field("frs_sec_base")
        assert base_field is not None
        offset = block.offset + r_field.offset + base_field.offset
        order = "<" if bfile.endian == "little" else ">"
    data = bytearray(source.read_bytes())
    struct.pack_into(order + "f", data, offset, float("inf"))
    target.write_bytes(data)


def test_a_file_with_an_infinite_frame_rate_is_refused(tmp_path: Path) -> None:
    """Found by reading what reaches the JSON answers: +inf would make every later answer about the
    task a 500 (JSON has no infinity); the upload is refused with a 400 instead."""
    from fastapi.testclient import TestClient

    bad = tmp_path / "inf.blend"
    _with_infinite_fps_base(CAMERA_FILE, bad)
    service = FarmService(tmp_path / "data")
    try:
        with TestClient(create_app(service, TOKEN)) as client, bad.open("rb") as f:
            r = client.post("/api/render-tasks/run_task/", files={"file": ("inf.blend", f)}, headers=AUTH)
            assert r.status_code == 400, r.text
            assert "frame rate" in r.json()["error"]
            tasks = client.get("/api/render-tasks/", headers=AUTH)
            assert tasks.status_code == 200, tasks.text
            assert all(t["fps_base"] is None for t in tasks.json())
    finally:
        service.close()
