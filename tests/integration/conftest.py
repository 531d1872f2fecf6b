from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _needs_ffmpeg(ffmpeg_exe: Path) -> None:
    assert shutil.which("ffprobe"), "ffprobe comes with ffmpeg"
    assert sys.platform == "linux"
