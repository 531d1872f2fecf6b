"""Running Blender from a test: to completion, killed at a timeout (so none is left behind), and failing the
test with the end of Blender's output when it fails."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

BLENDER_TIMEOUT_S = 300


def run_blender(argv: list[str], cwd: Path, timeout: float = BLENDER_TIMEOUT_S) -> str:
    """Run ``argv`` in ``cwd``; returns what it printed (stdout, then stderr)."""
    try:
        proc = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, errors="replace", timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"Blender took over {timeout} s: {argv}\n{exc.output!s:.4000}")
    if proc.returncode != 0:
        pytest.fail(f"Blender failed (exit {proc.returncode}): {argv}\n{(proc.stdout + proc.stderr)[-6000:]}")
    return proc.stdout + proc.stderr
