"""Fixtures for the agent's tests that run real Blender: each install kind the agent supports."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.blender import BlenderInstall, parse_version_output, probe_bpy


@pytest.fixture(scope="module")
def exe_install(blender_exe: Path) -> BlenderInstall:
    out = subprocess.run([blender_exe, "--version"], capture_output=True, text=True, timeout=60, check=True).stdout
    parsed = parse_version_output(out)
    assert parsed is not None
    return BlenderInstall("executable", blender_exe, parsed[0], parsed[1])


@pytest.fixture(scope="module")
def bpy_install(bpy_python: Path) -> BlenderInstall:
    parsed = probe_bpy(bpy_python)
    assert parsed is not None
    return BlenderInstall("bpy", bpy_python, parsed[0], parsed[1])


@pytest.fixture(scope="module", params=["executable", "bpy"])
def install(request: pytest.FixtureRequest) -> BlenderInstall:
    """Debian's Blender 3.4 executable, then the bpy 5.0.1 module."""
    name = "exe_install" if request.param == "executable" else "bpy_install"
    found: BlenderInstall = request.getfixturevalue(name)
    return found
