"""A manager with TLS (``farmgui --tls``) and real agents, each its own process, on loopback.

An agent paired with it pins its certificate and renders over HTTPS; plain HTTP to the manager's port gets
nothing; the CLI on the manager's PC finds the certificate as it finds the token; and a second manager with
another certificate at the same address (what a man in the middle looks like to the agent) is refused.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from agent import protocol as p
from agent.pairing import cert_fingerprint, pinned_context
from farmgui.core.tls import cert_path

from .farm import TOKEN, Agent, Manager, Process, free_port, no_processes_left, wait_for

pytestmark = [pytest.mark.blender, pytest.mark.slow]


class TlsManager(Manager):
    """:class:`farm.Manager` started with ``--tls``; its test client pins the certificate the manager made."""

    def __init__(self, data_dir: Path, agents: list[Agent], port: int | None = None) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        self.url = f"https://127.0.0.1:{self.port}"
        argv = [
            sys.executable, "-m", "farmgui", "--headless", "--no-local-agent", "--no-discovery", "--tls",
            "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(data_dir), "--token", TOKEN,
            "--heartbeat-timeout", "6",
        ]  # fmt: skip
        for agent in agents:
            argv += ["--agent", agent.address]
        data_dir.mkdir(parents=True, exist_ok=True)
        Process.__init__(self, argv, data_dir / "manager.log")
        wait_for("the manager's certificate", lambda: self.running() and cert_path(data_dir).exists(), 60)
        self.cert_pem = cert_path(data_dir).read_text()
        self.client = httpx.Client(
            base_url=self.url, headers=p.bearer(TOKEN), timeout=30, verify=pinned_context(self.cert_pem)
        )
        wait_for("the manager to answer", self.ready, 60)

    def running(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"manager exited:\n{self.log()[-3000:]}")
        return True

    def agent_online(self, name: str) -> bool:
        return any(a["name"] == name and a["online"] for a in self.client.get("/api/agents/").json())


def pair(manager: TlsManager, agent: Agent) -> None:
    r = manager.client.post("/api/agents/pair/", data={"host": "127.0.0.1", "port": str(agent.port)})
    assert r.status_code == 200, r.text
    offer = r.json()
    shown = wait_for("the agent to show the code", lambda: re.search(r"the code (\d{3}-\d{3})", agent.log()), 10)
    assert shown.group(1) == offer["code"], "the certificate's fingerprint is in the code on both screens"
    r = manager.client.post(f"/api/agents/pair/{offer['pairing']}/confirm/")
    assert r.status_code == 200, r.text


def test_a_paired_agent_renders_over_https_and_refuses_another_certificate(tmp_path: Path, scenes_34: Path) -> None:
    with no_processes_left(tmp_path):
        agent = Agent(tmp_path, "newpc", bpy=False, token=None)
        manager = TlsManager(tmp_path / "manager", [agent])
        impostor: TlsManager | None = None
        try:
            pair(manager, agent)
            wait_for("the agent to join the farm over HTTPS", lambda: manager.agent_online("newpc"), 30)
            saved = json.loads((agent.work_dir / "settings.json").read_text())
            assert saved["token"] == TOKEN
            assert saved["manager_cert"] == manager.cert_pem, "the certificate is pinned with the token"
            attached = json.loads((agent.work_dir / "manager.json").read_text())
            assert attached["manager_url"] == manager.url, "the attach URL says https://"

            key = manager.submit(scenes_34 / "png.blend", frame_start=1, frame_end=2)
            assert manager.wait_stage(key, {"finished", "failed"}, 180)["stage"] == "finished"
            assert {f["state"] for f in manager.frames(key)} == {"done"}

            # Plain HTTP to the TLS port gets no answer, let alone the API.
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{manager.port}/api/", headers=p.bearer(TOKEN), timeout=5)

            # The CLI on the manager's PC finds the certificate in the data directory, as it finds the token.
            cli = subprocess.run(
                [sys.executable, "-m", "farmgui", "--url", manager.url, "--data-dir", str(manager.data_dir),
                 "--token", TOKEN, "agents"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert cli.returncode == 0, cli.stderr
            assert "newpc" in cli.stdout

            # Another manager at the same address, with a certificate of its own and even the right farm token:
            # the agent is told to work for it (the same https:// URL) and refuses it, saying why.
            manager.stop()
            impostor = TlsManager(tmp_path / "impostor", [agent], port=manager.port)
            assert cert_fingerprint(impostor.cert_pem) != cert_fingerprint(manager.cert_pem)
            refusal = wait_for(
                "the agent to refuse the other certificate",
                lambda: re.search(
                    r"refusing the manager at (\S+): its TLS certificate is not the one pinned", agent.log()
                ),
                60,
            )
            assert refusal.group(1) == manager.url
            assert not impostor.agent_online("newpc"), "it never said hello to the impostor"
            assert not any(a["name"] == "newpc" for a in impostor.client.get("/api/agents/").json())
        finally:
            if impostor is not None:
                impostor.stop()
            manager.stop()
            agent.stop()
