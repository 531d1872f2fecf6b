"""The driver's Cycles device set-up (``Driver.configure_device``), on a stand-in for Blender's preferences.

No GPU is at hand here (a real Cycles GPU render could not be run: see issue #3's notes), so this checks the part
that is ours: which of Blender's devices get ``use`` for ``--device-type`` and ``--gpus``, so that several agents on
one PC, one per GPU, each render on their own card. The stand-in has the shape of Blender's API
(``preferences.addons["cycles"].preferences``: ``compute_device_type``, ``refresh_devices()``, ``devices`` with
``type``, ``use`` and ``as_pointer()``); that a real Blender without a GPU fails the start with a GPU error is
tested with bpy 5.0.1 in test_session.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from agent.driver import Driver, DriverError, parse_args

_pointers = iter(range(1000, 10**6))


@dataclass
class Device:
    name: str
    type: str
    use: bool = True
    pointer: int = field(default_factory=lambda: next(_pointers))

    def as_pointer(self) -> int:
        return self.pointer


class CyclesPreferences:
    """Blender's ``CyclesPreferences``: setting ``compute_device_type`` to a backend Blender lacks is an error."""

    def __init__(self, devices: list[Device], backends: tuple[str, ...] = ("NONE", "CUDA", "OPTIX")) -> None:
        self._all = devices
        self._backends = backends
        self._type = "NONE"
        self.devices: list[Device] = []

    @property
    def compute_device_type(self) -> str:
        return self._type

    @compute_device_type.setter
    def compute_device_type(self, value: str) -> None:
        if value not in self._backends:
            raise TypeError(f'bpy_struct: item.attr = val: enum "{value}" not found in {self._backends}')
        self._type = value

    def refresh_devices(self) -> None:
        # Blender lists the chosen backend's devices and the CPU.
        self.devices = [d for d in self._all if d.type in (self._type, "CPU")]


def driver(prefs: CyclesPreferences | None, *args: str) -> tuple[Driver, Any]:
    addons = {} if prefs is None else {"cycles": SimpleNamespace(preferences=prefs)}
    bpy = SimpleNamespace(context=SimpleNamespace(preferences=SimpleNamespace(addons=addons)))
    d = Driver(bpy, parse_args(["--bpy", "--file", "x.blend", *args]))
    d.scene = SimpleNamespace(cycles=SimpleNamespace(device="CPU"))
    return d, d.scene.cycles


def workstation() -> list[Device]:
    return [
        Device("NVIDIA RTX A6000", "CUDA"),
        Device("NVIDIA RTX A6000", "CUDA"),
        Device("NVIDIA RTX A6000", "OPTIX"),
        Device("NVIDIA RTX A6000", "OPTIX"),
        Device("AMD Ryzen Threadripper", "CPU"),
    ]


@pytest.mark.parametrize("index", [0, 1])
def test_one_agent_per_gpu_uses_only_its_own_card(index: int) -> None:
    devices = workstation()
    prefs = CyclesPreferences(devices)
    d, cycles = driver(prefs, "--device-type", "optix", "--gpus", str(index))
    d.configure_device()
    assert prefs.compute_device_type == "OPTIX"
    used = [i for i, dev in enumerate(prefs.devices) if dev.use]
    assert used == [index], "the OptiX card of this index, not the other, not the CPU"
    assert cycles.device == "GPU"


def test_without_gpus_every_card_of_the_type_and_the_cpu_on_request() -> None:
    prefs = CyclesPreferences(workstation())
    d, cycles = driver(prefs, "--device-type", "CUDA", "--with-cpu")
    d.configure_device()
    assert [(dev.type, dev.use) for dev in prefs.devices] == [("CUDA", True), ("CUDA", True), ("CPU", True)]
    assert cycles.device == "GPU"


def test_cpu_leaves_the_preferences_alone() -> None:
    prefs = CyclesPreferences(workstation())
    d, cycles = driver(prefs, "--device-type", "CPU", "--gpus", "1")
    d.configure_device()
    assert prefs.compute_device_type == "NONE"
    assert cycles.device == "CPU"


@pytest.mark.parametrize(
    ("prefs", "args", "message"),
    [
        (None, ["--device-type", "CUDA"], "GPU error: the Cycles add-on is not loaded"),
        (CyclesPreferences(workstation()), ["--device-type", "HIP"], "GPU error: this Blender has no HIP support"),
        (CyclesPreferences([Device("CPU", "CPU")]), ["--device-type", "CUDA"], "GPU error: no CUDA device found"),
        (
            CyclesPreferences(workstation()),
            ["--device-type", "CUDA", "--gpus", "2"],
            "GPU error: asked for CUDA devices [2], there are 2",
        ),
    ],
    ids=["no-cycles", "no-backend", "no-device", "index-out-of-range"],
)
def test_what_cannot_be_had_is_a_gpu_error(prefs: CyclesPreferences | None, args: list[str], message: str) -> None:
    d, _ = driver(prefs, *args)
    with pytest.raises(DriverError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        d.configure_device()
