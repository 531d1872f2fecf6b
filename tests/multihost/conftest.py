"""Fixtures of the multi-host tests: root and iproute2 checked, stale test networks removed, the scenes saved.

Like ``require()`` in ``tests/conftest.py``: without root or ``ip`` a developer's run skips these tests with the
reason, and a CI run (``CI=true``) fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require

from .lan import clean_stale

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def lan_ready() -> None:
    """Root, iproute2 with network namespaces, ffprobe; and no namespace or mount left by a crashed run."""
    require("root (the multi-host tests make network namespaces and mount tmpfs)", os.geteuid() == 0)
    require("iproute2's ip", shutil.which("ip"))
    require("ffprobe", shutil.which("ffprobe"))
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    require(f"network namespaces (ip netns list: {probe.stderr.strip()})", probe.returncode == 0)
    clean_stale()


@pytest.fixture(scope="session")
def lan_scenes(blender_exe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The multi-host scenes (``make_lan_scenes.py``), saved by Debian's Blender 3.4."""
    out = tmp_path_factory.mktemp("lan-scenes")
    argv = [
        str(blender_exe), "-b", "--factory-startup", "--python-exit-code", "1",
        "--python", str(HERE / "make_lan_scenes.py"), "--", str(out),
    ]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    return out


@pytest.fixture(autouse=True)
def _lan_checked(lan_ready: None) -> None:
    """Every test here needs :func:`lan_ready`."""
