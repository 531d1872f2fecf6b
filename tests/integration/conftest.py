from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def scenes_34(blender_exe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test scenes saved by Debian's Blender 3.4."""
    out = tmp_path_factory.mktemp("scenes34")
    script = str(HERE / "make_scenes.py")
    argv = [str(blender_exe), "-b", "--factory-startup", "--python-exit-code", "1", "--python", script, "--", str(out)]
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    return out


@pytest.fixture(scope="session")
def scenes_50(bpy_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same scenes saved by the bpy 5.0.1 module."""
    out = tmp_path_factory.mktemp("scenes50")
    subprocess.run(
        [str(bpy_python), str(HERE / "make_scenes.py"), str(out)], check=True, capture_output=True, timeout=120
    )
    return out


@pytest.fixture(autouse=True)
def _needs_ffmpeg(ffmpeg_exe: Path) -> None:
    assert shutil.which("ffprobe"), "ffprobe comes with ffmpeg"
    assert sys.platform == "linux"
