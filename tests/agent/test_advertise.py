"""The advertiser's pure parts (names, TXT record, addresses) and its lifecycle rules.

Found-by-a-browser tests live in tests/farmgui/test_discovery.py, which needs both sides.
"""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from agent.advertise import (
    AdvertiseError,
    Advertiser,
    advertised_addresses,
    instance_name,
    server_name,
    short_id,
    txt_properties,
)
from agent.protocol import PROTOCOL_VERSION, AgentInfo, AgentState, BlenderVersion, TxtKey

INFO = AgentInfo(
    agent_id="3f2a9c1e-77aa-4b7e-9d51-0c2f64e1a0b2",
    name="render-pc-1",
    host="0.0.0.0",  # noqa: S104 - data, not a bind
    port=8765,
    blenders=[
        BlenderVersion("3.4.1", "executable"),
        BlenderVersion("5.0.1", "bpy"),
        BlenderVersion("3.4.0", "executable"),
        BlenderVersion("garbage", "executable"),
    ],
    cpus=16,
    gpus=["OPTIX:NVIDIA H200", "CUDA:NVIDIA H200"],
    state=AgentState.RENDERING,
    paired=True,
)


def test_txt_record_carries_every_key() -> None:
    assert txt_properties(INFO) == {
        TxtKey.AGENT_ID: INFO.agent_id,
        TxtKey.NAME: "render-pc-1",
        TxtKey.PROTOCOL: str(PROTOCOL_VERSION),
        TxtKey.BLENDERS: "3.4,5.0",
        TxtKey.CPUS: "16",
        TxtKey.GPUS: "OPTIX:NVIDIA H200,CUDA:NVIDIA H200",
        TxtKey.STATE: "rendering",
        TxtKey.PAIRED: "1",
    }


def test_txt_record_unpaired_idle_without_gpus() -> None:
    txt = txt_properties(dataclasses.replace(INFO, paired=False, state=AgentState.IDLE, gpus=[], blenders=[]))
    assert txt[TxtKey.PAIRED] == "0"
    assert txt[TxtKey.STATE] == "idle"
    assert txt[TxtKey.GPUS] == ""
    assert txt[TxtKey.BLENDERS] == ""


def test_txt_entries_fit_the_255_byte_limit() -> None:
    gpus = [f"OPTIX:NVIDIA GeForce RTX 4090 number {i}" for i in range(20)]
    txt = txt_properties(dataclasses.replace(INFO, name="é" * 300, gpus=gpus))
    for key, value in txt.items():
        assert len(f"{key}={value}".encode()) <= 255
    kept = txt[TxtKey.GPUS].split(",")
    assert kept == gpus[: len(kept)]  # cut at a whole item
    assert 0 < len(kept) < len(gpus)


def test_a_comma_inside_a_gpu_name_does_not_split_it() -> None:
    assert txt_properties(dataclasses.replace(INFO, gpus=["HIP:AMD, Inc. GPU"]))[TxtKey.GPUS] == "HIP:AMD  Inc. GPU"


def test_short_id() -> None:
    assert short_id("3f2a9c1e-77aa-4b7e") == "3f2a9c1e"
    assert short_id("AB") == "ab"
    assert short_id("---") == "agent"


def test_instance_name_is_name_and_short_id() -> None:
    assert instance_name(INFO) == "render-pc-1-3f2a9c1e"


def test_instance_names_differ_by_id_for_one_name() -> None:
    other = dataclasses.replace(INFO, agent_id="9b1d0000-0000-0000-0000-000000000000")
    assert instance_name(other) != instance_name(INFO)


def test_instance_name_drops_dots_and_fits_a_label() -> None:
    name = instance_name(dataclasses.replace(INFO, name="pc.studio.lan\x00" + "ö" * 80))
    assert "." not in name
    assert "\x00" not in name
    assert len(name.encode()) <= 63
    assert name.endswith("-3f2a9c1e")


def test_instance_name_of_an_empty_name() -> None:
    assert instance_name(dataclasses.replace(INFO, name=" ")) == "Frameherd agent-3f2a9c1e"


def test_server_name_is_a_host_label_of_the_agent() -> None:
    assert server_name(INFO) == "render-pc-1-3f2a9c1e.local."
    assert server_name(dataclasses.replace(INFO, name="Ünïcode PC!")) == "unicode-pc-3f2a9c1e.local."
    assert server_name(dataclasses.replace(INFO, name="!!!")) == "frameherd-3f2a9c1e.local."
    assert len(server_name(dataclasses.replace(INFO, name="x" * 200)).split(".")[0]) <= 63


def test_addresses_are_the_given_interfaces() -> None:
    assert advertised_addresses(INFO, ["127.0.0.1", "127.0.0.1"]) == ["127.0.0.1"]


def test_addresses_follow_a_specific_bind_address() -> None:
    assert advertised_addresses(dataclasses.replace(INFO, host="192.0.2.7"), None) == ["192.0.2.7"]


def test_addresses_of_a_wildcard_bind_are_the_hosts() -> None:
    found = advertised_addresses(INFO, None)
    assert found
    parsed = [ipaddress.ip_address(a) for a in found]
    assert all(a.version == 4 for a in parsed)
    assert found == ["127.0.0.1"] or not any(a.is_loopback for a in parsed)


def test_update_cannot_change_the_identity() -> None:
    advertiser = Advertiser(INFO, interfaces=["127.0.0.1"])
    with pytest.raises(ValueError, match="agent id"):
        advertiser.update(dataclasses.replace(INFO, agent_id="someone-else"))


def test_update_before_start_only_replaces_the_info() -> None:
    advertiser = Advertiser(INFO, interfaces=["127.0.0.1"])
    paused = dataclasses.replace(INFO, state=AgentState.PAUSED)
    advertiser.update(paused)
    assert advertiser.info == paused
    assert advertiser.service_name is None


def test_close_is_idempotent_and_final() -> None:
    advertiser = Advertiser(INFO, interfaces=["127.0.0.1"])
    advertiser.close()
    advertiser.close()
    with pytest.raises(AdvertiseError, match="closed"):
        advertiser.start()
    with pytest.raises(AdvertiseError, match="closed"):
        advertiser.update(INFO)
