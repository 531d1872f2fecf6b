"""The farm simulator: the spec, each strategy on small farms, the lower bound and the command."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.protocol import HEARTBEAT_INTERVAL_S
from farmgui.core.scheduler import Scheduler
from farmgui.core.simulate import (
    AgentSpec,
    FarmSpec,
    SpecError,
    Strategy,
    lower_bound,
    main,
    simulate,
)

ROOT = Path(__file__).resolve().parents[2]


def farm(frames: list[float], *agents: dict[str, Any], transfer: float = 0.0) -> FarmSpec:
    return FarmSpec.from_dict({"frames": frames, "agents": list(agents), "transfer": transfer})


def test_spec_format() -> None:
    spec = FarmSpec.from_dict(
        {
            "frames": [1, 2.5],
            "agents": [
                {"name": "pc1", "speed": 1.0, "startup": 8.0, "join_at": 0, "fail_at": None, "rejoin_at": None},
                {"name": "pc2", "speed": 2, "startup": 1, "join_at": 5, "fail_at": 10, "rejoin_at": 20},
            ],
            "transfer": 2.0,
        }
    )
    assert spec.frames == (1.0, 2.5)
    assert spec.agents[0] == AgentSpec("pc1", 1.0, 8.0, 0.0, None, None)
    assert spec.agents[1] == AgentSpec("pc2", 2.0, 1.0, 5.0, 10.0, 20.0)
    assert spec.transfer == 2.0
    assert spec.heartbeat_timeout == 15.0
    assert FarmSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"agents": [{"name": "a"}]}, "frames"),
        ({"frames": [], "agents": [{"name": "a"}]}, "frames"),
        ({"frames": [1, "x"], "agents": [{"name": "a"}]}, "frames[1]"),
        ({"frames": [1], "agents": []}, "agents"),
        ({"frames": [1], "agents": [{"name": "a", "speed": 0}]}, "agents[0].speed"),
        ({"frames": [1], "agents": [{"name": "a"}, {"name": "a"}]}, "agents"),
        ({"frames": [1], "agents": [{"name": "a", "rejoin_at": 5}]}, "agents[0].rejoin_at"),
        ({"frames": [1], "agents": [{"name": "a", "join_at": 5, "fail_at": 1}]}, "agents[0].fail_at"),
        ({"frames": [1], "agents": [{"name": "a"}], "transfer": -1}, "transfer"),
        ([1, 2], ""),
    ],
)
def test_bad_specs_name_the_field(data: object, where: str) -> None:
    with pytest.raises(SpecError) as info:
        FarmSpec.from_dict(data)
    assert info.value.where == where


def test_strategies_parse() -> None:
    assert Strategy.parse("adaptive") == Strategy("adaptive")
    assert str(Strategy.parse("fixed:10")) == "fixed:10"
    assert Strategy.parse("fixed:10").policy.fixed_frames == 10
    assert Strategy.parse("static").policy.split_evenly
    for bad in ("fixed", "fixed:0", "fixed:x", "dynamic", "static:3"):
        with pytest.raises(SpecError):
            Strategy.parse(bad)


def test_lower_bound() -> None:
    # Capacity: after 1 s transfer and 3 s start-up, 2 work-seconds per second cover 20 s of work.
    assert lower_bound(farm([10, 10], {"name": "a", "speed": 2, "startup": 3}, transfer=1)) == pytest.approx(14.0)
    # Never below one agent's time for the largest frame.
    spec = farm([100, 1], {"name": "a", "startup": 2}, {"name": "b", "startup": 2})
    assert lower_bound(spec) == pytest.approx(102.0)
    # An agent adds nothing while it is down.
    spec = farm([10] * 4, {"name": "a"}, {"name": "b", "fail_at": 0, "rejoin_at": 10})
    assert lower_bound(spec) == pytest.approx(25.0)


def test_adaptive_renders_every_frame_once_with_one_startup_per_agent() -> None:
    spec = farm(
        [4.0] * 60,
        {"name": "slow", "speed": 1, "startup": 5},
        {"name": "fast", "speed": 4, "startup": 5},
        {"name": "late", "speed": 2, "startup": 5, "join_at": 20},
        transfer=2,
    )
    result = simulate(spec)
    assert result.complete
    assert result.frames_done == 60
    assert result.unplanned_rerenders == 0
    assert result.frames_rendered == 60 + result.duplicates
    assert result.startups == 3
    assert sum(a.frames_done for a in result.per_agent.values()) == 60
    assert result.per_agent["fast"].frames_done > result.per_agent["slow"].frames_done
    assert result.lower_bound <= result.makespan < 1.15 * result.lower_bound


def test_a_failing_agent_is_noticed_and_its_frames_rendered_again() -> None:
    spec = farm(
        [10.0] * 20,
        {"name": "a", "startup": 1},
        {"name": "b", "startup": 1, "fail_at": 25.0},
    )
    sim_result = simulate(spec)
    assert sim_result.complete
    assert sim_result.frames_done == 20, "every frame done exactly once"
    assert sim_result.redone_after_failure == 1, "the frame b was on is rendered again"
    assert sim_result.failure_lost_seconds == pytest.approx(4.0)  # b began its 3rd frame at 21 s
    assert sim_result.frames_rendered == 21
    assert sim_result.unplanned_rerenders == 0
    # The frames b held were requeued only after the heartbeat timeout: a renders them all meanwhile.
    assert sim_result.per_agent["b"].frames_done == 2
    assert sim_result.per_agent["a"].frames_done == 18
    assert sim_result.makespan > sim_result.lower_bound


def test_rejoining_agent_starts_blender_again_but_keeps_its_file() -> None:
    spec = farm(
        [10.0] * 30,
        {"name": "a", "startup": 1},
        {"name": "b", "startup": 3, "fail_at": 15.0, "rejoin_at": 60.0},
        transfer=2,
    )
    result = simulate(spec)
    assert result.complete
    assert result.frames_done == 30
    b = result.per_agent["b"]
    assert b.startups == 2
    assert b.transfer_seconds == pytest.approx(2.0)
    assert b.frames_done > 2, "b works again after it comes back"


def test_agent_back_before_the_manager_noticed_does_not_strand_frames() -> None:
    # b restarts within the heartbeat timeout: the manager never saw it go, and b no longer holds its
    # old frames. The scheduler must still get them rendered.
    spec = farm(
        [5.0] * 40,
        {"name": "a", "startup": 1},
        {"name": "b", "startup": 1, "fail_at": 12.0, "rejoin_at": 14.0},
    )
    result = simulate(spec)
    assert result.complete
    assert result.frames_done == 40


def test_a_heavy_frame_on_a_slow_agent_is_taken_over_when_agents_outnumber_frames() -> None:
    """Issue #6 (farm f12 in miniature): every frame is handed out at the start, before anything is measured, and
    the heavy one lands on the slowest agent. The fastest agent, idle once its own frame is done, duplicates it;
    the slow copy is stopped once the two copies' progress rates show which finishes first."""
    spec = farm(
        [200.0, 10.0, 10.0], {"name": "slow", "speed": 1}, {"name": "fast", "speed": 8}, {"name": "mid", "speed": 2}
    )
    fixed = simulate(spec, "fixed:1")
    assert fixed.makespan == pytest.approx(200.0), "without duplicates the heavy frame ends where it landed"
    result = simulate(spec)
    assert result.complete
    assert result.makespan < 0.2 * fixed.makespan
    assert result.duplicates == 1
    assert result.unplanned_rerenders == 0
    assert result.per_agent["fast"].frames_done == 2
    # Rendered twice only from the duplicate's start until the slow copy was stopped (a few heartbeats), not
    # until the fast copy was done; all of the slow copy's render time was lost.
    assert 0 < result.duplicate_overlap_seconds < 3 * HEARTBEAT_INTERVAL_S
    assert result.duplicate_lost_seconds == pytest.approx(result.per_agent["slow"].render_seconds)


def test_a_slow_agent_does_not_hold_the_task_back() -> None:
    """Issue #7, the multihost scenario 6 on the virtual clock: a3 renders and starts Blender 4x slower than a1 and
    a2, so the first frame it is given is still at 0 % when they run out of work; one of them duplicates it, and
    the task takes at most 1.3x as long as without a3 (it took 1.96x)."""
    base = {"frames": [0.5] * 12, "transfer": 0.2, "heartbeat_timeout": 4.0}
    fast = [{"name": "a1", "startup": 2.0}, {"name": "a2", "startup": 2.0}]
    without = simulate(FarmSpec.from_dict({**base, "agents": fast}))
    with_slow = simulate(FarmSpec.from_dict({**base, "agents": [*fast, {"name": "a3", "speed": 0.25, "startup": 8.0}]}))
    assert with_slow.complete
    assert with_slow.per_agent["a3"].startups == 1, "a3 was given a frame"
    assert with_slow.per_agent["a3"].renders == 0, "and was still starting Blender when a1 or a2 delivered it"
    assert with_slow.duplicates == 1
    assert with_slow.unplanned_rerenders == 0
    assert with_slow.makespan <= 1.3 * without.makespan


def test_fixed_chunks_pay_startup_per_chunk() -> None:
    spec = farm([2.0] * 20, {"name": "a", "startup": 10}, transfer=3)
    five = simulate(spec, "fixed:5")
    assert five.startups == 4
    assert five.makespan == pytest.approx(3 + 4 * 10 + 40)
    one = simulate(spec, "fixed:1")
    assert one.startups == 20
    assert one.makespan == pytest.approx(3 + 20 * 10 + 40)
    adaptive = simulate(spec)
    assert adaptive.startups == 1
    assert adaptive.makespan == pytest.approx(3 + 10 + 40)


def test_static_splits_the_range_evenly_over_the_agents_there_at_the_start() -> None:
    spec = farm(
        [1.0] * 40,
        *({"name": f"pc{i}", "speed": 1 + i, "startup": 1} for i in range(4)),
        {"name": "late", "speed": 10, "join_at": 1},
    )
    result = simulate(spec, "static")
    assert result.complete
    assert [result.per_agent[f"pc{i}"].frames_done for i in range(4)] == [10, 10, 10, 10]
    assert result.per_agent["late"].frames_done == 0
    assert result.makespan == pytest.approx(1 + 10 / 1)  # the slowest agent's share
    assert result.startups == 4


def test_static_shares_out_a_lost_agents_frames() -> None:
    spec = farm([1.0] * 40, *({"name": f"pc{i}"} for i in range(4)), {"name": "x", "fail_at": 3.5})
    result = simulate(spec, "static")
    assert result.complete
    assert result.frames_done == 40
    assert result.per_agent["x"].frames_done == 3


def test_nobody_left_ends_the_run_unfinished() -> None:
    spec = farm([10.0] * 5, {"name": "a", "fail_at": 15})
    result = simulate(spec)
    assert not result.complete
    assert math.isinf(result.makespan)
    assert result.frames_done == 1
    assert result.to_dict()["makespan"] is None


def test_the_scheduler_is_the_managers_own() -> None:
    from farmgui.core.simulate import Simulation

    sim = Simulation(farm([1.0], {"name": "a"}))
    assert type(sim.scheduler) is Scheduler
    assert sim.scheduler.agents == {}, "agents say hello when they join, not before"


def write_spec(tmp_path: Path) -> Path:
    path = tmp_path / "spec.json"
    spec = {
        "frames": [3.0] * 12,
        "agents": [
            {"name": "pc1", "speed": 1.0, "startup": 2.0, "join_at": 0, "fail_at": None, "rejoin_at": None},
            {"name": "pc2", "speed": 2.0, "startup": 2.0, "join_at": 0, "fail_at": None, "rejoin_at": None},
        ],
        "transfer": 1.0,
    }
    path.write_text(json.dumps(spec))
    return path


def test_command_prints_json(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "farmgui", "simulate", str(spec), "--strategy", "fixed:2", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert {"makespan", "frames_done", "frames_rendered", "lost_seconds", "per_agent"} <= set(data)
    assert data["frames_done"] == 12
    assert data["strategy"] == "fixed:2"
    assert set(data["per_agent"]) == {"pc1", "pc2"}
    assert {"frames_done", "renders", "startups", "lost_seconds"} <= set(data["per_agent"]["pc1"])


def test_command_summary_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path)
    assert main([str(spec)]) == 0
    out = capsys.readouterr().out
    assert "strategy adaptive" in out
    assert "lower bound" in out
    assert "pc2" in out
    assert main([str(tmp_path / "missing.json")]) == 2
    assert "cannot read the spec" in capsys.readouterr().err
    assert main([str(spec), "--strategy", "fixed:0"]) == 2
