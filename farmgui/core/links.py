"""The manager's side of attaching agents: those zeroconf finds and those added by address.

A zeroconf record is a hint. Before an agent gets any work, the manager asks it who it is over
HTTP with the farm token (``GET /agent/v1/info``): an agent that does not know the token answers
401 and is listed as unpaired; one whose id differs from its record is not trusted. Only then is
it told the manager's URL (``POST /agent/v1/attach``), after which the agent pulls work itself.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

import httpx

from agent import protocol as p
from agent.pairing import cert_fingerprint, pairing_code

from .discovery import AgentGone, AgentSeen, DiscoveryEvent

log = logging.getLogger(__name__)

RECHECK_S = 10.0
"""How often attached agents are asked again (an agent restarted with no manager is re-attached)."""


class LinkStatus(StrEnum):
    PENDING = "pending"
    ATTACHED = "attached"
    UNPAIRED = "unpaired"
    """The agent answers but does not hold our farm token."""
    UNREACHABLE = "unreachable"
    MISMATCH = "identity-mismatch"
    """The agent's answer does not match what its zeroconf record claimed."""
    INCOMPATIBLE = "incompatible"


@dataclass(frozen=True)
class PairingOffer:
    """A pairing in progress: the code the user must see on both screens before approving."""

    host: str
    port: int
    agent_id: str
    name: str
    code: str
    manager_nonce: str
    agent_nonce: str


class PairingFailed(Exception):
    pass


@dataclass(frozen=True)
class Link:
    host: str
    port: int
    agent_id: str | None
    name: str
    status: LinkStatus
    manual: bool
    detail: str = ""
    paired_hint: bool = True


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text


def local_address_for(host: str) -> str:
    """The address of this machine on the route to ``host`` (a UDP connect sends nothing)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, 9))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


class AgentLinks:
    def __init__(
        self,
        token: str,
        manager_port: int,
        manager_id: str,
        *,
        on_change: Callable[[list[Link]], None] | None = None,
        interval_s: float = 2.0,
        manager_cert: str | None = None,
    ) -> None:
        """``manager_cert``: the manager's TLS certificate (PEM) when it serves HTTPS, pinned by agents it pairs."""
        self._token = token
        self._cert = manager_cert
        self._cert_sha256 = cert_fingerprint(manager_cert) if manager_cert else ""
        self.scheme = "https" if manager_cert else "http"
        self.manager_port = manager_port
        """The port agents reach the manager on (set once the server has one)."""
        self._manager_id = manager_id
        self._on_change = on_change
        self._interval = interval_s
        self._links: dict[tuple[str, int], Link] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._checked: dict[tuple[str, int], float] = {}

    # -- inputs ------------------------------------------------------------------------------
    def add_address(self, host: str, port: int = p.DEFAULT_AGENT_PORT) -> None:
        with self._lock:
            key = (host, port)
            if key not in self._links:
                self._links[key] = Link(host, port, None, f"{host}:{port}", LinkStatus.PENDING, manual=True)
        self._wake.set()

    def on_discovery(self, event: DiscoveryEvent) -> None:
        """Zeroconf's callback (on its thread): only records the hint and wakes the loop."""
        with self._lock:
            if isinstance(event, AgentSeen):
                key = (event.host, event.port)
                old = self._links.get(key)
                self._links[key] = Link(
                    event.host, event.port, event.agent_id, event.name,
                    old.status if old and old.agent_id == event.agent_id else LinkStatus.PENDING,
                    manual=old.manual if old else False, paired_hint=event.paired,
                )  # fmt: skip
                if old is None or old.status is not LinkStatus.ATTACHED:
                    self._checked.pop(key, None)
            elif isinstance(event, AgentGone):
                for key, link in list(self._links.items()):
                    if link.agent_id == event.agent_id and not link.manual:
                        del self._links[key]
        self._wake.set()

    # -- pairing -----------------------------------------------------------------------------
    def _base(self, host: str, port: int) -> str:
        return f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"

    def start_pairing(self, host: str, port: int) -> PairingOffer:
        """Ask an unpaired agent to pair; returns the code to compare with the agent's."""
        manager_nonce = secrets.token_hex(16)
        ask = p.PairStart(
            manager_id=self._manager_id, manager_nonce=manager_nonce, manager_cert_sha256=self._cert_sha256
        )
        try:
            r = httpx.post(self._base(host, port) + p.AGENT_PAIR_START, json=ask.to_dict(), timeout=5.0)
        except httpx.HTTPError as exc:
            raise PairingFailed(f"the agent at {host}:{port} did not answer: {exc}") from exc
        if r.status_code != 200:
            raise PairingFailed(_error_text(r))
        started = p.PairStarted.from_dict(r.json())
        code = pairing_code(manager_nonce, started.agent_nonce, started.agent_id, self._cert_sha256)
        return PairingOffer(host, port, started.agent_id, started.name, code, manager_nonce, started.agent_nonce)

    def finish_pairing(self, offer: PairingOffer) -> None:
        """The user saw the same code on both screens: hand the agent the farm token, then attach it."""
        done = p.PairFinish(
            manager_id=self._manager_id, agent_nonce=offer.agent_nonce, token=self._token, manager_cert=self._cert or ""
        )
        try:
            r = httpx.post(self._base(offer.host, offer.port) + p.AGENT_PAIR_FINISH, json=done.to_dict(), timeout=5.0)
        except httpx.HTTPError as exc:
            raise PairingFailed(f"the agent did not answer: {exc}") from exc
        if r.status_code != 200:
            raise PairingFailed(_error_text(r))
        self.add_address(offer.host, offer.port)
        with self._lock:
            self._checked.pop((offer.host, offer.port), None)
        self._wake.set()

    def revoke(self, host: str, port: int) -> None:
        """Make a paired agent forget the farm token."""
        try:
            r = httpx.post(self._base(host, port) + p.AGENT_UNPAIR, headers=p.bearer(self._token), timeout=5.0)
        except httpx.HTTPError as exc:
            raise PairingFailed(f"the agent did not answer: {exc}") from exc
        if r.status_code != 200:
            raise PairingFailed(_error_text(r))
        with self._lock:
            self._checked.pop((host, port), None)
        self._wake.set()

    def links(self) -> list[Link]:
        with self._lock:
            return sorted(self._links.values(), key=lambda link: (link.name, link.host, link.port))

    # -- the loop ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="agent-links", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        with httpx.Client(timeout=3.0, headers=p.bearer(self._token)) as client:
            while not self._stop.is_set():
                now = time.monotonic()
                for link in self.links():
                    key = (link.host, link.port)
                    wait = RECHECK_S if link.status is LinkStatus.ATTACHED else self._interval
                    if now - self._checked.get(key, -1e9) < wait:
                        continue
                    self._checked[key] = now
                    updated = self._check(client, link)
                    if updated != link:
                        with self._lock:
                            if key in self._links:
                                self._links[key] = updated
                        if self._on_change is not None:
                            self._on_change(self.links())
                self._wake.wait(0.5)
                self._wake.clear()

    def _check(self, client: httpx.Client, link: Link) -> Link:
        base = f"http://{link.host}:{link.port}" if ":" not in link.host else f"http://[{link.host}]:{link.port}"
        try:
            r = client.get(base + p.AGENT_INFO)
            if r.status_code == 401:
                return replace(link, status=LinkStatus.UNPAIRED, detail="the agent does not hold this farm's token")
            r.raise_for_status()
            info = p.AgentInfo.from_dict(r.json())
        except (httpx.HTTPError, p.ProtocolError, ValueError) as exc:
            return replace(link, status=LinkStatus.UNREACHABLE, detail=str(exc))
        if link.agent_id is not None and info.agent_id != link.agent_id:
            return replace(link, status=LinkStatus.MISMATCH, detail=f"answers as {info.agent_id}, not {link.agent_id}")
        if info.protocol != p.PROTOCOL_VERSION:
            return replace(link, status=LinkStatus.INCOMPATIBLE, detail=f"protocol {info.protocol}")
        here = local_address_for(link.host)
        url = f"{self.scheme}://{f'[{here}]' if ':' in here else here}:{self.manager_port}"
        attach = p.AttachRequest(manager_url=url, manager_id=self._manager_id)
        try:
            client.post(base + p.AGENT_ATTACH, json=attach.to_dict()).raise_for_status()
        except httpx.HTTPError as exc:
            return replace(link, status=LinkStatus.UNREACHABLE, detail=f"attach failed: {exc}")
        if link.status is not LinkStatus.ATTACHED:
            log.info("attached agent %s (%s) at %s", info.name, info.agent_id, base)
        return replace(link, agent_id=info.agent_id, name=info.name, status=LinkStatus.ATTACHED, detail="")
