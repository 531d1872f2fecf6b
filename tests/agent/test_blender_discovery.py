"""Finding Blender installations: fake ones (shell scripts that print a version), the real /usr/bin/blender and
the bpy module; and choosing one for a file's version."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import agent.blender
from agent.blender import (
    CACHE_FILE,
    BlenderInstall,
    choose_blender,
    default_search_globs,
    find_blenders,
    parse_file_version,
    parse_version_output,
    select_blender,
)

pytestmark = pytest.mark.skipif(sys.platform.startswith("win"), reason="the fake installs are shell scripts")


def fake_blender(path: Path, first_line: str, counter: Path, *, status: int = 0) -> Path:
    """A script that answers ``--version`` like Blender and counts how often it was asked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'#!/bin/sh\necho probe >> "{counter}"\necho "{first_line}"\necho "\tbuild date: 2024-01-01"\nexit {status}\n'
    )
    path.chmod(0o755)
    return path


def probes(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


@pytest.fixture
def farm(tmp_path: Path) -> dict[str, Path]:
    counter = tmp_path / "probes.log"
    return {
        "counter": counter,
        "explicit": fake_blender(tmp_path / "custom" / "blender", "Blender 4.1.1", counter),
        "env": fake_blender(tmp_path / "envdir" / "blender", "Blender 3.6.5", counter),
        "path": fake_blender(tmp_path / "bin" / "blender", "Blender 4.2.3 LTS", counter),
        "opt_a": fake_blender(tmp_path / "opt" / "blender-5.0.1-linux-x64" / "blender", "Blender 5.0.1", counter),
        "opt_b": fake_blender(tmp_path / "opt" / "blender-2.79b" / "blender", "Blender 2.79 (sub 0)", counter),
        "broken": fake_blender(tmp_path / "opt" / "blender-broken" / "blender", "Segmentation fault", counter),
        "glob": tmp_path / "opt" / "blender-*" / "blender",
    }


def find(farm: dict[str, Path], cache_dir: Path | None, **kwargs: object) -> list[BlenderInstall]:
    return find_blenders(
        [farm["explicit"]],
        env={"BLENDER": str(farm["env"]), "PATH": str(farm["path"].parent)},
        search_globs=[str(farm["glob"])],
        include_bpy=False,
        cache_dir=cache_dir,
        **kwargs,  # type: ignore[arg-type]
    )


def test_every_place_is_searched_in_order_and_each_is_probed_once(farm: dict[str, Path], tmp_path: Path) -> None:
    installs = find(farm, tmp_path / "cache")
    assert [(i.path, i.version, i.version_string) for i in installs] == [
        (farm["explicit"], (4, 1, 1), "4.1.1"),
        (farm["env"], (3, 6, 5), "3.6.5"),
        (farm["path"], (4, 2, 3), "4.2.3 LTS"),
        (farm["opt_a"], (5, 0, 1), "5.0.1"),
        (farm["opt_b"], (2, 79, 0), "2.79 (sub 0)"),
    ]
    assert all(i.kind == "executable" for i in installs)
    # Six scripts, six probes: the broken one ran once too and was left out.
    assert probes(farm["counter"]) == 6


def test_the_cache_spares_the_second_probe_until_the_file_changes(farm: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = find(farm, cache)
    assert (cache / CACHE_FILE).is_file()
    before = probes(farm["counter"])
    assert find(farm, cache) == first
    assert probes(farm["counter"]) - before == 1  # only the broken one, whose failure is not cached

    # Replacing a Blender in place (new size and mtime) probes it again.
    fake_blender(farm["path"], "Blender 4.2.4 LTS", farm["counter"])
    os.utime(farm["path"], ns=(1, 1))
    again = find(farm, cache)
    assert probes(farm["counter"]) - before == 3
    assert next(i for i in again if i.path == farm["path"]).version == (4, 2, 4)


def test_a_damaged_cache_is_ignored(farm: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / CACHE_FILE).write_text("{not json")
    assert len(find(farm, cache)) == 5


def test_the_same_blender_found_twice_is_listed_once(tmp_path: Path) -> None:
    counter = tmp_path / "probes.log"
    real = fake_blender(tmp_path / "opt" / "blender-4.2" / "blender", "Blender 4.2.0", counter)
    link_dir = tmp_path / "bin"
    link_dir.mkdir()
    (link_dir / "blender").symlink_to(real)
    installs = find_blenders(
        [real], env={"PATH": str(link_dir)}, search_globs=[str(real)], include_bpy=False, cache_dir=None
    )
    assert [i.path for i in installs] == [real]
    assert probes(counter) == 1


def test_an_explicit_folder_means_the_blender_in_it(tmp_path: Path) -> None:
    counter = tmp_path / "probes.log"
    inside = fake_blender(tmp_path / "blender-4.2.3-linux-x64" / "blender", "Blender 4.2.3 LTS", counter)
    installs = find_blenders([inside.parent], env={"PATH": ""}, search_globs=[], include_bpy=False)
    assert [i.path for i in installs] == [inside]


def test_missing_and_non_executable_paths_are_skipped(tmp_path: Path) -> None:
    not_exec = tmp_path / "blender"
    not_exec.write_text("#!/bin/sh\necho Blender 4.0.0\n")
    installs = find_blenders(
        [tmp_path / "nope" / "blender"],
        env={"PATH": str(tmp_path)},
        search_globs=[],
        include_bpy=False,
    )
    assert installs == []


def test_real_blender_and_bpy_are_found(blender_exe: Path, bpy_python: Path, tmp_path: Path) -> None:
    installs = find_blenders([blender_exe], env={"PATH": ""}, search_globs=[], pythons=[bpy_python], cache_dir=tmp_path)
    kinds = {i.kind: i for i in installs}
    assert set(kinds) == {"executable", "bpy"}
    out = subprocess.run([blender_exe, "--version"], capture_output=True, text=True, timeout=60, check=True)
    exe_version = parse_version_output(out.stdout)
    assert exe_version is not None
    assert kinds["executable"].version == exe_version[0]
    assert kinds["bpy"].path == Path(sys.executable)
    assert kinds["bpy"].version >= (4, 0, 0)  # the bpy wheel on PyPI (5.0.1 here)


def test_a_second_search_reads_everything_from_the_cache(
    blender_exe: Path, bpy_python: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = find_blenders([blender_exe], env={"PATH": ""}, search_globs=[], cache_dir=tmp_path)

    def no_subprocess(argv: list[str], timeout: float) -> str | None:
        raise AssertionError(f"probed again: {argv}")

    monkeypatch.setattr(agent.blender, "_run", no_subprocess)
    assert find_blenders([blender_exe], env={"PATH": ""}, search_globs=[], cache_dir=tmp_path) == first


def test_include_bpy_false_leaves_the_module_out(bpy_python: Path, tmp_path: Path) -> None:
    assert find_blenders(env={"PATH": ""}, search_globs=[], include_bpy=False, pythons=[bpy_python]) == []


def test_a_python_without_bpy_has_no_install(tmp_path: Path) -> None:
    python = Path("/usr/bin/python3")
    if not python.exists():
        pytest.skip("no system python3")
    installs = find_blenders(env={"PATH": ""}, search_globs=[], pythons=[python], cache_dir=tmp_path)
    assert all(i.path != python for i in installs)


# --- version strings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Blender 3.4.1\n", ((3, 4, 1), "3.4.1")),
        ("Blender 4.2.3 LTS\n\tbuild date: 2024-10-14\n", ((4, 2, 3), "4.2.3 LTS")),
        ("Blender 4.3.0 Alpha\n", ((4, 3, 0), "4.3.0 Alpha")),
        ("Blender 2.79 (sub 0)\n", ((2, 79, 0), "2.79 (sub 0)")),
        ("Color management: warning\nBlender 5.0.1\n", ((5, 0, 1), "5.0.1")),
        ("Blender 2.80 (sub 75)\n", ((2, 80, 75), "2.80 (sub 75)")),
        ("not blender\n", None),
        ("", None),
    ],
)
def test_parse_version_output(output: str, expected: tuple[tuple[int, int, int], str] | None) -> None:
    assert parse_version_output(output) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5.0", (5, 0)), ("4.2.1", (4, 2)), ("2.79", (2, 79)), (402, (4, 2)), (279, (2, 79)), ((5, 0, 1), (5, 0))],
)
def test_parse_file_version(value: str | int | tuple[int, ...], expected: tuple[int, int]) -> None:
    assert parse_file_version(value) == expected


@pytest.mark.parametrize("bad", ["five", "", (5,)])
def test_parse_file_version_refuses_nonsense(bad: str | tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        parse_file_version(bad)


# --- choosing -----------------------------------------------------------------------------------------------


def exe(version: tuple[int, int, int], name: str = "") -> BlenderInstall:
    text = ".".join(map(str, version))
    return BlenderInstall("executable", Path(f"/opt/blender-{name or text}/blender"), version, text)


def module(version: tuple[int, int, int]) -> BlenderInstall:
    return BlenderInstall("bpy", Path("/venv/bin/python"), version, ".".join(map(str, version)))


B34, B36, B42_1, B42_3, B45, B50 = (
    exe((3, 4, 1)),
    exe((3, 6, 5)),
    exe((4, 2, 1)),
    exe((4, 2, 3)),
    exe((4, 5, 0)),
    exe((5, 0, 1)),
)
BPY50 = module((5, 0, 1))


@pytest.mark.parametrize(
    ("installs", "file_version", "expected"),
    [
        ([B34, B42_1, B42_3, B50], "4.2", B42_3),  # same major.minor, newest patch
        ([B34, B50], "3.4", B34),
        ([B34, B36, B50], "3.5", B36),  # nearest newer
        ([B34, B42_3, B50], "4.3", B50),  # nearest newer, across a major version
        ([B34], "2.79", B34),  # an old file in a newer Blender is fine
        ([BPY50, B50], "5.0", B50),  # the executable before the module of the same version
        ([BPY50, B34], 500, BPY50),
        ([B34], "5.0", None),  # never a 5.0 file to 3.4: it says "not a blend file"
        ([B34, B42_3, B45], "5.0", None),
        ([B42_3], "4.5", None),  # an older minor release silently drops what it does not know
        ([], "4.2", None),
    ],
)
def test_choose_blender(
    installs: list[BlenderInstall], file_version: str | int, expected: BlenderInstall | None
) -> None:
    assert choose_blender(installs, file_version) == expected


def test_the_reason_says_why() -> None:
    assert "same version" in select_blender([B42_3], "4.2").reason
    assert "nearest newer" in select_blender([B50], "4.2").reason
    refused = select_blender([B34, B42_3], (5, 0))
    assert refused.install is None
    assert "newer than every Blender here (3.4.1, 4.2.3)" in refused.reason
    assert "no Blender installation" in select_blender([], "4.2").reason


# --- where to look ------------------------------------------------------------------------------------------


def test_default_search_globs_per_platform() -> None:
    home = Path("/home/ann")
    linux = default_search_globs("linux", home, {})
    assert "/opt/blender*/blender" in linux
    assert "/usr/local/blender*/blender" in linux
    assert "/home/ann/blender*/blender" in linux
    mac = default_search_globs("darwin", home, {})
    assert "/Applications/Blender*.app/Contents/MacOS/Blender" in mac
    win = default_search_globs("win32", Path("C:/Users/ann"), {"ProgramFiles": r"D:\Programs"})
    assert r"D:\Programs\Blender Foundation\Blender*\blender.exe" in win
    assert r"C:\Program Files\Blender Foundation\Blender*\blender.exe" in win
