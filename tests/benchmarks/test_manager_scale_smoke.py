"""``benchmarks/manager_scale.py`` end to end on a tiny farm: it runs, every frame arrives, it prints its JSON.

A smoke test of the script (and of its simulated agents against the current protocol), never of timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "manager_scale.py"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_a_tiny_run_renders_every_frame_and_prints_its_json(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    argv = [
        sys.executable, str(SCRIPT), "--agents", "5", "--frames", "200", "--baseline-agents", "2",
        "--baseline-frames", "40", "--render-ms", "50", "--startup-s", "0.1", "--idle-s", "0.5", "--freeze-s", "1",
        "--floor-requests", "100", "--json", str(out),
    ]  # fmt: skip
    run = subprocess.run(argv, capture_output=True, text=True, timeout=280, cwd=ROOT, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]

    data = json.loads(out.read_text())
    printed = run.stdout.split("\nJSON:\n", 1)[1].rsplit("\n\nwhole run:", 1)[0]
    assert json.loads(printed) == data
    assert "| measure |" in run.stdout
    assert data["processes_left"] == []
    for name, agents, frames in (("baseline", 2, 40), ("main", 5, 200)):
        scenario = data["scenarios"][name]
        assert scenario["checks"]["ok"], scenario["checks"]
        assert scenario["checks"]["stage"] == "finished"
        assert "frames.zip" in scenario["checks"]["result_files"]
        counts = scenario["render"]["counts"]
        assert counts["accepted_all"] == frames
        assert counts["hellos"] == agents
        assert counts["errors"] == 0, scenario["render"]["error_samples"]
        assert counts["frames_scheduled"] > 0  # the render windows leave out what the freeze assigned
        assert scenario["freeze"]["heartbeats"] > 0
        assert scenario["polls"]["render"]["count"] > 0
        assert scenario["polls"]["failed"] == 0
        assert scenario["storage"]["db_total_bytes"] > 0
    assert data["floor"]["requests"] > 0
    assert data["goals"]["all_frames_done"] is True
