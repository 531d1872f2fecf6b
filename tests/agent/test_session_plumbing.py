"""The session's process handling with a fake driver (tests/agent/fake_driver.py): no Blender, so fast, and
able to misbehave in ways a real Blender does only rarely (bad files, ignoring signals, grandchildren)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.blender import BlenderInstall
from agent.command import RenderSettings
from agent.errors import SessionError, SessionStartError
from agent.output import Fault
from agent.session import (
    FrameFailed,
    FrameProgress,
    FrameRendered,
    RenderSession,
    SessionState,
    check_frame_file,
    check_png,
)

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
FAKE = HERE / "fake_driver.py"
FAKE_INSTALL = BlenderInstall("bpy", Path(sys.executable), (5, 0, 1), "fake")

pytestmark = pytest.mark.timeout(60)


def gone(pid: int, within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while True:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return True
        if any(line.startswith("State:") and "Z" in line for line in status.splitlines()):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Callable[[str], RenderSession]]:
    made: list[RenderSession] = []

    def make(mode: str) -> RenderSession:
        settings = RenderSettings(extra_env=(("FAKE_MODE", mode),))
        session = RenderSession(FAKE_INSTALL, tmp_path / "scene.blend", settings, driver=FAKE, progress_interval_s=0)
        made.append(session)
        return session

    yield make
    for session in made:
        session.close(timeout=2)
        if session.pid is not None:
            assert gone(session.pid)


def valid_png() -> bytes:
    import importlib.util

    spec = importlib.util.spec_from_file_location("fake_driver", FAKE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data: bytes = module.png()
    return data


def test_a_frame_goes_through_with_progress_and_checksum(fake: Callable[[str], RenderSession], tmp_path: Path) -> None:
    session = fake("ok")
    ready = session.start()
    assert ready.blender == "fake"
    # The status line glued in front of the message was split off and kept as a log line.
    assert any(line.startswith("Fra:1 Mem:1.00M") for line in session.log_tail())
    seen: list[FrameProgress] = []
    result = session.render(7, str(tmp_path / "out" / "f_####"), on_progress=seen.append)
    assert isinstance(result, FrameRendered)
    assert result.path == tmp_path / "out" / "f_0007.png"
    assert [p.fraction for p in seen] == [0.0, 0.5, 0.99, 1.0]
    assert session.close() == 0
    assert session.state is SessionState.CLOSED


def test_a_truncated_png_is_bad_output_and_removed(fake: Callable[[str], RenderSession], tmp_path: Path) -> None:
    session = fake("bad-png")
    session.start()
    result = session.render(1, str(tmp_path / "f_####"))
    assert isinstance(result, FrameFailed)
    assert result.fault is Fault.BAD_OUTPUT
    assert "IEND" in result.error or "truncated" in result.error
    assert not (tmp_path / "f_0001.png").exists()
    assert session.state is SessionState.READY  # the process is fine; the next frame may succeed


def test_a_fatal_driver_error_fails_the_start_with_its_class(fake: Callable[[str], RenderSession]) -> None:
    session = fake("fatal")
    with pytest.raises(SessionStartError) as error:
        session.start()
    assert error.value.fault is Fault.GPU_ERROR
    assert error.value.exit_code == 2
    assert error.value.message == "GPU error: no CUDA device found"
    assert session.state is SessionState.DEAD


def test_blender_exiting_mid_frame_is_a_failed_frame_with_exit_status(
    fake: Callable[[str], RenderSession], tmp_path: Path
) -> None:
    session = fake("die")
    session.start()
    result = session.render(1, str(tmp_path / "f_####"))
    assert isinstance(result, FrameFailed)
    assert result.exit_code == 3
    assert result.fault is Fault.OUT_OF_MEMORY
    assert result.error == "System is out of memory"
    assert "Error: System is out of memory" in result.log_tail
    assert session.state is SessionState.DEAD
    with pytest.raises(SessionError):
        session.render(2, str(tmp_path / "f_####"))


def test_cancel_kills_the_whole_group_including_grandchildren(fake: Callable[[str], RenderSession]) -> None:
    session = fake("stubborn")
    session.start()
    grandchild = next(int(line.split()[1]) for line in session.log_tail() if line.startswith("grandchild "))
    assert session.pid is not None
    began = time.monotonic()
    session.cancel()
    assert gone(session.pid, 2.0)
    assert gone(grandchild, 2.0 - (time.monotonic() - began))


def test_close_kills_a_driver_that_does_not_quit(fake: Callable[[str], RenderSession]) -> None:
    session = fake("stubborn")
    session.start()
    began = time.monotonic()
    assert session.close(timeout=0.5) == -signal.SIGKILL
    assert time.monotonic() - began < 3.0


def test_render_checks_its_arguments(fake: Callable[[str], RenderSession]) -> None:
    session = fake("ok")
    with pytest.raises(ValueError, match="absolute"):
        session.render(1, "relative/f_####")
    with pytest.raises(SessionError):
        session.render(1, "/tmp/f_####")  # not started


AGENT = """
import sys, time
from pathlib import Path
from agent.blender import BlenderInstall
from agent.command import RenderSettings
from agent.session import RenderSession

install = BlenderInstall("bpy", Path(sys.executable), (5, 0, 1), "fake")
settings = RenderSettings(extra_env=(("FAKE_MODE", "stubborn"),))
session = RenderSession(install, Path(sys.argv[2]), settings, driver=Path(sys.argv[1]))
session.start()
grandchild = next(line.split()[1] for line in session.log_tail() if line.startswith("grandchild "))
print(session.pid, grandchild, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_parent_death_signal_kills_a_driver_that_ignores_everything(tmp_path: Path) -> None:
    """The fake ignores SIGTERM, stdin closing and its parent dying; only the kernel can end it now."""
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT, str(FAKE), str(tmp_path / "scene.blend")],
        stdout=subprocess.PIPE,
        text=True,
        # TMPDIR: where the agent's session makes its temp folder, which a SIGKILLed agent cannot remove.
        env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)},
    )
    try:
        assert agent.stdout is not None
        driver, grandchild = (int(pid) for pid in agent.stdout.readline().split())
        try:
            agent.kill()
            agent.wait(10)
            assert gone(driver, 2.0)
        finally:
            # The kernel signals only the direct child; the fake's "sleep" grandchild (which a real Blender
            # does not have) would outlive it, so end it here, by its pid.
            with contextlib.suppress(ProcessLookupError):
                os.kill(grandchild, signal.SIGKILL)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
        if agent.stdout is not None:
            agent.stdout.close()


def test_check_png() -> None:
    data = valid_png()
    assert check_png(data) is None
    assert check_png(data[:-12]) == "PNG has no IEND chunk (truncated)"
    assert check_png(data[:20]) is not None
    assert check_png(b"GIF89a") == "not a PNG file (bad signature)"
    broken = bytearray(data)
    broken[20] ^= 0xFF  # inside IHDR: its CRC no longer matches
    assert "CRC" in str(check_png(bytes(broken)))
    # An IDAT that passes its CRC but does not inflate.
    idat_at = data.index(b"IDAT")
    length = int.from_bytes(data[idat_at - 4 : idat_at], "big")
    junk = b"\x00" * length
    crc = zlib.crc32(b"IDAT" + junk).to_bytes(4, "big")
    bad_idat = data[: idat_at + 4] + junk + crc + data[idat_at + 8 + length :]
    assert "inflate" in str(check_png(bad_idat))


def test_check_frame_file(tmp_path: Path) -> None:
    empty = tmp_path / "f.exr"
    empty.write_bytes(b"")
    assert check_frame_file(empty) == "the frame file is empty"
    assert check_frame_file(tmp_path / "missing.png") is not None
    jpeg = tmp_path / "f.jpg"
    jpeg.write_bytes(b"\xff\xd8 data \xff\xd9")
    assert check_frame_file(jpeg) is None
    jpeg.write_bytes(b"\xff\xd8 data")
    assert check_frame_file(jpeg) == "JPEG truncated or not a JPEG"
    tiff = tmp_path / "f.tif"
    tiff.write_bytes(b"II*\0")
    assert check_frame_file(tiff) is None
