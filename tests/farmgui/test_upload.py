"""run_task's upload: streamed into the data directory as it arrives, hashed in the same pass, limited.

Every refusal (too large, not a blend file, an unsafe zip, a dropped connection, a bad field) is a 4xx
with the reason and leaves no file in the data directory. Some tests drive the ASGI app directly with a
``receive`` that counts what the app read: the TestClient reads a whole request body before the app
sees it, so it cannot show that the manager stopped reading at the limit.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import struct
import time
import zipfile
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient

from agent import protocol as p
from agent.httpserver import ServerThread
from farmgui.core import storage as storage_module
from farmgui.core.api import create_app
from farmgui.core.service import BadRequest, FarmService
from farmgui.core.storage import Storage, UploadTooLarge
from tests.conftest import BLENDFILES

from .conftest import AUTH, TOKEN

CAMERA_FILE = BLENDFILES / "gltf-blender-io/36_viewport_material_export.blend"  # 4.5, PNG, has a camera
URL = "/api/render-tasks/run_task/"
BOUNDARY = "frameherd-test-boundary"


def leftovers(data_dir: Path) -> list[str]:
    """Every file in the data directory but the database's and the token."""
    return sorted(
        f.relative_to(data_dir).as_posix()
        for f in data_dir.rglob("*")
        if f.is_file() and not f.name.startswith("farm.sqlite3") and f.name != "token"
    )


def multipart(parts: list[tuple[str, str | None, bytes]]) -> bytes:
    """A multipart/form-data body, parts in the order given: (name, filename or None for a field, bytes)."""
    out = bytearray()
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def post(client: TestClient, name: str, data: bytes, **fields: Any) -> Any:
    return client.post(URL, files={"file": (name, data)}, data={k: str(v) for k, v in fields.items()}, headers=AUTH)


# -- the streaming path ------------------------------------------------------------------------------
def test_the_upload_is_written_and_hashed_once(
    client: TestClient, service: FarmService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No spooled temporary file, no second hashing pass: the digest taken on the way in is the store's."""

    def no_spool(*_: object, **__: object) -> None:
        raise AssertionError("Starlette's spooled temporary file was used")

    def no_rehash(path: Path) -> str:
        raise AssertionError(f"{path} was read again to hash it")

    monkeypatch.setattr("starlette.formparsers.SpooledTemporaryFile", no_spool)
    monkeypatch.setattr(storage_module, "sha256_of", no_rehash)
    blend = CAMERA_FILE.read_bytes()
    # A field after the file part too: the form is complete only at the end of the body.
    body = multipart([("frame_start", None, b"2"), ("file", "shot.blend", blend), ("frame_end", None, b"3")])
    r = client.post(URL, content=body, headers={**AUTH, **MULTIPART})
    assert r.status_code == 201, r.text
    task = client.get(f"/api/render-tasks/{r.json()['task_key']}/", headers=AUTH).json()
    assert (task["start"], task["end"], task["original_name"]) == (2, 3, "shot.blend")
    assert task["file_sha256"] == hashlib.sha256(blend).hexdigest()
    assert task["file_size"] == len(blend)
    assert leftovers(service.data_dir) == [f"files/{task['file_sha256']}"]
    assert (service.data_dir / "files" / task["file_sha256"]).read_bytes() == blend


def test_the_same_file_twice_is_stored_once(client: TestClient, service: FarmService) -> None:
    blend = CAMERA_FILE.read_bytes()
    keys = {post(client, "a.blend", blend).json()["task_key"], post(client, "b.blend", blend).json()["task_key"]}
    assert len(keys) == 2
    assert leftovers(service.data_dir) == [f"files/{hashlib.sha256(blend).hexdigest()}"]


def test_field_errors_are_fastapis_422_and_leave_nothing(client: TestClient, service: FarmService) -> None:
    blend = CAMERA_FILE.read_bytes()
    r = post(client, "x.blend", blend, frame_start=-99_999_999)
    assert r.status_code == 422
    assert r.json() == {"error": "body.frame_start: Input should be greater than or equal to -1048574"}
    r = post(client, "x.blend", blend, tiles="many")
    assert r.status_code == 422
    assert r.json()["error"].startswith("body.tiles: Input should be a valid integer")
    r = client.post(URL, data={"frame_start": "1"}, headers=AUTH)  # url-encoded: Starlette's parser, no file
    assert r.status_code == 422
    assert r.json() == {"error": "body.file: Field required"}
    r = client.post(URL, content=multipart([("file", None, blend)]), headers={**AUTH, **MULTIPART})  # not a file
    assert r.status_code == 422
    assert r.json()["error"].startswith("body.file:")
    assert leftovers(service.data_dir) == []
    assert client.get("/api/render-tasks/", headers=AUTH).json() == [], "a 422 makes no task"


def test_malformed_multipart_is_a_400(client: TestClient, service: FarmService) -> None:
    r = client.post(URL, content=b"garbage", headers={**AUTH, **MULTIPART})
    assert (r.status_code, r.json()) == (400, {"error": "Invalid multipart data."})
    r = client.post(URL, content=b"garbage", headers={**AUTH, "content-type": "multipart/form-data"})
    assert (r.status_code, r.json()) == (400, {"error": "Missing boundary in multipart."})
    nameless = f'--{BOUNDARY}\r\nContent-Disposition: form-data; filename="a.blend"\r\n\r\nx\r\n--{BOUNDARY}--\r\n'
    r = client.post(URL, content=nameless.encode(), headers={**AUTH, **MULTIPART})
    assert r.status_code == 400
    assert '"name" must be provided' in r.json()["error"]
    huge_field = multipart([("scene", None, b"x" * (1024 * 1024 + 1)), ("file", "a.blend", b"x")])
    r = client.post(URL, content=huge_field, headers={**AUTH, **MULTIPART})
    assert (r.status_code, r.json()) == (400, {"error": "Part exceeded maximum size of 1024KB."})
    # The body ends inside the file part: that part never was a file; FastAPI says it is missing.
    cut = multipart([("file", "a.blend", CAMERA_FILE.read_bytes())])[:-100]
    r = client.post(URL, content=cut, headers={**AUTH, **MULTIPART})
    assert r.status_code == 422
    assert leftovers(service.data_dir) == []


def test_the_token_is_checked_before_the_body_is_read(
    client: TestClient, service: FarmService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_incoming(*_: object, **__: object) -> None:
        raise AssertionError("an upload without the token reached the disk")

    monkeypatch.setattr(Storage, "incoming", no_incoming)
    for headers in ({}, p.bearer("wrong")):
        r = client.post(URL, files={"file": ("a.blend", CAMERA_FILE.read_bytes())}, headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {"error": "missing or wrong farm token"}


# -- the ASGI app driven directly: what it read, and when it stopped -----------------------------------
def call_app(
    service: FarmService, body: Iterator[bytes], *, disconnect: bool = False
) -> tuple[int | None, dict[str, Any] | None, int]:
    """POST ``body`` (chunks) to run_task; returns (status, JSON answer, chunks the app read).

    With ``disconnect``, the client goes away after the last chunk instead of finishing the body.
    """
    app = create_app(service, TOKEN)
    read = 0
    sent: list[MutableMapping[str, Any]] = []
    chunks = iter(body)

    async def receive() -> dict[str, Any]:
        nonlocal read
        try:
            chunk = next(chunks)
        except StopIteration:
            if disconnect:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": b"", "more_body": False}
        read += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"authorization", f"Bearer {TOKEN}".encode()),
            (b"content-type", MULTIPART["content-type"].encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }

    async def run() -> None:
        # Starlette's ServerErrorMiddleware re-raises what it answered with a 500: keep the answer.
        try:
            await app(scope, receive, send)
        except Exception:
            if not disconnect:
                raise

    anyio.run(run)
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    text = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return (start["status"] if start else None), (json.loads(text) if text else None), read


def file_part_chunks(chunks: int, size: int) -> Iterator[bytes]:
    """The start of a body whose file part is a real blend file followed by ``chunks`` chunks of zeros."""
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.blend"\r\n\r\n'
    yield head.encode() + CAMERA_FILE.read_bytes()
    for _ in range(chunks):
        yield bytes(size)


def test_the_limit_is_enforced_while_streaming(tmp_path: Path) -> None:
    """A 413 as soon as the file part passes the limit: the rest of the body is never read."""
    service = FarmService(tmp_path / "data", max_upload_bytes=2 << 20)
    try:

        def body() -> Iterator[bytes]:
            yield from file_part_chunks(1000, 64 << 10)  # 64 MiB more on offer
            yield f"\r\n--{BOUNDARY}--\r\n".encode()

        status, answer, read = call_app(service, body())
        assert status == 413
        assert answer == {"error": f"the upload is too large: larger than the limit of {2 << 20} bytes"}
        assert read <= 2 + (2 << 20) // (64 << 10), f"the app read {read} chunks, past the limit"
        assert leftovers(service.data_dir) == []
        assert service.tasks() == [], "a refused upload makes no task"
    finally:
        service.close()


def test_a_client_that_goes_away_leaves_nothing(service: FarmService) -> None:
    status, _answer, read = call_app(service, file_part_chunks(20, 64 << 10), disconnect=True)
    assert read == 21
    assert status in (None, 400)  # nobody is listening any more
    assert leftovers(service.data_dir) == []
    assert service.tasks() == []


def test_a_dropped_connection_leaves_nothing_on_a_real_server(service: FarmService) -> None:
    """Over a real socket: the file is on disk while the body arrives (streamed, not spooled), and goes
    when the client disconnects half-way."""
    uploads = service.data_dir / "uploads"
    with ServerThread(create_app(service, TOKEN), "127.0.0.1", 0) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        try:
            head = (
                f"POST {URL} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Type: {MULTIPART['content-type']}\r\nContent-Length: {100 << 20}\r\n\r\n"
            )
            chunks = file_part_chunks(16, 64 << 10)
            sock.sendall(head.encode() + next(chunks))
            for chunk in chunks:
                sock.sendall(chunk)
            deadline = time.monotonic() + 10
            while not any(uploads.iterdir()):
                assert time.monotonic() < deadline, "nothing reached the disk while the body arrived"
                time.sleep(0.01)
            (partial,) = uploads.iterdir()
            while partial.exists() and partial.stat().st_size < 16 * (64 << 10):
                assert time.monotonic() < deadline, "the upload stopped growing"
                time.sleep(0.01)
        finally:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset, mid-body
            sock.close()
        deadline = time.monotonic() + 10
        while leftovers(service.data_dir):
            assert time.monotonic() < deadline, f"left behind: {leftovers(service.data_dir)}"
            time.sleep(0.01)
    assert service.tasks() == []


# -- what the bytes must be ---------------------------------------------------------------------------
def zip_bytes(entries: dict[str, bytes], comment: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
        zf.comment = comment
    return buf.getvalue()


def ratio_bomb() -> bytes:
    """A main.blend of 64 MiB of zeros, deflated to about 64 KiB (1000 times)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("main.blend", "w") as member:
        member.write(CAMERA_FILE.read_bytes()[:12])
        for _ in range(64):
            member.write(bytes(1 << 20))
    return buf.getvalue()


def overlapping_bomb() -> bytes:
    """Two entries whose central-directory records point at the same compressed bytes."""
    data = bytearray(zip_bytes({"main.blend": CAMERA_FILE.read_bytes(), "other.blend": CAMERA_FILE.read_bytes()}))
    first = data.find(b"PK\x01\x02")
    second = data.find(b"PK\x01\x02", first + 1)
    offset = struct.unpack_from("<I", data, first + 42)[0]
    struct.pack_into("<I", data, second + 42, offset)  # "relative offset of local header"
    return bytes(data)


REFUSED = {
    "empty.blend": (b"", "empty"),
    "notes.blend": (b"hello, not a blend file", "neither a blend file nor a zip project"),
    "cut.blend": (CAMERA_FILE.read_bytes()[:5000], "the file ends at 5000"),
    "climb.zip": (zip_bytes({"main.blend": CAMERA_FILE.read_bytes(), "../evil.blend": b"x"}), "'..' component"),
    "absolute.zip": (zip_bytes({"main.blend": CAMERA_FILE.read_bytes(), "/etc/evil": b"x"}), "absolute entry name"),
    "backslash.zip": (zip_bytes({"main.blend": CAMERA_FILE.read_bytes(), "..\\evil": b"x"}), "backslash"),
    "no-main.zip": (zip_bytes({"a.blend": b"x", "b.blend": b"x"}), "name the main one"),
    "damaged.zip": (zip_bytes({"main.blend": CAMERA_FILE.read_bytes()})[:-30], "not a readable zip"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_uploads_say_why_and_leave_nothing(client: TestClient, service: FarmService, name: str) -> None:
    data, reason = REFUSED[name]
    r = post(client, name, data)
    assert r.status_code == 400, r.text
    assert reason.lower() in r.json()["error"].lower(), r.json()
    assert leftovers(service.data_dir) == []
    (task,) = client.get("/api/render-tasks/", headers=AUTH).json()
    assert (task["stage"], task["error"]) == ("failed", r.json()["error"]), "the refusal is on record"


@pytest.mark.parametrize(("bomb", "reason"), [(ratio_bomb, "inflates more than"), (overlapping_bomb, "share")])
def test_zip_bombs_are_refused_and_leave_nothing(
    client: TestClient, service: FarmService, bomb: Any, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"  # where the main .blend is inflated to be read: emptied again
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    r = post(client, "bomb.zip", bomb())
    assert r.status_code == 400, r.text
    assert reason in r.json()["error"]
    assert "zip bomb" in r.json()["error"]
    assert leftovers(service.data_dir) == []
    assert list(scratch.iterdir()) == []


def test_a_zip_project_is_accepted(client: TestClient, service: FarmService) -> None:
    project = zip_bytes({"shot/main.blend": CAMERA_FILE.read_bytes(), "shot/tex/wood.png": b"\x89PNG"})
    r = post(client, "shot.zip", project, frame_start=1, frame_end=1)
    assert r.status_code == 201, r.text
    task = client.get(f"/api/render-tasks/{r.json()['task_key']}/", headers=AUTH).json()
    assert (task["data_type"], task["main_blend"]) == ("MULTI_FILE", "shot/main.blend")
    assert task["file_sha256"] == hashlib.sha256(project).hexdigest()
    assert leftovers(service.data_dir) == [f"files/{task['file_sha256']}"]


# -- the storage and the service's own copy -------------------------------------------------------------
def test_a_remembered_digest_is_used_only_for_the_file_it_was_taken_of(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Storage(tmp_path / "data")
    hashed: list[Path] = []
    real = storage_module.sha256_of

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(storage_module, "sha256_of", counting)
    upload = store.upload_path("a")
    size, sha = store.receive(io.BytesIO(b"abc"), upload)
    assert (size, sha) == (3, hashlib.sha256(b"abc").hexdigest())
    assert store.store_file(upload) == (sha, 3)
    assert hashed == []
    # Rewritten after the digest was taken: hashed again, never trusted.
    other = store.upload_path("b")
    store.receive(io.BytesIO(b"abc"), other)
    other.write_bytes(b"abd")
    assert store.store_file(other) == (hashlib.sha256(b"abd").hexdigest(), 3)
    assert hashed == [other]


def test_an_incoming_file_past_its_limit_is_gone(tmp_path: Path) -> None:
    store = Storage(tmp_path / "data")
    incoming = store.incoming(limit=4)
    incoming.write(b"abcd")
    with pytest.raises(UploadTooLarge, match="limit of 4 bytes"):
        incoming.write(b"e")
    assert not incoming.path.exists()
    incoming.discard()  # twice is fine


def test_stale_incoming_files_are_removed_on_start(tmp_path: Path) -> None:
    store = Storage(tmp_path / "data")
    left = store.incoming().path  # as a killed manager leaves it
    Storage(tmp_path / "data")
    assert not left.exists()


def test_submit_file_reads_the_file_once_and_refuses_one_too_large(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_rehash(path: Path) -> str:
        raise AssertionError(f"{path} was read again to hash it")

    monkeypatch.setattr(storage_module, "sha256_of", no_rehash)
    service = FarmService(tmp_path / "data", max_upload_bytes=CAMERA_FILE.stat().st_size)
    try:
        task = service.submit_file(CAMERA_FILE)
        assert task["file_sha256"] == hashlib.sha256(CAMERA_FILE.read_bytes()).hexdigest()
        service.max_upload_bytes -= 1
        with pytest.raises(BadRequest, match="too large"):
            service.submit_file(CAMERA_FILE)
        assert len(service.tasks()) == 1, "no task for a file refused for its size"
    finally:
        service.close()
