"""The agent core under faults that are not Blender's: a link cut while it downloads the task's file, a disk
with room for a frame but not for the note that keeps it across a restart.

The manager is an ``httpx.MockTransport``; nothing is rendered (a found-but-unused Blender install is enough to
get past choosing one).
"""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from agent import protocol as p
from agent import service as service_module
from agent.blender import BlenderChoice, BlenderInstall
from agent.errors import AgentError, TransferError
from agent.service import AgentConfig, AgentCore, _describe, _Job
from agent.session import FrameRendered

TOKEN = "agent-test-token-0123456789"
BODY = b"BLENDER-v304" + bytes(4096)
SHA = hashlib.sha256(BODY).hexdigest()


def assignment(**changes: object) -> p.WorkAssignment:
    fields: dict[str, object] = {
        "task_id": "t" * 32,
        "attempt": "a1",
        "frames": [1, 2],
        "file_sha256": SHA,
        "file_name": "scene.blend",
        "file_size": len(BODY),
        "data_type": "SINGLE_FILE",
        "scene": "Scene",
        "blender_version": "3.4",
        "output_type": "PNG",
    }
    fields.update(changes)
    return p.WorkAssignment(**fields)  # type: ignore[arg-type]


@pytest.fixture
def core(tmp_path: Path) -> Iterator[AgentCore]:
    config = AgentConfig(name="pc", host="127.0.0.1", port=8765, work_dir=tmp_path / "work", token=TOKEN)
    core = AgentCore(config, installs=[])
    core.manager_url = "http://manager.invalid:8700"
    yield core
    core.close()


def serve(core: AgentCore, handler: Callable[[httpx.Request], httpx.Response]) -> None:
    core._client = httpx.Client(base_url="http://manager.invalid:8700", transport=httpx.MockTransport(handler))


class CutStream(httpx.SyncByteStream):
    """Half the file, then the connection resets (a cable pulled mid-download)."""

    def __iter__(self) -> Iterator[bytes]:
        yield BODY[: len(BODY) // 2]
        raise httpx.ReadError("[Errno 104] Connection reset by peer")


def test_a_cut_download_is_a_transfer_error_and_leaves_no_partial_file(core: AgentCore) -> None:
    serve(core, lambda request: httpx.Response(200, stream=CutStream()))
    with pytest.raises(TransferError, match="interrupted"):
        core._fetch_file(assignment())
    assert list((core.config.work_dir / "cache").iterdir()) == []


def test_a_manager_that_cannot_answer_is_a_transfer_error(core: AgentCore) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused")

    serve(core, refuse)
    with pytest.raises(TransferError):
        core._fetch_file(assignment())
    serve(core, lambda request: httpx.Response(503))
    with pytest.raises(TransferError, match="HTTP 503"):
        core._fetch_file(assignment())


def test_a_file_the_manager_does_not_have_is_a_real_failure(core: AgentCore) -> None:
    serve(core, lambda request: httpx.Response(404))
    with pytest.raises(AgentError, match="HTTP 404") as caught:
        core._fetch_file(assignment())
    assert not isinstance(caught.value, TransferError)


def test_the_download_completes_when_the_link_holds(core: AgentCore) -> None:
    serve(core, lambda request: httpx.Response(200, content=BODY))
    path = core._fetch_file(assignment())
    assert path.read_bytes() == BODY


def test_a_cut_download_blames_no_frame_and_keeps_the_frames(core: AgentCore, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the worker does with it: the frame goes back to the head of the queue; nothing is reported failed."""
    fake = BlenderInstall("executable", Path("/usr/bin/blender"), (3, 4, 1), "3.4.1")
    monkeypatch.setattr(service_module, "select_blender", lambda installs, version: BlenderChoice(fake, "ok"))
    reported: list[tuple[int, str]] = []
    monkeypatch.setattr(core, "_report_failure", lambda job, error, fault, tail: reported.append((job.frame, fault)))
    serve(core, lambda request: httpx.Response(200, stream=CutStream()))
    work = assignment()
    first, second = _Job(work, 1), _Job(work, 2)
    core._queue.append(second)
    with pytest.raises(TransferError) as caught:
        core._render(first)
    assert core._requeue_after_transfer_error(first, caught.value) == 1
    assert reported == []
    assert [job.frame for job in core._queue] == [1, 2]


def test_no_room_for_the_outbox_note_still_sends_the_frame(core: AgentCore, monkeypatch: pytest.MonkeyPatch) -> None:
    out = core.config.work_dir / "out"
    frame = out / "frame_000001.png"
    frame.write_bytes(b"\x89PNG fake")
    original = Path.write_text

    def full_disk(self: Path, *args: object, **kwargs: object) -> int:
        if self.suffix == ".json":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", full_disk)
    core._queue_upload(assignment(), FrameRendered(1, frame, "0" * 64, 9, 1.5), 1)
    upload = core._uploads.get_nowait()
    assert upload is not None
    assert upload.frame == 1
    assert upload.path.exists()
    assert list((core.config.work_dir / "outbox").glob("*.json")) == []


def test_a_full_disk_is_named_in_words_the_user_reads() -> None:
    text = _describe(OSError(errno.ENOSPC, "No space left on device", "/work/out/frame_000001.png"))
    assert "No space left on device" in text
    assert "disk is full" in text
    assert _describe(ValueError("odd")) == "odd"
