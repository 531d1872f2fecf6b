"""Shared fixtures: where real Blender and FFmpeg are, and the checks that no test leaks a thread.

On CI (``CI=true``) a test that needs Blender or FFmpeg fails when they are missing; on a
developer's machine it is skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
BLENDFILES = DATA / "blendfiles"
MAKE_SCENES = Path(__file__).parent / "integration" / "make_scenes.py"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(what: str, found: object) -> None:
    """Fail on CI, skip elsewhere, when a tool the test needs is missing."""
    if found:
        return
    if on_ci():
        pytest.fail(f"{what} is missing: CI must install it (.ci/run)")
    pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="session")
def blender_exe() -> Path:
    """Debian's Blender executable (3.4 on Debian 12)."""
    found = os.environ.get("BLENDER") or shutil.which("blender")
    require("the blender executable", found)
    return Path(str(found))


@pytest.fixture(scope="session")
def bpy_python() -> Path:
    """A Python interpreter that can import the bpy module (5.0.1 from PyPI)."""
    require("the bpy module (pip install bpy==5.0.1, Python 3.11)", importlib.util.find_spec("bpy"))
    return Path(sys.executable)


@pytest.fixture(scope="session")
def ffmpeg_exe() -> Path:
    found = shutil.which("ffmpeg")
    require("ffmpeg", found)
    return Path(str(found))


@pytest.fixture(scope="session")
def scenes_34(blender_exe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test scenes saved by Debian's Blender 3.4."""
    out = tmp_path_factory.mktemp("scenes34")
    script = str(MAKE_SCENES)
    argv = [str(blender_exe), "-b", "--factory-startup", "--python-exit-code", "1", "--python", script, "--", str(out)]
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    return out


@pytest.fixture(scope="session")
def scenes_50(bpy_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same scenes saved by the bpy 5.0.1 module."""
    out = tmp_path_factory.mktemp("scenes50")
    subprocess.run([str(bpy_python), str(MAKE_SCENES), str(out)], check=True, capture_output=True, timeout=120)
    return out


def corpus_files() -> list[Path]:
    return sorted(p for p in BLENDFILES.rglob("*.blend"))


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread running (give it two seconds to wind down)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if leaked:
        pytest.fail(f"test left threads running: {[t.name for t in leaked]}")
