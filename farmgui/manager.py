"""Composition root of the manager: service, API server, agent discovery and links, the local agent."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from agent import protocol as p
from agent.httpserver import ServerThread

from .core.api import create_app
from .core.auth import load_or_create_token
from .core.discovery import AgentBrowser
from .core.links import AgentLinks
from .core.service import FarmService
from .core.tls import ManagerCertificate, load_or_create_certificate, tls_setting

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("frameherd", appauthor=False))


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6), or a bare host with the default agent port."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or p.DEFAULT_AGENT_PORT)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return text, p.DEFAULT_AGENT_PORT
    return host, int(port)


@dataclass
class ManagerConfig:
    host: str = "0.0.0.0"  # noqa: S104 - agents on other PCs must reach the manager
    port: int = p.DEFAULT_MANAGER_PORT
    data_dir: Path = field(default_factory=default_data_dir)
    db_url: str | None = None
    token: str | None = None
    local_agent: bool = True
    agents: list[str] = field(default_factory=list)
    discovery: bool = True
    discovery_interfaces: list[str] | None = None
    heartbeat_timeout_s: float = 15.0
    tls: bool | None = None
    """Serve the API over HTTPS only, with a self-signed certificate that agents pin at pairing. None: as
    remembered in the data directory (off until ``--tls`` was given once); True/False is remembered."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Manager:
    """Everything the control station runs besides its window."""

    def __init__(self, config: ManagerConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.token = load_or_create_token(config.data_dir, config.token or os.environ.get("FARM_TOKEN"))
        self.manager_id = self._manager_id()
        self.certificate: ManagerCertificate | None = None
        if tls_setting(config.data_dir, config.tls):
            self.certificate = load_or_create_certificate(config.data_dir, config.host)
        self.service = FarmService(config.data_dir, config.db_url, heartbeat_timeout_s=config.heartbeat_timeout_s)
        self.links = AgentLinks(
            self.token, 0, self.manager_id, manager_cert=self.certificate.pem if self.certificate else None
        )
        self.server = ServerThread(
            create_app(self.service, self.token, self.links), config.host, config.port,
            tls=self.certificate.files if self.certificate else None,
        )  # fmt: skip
        self.links.manager_port = self.server.port
        self.browser: AgentBrowser | None = None
        self.local_agent: subprocess.Popen[bytes] | None = None

    def _manager_id(self) -> str:
        path = self.config.data_dir / "manager-id"
        if path.exists():
            return path.read_text().strip()
        value = uuid.uuid4().hex
        path.write_text(value + "\n")
        return value

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "::") else self.config.host  # noqa: S104
        return f"{self.server.scheme}://{host}:{self.server.port}"

    def start(self) -> Manager:
        self.service.file_server_address = self.config.host
        self.service.file_server_port = self.server.port
        self.service.start()
        self.server.start()
        self.links.start()
        for address in self.config.agents:
            self.links.add_address(*parse_address(address))
        if self.config.discovery:
            self.browser = AgentBrowser(self.links.on_discovery, interfaces=self.config.discovery_interfaces)
            self.browser.start()
        if self.config.local_agent:
            self._start_local_agent()
        log.info(
            "manager listening on %s://%s:%d (data in %s)",
            self.server.scheme, self.config.host, self.server.port, self.config.data_dir,
        )  # fmt: skip
        return self

    def _start_local_agent(self) -> None:
        port = _free_port("127.0.0.1")
        argv = [
            sys.executable, "-m", "agent", "--no-tray", "--no-advertise", "--host", "127.0.0.1", "--port", str(port),
            "--work-dir", str(self.config.data_dir / "local-agent"), "--name", "this PC",
            "--settings", str(self.config.data_dir / "local-agent" / "settings.json"), "--exit-with-parent",
        ]  # fmt: skip
        if self.certificate is not None:
            argv += ["--manager-cert", str(self.certificate.cert_file)]  # the pin, as pairing would give it
        # The token travels in the environment, not on the command line where `ps` shows it to every user.
        env = {**os.environ, "FARM_TOKEN": self.token}
        self.local_agent = subprocess.Popen(argv, env=env, start_new_session=True)
        self.links.add_address("127.0.0.1", port)

    def close(self) -> None:
        if self.local_agent is not None and self.local_agent.poll() is None:
            self.local_agent.send_signal(signal.SIGTERM)  # the agent stops its Blender before it exits
            try:
                self.local_agent.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.local_agent.pid, signal.SIGKILL)
                self.local_agent.wait()
        if self.browser is not None:
            self.browser.close()
        self.links.close()
        self.server.stop()
        self.service.close()

    def __enter__(self) -> Manager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
