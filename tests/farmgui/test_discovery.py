"""Discovery end to end on loopback: agent.advertise.Advertiser found by farmgui.core.discovery.AgentBrowser.

Everything binds to 127.0.0.1 only (as python-zeroconf's own tests do): no packet leaves the machine. Each test
uses fresh agent ids and ignores events about others, so a stray mDNS responder on the host cannot confuse it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from zeroconf import ServiceInfo, Zeroconf

from agent.advertise import Advertiser
from agent.protocol import PROTOCOL_VERSION, SERVICE_TYPE, AgentInfo, AgentState, BlenderVersion
from farmgui.core.discovery import AgentBrowser, AgentGone, AgentSeen, DiscoveryEvent, parse_service

LOOPBACK = ["127.0.0.1"]
TIMEOUT_S = 5.0


class Events:
    """Collects events from zeroconf's thread; tests wait on it with a bound."""

    def __init__(self) -> None:
        self.events: list[DiscoveryEvent] = []
        self._changed = threading.Condition()
        self.raise_for: Callable[[DiscoveryEvent], bool] = lambda event: False

    def __call__(self, event: DiscoveryEvent) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()
        if self.raise_for(event):
            raise RuntimeError("a consumer that fails")

    def wait_for(self, match: Callable[[DiscoveryEvent], bool], timeout: float = TIMEOUT_S) -> DiscoveryEvent:
        with self._changed:
            found: list[DiscoveryEvent] = []

            def ready() -> bool:
                found[:] = [e for e in self.events if match(e)]
                return bool(found)

            if not self._changed.wait_for(ready, timeout):
                pytest.fail(f"no matching event within {timeout} s; got {self.events}")
            return found[-1]

    def seen(self, agent_id: str, **fields: object) -> AgentSeen:
        def match(event: DiscoveryEvent) -> bool:
            return (
                isinstance(event, AgentSeen)
                and event.agent_id == agent_id
                and all(getattr(event, k) == v for k, v in fields.items())
            )

        event = self.wait_for(match)
        assert isinstance(event, AgentSeen)
        return event

    def about(self, agent_id: str) -> list[DiscoveryEvent]:
        with self._changed:
            return [e for e in self.events if e.agent_id == agent_id]


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def browser(events: Events) -> Iterator[AgentBrowser]:
    with AgentBrowser(events, interfaces=LOOPBACK) as browser:
        yield browser


def agent_info(name: str = "render-pc", **changes: object) -> AgentInfo:
    info = AgentInfo(
        agent_id=uuid.uuid4().hex,
        name=name,
        host="127.0.0.1",
        port=8765,
        blenders=[BlenderVersion("3.4.1", "executable"), BlenderVersion("5.0.1", "bpy")],
        cpus=16,
        gpus=["OPTIX:NVIDIA H200"],
        state=AgentState.IDLE,
        paired=True,
    )
    return dataclasses.replace(info, **changes)  # type: ignore[arg-type]


@pytest.mark.usefixtures("browser")
def test_an_advertised_agent_is_seen_with_its_fields(events: Events) -> None:
    info = agent_info(port=8799)
    with Advertiser(info, interfaces=LOOPBACK) as advertiser:
        seen = events.seen(info.agent_id)
        assert seen == AgentSeen(
            agent_id=info.agent_id,
            name="render-pc",
            host="127.0.0.1",
            port=8799,
            addresses=("127.0.0.1",),
            protocol=PROTOCOL_VERSION,
            blenders=("3.4", "5.0"),
            cpus=16,
            gpus=("OPTIX:NVIDIA H200",),
            state=AgentState.IDLE,
            paired=True,
            service_name=f"render-pc-{info.agent_id[:8]}.{SERVICE_TYPE}",
        )
        assert seen.service_name == advertiser.service_name
        assert seen.compatible


@pytest.mark.usefixtures("browser")
def test_update_reannounces_the_new_state(events: Events) -> None:
    info = agent_info()
    with Advertiser(info, interfaces=LOOPBACK) as advertiser:
        events.seen(info.agent_id, state=AgentState.IDLE)
        advertiser.update(dataclasses.replace(info, state=AgentState.RENDERING, paired=False))
        seen = events.seen(info.agent_id, state=AgentState.RENDERING)
        assert not seen.paired
        advertiser.update(dataclasses.replace(info, state=AgentState.RENDERING, paired=False))  # no change: no-op
    states = [e.state for e in events.about(info.agent_id) if isinstance(e, AgentSeen)]
    assert states == [AgentState.IDLE, AgentState.RENDERING]  # identical repeats are not reported


@pytest.mark.usefixtures("browser")
def test_close_withdraws_the_agent(events: Events) -> None:
    info = agent_info()
    advertiser = Advertiser(info, interfaces=LOOPBACK)
    advertiser.start()
    seen = events.seen(info.agent_id)
    started = time.monotonic()
    advertiser.close()
    gone = events.wait_for(lambda e: isinstance(e, AgentGone) and e.agent_id == info.agent_id)
    assert gone == AgentGone(agent_id=info.agent_id, service_name=seen.service_name)
    assert time.monotonic() - started < 2.0  # a goodbye, not a TTL running out
    advertiser.close()  # idempotent


@pytest.mark.usefixtures("browser")
def test_two_agents_with_one_name_are_both_seen(events: Events) -> None:
    first, second = agent_info(name="gpu-box", port=8765), agent_info(name="gpu-box", port=8766)
    one, two = Advertiser(first, interfaces=LOOPBACK), Advertiser(second, interfaces=LOOPBACK)
    try:
        one_start = threading.Thread(target=one.start)  # both probe at once: saves 1.6 s
        one_start.start()
        two.start()
        one_start.join(timeout=TIMEOUT_S)
        a = events.seen(first.agent_id)
        b = events.seen(second.agent_id)
    finally:
        one.close()
        two.close()
    assert (a.port, b.port) == (8765, 8766)
    assert a.service_name != b.service_name
    assert a.name == b.name == "gpu-box"


def hand_made(name: str, properties: dict[bytes, bytes | None], port: int = 9000) -> ServiceInfo:
    return ServiceInfo(
        SERVICE_TYPE,
        f"{name}.{SERVICE_TYPE}",
        port=port,
        properties=properties,
        server=f"{name}.local.",
        parsed_addresses=LOOPBACK,
    )


@pytest.mark.usefixtures("browser")
def test_bad_records_do_not_break_the_browser(events: Events, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="farmgui.core.discovery")
    future_id, garbage_id = uuid.uuid4().hex, uuid.uuid4().hex
    no_id = hand_made(f"no-id-{future_id[:6]}", {b"name": b"anonymous", b"proto": b"1"})
    future = hand_made(f"future-{future_id[:6]}", {b"id": future_id.encode(), b"proto": b"999", b"state": b"idle"})
    garbage = hand_made(
        f"garbage-{garbage_id[:6]}",
        {
            b"id": garbage_id.encode(),
            b"name": b"\xff\xfe bad utf-8",
            b"proto": b"one",
            b"blender": b"5.0,,x.y,3.4.1, 4.2 ",
            b"cpus": b"-3",
            b"gpus": None,
            b"state": b"dancing",
            b"paired": b"yes",
        },
    )
    events.raise_for = lambda e: e.agent_id == garbage_id  # the consumer fails too: logged, browsing goes on
    with Zeroconf(interfaces=LOOPBACK) as rogue:
        for info in (no_id, future, garbage):
            rogue.register_service(info, cooperating_responders=True)  # skips probing: fast
        try:
            old = events.seen(future_id)
            assert old.protocol == 999
            assert not old.compatible
            assert old.state == AgentState.IDLE
            bad = events.seen(garbage_id)
            assert bad.name == "\ufffd\ufffd bad utf-8"
            assert bad.protocol is None
            assert bad.blenders == ("5.0", "4.2")
            assert bad.cpus is None
            assert bad.gpus == ()
            assert bad.state is None
            assert not bad.paired
            deadline = time.monotonic() + TIMEOUT_S
            while "has no usable 'id'" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
            assert no_id.name in caplog.text
            assert "on_event raised" in caplog.text
            # still browsing: a good record that comes after is seen
            good_id = uuid.uuid4().hex
            rogue.register_service(
                hand_made(f"good-{good_id[:6]}", {b"id": good_id.encode(), b"proto": str(PROTOCOL_VERSION).encode()}),
                cooperating_responders=True,
            )
            assert events.seen(good_id).compatible
        finally:
            rogue.unregister_all_services()
    assert all(getattr(e, "service_name", "") != no_id.name for e in events.events)


def test_close_is_idempotent_and_stops_events(events: Events) -> None:
    browser = AgentBrowser(events, interfaces=LOOPBACK)
    browser.close()  # before start: fine
    browser.close()
    with pytest.raises(RuntimeError, match="closed"):
        browser.start()
    started = AgentBrowser(events, interfaces=LOOPBACK)
    started.start()
    started.start()  # a second start does nothing
    started.close()
    started.close()


@pytest.mark.parametrize(
    ("properties", "addresses", "port"),
    [
        ({}, ["127.0.0.1"], 8765),
        ({b"id": b""}, ["127.0.0.1"], 8765),
        ({b"id": None}, ["127.0.0.1"], 8765),
        ({b"id": b"x" * 200}, ["127.0.0.1"], 8765),
        ({b"id": b"a\nb"}, ["127.0.0.1"], 8765),
        ({b"id": b"abc"}, [], 8765),
        ({b"id": b"abc"}, ["127.0.0.1"], 0),
    ],
    ids=["no-txt", "empty-id", "id-without-value", "long-id", "control-char-id", "no-address", "port-0"],
)
def test_parse_service_needs_an_id_an_address_and_a_port(
    properties: dict[bytes, bytes | None], addresses: list[str], port: int
) -> None:
    info = ServiceInfo(SERVICE_TYPE, f"x.{SERVICE_TYPE}", port=port, properties=properties, parsed_addresses=addresses)
    assert parse_service(info) is None


def test_parse_service_minimal_record() -> None:
    info = ServiceInfo(
        SERVICE_TYPE,
        f"Some PC-1234.{SERVICE_TYPE}",
        port=8765,
        properties={b"id": b"abc"},
        parsed_addresses=["fe80::1", "192.0.2.9"],
    )
    seen = parse_service(info)
    assert seen is not None
    assert (seen.agent_id, seen.name, seen.host, seen.port) == ("abc", "Some PC-1234", "192.0.2.9", 8765)
    assert set(seen.addresses) == {"fe80::1", "192.0.2.9"}
    assert (seen.protocol, seen.blenders, seen.cpus, seen.gpus, seen.state, seen.paired) == (
        None,
        (),
        None,
        (),
        None,
        False,
    )


def test_parse_service_ipv6_only() -> None:
    info = ServiceInfo(
        SERVICE_TYPE, f"v6.{SERVICE_TYPE}", port=8765, properties={b"id": b"abc"}, parsed_addresses=["2001:db8::5"]
    )
    seen = parse_service(info)
    assert seen is not None
    assert seen.host == "2001:db8::5"


def test_events_are_immutable() -> None:
    gone = AgentGone(agent_id="a", service_name="s")
    with pytest.raises(dataclasses.FrozenInstanceError):
        gone.agent_id = "b"  # type: ignore[misc]
