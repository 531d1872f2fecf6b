"""External dependencies read from the bytes, against what Blender itself lists.

Ground truth is ``bpy.utils.blend_paths(absolute=False, local=True)`` in a real Blender:

* both Blenders (Debian's 3.4 executable, the bpy 5.0.1 module) build ``tests/data/deps/make_scenes.py
  zoo``: a main file using every kind of external file Blender lists (images relative, absolute,
  missing, Windows-style, sequence, UDIM, packed and generated ones that must not count; a library
  that links a second one; a library deleted after linking; sound, font, movie clip, text, volume,
  Alembic cache (5.0 only: Debian's 3.4 has no Alembic), sequencer strips, modifier and point
  caches, OSL and IES nodes in materials, worlds and node groups, a weak library reference, a
  brush icon (3.4 only: 5.0 brushes have none));
* every corpus file each Blender can open.

For every file the set of stored paths must equal Blender's, with two documented differences:
Blender shows paths with ``/`` once loaded (the reader keeps them as stored), and Blender lists,
for the main file, the libraries it loaded only because another library links them (the reader
lists those under that library, where they are stored).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from blendfile import BlendFile, BlendFileError
from blendfile.deps import (
    Dependency,
    DependencyKind,
    Expansion,
    expand_files,
    file_dependencies,
    join_dir_file,
    read_dependencies,
    resolve_path,
    walk_dependencies,
)
from tests.blender_run import run_blender
from tests.conftest import BLENDFILES, DATA, corpus_files

from .fuzzing import load_seed, mutate

REPO = Path(__file__).resolve().parents[2]
MAKE_SCENES = DATA / "deps" / "make_scenes.py"
# Blender 3.4 cannot read files saved by newer versions (and may crash on 4.x files): give it only
# files up to its own version.
BLENDER_34_MAX_FILE_VERSION = 304


def blender_argv(request: pytest.FixtureRequest, runner: str, *args: str) -> list[str]:
    """Run ``make_scenes.py`` with Debian's Blender or with the bpy module."""
    if runner == "blender_exe":
        exe: Path = request.getfixturevalue("blender_exe")
        return [
            str(exe),
            "-b",
            "--factory-startup",
            "--python-exit-code",
            "1",
            "--python",
            str(MAKE_SCENES),
            "--",
            *args,
        ]
    python: Path = request.getfixturevalue("bpy_python")
    return [str(python), str(MAKE_SCENES), *args]


def as_loaded(stored: str) -> str:
    """A stored path as Blender shows it once loaded on this OS (``BLI_path_slash_native``)."""
    if os.sep == "\\":
        return stored[:2] + stored[2:].replace("/", "\\")
    prefix = 2 if stored.startswith("\\\\") else 0
    return stored[:prefix] + stored[prefix:].replace("\\", "/")


def differences(where: str, ours: Iterable[Dependency], blender: dict[str, Any]) -> list[str]:
    """How the reader's paths for one file differ from Blender's list for it."""
    mine = {as_loaded(d.path) for d in ours}
    theirs = set(blender["paths"])
    indirect = set(blender["indirect_libraries"])
    lines = []
    if extra := mine - theirs:
        lines.append(f"{where}: the reader lists {sorted(extra)}, Blender does not")
    if lacking := (theirs - indirect) - mine:
        lines.append(f"{where}: Blender lists {sorted(lacking)}, the reader does not")
    if (mine | indirect) != theirs:
        lines.append(f"{where}: indirect libraries {sorted(indirect)} do not account for the rest")
    return lines


# -- the zoo, built and listed by each Blender ---------------------------------------------------


@pytest.fixture(scope="module", params=["blender_exe", "bpy_module"])
def zoo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict[str, Any]]:
    runner: str = request.param
    work = tmp_path_factory.mktemp(f"zoo_{runner}")
    report = work / "report.json"
    run_blender(blender_argv(request, runner, "zoo", str(work), str(report)), cwd=work)
    return runner, work, json.loads(report.read_text(encoding="utf-8"))


@pytest.mark.blender
@pytest.mark.slow
def test_zoo_matches_blend_paths(zoo: tuple[str, Path, dict[str, Any]]) -> None:
    runner, work, report = zoo
    results = walk_dependencies([work / "proj/main.blend"])
    by_path = {os.path.realpath(r.path): r for r in results}
    lines = []
    for path, listed in report["files"].items():
        result = by_path[os.path.realpath(path)]
        assert result.error is None
        lines += differences(f"{runner} {Path(path).name}", result.dependencies, listed)
    assert not lines, "\n".join(lines)
    # The walk reached the library linked by the library, and only once each.
    assert [Path(r.path).name for r in results] == ["main.blend", "library.blend", "nested.blend"]
    assert [r.is_library for r in results] == [False, True, True]


@pytest.mark.blender
@pytest.mark.slow
def test_zoo_covers_every_kind(zoo: tuple[str, Path, dict[str, Any]]) -> None:
    runner, work, _report = zoo
    kinds = {d.kind for d in file_dependencies(work / "proj/main.blend")}
    expected = set(DependencyKind) - {DependencyKind.FLUIDSIM_CACHE, DependencyKind.MULTIRES_EXTERNAL}
    if runner == "blender_exe":
        expected.discard(DependencyKind.CACHE_FILE)  # Debian's 3.4 is built without Alembic
    else:
        expected.discard(DependencyKind.BRUSH_ICON)  # 5.0 brushes have no icon path
    assert kinds == expected


@pytest.mark.blender
@pytest.mark.slow
def test_zoo_resolution_and_existence(zoo: tuple[str, Path, dict[str, Any]]) -> None:
    _runner, work, _report = zoo
    proj = work / "proj"
    deps = {(d.kind, d.path): d for d in file_dependencies(proj / "main.blend")}

    def dep(kind: DependencyKind, path: str) -> Dependency:
        return deps[(kind, path)]

    wood = dep(DependencyKind.IMAGE, "//textures/wood.png")
    assert (wood.resolved, wood.exists) == (str(proj / "textures/wood.png"), True)
    assert dep(DependencyKind.IMAGE, "//textures\\win.png").resolved == str(proj / "textures/win.png")
    up = dep(DependencyKind.IMAGE, "//..\\shared\\up.png")
    assert (up.resolved, up.exists) == (str(work / "shared/up.png"), True)
    absolute = dep(DependencyKind.IMAGE, str(work / "outside/abs.png"))
    assert absolute.exists
    assert absolute.resolved == absolute.path
    missing = dep(DependencyKind.IMAGE, "//textures/missing.png")
    assert missing.missing
    assert not missing.exists
    assert not dep(DependencyKind.LIBRARY, "//lib/gone.blend").exists
    assert dep(DependencyKind.IMAGE, "//seq/frame_0001.png").expansion is Expansion.SEQUENCE
    udim = dep(DependencyKind.IMAGE, "//udim/tile.<UDIM>.png")
    assert udim.exists
    assert [Path(f).name for f in expand_files(udim)] == ["tile.1001.png", "tile.1002.png"]
    sequence = dep(DependencyKind.IMAGE, "//seq/frame_0001.png")
    assert [Path(f).name for f in expand_files(sequence)] == [f"frame_{i:04d}.png" for i in (1, 2, 3)]
    clip = dep(DependencyKind.MOVIE_CLIP, "//clips/clip_0001.png")
    assert [Path(f).name for f in expand_files(clip)] == ["clip_0001.png", "clip_0002.png"]
    assert not any(d.path.endswith("packed.png") for d in deps.values()), "a packed image is no dependency"
    assert not any(d.path == "<builtin>" for d in deps.values())
    # A strip with its folder stored absolute: the folder is a field of its own, for rewriting.
    strip = dep(DependencyKind.SEQUENCER_STRIP, str(proj / "audio/strip.wav"))
    assert strip.exists
    assert strip.field is not None
    assert strip.field.stored == str(proj / "audio") + "/"
    # A point cache in the default folder: Blender ignores the stored (empty) path.
    cache = dep(DependencyKind.POINT_CACHE, "")
    assert cache.resolved == str(proj / "blendcache_main")
    assert cache.field is None
    # The library's own dependencies resolve against the library's folder.
    library = {d.path: d for d in file_dependencies(proj / "lib/library.blend")}
    assert library["//lib_textures/lib.png"].resolved == str(proj / "lib/lib_textures/lib.png")
    assert library["//nested/nested.blend"].exists


# -- the corpus ---------------------------------------------------------------------------------


def corpus_report(request: pytest.FixtureRequest, runner: str, work: Path, files: list[Path]) -> dict[str, Any]:
    report = work / f"corpus_{runner}.json"
    run_blender(blender_argv(request, runner, "report", str(report), *map(str, files)), cwd=REPO)
    result: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))["files"]
    return result


def file_version(path: Path) -> int:
    try:
        with BlendFile.open(path) as bfile:
            return bfile.header.file_version
    except BlendFileError:
        return 0


@pytest.mark.blender
@pytest.mark.slow
@pytest.mark.parametrize("runner", ["blender_exe", "bpy_module"])
def test_corpus_matches_blend_paths(request: pytest.FixtureRequest, runner: str, tmp_path: Path) -> None:
    files = corpus_files()
    if runner == "blender_exe":
        files = [f for f in files if 0 < file_version(f) <= BLENDER_34_MAX_FILE_VERSION]
    listed = corpus_report(request, runner, tmp_path, files)
    opened = {name: entry for name, entry in listed.items() if "error" not in entry}
    # bpy 5 refuses big-endian files and both refuse the corrupt one; everything else must open.
    refused = {Path(name).name for name in listed} - {Path(name).name for name in opened}
    assert refused <= {"yxa_1.blend", "corrupt_only_magic.blend"}
    assert len(opened) >= (25 if runner == "blender_exe" else 33)
    lines = []
    for name, entry in opened.items():
        lines += differences(f"{runner} {name}", file_dependencies(name), entry)
    assert not lines, "\n".join(lines)


# -- without Blender: resolution, walking, the command line ---------------------------------------


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("//tex/a.png", "/p/shot/tex/a.png"),
        ("//../tex/a.png", "/p/tex/a.png"),
        ("//..\\tex\\a.png", "/p/tex/a.png"),
        ("//textures\\sub\\b.png", "/p/shot/textures/sub/b.png"),
        ("//../../../../../x.png", "/x.png"),
        ("//", "/p/shot"),
        ("/abs/./c.png", "/abs/c.png"),
        ("rel/d.png", "/p/shot/rel/d.png"),
        ("", ""),
    ],
)
@pytest.mark.skipif(os.sep != "/", reason="POSIX paths")
def test_resolve_path(stored: str, expected: str) -> None:
    assert resolve_path(stored, "/p/shot") == expected


@pytest.mark.skipif(os.sep != "/", reason="a Windows path cannot resolve on POSIX; on Windows it is native")
def test_windows_absolute_paths_stay_and_never_exist() -> None:
    assert resolve_path("C:\\Users\\me\\wood.png", "/p") == "C:/Users/me/wood.png"
    assert resolve_path("\\\\server\\share\\x.png", "/p") == "\\\\server/share/x.png"


def test_join_dir_file_like_blender() -> None:
    assert join_dir_file("//seq/", "a.png") == "//seq/a.png"
    assert join_dir_file("//seq", "a.png") == "//seq/a.png"
    assert join_dir_file("//", "a.png") == "//a.png"
    assert join_dir_file("C:\\clips\\", "b.mov") == "C:\\clips/b.mov"
    assert join_dir_file("", "c.wav") == "c.wav"


def test_walk_is_cycle_safe_and_reports_each_file_once() -> None:
    first = BLENDFILES / "bat/recursive_dependency_1.blend"
    results = walk_dependencies([first])
    assert [Path(r.path).name for r in results] == ["recursive_dependency_1.blend", "recursive_dependency_2.blend"]
    assert [r.is_library for r in results] == [False, True]
    assert [d.path for d in results[1].dependencies] == ["//recursive_dependency_1.blend"]
    # Named twice, and named although a library of the first: still once each, as named.
    named = walk_dependencies([first, first, BLENDFILES / "bat/recursive_dependency_2.blend"])
    assert [(Path(r.path).name, r.is_library) for r in named] == [
        ("recursive_dependency_1.blend", False),
        ("recursive_dependency_2.blend", False),
    ]


def test_missing_and_unreadable_libraries_do_not_stop_the_walk(tmp_path: Path) -> None:
    for name in ("doubly_linked.blend", "linked_cube.blend"):
        shutil.copy(BLENDFILES / "bat" / name, tmp_path / name)
    (tmp_path / "basic_file.blend").write_bytes(b"BLENDER-v279 but nothing else")
    results = walk_dependencies([tmp_path / "doubly_linked.blend"])
    assert [Path(r.path).name for r in results] == ["doubly_linked.blend", "linked_cube.blend", "basic_file.blend"]
    main, cube, broken = results
    assert [(d.path, d.exists) for d in main.dependencies] == [
        ("//linked_cube.blend", True),
        ("//material_textures.blend", False),
    ]
    assert [d.path for d in main.missing] == ["//material_textures.blend"]
    assert cube.error is None
    assert broken.error is not None
    assert broken.is_library
    assert broken.dependencies == ()


def test_unreadable_file_raises_a_reader_error() -> None:
    with pytest.raises(BlendFileError, match="DNA1"):
        file_dependencies(BLENDFILES / "bat/corrupt_only_magic.blend")


def test_packed_and_windows_paths_from_old_files() -> None:
    with BlendFile.open(BLENDFILES / "assimp/HUMAN.blend") as bfile:
        (image,) = read_dependencies(bfile)
    assert image.kind is DependencyKind.IMAGE
    assert "\\" in image.path
    assert not image.exists


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blendfile", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_json_contract() -> None:
    main = BLENDFILES / "bat/doubly_linked.blend"
    result = run_cli("deps", "--json", str(main))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert [o["path"] for o in out] == [
        str(main),
        str(BLENDFILES / "bat/linked_cube.blend"),
        str(BLENDFILES / "bat/basic_file.blend"),
    ]
    for entry in out:
        assert set(entry) == {"path", "dependencies"}
        for dep in entry["dependencies"]:
            assert set(dep) == {"kind", "path", "resolved", "exists"}
    assert out[0]["dependencies"][1] == {
        "kind": "library",
        "path": "//material_textures.blend",
        "resolved": str(BLENDFILES / "bat/material_textures.blend"),
        "exists": False,
    }


def test_cli_missing_files_are_reported_not_fatal() -> None:
    result = run_cli("deps", str(BLENDFILES / "bat/absolute_path.blend"))
    assert result.returncode == 0
    assert "MISSING image" in result.stdout
    assert "2 missing files" in result.stdout


def test_cli_unreadable_file_sets_status_and_keeps_going(tmp_path: Path) -> None:
    bad = tmp_path / "bad.blend"
    bad.write_bytes(b"not a blend file")
    good = BLENDFILES / "bat/linked_cube.blend"
    result = run_cli("deps", "--json", str(bad), str(good))
    assert result.returncode == 1
    assert "bad.blend" in result.stderr
    out = json.loads(result.stdout)
    assert out[0]["path"] == str(bad)
    assert "error" in out[0]
    assert out[0]["dependencies"] == []
    assert [Path(o["path"]).name for o in out[1:]] == ["linked_cube.blend", "basic_file.blend"]


# -- damaged files ------------------------------------------------------------------------------

FUZZ_SEEDS = [
    "bat/absolute_path.blend",
    "bat/linked_cube.blend",
    "bat/T55539-particles/particle.blend",
    "bat/udim/v01_UDIM_BAT_debugging.blend",
    "assimp/HUMAN.blend",
    "assimp/yxa_1.blend",
    "gltf-blender-io/34_animation_pointer_extras.blend",
]


@pytest.mark.parametrize("name", FUZZ_SEEDS)
def test_damaged_files_only_raise_reader_errors(tmp_path: Path, name: str) -> None:
    """Mutations aimed at block headers and the SDNA: a result or a BlendFileError, nothing else."""
    seed = load_seed(name)
    path = tmp_path / "mutant.blend"
    for rng_seed in range(40):
        path.write_bytes(mutate(seed, random.Random(f"{name}-{rng_seed}")))
        try:
            file_dependencies(path)
        except BlendFileError as exc:
            assert str(path) in str(exc)
        assert walk_dependencies([path])[0].path == str(path)
