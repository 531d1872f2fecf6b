"""Packing a project for the farm, proved with real Blender.

The render case: Debian's Blender 3.4 builds ``tests/data/deps/make_scenes.py render`` (a tiny
Cycles scene whose four quadrants show a relative texture, a ``//../`` texture, an absolute texture
outside the project, and an object linked from ``//../libs/lib.blend`` whose material uses a texture
relative to the library; the main file zstd-compressed) and renders frame 1. The project is packed,
the original folder is renamed away so nothing resolves by accident, the zip is extracted with
:mod:`blendfile.project`, and the same frame is rendered from the extracted main .blend: the pixels
must be identical, and show the textures. The bpy 5.0.1 module then opens the extracted project
and must find every file.

The zoo case: the bpy 5.0.1 module builds the dependency zoo of ``test_deps.py`` (sequences, UDIM
tiles, strips, caches, missing files, a missing library...); after packing and extracting, what
Blender finds missing must be exactly what the pack report said was missing.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from blendfile import BlendFile, BlendFileError, open_project
from blendfile.deps import BlendDependencies, Dependency, DependencyKind, PathField, walk_dependencies
from blendfile.project import check_member_name
from farmgui.core.inspect import inspect_file
from farmgui.core.packing import EXTERNAL_DIR, PackReport, _Plan, _relative_stored, _rewrites, choose_root, pack_project
from tests.blender_run import run_blender as run
from tests.conftest import BLENDFILES, DATA

MAKE_SCENES = DATA / "deps" / "make_scenes.py"
# Texture colours of make_scenes.py's render case, and where each shows in the 32x32 frame.
QUADRANTS = {
    (8, 8): (200, 150, 100),  # //textures/wood.png
    (24, 8): (30, 200, 60),  # //../textures/shared.png
    (8, 24): (20, 60, 220),  # absolute, outside the project
    (24, 24): (255, 40, 40),  # in the linked library: //tex/lib.png
}


def blender_script(blender_exe: Path, *args: str) -> list[str]:
    return [
        str(blender_exe),
        "-b",
        "--factory-startup",
        "--python-exit-code",
        "1",
        "--python",
        str(MAKE_SCENES),
        "--",
        *args,
    ]


def render_frame(blender_exe: Path, blend: Path, out_prefix: Path) -> Path:
    """Render frame 1 with Blender 3.4; Python auto-exec off, as on the farm."""
    run(
        [str(blender_exe), "-b", "-Y", str(blend), "-o", f"{out_prefix}_####", "-F", "PNG", "-f", "1"], cwd=blend.parent
    )
    return out_prefix.with_name(out_prefix.name + "_0001.png")


def png_pixels(path: Path) -> tuple[int, int, int, bytes]:
    """Width, height, bytes per pixel and raw pixel rows of an 8-bit, non-interlaced PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, interlace) == (8, 0)
            channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    offset = 0
    for _ in range(height):
        kind_byte, line = raw[offset], bytearray(raw[offset + 1 : offset + 1 + stride])
        offset += 1 + stride
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up = previous[x]
            corner = previous[x - channels] if x >= channels else 0
            if kind_byte == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind_byte == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind_byte == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind_byte == 4:
                guess = left + up - corner
                pa, pb, pc = abs(guess - left), abs(guess - up), abs(guess - corner)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, channels, b"".join(rows)


def tree_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def bpy_report(bpy_python: Path, blend: Path, work: Path) -> dict[str, Any]:
    report = work / f"report_{blend.stem}.json"
    run([str(bpy_python), str(MAKE_SCENES), "report", str(report), str(blend)], cwd=work)
    entry: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))["files"][str(blend)]
    assert "error" not in entry, entry
    return entry


# -- the render case ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderCase:
    work: Path
    original_png: Path
    unpacked_png: Path
    unpacked_main: Path
    report: PackReport
    hashes_before: dict[str, str]
    hashes_after: dict[str, str]
    zip_path: Path


@pytest.fixture(scope="module")
def render_case(blender_exe: Path, tmp_path_factory: pytest.TempPathFactory) -> RenderCase:
    work = tmp_path_factory.mktemp("pack_render")
    run(blender_script(blender_exe, "render", str(work)), cwd=work)
    world = work / "world"
    main = world / "project/shots/main.blend"
    hashes_before = tree_hashes(world)
    original_png = render_frame(blender_exe, main, work / "renders/original")
    hashes_before_pack = tree_hashes(world)
    zip_path = work / "upload/project.zip"
    report = pack_project(main, zip_path)
    hashes_after = tree_hashes(world)
    assert hashes_before == hashes_before_pack
    world.rename(work / "world_moved_away")  # nothing may resolve through the original folder now
    with open_project(zip_path) as project:
        assert project.main_blend == report.main_blend
        unpacked_main = project.extract(work / "unpacked")
    unpacked_png = render_frame(blender_exe, unpacked_main, work / "renders/unpacked")
    return RenderCase(work, original_png, unpacked_png, unpacked_main, report, hashes_before, hashes_after, zip_path)


@pytest.mark.blender
@pytest.mark.slow
def test_unpacked_project_renders_the_same_pixels(render_case: RenderCase) -> None:
    original = png_pixels(render_case.original_png)
    unpacked = png_pixels(render_case.unpacked_png)
    assert original[:3] == unpacked[:3] == (32, 32, 3)
    assert original[3] == unpacked[3], "the unpacked project renders differently"
    width, _height, channels, pixels = unpacked
    for (x, y), colour in QUADRANTS.items():
        start = (y * width + x) * channels
        got = tuple(pixels[start : start + 3])
        assert all(abs(g - c) <= 2 for g, c in zip(got, colour, strict=True)), f"pixel {x},{y}: {got}, want {colour}"


@pytest.mark.blender
@pytest.mark.slow
def test_pack_report(render_case: RenderCase) -> None:
    report = render_case.report
    assert report.main_blend == "shots/main.blend"
    assert Path(report.root).name == "project"
    arcnames = sorted(f.arcname for f in report.packed)
    abs_arc = f"{EXTERNAL_DIR}/{(render_case.work / 'world/elsewhere/abs.png').as_posix().lstrip('/')}"
    assert arcnames == sorted(
        [
            "shots/main.blend",
            "shots/textures/wood.png",
            "textures/shared.png",
            "libs/lib.blend",
            "libs/tex/lib.png",
            abs_arc,
        ]
    )
    for name in arcnames:
        check_member_name(name)
    (remap,) = report.remapped
    assert remap.blend == "shots/main.blend"
    assert remap.kind is DependencyKind.IMAGE
    assert remap.new == f"//../{abs_arc}"
    assert report.missing == ()
    assert report.problems == ()
    assert report.total_bytes == sum(f.size for f in report.packed) > 0


@pytest.mark.blender
@pytest.mark.slow
def test_a_dropped_zip_lists_the_files_its_blends_need_found_in_the_zip_or_not(
    render_case: RenderCase, tmp_path: Path
) -> None:
    """What the control station shows for the packed zip: every file the main .blend and its library need, by its
    name in the zip, all found; the same zip without the library's texture shows that one missing."""
    abs_arc = f"{EXTERNAL_DIR}/{(render_case.work / 'world/elsewhere/abs.png').as_posix().lstrip('/')}"
    summary = inspect_file(render_case.zip_path)
    assert summary.ok, summary.error
    assert summary.main_blend == "shots/main.blend"
    assert not summary.needs_project, "a zip is a project already: no offer to pack it"
    assert [b.path for b in summary.dependencies] == ["shots/main.blend", "libs/lib.blend"]
    needed = {d.resolved: d.exists for d in summary.external_files if d.kind.needed_to_render}
    assert needed == {
        "shots/textures/wood.png": True,
        "textures/shared.png": True,
        abs_arc: True,
        "libs/lib.blend": True,
        "libs/tex/lib.png": True,
    }
    short = tmp_path / "short.zip"
    with zipfile.ZipFile(render_case.zip_path) as src, zipfile.ZipFile(short, "w") as dst:
        dst.comment = src.comment  # the packer's hint: which .blend is the main one
        for info in src.infolist():
            if info.filename != "libs/tex/lib.png":
                dst.writestr(info, src.read(info))
    summary = inspect_file(short)
    assert summary.ok, summary.error
    assert [d.resolved for d in summary.external_files if not d.exists] == ["libs/tex/lib.png"]


@pytest.mark.blender
@pytest.mark.slow
def test_user_files_are_never_modified(render_case: RenderCase) -> None:
    assert render_case.hashes_after == render_case.hashes_before


@pytest.mark.blender
@pytest.mark.slow
def test_rewritten_blend_is_a_decompressed_copy(render_case: RenderCase) -> None:
    with zipfile.ZipFile(render_case.zip_path) as zf:
        main = zf.read("shots/main.blend")
        library = zf.read("libs/lib.blend")
    assert main.startswith(b"BLENDER"), "the zstd main file was rewritten, so stored decompressed"
    assert library == (render_case.work / "world_moved_away/project/libs/lib.blend").read_bytes()
    with BlendFile.open(render_case.unpacked_main) as bfile:
        assert [s.name for s in bfile.scenes()] == ["Scene"]


@pytest.mark.blender
@pytest.mark.slow
def test_blender_5_finds_every_file_of_the_unpacked_project(render_case: RenderCase, bpy_python: Path) -> None:
    entry = bpy_report(bpy_python, render_case.unpacked_main, render_case.work)
    assert entry["missing_paths"] == []
    assert entry["missing_ids"] == []
    assert f"//../{EXTERNAL_DIR}/" in " ".join(entry["paths"])


# -- the zoo case -------------------------------------------------------------------------------


@pytest.mark.blender
@pytest.mark.slow
def test_zoo_missing_after_unpacking_is_what_the_report_said(
    bpy_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = tmp_path_factory.mktemp("pack_zoo")
    run([str(bpy_python), str(MAKE_SCENES), "zoo", str(work), str(work / "zoo.json")], cwd=work)
    main = work / "proj/main.blend"
    report = pack_project(main, work / "upload/zoo.zip")
    weak_reference = str(work / "proj/assets/materials.blend")
    (work / "proj").rename(work / "proj_moved_away")
    (work / "outside").rename(work / "outside_moved_away")
    (work / "shared").rename(work / "shared_moved_away")

    arcnames = [f.arcname for f in report.packed]
    assert len(arcnames) == len(set(arcnames)), "a file used twice is packed once"
    names = {Path(a).name for a in arcnames}
    assert {"frame_0001.png", "frame_0002.png", "frame_0003.png"} <= names, "the whole image sequence"
    assert {"tile.1001.png", "tile.1002.png", "clip_0001.png", "clip_0002.png", "scene.abc"} <= names
    assert not any(a.endswith("materials.blend") for a in arcnames), "a weak library reference is not packed"
    assert {(m.kind, m.path) for m in report.missing} >= {
        (DependencyKind.IMAGE, "//textures/missing.png"),
        (DependencyKind.LIBRARY, "//lib/gone.blend"),
    }

    with open_project(work / "upload/zoo.zip") as project:
        unpacked = project.extract(work / "unpacked")
    entry = bpy_report(bpy_python, unpacked, work)
    blender_missing = {p for p in entry["missing_paths"] if p and p != weak_reference}
    ours = [r for r in walk_dependencies([unpacked]) if r.error is None]
    ours_missing = {d.resolved for r in ours for d in r.missing if d.kind.needed_to_render and d.path}
    # Blender keeps a folder's trailing "/" (the particle cache), the reader normalises it away.
    assert {p.rstrip("/") for p in blender_missing} == ours_missing
    reported = {(m.kind, m.path) for m in report.missing if m.path}
    still_missing = {(d.kind, d.path) for r in ours for d in r.missing if d.kind.needed_to_render and d.path}
    assert still_missing == reported


# -- without Blender ----------------------------------------------------------------------------


def test_relative_stored_paths() -> None:
    assert _relative_stored("shots/main.blend", "textures/a.png", False) == "//../textures/a.png"
    assert _relative_stored("main.blend", "tex/a.png", False) == "//tex/a.png"
    assert _relative_stored("a/b/c.blend", "a/b/cache", True) == "//cache/"
    assert _relative_stored("main.blend", f"{EXTERNAL_DIR}/C/x.png", False) == f"//{EXTERNAL_DIR}/C/x.png"


def test_root_stops_climbing_after_max_levels(tmp_path: Path) -> None:
    deep = tmp_path / "a/b/c/d/e/f"
    deep.mkdir(parents=True)
    main = deep / "main.blend"
    near = Dependency(DependencyKind.IMAGE, "//../../x.png", str(tmp_path / "a/b/c/d/x.png"), True)
    far = Dependency(DependencyKind.IMAGE, "//../../../../../../x.png", str(tmp_path / "x.png"), True)
    walk = [BlendDependencies(str(main), (near, far))]
    assert choose_root(main, walk, max_levels_up=4) == tmp_path / "a/b/c/d"
    assert choose_root(main, walk, max_levels_up=10) == tmp_path


def test_path_too_long_to_rewrite_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    image = tmp_path / "far/away/x.png"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"png")
    plan = _Plan(tmp_path / "proj", EXTERNAL_DIR)
    dep = Dependency(DependencyKind.IMAGE, str(image), str(image), True, field=PathField(100, 12))
    patches, remaps = _rewrites(plan, "main.blend", (dep,))
    assert patches == {}
    assert remaps == []
    assert "only 11 bytes fit" in plan.problems[0]


def test_missing_library_is_reported_and_packing_goes_on(tmp_path: Path) -> None:
    # linked_cube_compressed.blend (gzip, Blender 2.79) links an absolute path that is not here.
    source = tmp_path / "shot/linked_cube_compressed.blend"
    source.parent.mkdir()
    source.write_bytes((BLENDFILES / "bat/linked_cube_compressed.blend").read_bytes())
    report = pack_project(source, tmp_path / "out.zip")
    assert report.main_blend == "linked_cube_compressed.blend"
    assert [(m.kind, m.path) for m in report.missing] == [
        (DependencyKind.LIBRARY, "/home/sybren/workspace/bam/blender-asset-tracer/tests/blendfiles/basic_file.blend")
    ]
    assert report.remapped == ()
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        # Nothing to rewrite: the compressed file is packed as it is.
        assert zf.read("linked_cube_compressed.blend") == source.read_bytes()


def test_libraries_are_packed_recursively_and_cycles_once(tmp_path: Path) -> None:
    for name in ("recursive_dependency_1.blend", "recursive_dependency_2.blend"):
        (tmp_path / name).write_bytes((BLENDFILES / "bat" / name).read_bytes())
    report = pack_project(tmp_path / "recursive_dependency_1.blend", tmp_path / "out/p.zip")
    assert sorted(f.arcname for f in report.packed) == ["recursive_dependency_1.blend", "recursive_dependency_2.blend"]
    assert report.missing == ()
    with open_project(tmp_path / "out/p.zip") as project:
        assert project.main_blend == "recursive_dependency_1.blend"


def test_unreadable_main_raises_and_leaves_no_zip(tmp_path: Path) -> None:
    bad = tmp_path / "bad.blend"
    bad.write_bytes(b"BLENDER-v279")
    with pytest.raises(BlendFileError):
        pack_project(bad, tmp_path / "out/p.zip")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_failed_write_leaves_no_partial_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "basic_file.blend"
    source.write_bytes((BLENDFILES / "bat/basic_file.blend").read_bytes())

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(zipfile.ZipFile, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        pack_project(source, tmp_path / "out/p.zip")
    assert list((tmp_path / "out").iterdir()) == []


def corpus_copy(tmp_path: Path, *names: str) -> None:
    for name in names:
        target = tmp_path / "src" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((BLENDFILES / "bat" / name).read_bytes())


def test_root_widens_for_parent_folders_and_libraries_follow(tmp_path: Path) -> None:
    # subdir/doubly_linked_up.blend links //../linked_cube.blend, which links //basic_file.blend.
    corpus_copy(tmp_path, "subdir/doubly_linked_up.blend", "linked_cube.blend", "basic_file.blend")
    progress: list[tuple[int, int]] = []
    report = pack_project(
        tmp_path / "src/subdir/doubly_linked_up.blend",
        tmp_path / "p.zip",
        progress=lambda done, total: progress.append((done, total)),
    )
    assert report.root == str(tmp_path / "src")
    assert report.main_blend == "subdir/doubly_linked_up.blend"
    assert sorted(f.arcname for f in report.packed) == [
        "basic_file.blend",
        "linked_cube.blend",
        "subdir/doubly_linked_up.blend",
    ]
    assert report.remapped == ()
    assert [m.path for m in report.missing] == ["//../material_textures.blend"]
    assert progress[-1][0] == progress[-1][1] == report.total_bytes


def test_forced_root_remaps_library_paths_in_a_copy(tmp_path: Path) -> None:
    corpus_copy(tmp_path, "subdir/doubly_linked_up.blend", "linked_cube.blend", "basic_file.blend")
    main = tmp_path / "src/subdir/doubly_linked_up.blend"
    before = main.read_bytes()
    report = pack_project(main, tmp_path / "p.zip", root=tmp_path / "src/subdir")
    outside = f"{EXTERNAL_DIR}/{(tmp_path / 'src').as_posix().lstrip('/')}"
    assert [f.arcname for f in report.packed] == [
        "doubly_linked_up.blend",
        f"{outside}/linked_cube.blend",
        f"{outside}/basic_file.blend",
    ]
    assert [(r.blend, r.old, r.new) for r in report.remapped] == [
        ("doubly_linked_up.blend", "//../linked_cube.blend", f"//{outside}/linked_cube.blend")
    ]
    assert main.read_bytes() == before
    with open_project(tmp_path / "p.zip") as project:
        unpacked = project.extract(tmp_path / "unpacked")
    # The library's own relative path still works, next to it in the mirrored folder.
    results = walk_dependencies([unpacked])
    assert [Path(r.path).name for r in results] == ["doubly_linked_up.blend", "linked_cube.blend", "basic_file.blend"]
    assert results[1].path == str(tmp_path / "unpacked" / outside / "linked_cube.blend")
    assert [d.path for r in results for d in r.missing] == ["//../material_textures.blend"]
