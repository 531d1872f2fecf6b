"""Pure: Blender's command line for a render session, and the driver's pure helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.blender import BlenderInstall
from agent.command import (
    DRIVER_PATH,
    CyclesDevice,
    RenderSettings,
    bpy_command,
    build_command,
    command_env,
    driver_options,
    executable_command,
)
from agent.driver import frame_path, parse_args, script_args, temp_path

BLENDER = Path("/opt/blender-4.2/blender")
PYTHON = Path("/venv/bin/python")
FILE = Path("/work/cache/ab12.blend")
DRIVER = Path("/agent/driver.py")


def test_executable_default_is_background_factory_startup_auto_exec_off() -> None:
    assert executable_command(BLENDER, FILE, RenderSettings(), DRIVER) == [
        "/opt/blender-4.2/blender",
        "-b",
        "--factory-startup",
        "-Y",
        "/work/cache/ab12.blend",
        "--python-exit-code",
        "1",
        "--python",
        "/agent/driver.py",
        "--",
    ]


def test_trusted_task_enables_auto_exec_before_the_file() -> None:
    argv = executable_command(BLENDER, FILE, RenderSettings(trusted=True), DRIVER)
    assert "-Y" not in argv
    assert argv.index("-y") < argv.index(str(FILE))


def test_addons_go_before_the_file_so_its_data_loads_with_them() -> None:
    argv = executable_command(BLENDER, FILE, RenderSettings(addons=("cycles", "my_addon")), DRIVER)
    assert argv[3:5] == ["--addons", "cycles,my_addon"]
    assert argv.index("--addons") < argv.index(str(FILE))


def test_bpy_command_opens_the_file_in_the_driver() -> None:
    assert bpy_command(PYTHON, FILE, RenderSettings(), DRIVER) == [
        "/venv/bin/python",
        "/agent/driver.py",
        "--bpy",
        "--file",
        "/work/cache/ab12.blend",
    ]
    trusted = bpy_command(PYTHON, FILE, RenderSettings(trusted=True, addons=("a",)), DRIVER)
    assert trusted[5:] == ["--trusted", "--addons", "a"]


def test_settings_become_driver_options_for_both_kinds() -> None:
    settings = RenderSettings(threads=4, device=CyclesDevice.OPTIX, gpus=(1, 2), use_cpu_with_gpu=True, scene="Shot")
    options = ["--threads", "4", "--device-type", "OPTIX", "--gpus", "1,2", "--with-cpu", "--scene", "Shot"]
    assert driver_options(settings) == options
    assert executable_command(BLENDER, FILE, settings, DRIVER)[-len(options) :] == options
    assert bpy_command(PYTHON, FILE, settings, DRIVER)[-len(options) :] == options
    # Never "--cycles-device": Cycles parses sys.argv for that itself and would fight the driver.
    assert not any(arg.startswith("--cycles") for arg in options)


def test_cpu_and_all_threads_add_nothing() -> None:
    assert driver_options(RenderSettings()) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threads": -1},
        {"gpus": (0,)},  # GPU indices with the CPU device
        {"device": CyclesDevice.CUDA, "gpus": (-1,)},
        {"addons": ("a,b",)},
        {"addons": ("",)},
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RenderSettings(**kwargs)  # type: ignore[arg-type]


def test_build_command_by_install_kind() -> None:
    exe = BlenderInstall("executable", BLENDER, (4, 2, 3), "4.2.3 LTS")
    module = BlenderInstall("bpy", PYTHON, (5, 0, 1), "5.0.1")
    assert build_command(exe, FILE, RenderSettings())[0] == str(BLENDER)
    assert build_command(exe, FILE, RenderSettings())[8] == str(DRIVER_PATH)
    assert build_command(module, FILE, RenderSettings())[:2] == [str(PYTHON), str(DRIVER_PATH)]
    assert DRIVER_PATH.is_file()


def test_command_env() -> None:
    env = command_env(RenderSettings(extra_env=(("CUDA_VISIBLE_DEVICES", "1"),)), {"PATH": "/bin"})
    assert env == {
        "PATH": "/bin",
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
        "CUDA_VISIBLE_DEVICES": "1",
    }


def test_settings_are_hashable() -> None:
    assert hash(RenderSettings(extra_env=(("A", "1"),))) == hash(RenderSettings(extra_env=(("A", "1"),)))


# --- the driver's pure parts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "frame", "ext", "expected"),
    [
        ("/out/f_####", 12, ".png", "/out/f_0012.png"),
        ("/out/f_#", 12, ".png", "/out/f_12.png"),
        ("/out/f_", 3, ".exr", "/out/f_0003.exr"),
        ("/out/shot#1/f_##_v2", 7, ".jpg", "/out/shot#1/f_07_v2.jpg"),
        ("/out/f_####.png", 1, ".png", "/out/f_0001.png"),
        ("/out/f_####", -5, ".png", "/out/f_-005.png"),
        ("/out/f_####", 1, "", "/out/f_0001"),
    ],
)
def test_frame_path(pattern: str, frame: int, ext: str, expected: str) -> None:
    assert frame_path(pattern, frame, ext) == expected


def test_temp_path_is_hidden_next_to_the_frame() -> None:
    assert temp_path("/out/f_0001.png") == "/out/.f_0001.png.frameherd-tmp"


def test_script_args_in_blender_and_in_python() -> None:
    assert script_args(["blender", "-b", "x.blend", "--python", "d.py", "--", "--threads", "2"]) == ["--threads", "2"]
    assert script_args(["d.py", "--bpy", "--file", "x.blend"]) == ["--bpy", "--file", "x.blend"]
    options = parse_args(["--bpy", "--file", "x.blend", "--device-type", "CUDA", "--gpus", "0"])
    assert (options.bpy, options.file, options.device_type, options.gpus, options.trusted) == (
        True,
        "x.blend",
        "CUDA",
        "0",
        False,
    )
