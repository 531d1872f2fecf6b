"""Pure: the command line that starts one persistent Blender render session.

Both kinds of Blender run the same driver script (:mod:`agent.driver`), which takes its options after the
script path and then frame commands on stdin:

* executable: ``blender -b --factory-startup -Y FILE --python-exit-code 1 --python DRIVER -- OPTIONS``.
  Blender runs its arguments in order, so the file is loaded before the driver starts; ``-Y`` (or ``-y`` for
  a trusted task) must come before the file to apply to it.
* bpy module: ``python DRIVER --bpy --file FILE OPTIONS``; the driver resets to factory settings, sets the
  auto-exec preference and opens the file itself (``open_mainfile(use_scripts=...)``), since a module has no
  command line of its own.

Python auto-exec of the ``.blend`` (drivers, ``text.use_module`` scripts) is off unless the task is trusted:
a render farm runs files from many people, and Flamenco's default of ``-y`` is what we avoid.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from .blender import BlenderInstall

DRIVER_PATH = Path(__file__).with_name("driver.py")
"""The script that runs inside Blender (standard library + bpy only)."""


class CyclesDevice(StrEnum):
    """Cycles' compute device types (``Preferences.addons['cycles'].preferences.compute_device_type``)."""

    CPU = "CPU"
    CUDA = "CUDA"
    OPTIX = "OPTIX"
    HIP = "HIP"
    ONEAPI = "ONEAPI"
    METAL = "METAL"


@dataclass(frozen=True, slots=True)
class RenderSettings:
    """How one agent renders: the parts that go on Blender's command line."""

    trusted: bool = False
    """Let the .blend run its own Python (auto-exec). Off unless the task says the file is trusted."""
    threads: int = 0
    """Render threads; 0 lets Blender use every core."""
    device: CyclesDevice = CyclesDevice.CPU
    """Cycles device type; other engines ignore it."""
    gpus: tuple[int, ...] = ()
    """Which devices of ``device`` to use, by index in Cycles' list of that type; () means all of them.
    One agent per GPU on one PC: agent A gets ``(0,)``, agent B ``(1,)``."""
    use_cpu_with_gpu: bool = False
    """Add the CPU to the GPUs (Cycles' heterogeneous rendering)."""
    scene: str | None = None
    """Render this scene instead of the file's active one."""
    addons: tuple[str, ...] = ()
    """Add-ons to enable before the file loads (``--factory-startup`` enables none)."""
    extra_env: tuple[tuple[str, str], ...] = ()
    """(name, value) pairs added to the Blender process's environment, e.g. ``(("CUDA_VISIBLE_DEVICES", "1"),)``.
    A tuple, not a dict, so the settings stay hashable."""

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ValueError(f"threads must be 0 (all) or more, not {self.threads}")
        if any(i < 0 for i in self.gpus):
            raise ValueError(f"GPU indices are 0 or more: {self.gpus}")
        if self.gpus and self.device is CyclesDevice.CPU:
            raise ValueError("GPU indices given but the Cycles device is CPU")
        if any("," in a or not a for a in self.addons):
            raise ValueError(f"add-on names may not be empty or contain commas: {self.addons}")


def driver_options(settings: RenderSettings) -> list[str]:
    """The driver's own options, the same for both kinds of Blender."""
    options: list[str] = []
    if settings.threads:
        options += ["--threads", str(settings.threads)]
    if settings.device is not CyclesDevice.CPU:
        options += ["--device-type", settings.device.value]
        if settings.gpus:
            options += ["--gpus", ",".join(str(i) for i in settings.gpus)]
        if settings.use_cpu_with_gpu:
            options.append("--with-cpu")
    if settings.scene:
        options += ["--scene", settings.scene]
    return options


def executable_command(
    blender: Path, blend_file: Path, settings: RenderSettings, driver: Path = DRIVER_PATH
) -> list[str]:
    """``blender -b --factory-startup -Y FILE --python-exit-code 1 --python DRIVER -- OPTIONS``."""
    argv = [str(blender), "-b", "--factory-startup"]
    if settings.addons:
        argv += ["--addons", ",".join(settings.addons)]
    # -Y/-y only affect files loaded after them, so they go before FILE.
    argv.append("-y" if settings.trusted else "-Y")
    argv.append(str(blend_file))
    # An exception in the driver must end Blender with a non-zero status, not leave it idle.
    argv += ["--python-exit-code", "1", "--python", str(driver), "--"]
    # The driver's option names never start with "--cycles-": Cycles reads sys.argv for those itself.
    return argv + driver_options(settings)


def bpy_command(python: Path, blend_file: Path, settings: RenderSettings, driver: Path = DRIVER_PATH) -> list[str]:
    """``python DRIVER --bpy --file FILE [--trusted] [--addons a,b] OPTIONS``."""
    argv = [str(python), str(driver), "--bpy", "--file", str(blend_file)]
    if settings.trusted:
        argv.append("--trusted")
    if settings.addons:
        argv += ["--addons", ",".join(settings.addons)]
    return argv + driver_options(settings)


def build_command(
    install: BlenderInstall, blend_file: Path, settings: RenderSettings, driver: Path = DRIVER_PATH
) -> list[str]:
    """The argv for a render session of ``blend_file`` with this installation."""
    if install.kind == "bpy":
        return bpy_command(install.path, blend_file, settings, driver)
    return executable_command(install.path, blend_file, settings, driver)


EXR_OUTPUT_TYPES = frozenset({"OPEN_EXR", "OPEN_EXR_MULTILAYER"})


def tile_image_format(output_type: str) -> str:
    """The lossless image format a tile of a split frame is rendered in, for a task of this output type.

    EXR stays EXR (the same kind, so a multilayer file keeps its passes; the driver keeps half or full float
    and swaps a lossy codec for ZIP); everything else is PNG, in the scene's colour mode and 8 or 16 bits, from
    which the manager encodes the stitched image in the task's own format (``farmgui.core.tiles``)."""
    return output_type if output_type in EXR_OUTPUT_TYPES else "PNG"


def command_env(settings: RenderSettings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for the Blender process: ``base`` (default: ours) plus what the session relies on."""
    env = dict(os.environ if base is None else base)
    # The driver reports over stdout and flushes each line itself; these keep a bpy-module Python from
    # holding lines back or failing on a non-ASCII path under a C locale.
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(dict(settings.extra_env))
    return env


__all__ = [
    "DRIVER_PATH",
    "EXR_OUTPUT_TYPES",
    "CyclesDevice",
    "RenderSettings",
    "bpy_command",
    "build_command",
    "command_env",
    "driver_options",
    "executable_command",
    "tile_image_format",
]
