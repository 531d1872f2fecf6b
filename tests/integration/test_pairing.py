"""Pairing a real agent started without the farm token, through the manager's API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .farm import Agent, Manager, no_processes_left, wait_for

pytestmark = [pytest.mark.blender, pytest.mark.slow]


def test_pair_an_unpaired_agent_then_render_then_revoke(tmp_path: Path, scenes_34: Path) -> None:
    with no_processes_left(tmp_path):
        agent = Agent(tmp_path, "newpc", bpy=False, token=None)
        manager = Manager(tmp_path / "manager", [agent])
        try:

            def listed_unpaired() -> bool:
                agents = manager.client.get("/api/agents/").json()
                return not any(a["name"] == "newpc" for a in agents)  # not a farm agent yet

            wait_for("the unpaired agent to be left out of the farm", listed_unpaired, 10)
            r = manager.client.post("/api/agents/pair/", data={"host": "127.0.0.1", "port": str(agent.port)})
            assert r.status_code == 200, r.text
            offer = r.json()
            # The agent shows the same code for the user to compare.
            shown = wait_for(
                "the agent to show the code", lambda: re.search(r"the code (\d{3}-\d{3})", agent.log()), 10
            )
            assert shown.group(1) == offer["code"]
            r = manager.client.post(f"/api/agents/pair/{offer['pairing']}/confirm/")
            assert r.status_code == 200, r.text
            # A replayed confirmation finds nothing waiting.
            assert manager.client.post(f"/api/agents/pair/{offer['pairing']}/confirm/").status_code == 404
            wait_for(
                "the agent to join the farm",
                lambda: any(a["name"] == "newpc" and a["online"] for a in manager.client.get("/api/agents/").json()),
                30,
            )
            key = manager.submit(scenes_34 / "png.blend", frame_start=1, frame_end=2)
            assert manager.wait_stage(key, {"finished", "failed"}, 180)["stage"] == "finished"
            saved = (agent.work_dir / "settings.json").read_text()
            assert '"token"' in saved, "the token is kept for the next start"
            assert '"manager_cert"' not in saved, "a manager without TLS pins nothing: the agent keeps plain HTTP"
            assert oct((agent.work_dir / "settings.json").stat().st_mode & 0o777) == "0o600"
            # A second pairing attempt is refused: a paired agent cannot be taken over.
            again = manager.client.post("/api/agents/pair/", data={"host": "127.0.0.1", "port": str(agent.port)})
            assert again.status_code == 409
            assert "already paired" in again.json()["error"]
            r = manager.client.post("/api/agents/revoke/", data={"host": "127.0.0.1", "port": str(agent.port)})
            assert r.status_code == 200, r.text
            assert '"token"' not in (agent.work_dir / "settings.json").read_text()
        finally:
            manager.stop()
            agent.stop()
