"""Advertising an agent on the LAN with zeroconf (mDNS/DNS-SD), so managers find it without typing addresses.

One :class:`Advertiser` registers one service of type :data:`~agent.protocol.SERVICE_TYPE` whose TXT record
carries the :class:`~agent.protocol.TxtKey` hints (id, name, protocol, Blenders, CPUs, GPUs, state, paired).
:meth:`Advertiser.update` re-announces a changed record (idle -> rendering), :meth:`Advertiser.close` withdraws it
with goodbye packets and stops zeroconf's thread.

The record is a hint for the manager, not a credential: it checks the agent over HTTP with the farm token before
it trusts anything. It also carries no secret (the ``paired`` flag says only whether the agent holds a token).

Blocking: :meth:`~Advertiser.start` takes ~1.6 s (zeroconf probes the name for ~0.75 s, then announces three times)
and :meth:`~Advertiser.update` ~0.5 s (three announcements); call them off any GUI thread.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Self

import ifaddr
from zeroconf import Error as ZeroconfError
from zeroconf import InterfaceChoice, ServiceInfo, Zeroconf

from agent.protocol import SERVICE_TYPE, AgentInfo, TxtKey

log = logging.getLogger(__name__)

_MAX_LABEL = 63
"""Bytes in one DNS label: the instance name and the host name each must fit."""
_MAX_TXT_ENTRY = 255
"""Bytes in one ``key=value`` string of a TXT record."""
_SHORT_ID_LEN = 8
_SLUG_JUNK = re.compile(r"[^a-z0-9]+")
_INSTANCE_JUNK = re.compile(r"[\x00-\x1f\x7f.]+")
"""Control characters and dots: dots would read as label separators to a careless peer."""


class AdvertiseError(RuntimeError):
    """The agent could not be advertised (no usable interface, zeroconf refused, or used after close)."""

    def __init__(self, message: str, service_name: str | None = None) -> None:
        super().__init__(message)
        self.service_name = service_name


def short_id(agent_id: str) -> str:
    """The first characters of the agent id that tell agents apart in a name (``3f2a9c1e`` of a uuid)."""
    cleaned = re.sub(r"[^0-9A-Za-z]", "", agent_id).lower()
    return (cleaned or "agent")[:_SHORT_ID_LEN]


def _truncate_utf8(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore")


def instance_name(info: AgentInfo) -> str:
    """``<name>-<short id>``: readable in any mDNS browser, and unique because of the id."""
    suffix = "-" + short_id(info.agent_id)
    name = _INSTANCE_JUNK.sub(" ", info.name).strip() or "Frameherd agent"
    return _truncate_utf8(name, _MAX_LABEL - len(suffix.encode("utf-8"))).rstrip() + suffix


def server_name(info: AgentInfo) -> str:
    """A host name of this agent's own (``<name>-<short id>.local.``).

    Not the machine's host name: several agents on one PC (one per GPU) each withdraw their records on exit,
    and a goodbye for a shared ``pc.local.`` address record would make browsers forget the addresses of the
    agents still running there.
    """
    suffix = "-" + short_id(info.agent_id)
    ascii_name = unicodedata.normalize("NFKD", info.name).encode("ascii", "ignore").decode("ascii")
    slug = _SLUG_JUNK.sub("-", ascii_name.lower()).strip("-") or "frameherd"
    slug = slug[: _MAX_LABEL - len(suffix)].rstrip("-")
    return f"{slug}{suffix}.local."


def _fit(key: TxtKey, items: Sequence[str]) -> str:
    """A comma list cut at a whole item so that ``key=value`` fits in one TXT string."""
    budget = _MAX_TXT_ENTRY - len(key.encode("utf-8")) - 1
    kept: list[str] = []
    used = 0
    for item in items:
        cost = len(item.encode("utf-8")) + (1 if kept else 0)
        if used + cost > budget:
            log.warning("TXT %s too long for mDNS: dropping %d of %d items", key, len(items) - len(kept), len(items))
            break
        kept.append(item)
        used += cost
    return ",".join(kept)


def _major_minors(info: AgentInfo) -> list[str]:
    seen: dict[str, None] = {}
    for blender in info.blenders:
        parts = blender.version.split(".")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            seen.setdefault(f"{int(parts[0])}.{int(parts[1])}", None)
    return list(seen)


def txt_properties(info: AgentInfo) -> dict[str, str]:
    """The TXT record of an agent, keyed by :class:`TxtKey`; each entry fits mDNS's 255-byte limit."""
    name_budget = _MAX_TXT_ENTRY - len(TxtKey.NAME.encode("utf-8")) - 1
    return {
        TxtKey.AGENT_ID: info.agent_id,
        TxtKey.NAME: _truncate_utf8(info.name, name_budget),
        TxtKey.PROTOCOL: str(info.protocol),
        TxtKey.BLENDERS: _fit(TxtKey.BLENDERS, _major_minors(info)),
        TxtKey.CPUS: str(info.cpus),
        TxtKey.GPUS: _fit(TxtKey.GPUS, [g.replace(",", " ") for g in info.gpus]),
        TxtKey.STATE: str(info.state),
        TxtKey.PAIRED: "1" if info.paired else "0",
    }


def _is_wildcard(host: str) -> bool:
    return host in {"", "0.0.0.0", "::", "*"}  # noqa: S104 - recognising a wildcard bind, not binding one


def _host_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback (loopback only when there is nothing else)."""
    found: dict[str, None] = {}
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if ip.is_IPv4 and isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback:
                found.setdefault(ip.ip, None)
    return list(found) or ["127.0.0.1"]


def advertised_addresses(info: AgentInfo, interfaces: Iterable[str] | None) -> list[str]:
    """Where managers should reach the agent.

    The given interfaces' addresses; else the address the agent's server is bound to when it is a specific one;
    else every IPv4 address of the host.
    """
    if interfaces is not None:
        return list(dict.fromkeys(interfaces))
    if not _is_wildcard(info.host):
        try:
            return [str(ipaddress.ip_address(info.host))]
        except ValueError:
            log.warning("agent host %r is not an IP address: advertising all of this host's addresses", info.host)
    return _host_addresses()


class Advertiser:
    """Registers one agent as a zeroconf service, keeps its TXT record current, withdraws it on close.

    Thread-safe: :meth:`start`, :meth:`update` and :meth:`close` may be called from any threads (they are
    serialised). Uses the synchronous :class:`zeroconf.Zeroconf`, which runs its own event-loop thread between
    :meth:`start` and :meth:`close`; :meth:`close` joins it.

    ``interfaces`` restricts zeroconf to these IP addresses (tests use ``["127.0.0.1"]``) and advertises exactly
    them; by default zeroconf listens on every IPv4 interface.
    """

    def __init__(self, info: AgentInfo, interfaces: list[str] | None = None) -> None:
        self._info = info
        self._interfaces = list(interfaces) if interfaces is not None else None
        self._lock = threading.Lock()
        self._zc: Zeroconf | None = None
        self._service: ServiceInfo | None = None
        self._closed = False

    @property
    def info(self) -> AgentInfo:
        """The agent as last advertised (or to be advertised by :meth:`start`)."""
        return self._info

    @property
    def service_name(self) -> str | None:
        """The registered service name (``<instance>._frameherd._tcp.local.``), None until started.

        zeroconf may append ``-2`` to the instance when another responder already uses the name.
        """
        service = self._service
        return None if service is None else service.name

    def start(self) -> None:
        """Open zeroconf, probe the name, announce the record. Blocks ~1.6 s; a second call does nothing."""
        with self._lock:
            if self._closed:
                raise AdvertiseError("advertiser is closed")
            if self._zc is not None:
                return
            service = self._service_info(self._info, instance_name(self._info) + "." + SERVICE_TYPE)
            try:
                zc = Zeroconf(interfaces=self._interfaces if self._interfaces is not None else InterfaceChoice.All)
            except (OSError, ZeroconfError) as exc:
                raise AdvertiseError(f"cannot open zeroconf: {exc}", service.name) from exc
            try:
                zc.register_service(service, allow_name_change=True)
            except (OSError, ZeroconfError) as exc:
                zc.close()
                raise AdvertiseError(f"cannot register {service.name}: {exc}", service.name) from exc
            self._zc, self._service = zc, service
            log.info("advertising %s on %s port %d", service.name, service.parsed_addresses(), service.port)

    def update(self, info: AgentInfo) -> None:
        """Advertise changed facts (state, paired, Blenders, port...) of the same agent.

        Before :meth:`start` it only replaces what start will announce. Blocks ~0.5 s while the change is
        announced; does nothing when the record would not change.
        """
        if info.agent_id != self._info.agent_id:
            raise ValueError(f"update() cannot change the agent id ({self._info.agent_id} -> {info.agent_id})")
        with self._lock:
            if self._closed:
                raise AdvertiseError("advertiser is closed", self.service_name)
            self._info = info
            if self._zc is None or self._service is None:
                return
            service = self._service_info(info, self._service.name)
            if (
                service.properties == self._service.properties
                and service.port == self._service.port
                and service.addresses == self._service.addresses
            ):
                return
            try:
                self._zc.update_service(service)
            except (OSError, ZeroconfError) as exc:
                raise AdvertiseError(f"cannot update {service.name}: {exc}", service.name) from exc
            self._service = service
            log.debug("re-announced %s: %s", service.name, service.decoded_properties)

    def close(self) -> None:
        """Withdraw the record (goodbye packets, TTL 0) and stop zeroconf's thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            zc, service = self._zc, self._service
            self._zc = None
            if zc is None:
                return
            try:
                if service is not None:
                    # Blocks until the three goodbyes are sent; Zeroconf.close() would do the same for every
                    # service, but saying it here keeps the withdrawal visible.
                    zc.unregister_all_services()
            except (OSError, ZeroconfError):
                log.exception("could not withdraw %s; browsers will drop it when its TTL runs out", service)
            finally:
                zc.close()
            log.info("withdrew %s", service.name if service else "advertisement")

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

    def _service_info(self, info: AgentInfo, name: str) -> ServiceInfo:
        return ServiceInfo(
            SERVICE_TYPE,
            name,
            port=info.port,
            properties=txt_properties(info),
            server=server_name(info),
            parsed_addresses=advertised_addresses(info, self._interfaces),
        )


__all__ = [
    "AdvertiseError",
    "Advertiser",
    "advertised_addresses",
    "instance_name",
    "server_name",
    "short_id",
    "txt_properties",
]
