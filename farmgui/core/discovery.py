"""Finding agents on the LAN: a zeroconf browser for :data:`~agent.protocol.SERVICE_TYPE` that reports events.

:class:`AgentBrowser` turns zeroconf's add / update / remove callbacks into immutable :class:`AgentSeen` and
:class:`AgentGone` events.

**TXT records are hints, not trust.** Anyone on the LAN can advertise any id, name, state or ``paired=1``. An
:class:`AgentSeen` says only "something claims to be an agent here": the manager must call the agent's
:data:`~agent.protocol.AGENT_INFO` over HTTP with the farm token, and compare the identity it answers with, before
it sends anything to it or lists it as a member of the farm. Two records may even claim the same ``agent_id``
(a cloned disk image); they differ by :attr:`AgentSeen.service_name`.

**Threads.** Events are delivered on zeroconf's browser thread (one per :class:`AgentBrowser`), never on the
caller's: a consumer that owns a GUI or a database session marshals them (``farmgui.ui.bridge``). The callback
should return quickly; it blocks further discovery while it runs. An exception it raises is logged and dropped.

**Going away.** :class:`AgentGone` follows a goodbye (a clean :meth:`agent.advertise.Advertiser.close`) or the
record's TTL running out. An agent that crashes sends no goodbye and its pointer record lives for zeroconf's default
TTL (75 minutes), so liveness is the heartbeat's job, not discovery's.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from zeroconf import (
    Error as ZeroconfError,
)
from zeroconf import (
    InterfaceChoice,
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)

from agent.protocol import PROTOCOL_VERSION, SERVICE_TYPE, AgentState, TxtKey

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT_MS = 1000
"""How long one callback waits for a service's SRV/TXT/address records that are not in the cache yet.

Agents announce all of them in one packet, so this is almost never waited; when it is, the records' arrival fires
another update that tries again. It also bounds how long :meth:`AgentBrowser.close` can wait for the browser
thread.
"""
_MAX_ID = 128
_MAJOR_MINOR = re.compile(r"^\d{1,3}\.\d{1,3}$")


@dataclass(frozen=True)
class AgentSeen:
    """An agent advertised itself, or changed what its record says. Hints only: see the module docstring."""

    agent_id: str
    name: str
    """The agent's display name (the service's instance name when the record has none)."""
    host: str
    """The address to reach it at: its first IPv4 address, else its first IPv6 address (scoped)."""
    port: int
    addresses: tuple[str, ...]
    protocol: int | None
    """The protocol version it speaks; None when the record has none or garbage. See :attr:`compatible`."""
    blenders: tuple[str, ...]
    """``major.minor`` of each Blender it can run (malformed entries dropped)."""
    cpus: int | None
    gpus: tuple[str, ...]
    state: AgentState | None
    """None when the record's state is missing or unknown to this version."""
    paired: bool
    service_name: str
    """The zeroconf service name (``<instance>._frameherd._tcp.local.``), unique on the LAN."""

    @property
    def compatible(self) -> bool:
        """Whether the agent says it speaks our protocol version (to be confirmed over HTTP)."""
        return self.protocol == PROTOCOL_VERSION


@dataclass(frozen=True)
class AgentGone:
    """An agent that was reported by :class:`AgentSeen` withdrew its record (or it expired)."""

    agent_id: str
    service_name: str


DiscoveryEvent = AgentSeen | AgentGone


def _text(properties: Mapping[bytes, bytes | None], key: TxtKey) -> str | None:
    value = properties.get(key.encode("ascii"))
    if value is None:
        return None
    return value.decode("utf-8", "replace").strip()


def _int(text: str | None) -> int | None:
    if text is None or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def _items(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return tuple(item for item in (part.strip() for part in text.split(",")) if item)


def _host(addresses: tuple[str, ...]) -> str | None:
    for address in addresses:
        if ipaddress.ip_address(address.split("%", 1)[0]).version == 4:
            return address
    return addresses[0] if addresses else None


def _instance(service_name: str) -> str:
    suffix = "." + SERVICE_TYPE
    return service_name[: -len(suffix)] if service_name.endswith(suffix) else service_name


def parse_service(info: ServiceInfo) -> AgentSeen | None:
    """The event a resolved service stands for; None when it lacks an id, an address or a port.

    Pure and defensive: anything else that is missing or malformed becomes None / empty / False, so the manager can
    list an agent that speaks another protocol version and say why it is not used.
    """
    properties = info.properties
    agent_id = _text(properties, TxtKey.AGENT_ID)
    if not agent_id or len(agent_id) > _MAX_ID or not agent_id.isprintable():
        log.info("ignoring %s: its TXT record has no usable %r", info.name, str(TxtKey.AGENT_ID))
        return None
    addresses = tuple(info.parsed_scoped_addresses(IPVersion.All))
    host = _host(addresses)
    port = info.port
    if host is None or port is None or not 0 < port < 65536:
        log.info("ignoring %s: no address or port (%s, %s)", info.name, addresses, port)
        return None
    protocol = _int(_text(properties, TxtKey.PROTOCOL))
    if protocol != PROTOCOL_VERSION:
        log.info("agent %s at %s speaks protocol %s, we speak %d", agent_id, host, protocol, PROTOCOL_VERSION)
    state_text = _text(properties, TxtKey.STATE)
    state = next((s for s in AgentState if s.value == state_text), None)
    return AgentSeen(
        agent_id=agent_id,
        name=_text(properties, TxtKey.NAME) or _instance(info.name),
        host=host,
        port=port,
        addresses=addresses,
        protocol=protocol,
        blenders=tuple(v for v in _items(_text(properties, TxtKey.BLENDERS)) if _MAJOR_MINOR.match(v)),
        cpus=_int(_text(properties, TxtKey.CPUS)),
        gpus=_items(_text(properties, TxtKey.GPUS)),
        state=state,
        paired=_text(properties, TxtKey.PAIRED) == "1",
        service_name=info.name,
    )


class AgentBrowser:
    """Browses the LAN for agents and reports :class:`AgentSeen` / :class:`AgentGone` to ``on_event``.

    ``on_event`` is called on zeroconf's browser thread (see the module docstring): marshal before touching a GUI.
    An :class:`AgentSeen` is reported when a service first resolves to an id, an address and a port, and again
    whenever what it says changes; identical repeats are dropped. :class:`AgentGone` is reported only for a service
    that was reported seen. Malformed records are logged and skipped; nothing raises into zeroconf's thread.

    ``interfaces`` restricts zeroconf to these IP addresses (tests use ``["127.0.0.1"]``); by default it listens on
    every IPv4 interface. After :meth:`close` no event is delivered.
    """

    def __init__(self, on_event: Callable[[DiscoveryEvent], None], interfaces: list[str] | None = None) -> None:
        self._on_event = on_event
        self._interfaces = list(interfaces) if interfaces is not None else None
        self._lock = threading.Lock()
        self._zc: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None
        self._closed = False
        self._seen: dict[str, AgentSeen] = {}
        """By service name; touched only on the browser thread."""

    def start(self) -> None:
        """Open zeroconf and start browsing (returns at once). A second call does nothing."""
        with self._lock:
            if self._closed:
                raise RuntimeError("AgentBrowser is closed")
            if self._zc is not None:
                return
            zc = Zeroconf(interfaces=self._interfaces if self._interfaces is not None else InterfaceChoice.All)
            try:
                self._browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[self._on_change])
            except BaseException:
                zc.close()
                raise
            self._zc = zc

    def close(self) -> None:
        """Stop browsing and join zeroconf's threads (waits at most ~:data:`RESOLVE_TIMEOUT_MS`). Idempotent.

        Not from ``on_event``: it runs on the browser thread, which close joins.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            zc, browser = self._zc, self._browser
            self._zc = self._browser = None
        # cancel() joins the browser thread: never call close() from on_event, which runs on that thread.
        if browser is not None:
            browser.cancel()
        if zc is not None:
            zc.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- on zeroconf's browser thread ---------------------------------------------------------------

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        try:
            if state_change is ServiceStateChange.Removed:
                self._gone(name)
            else:
                self._resolve(zeroconf, service_type, name)
        except Exception:
            log.exception("discovery: skipping %s %s", state_change.name, name)

    def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        if self._closed or zeroconf.done:
            return
        try:
            info = zeroconf.get_service_info(service_type, name, timeout=RESOLVE_TIMEOUT_MS)
        except ZeroconfError as exc:  # EventLoopBlocked, NotRunningException while closing
            log.debug("could not resolve %s: %r", name, exc)
            return
        if info is None:
            log.debug("%s did not resolve in %d ms; waiting for its records", name, RESOLVE_TIMEOUT_MS)
            return
        seen = parse_service(info)
        previous = self._seen.get(name)
        if seen is None:
            if previous is not None:  # it no longer says who it is: as good as gone
                self._gone(name)
            return
        if seen == previous:
            return
        if previous is not None and previous.agent_id != seen.agent_id:
            self._gone(name)
        self._seen[name] = seen
        self._deliver(seen)

    def _gone(self, name: str) -> None:
        previous = self._seen.pop(name, None)
        if previous is not None:
            self._deliver(AgentGone(agent_id=previous.agent_id, service_name=name))

    def _deliver(self, event: DiscoveryEvent) -> None:
        if self._closed:
            return
        try:
            self._on_event(event)
        except Exception:
            log.exception("discovery: on_event raised for %r", event)


__all__ = ["RESOLVE_TIMEOUT_MS", "AgentBrowser", "AgentGone", "AgentSeen", "DiscoveryEvent", "parse_service"]
