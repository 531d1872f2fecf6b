"""Render sessions with real Blender: Debian's 3.4 executable and the bpy 5.0.1 module.

The scenes are made at test time by each Blender (tests/agent/blender_scenes.py): a cube and a camera, 32x32 px,
Cycles with 2 samples, rendered on one thread. Every test checks that no Blender process is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.blender import BlenderInstall
from agent.command import CyclesDevice, RenderSettings
from agent.driver import TEMP_SUFFIX
from agent.errors import SessionClosedError, SessionStartError
from agent.output import Fault
from agent.session import (
    LOG_LINES,
    FrameFailed,
    FrameProgress,
    FrameRendered,
    FrameResult,
    RenderSession,
    SessionState,
    check_frame_file,
    sha256_file,
)

# The timeout guards the blocking reads: a hung Blender fails its test instead of the whole run.
pytestmark = [pytest.mark.blender, pytest.mark.slow, pytest.mark.timeout(120)]

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
SCENES_SCRIPT = HERE / "blender_scenes.py"
ONE_THREAD = RenderSettings(threads=1)


# --- Blender installs and their scenes ---------------------------------------------------------------------


def make_scenes(install: BlenderInstall, folder: Path) -> Path:
    if install.kind == "executable":
        argv = [str(install.path), "-b", "--factory-startup", "--python-exit-code", "1", "--python"]
        argv += [str(SCENES_SCRIPT), "--", str(folder)]
    else:
        argv = [str(install.path), str(SCENES_SCRIPT), str(folder)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return folder


@pytest.fixture(scope="module")
def scenes(install: BlenderInstall, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test scenes saved by the Blender under test (a 3.4 file for 3.4, a 5.0 file for 5.0)."""
    return make_scenes(install, tmp_path_factory.mktemp(f"scenes-{install.kind}"))


# --- no process left behind --------------------------------------------------------------------------------


def process_gone(pid: int) -> bool:
    """Gone, or a zombie: dead, waiting only for whoever inherited it to read its status."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return any(line.startswith("State:") and "Z" in line.split()[1] for line in status.splitlines())


def wait_gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process_gone(pid):
            return True
        time.sleep(0.02)
    return process_gone(pid)


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (our scenes' folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and not process_gone(int(entry.name)):
            found.append(int(entry.name))
    return found


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[Callable[..., RenderSession]]:
    """Make sessions that are closed after the test, then check that none of their processes is left."""
    made: list[RenderSession] = []

    def make(install: BlenderInstall, blend: Path, settings: RenderSettings = ONE_THREAD) -> RenderSession:
        session = RenderSession(install, blend, settings, progress_interval_s=0.0)
        made.append(session)
        return session

    yield make
    for session in made:
        session.close(timeout=5)
    for session in made:
        if session.pid is not None:
            assert process_gone(session.pid), f"Blender {session.pid} was left running"
            with pytest.raises(ProcessLookupError):
                os.killpg(session.pid, 0)  # nothing left in its process group either
    if sys.platform.startswith("linux"):
        leftovers = [pid for s in made for pid in processes_mentioning(str(s.blend_file.parent))]
        assert leftovers == [], f"processes left: {leftovers}"


def render_batch(
    session: RenderSession, frames: list[int], pattern: str
) -> tuple[list[FrameResult], dict[int, list[float]]]:
    progress: dict[int, list[float]] = {}

    def on_progress(p: FrameProgress) -> None:
        progress.setdefault(p.frame, []).append(p.fraction)

    results = [session.render(frame, pattern, on_progress=on_progress) for frame in frames]
    return results, progress


def assert_rendered(result: FrameResult, suffix: str) -> FrameRendered:
    assert isinstance(result, FrameRendered), result
    assert result.path.suffix == suffix
    assert check_frame_file(result.path) is None
    assert result.sha256 == sha256_file(result.path)
    assert result.size == result.path.stat().st_size > 0
    return result


# --- tests ---------------------------------------------------------------------------------------------------


def test_two_batches_render_in_one_process_without_reloading(
    install: BlenderInstall, scenes: Path, sessions: Callable[..., RenderSession], tmp_path: Path
) -> None:
    session = sessions(install, scenes / "basic.blend")
    ready = session.start()
    assert ready.blender.startswith(install.version_string.split()[0])
    assert (ready.format, ready.extension, ready.resolution) == ("PNG", ".png", (32, 32))
    pid = session.pid

    first, progress = render_batch(session, [1, 2], str(tmp_path / "chunk1" / "f_####"))
    second, progress2 = render_batch(session, [3], str(tmp_path / "chunk2" / "f_####"))
    progress.update(progress2)

    paths = [assert_rendered(r, ".png").path for r in first + second]
    assert [p.name for p in paths] == ["f_0001.png", "f_0002.png", "f_0003.png"]
    assert session.pid == pid
    assert session.state is SessionState.READY
    # The file was loaded once for both batches: Blender printed "Read blend:" once.
    assert session.files_loaded == 1
    assert sum("Read blend:" in line for line in session.log_tail(LOG_LINES)) == 1
    for frame, fractions in progress.items():
        assert fractions[0] == 0.0, frame
        assert fractions[-1] == 1.0, frame
        assert fractions == sorted(fractions), frame
        assert any(0.0 < f < 1.0 for f in fractions), f"no progress between 0 and 1 for frame {frame}"
    # Nothing half-written is left under a temporary name.
    assert not list(tmp_path.rglob(f"*{TEMP_SUFFIX}"))
    assert session.close() == 0


@pytest.mark.parametrize(("scene", "suffix", "forced"), [("movie", ".png", True), ("jpeg", ".jpg", False)])
def test_frames_arrive_in_the_scene_format_and_movies_become_png(
    install: BlenderInstall,
    scenes: Path,
    sessions: Callable[..., RenderSession],
    tmp_path: Path,
    scene: str,
    suffix: str,
    forced: bool,
) -> None:
    session = sessions(install, scenes / f"{scene}.blend")
    ready = session.start()
    assert ready.forced_png is forced
    result = assert_rendered(session.render(4, str(tmp_path / "out_####")), suffix)
    assert result.path == tmp_path / f"out_0004{suffix}"


def test_odd_characters_in_the_output_path_are_taken_literally(
    install: BlenderInstall, scenes: Path, sessions: Callable[..., RenderSession], tmp_path: Path
) -> None:
    """ "#" is Blender's frame placeholder and 5.0 reads "{...}" as a path template: neither may bite here."""
    session = sessions(install, scenes / "basic.blend")
    session.start()
    folder = tmp_path / "shot #1 {v2} été"
    result = assert_rendered(session.render(5, str(folder / "f_####")), ".png")
    assert result.path == folder / "f_0005.png"


def test_auto_exec_is_off_unless_the_task_is_trusted(
    install: BlenderInstall, scenes: Path, sessions: Callable[..., RenderSession], tmp_path: Path
) -> None:
    marker = tmp_path / "autorun-ran"
    env = (("FRAMEHERD_TEST_MARKER", str(marker)),)

    untrusted = sessions(install, scenes / "autorun.blend", RenderSettings(threads=1, extra_env=env))
    ready = untrusted.start()
    assert ready.autoexec_blocked
    assert any("skipping 'autorun.py'" in line for line in untrusted.log_tail())
    assert_rendered(untrusted.render(1, str(tmp_path / "a_####")), ".png")
    assert not marker.exists()
    untrusted.close()

    trusted = sessions(install, scenes / "autorun.blend", RenderSettings(threads=1, trusted=True, extra_env=env))
    assert not trusted.start().autoexec_blocked
    assert marker.read_text() == "auto-exec ran"


def test_denoiser_missing_in_debians_34_is_a_failed_frame(
    exe_install: BlenderInstall, sessions: Callable[..., RenderSession], tmp_path_factory: pytest.TempPathFactory
) -> None:
    if exe_install.version[:2] != (3, 4):
        pytest.skip(f"the OpenImageDenoise error is Debian's 3.4 build; this is {exe_install.version_string}")
    scenes = make_scenes(exe_install, tmp_path_factory.mktemp("denoise"))
    out = tmp_path_factory.mktemp("denoise-out")
    session = sessions(exe_install, scenes / "denoise.blend")
    session.start()
    result = session.render(1, str(out / "d_####"))
    assert isinstance(result, FrameFailed)
    assert result.error == "Build without OpenImageDenoiser"
    assert result.fault is Fault.DENOISER_UNAVAILABLE
    assert result.exit_code is None  # a frame failure, not a dead Blender: the session goes on
    assert session.state is SessionState.READY
    assert session.alive
    assert list(out.iterdir()) == []  # no frame, no temporary file


def start_slow_render(session: RenderSession, pattern: str) -> tuple[threading.Thread, list[FrameResult]]:
    """Render the slow scene in a thread; return once the frame has started."""
    results: list[FrameResult] = []
    started = threading.Event()

    def run() -> None:
        results.append(session.render(1, pattern, on_progress=lambda p: started.set()))

    thread = threading.Thread(target=run, name="slow-render")
    thread.start()
    assert started.wait(30), "the slow frame never started"
    time.sleep(0.3)  # into the render proper
    return thread, results


def test_cancel_kills_the_process_group_within_two_seconds(
    install: BlenderInstall, scenes: Path, sessions: Callable[..., RenderSession], tmp_path: Path
) -> None:
    session = sessions(install, scenes / "slow.blend")
    session.start()
    pid = session.pid
    assert pid is not None
    thread, results = start_slow_render(session, str(tmp_path / "s_####"))

    began = time.monotonic()
    session.cancel()
    assert wait_gone(pid, 2.0 - (time.monotonic() - began))
    assert time.monotonic() - began < 2.0
    thread.join(5)
    assert not thread.is_alive()
    assert results[0] == FrameFailed(1, "cancelled", Fault.CANCELLED, results[0].seconds, results[0].log_tail)
    assert session.state is SessionState.CLOSED
    assert not list(tmp_path.iterdir())  # the partial frame was removed
    with pytest.raises(SessionClosedError):
        session.render(2, str(tmp_path / "s_####"))


def test_a_frame_over_its_time_limit_fails_and_ends_the_session(
    bpy_install: BlenderInstall, sessions: Callable[..., RenderSession], tmp_path: Path
) -> None:
    scenes = make_scenes(bpy_install, tmp_path / "scenes")
    session = sessions(bpy_install, scenes / "slow.blend")
    session.start()
    result = session.render(1, str(tmp_path / "t_####"), timeout=1.0)
    assert isinstance(result, FrameFailed)
    assert result.fault is Fault.TIMEOUT
    assert session.state is SessionState.CLOSED
    assert not session.alive


def test_a_frame_over_its_memory_limit_fails_and_ends_the_session(
    exe_install: BlenderInstall, sessions: Callable[..., RenderSession], tmp_path: Path
) -> None:
    scenes = make_scenes(exe_install, tmp_path / "scenes")
    session = sessions(exe_install, scenes / "slow.blend")
    session.start()
    session.memory_limit_mb = 1.0  # Blender needs far more than 1 MB: the first check stops it
    result = session.render(1, str(tmp_path / "m_####"))
    assert isinstance(result, FrameFailed)
    assert result.fault is Fault.OUT_OF_MEMORY
    assert "over the task's limit of 1 MB" in result.error
    assert not session.alive


def test_a_crash_mid_frame_is_reported_with_exit_status_and_log(
    install: BlenderInstall, scenes: Path, sessions: Callable[..., RenderSession], tmp_path: Path
) -> None:
    session = sessions(install, scenes / "slow.blend")
    session.start()
    assert session.pid is not None
    thread, results = start_slow_render(session, str(tmp_path / "c_####"))
    os.kill(session.pid, signal.SIGSEGV)
    thread.join(30)
    result = results[0]
    assert isinstance(result, FrameFailed)
    assert result.fault is Fault.CRASH
    assert result.exit_code is not None
    assert result.exit_code != 0
    assert result.log_tail  # Blender's last lines, for the report
    assert session.state is SessionState.DEAD
    if install.kind == "executable":
        # The executable's crash handler writes <file>.crash.txt into the session's temp folder; the session
        # copies it into the log before removing the folder.
        assert any(line.startswith("Writing:") and line.endswith("slow.crash.txt") for line in result.log_tail)
        assert any(line.startswith("crash report: # Blender") for line in result.log_tail)


def test_blender_34_cannot_start_on_a_50_file(
    exe_install: BlenderInstall, bpy_install: BlenderInstall, sessions: Callable[..., RenderSession], tmp_path: Path
) -> None:
    if exe_install.version >= (5, 0, 0):
        pytest.skip("this Blender can read 5.0 files")
    scenes = make_scenes(bpy_install, tmp_path / "scenes50")
    session = sessions(exe_install, scenes / "basic.blend")
    with pytest.raises(SessionStartError) as error:
        session.start()
    assert error.value.fault is Fault.NOT_A_BLEND_FILE
    assert error.value.exit_code == 1
    assert "not a blend file" in error.value.message
    assert session.state is SessionState.DEAD


@pytest.mark.parametrize(
    ("content", "fault"),
    [(b"hello, not a blend file\n", Fault.NOT_A_BLEND_FILE), (None, Fault.CANNOT_READ_FILE)],
    ids=["text-file", "missing"],
)
def test_unreadable_files_fail_the_start_with_a_fault_class(
    install: BlenderInstall,
    sessions: Callable[..., RenderSession],
    tmp_path: Path,
    content: bytes | None,
    fault: Fault,
) -> None:
    blend = tmp_path / "bad.blend"
    if content is not None:
        blend.write_bytes(content)
    session = sessions(install, blend)
    with pytest.raises(SessionStartError) as error:
        session.start()
    assert error.value.fault is fault
    assert error.value.exit_code not in (None, 0)
    assert error.value.log_tail


def test_a_missing_gpu_fails_the_start(
    bpy_install: BlenderInstall, sessions: Callable[..., RenderSession], tmp_path: Path
) -> None:
    scenes = make_scenes(bpy_install, tmp_path / "scenes")
    session = sessions(bpy_install, scenes / "basic.blend", RenderSettings(device=CyclesDevice.CUDA, gpus=(0,)))
    try:
        session.start()
    except SessionStartError as error:
        assert error.fault is Fault.GPU_ERROR
        assert "CUDA" in error.message
    else:
        pytest.skip("this machine has a CUDA device")


AGENT = """
import sys, time
from pathlib import Path
from agent.blender import BlenderInstall
from agent.session import RenderSession, install_signal_handlers

install_signal_handlers()
session = RenderSession(BlenderInstall("executable", Path(sys.argv[1]), (0, 0, 0), "?"), Path(sys.argv[2]))
session.start()
print(session.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_no_orphan_when_the_agent_is_stopped(exe_install: BlenderInstall, tmp_path: Path, stop: signal.Signals) -> None:
    """SIGTERM: the session's signal handler kills Blender's group. SIGKILL: nothing runs in the agent, so
    the kernel (PR_SET_PDEATHSIG) and the driver's parent watch must end Blender."""
    if not sys.platform.startswith("linux"):
        pytest.skip("checks processes through /proc")
    scenes = make_scenes(exe_install, tmp_path / "scenes")
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT, str(exe_install.path), str(scenes / "basic.blend")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        # TMPDIR: where the agent's session makes its temp folder, which a SIGKILLed agent cannot remove.
        env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)},
    )
    try:
        assert agent.stdout is not None
        line = agent.stdout.readline()  # the agent prints the pid once Blender is ready
        blender = int(line)
        assert not process_gone(blender)
        agent.send_signal(stop)
        agent.wait(10)
        assert wait_gone(blender, 2.0), f"Blender {blender} outlived the agent ({stop.name})"
        assert processes_mentioning(str(scenes)) == []
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
        if agent.stdout is not None:
            agent.stdout.close()
