"""Split-frame rendering with real Blender: Debian's 3.4 executable and the bpy 5.0.1 module.

Each Blender saves its own small Cycles scene (97x61 px, an odd size; 16 samples, no adaptive sampling, a
fixed seed; coloured boxes on a floor so every tile has content), renders it whole once through the driver,
then as tiles (border renders without crop, the driver's ``border``), and :func:`farmgui.core.tiles.stitch_tiles`
stitches them. Without denoising the stitched image must be the single-machine render, pixel for pixel; with
denoising (OpenImageDenoise, which Debian's 3.4 lacks) overlapping tiles must hide the seams.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from agent.blender import BlenderInstall
from agent.command import RenderSettings, tile_image_format
from agent.output import Fault
from agent.session import FrameFailed, FrameRendered, RenderSession, check_frame_file
from farmgui.core.tiles import Region, Tile, _read_png_tile, plan_tiles, stitch_tiles

pytestmark = [pytest.mark.blender, pytest.mark.slow, pytest.mark.timeout(300)]

WIDTH, HEIGHT = 97, 61
ONE_THREAD = RenderSettings(threads=1)

SCENES = '''
"""Saves the tile test scenes into the folder given after "--" (executable) or as the first argument (bpy)."""
import sys
from pathlib import Path

import bpy


def material(name, rgb):
    m = bpy.data.materials.new(name)
    m.diffuse_color = (*rgb, 1.0)
    m.use_nodes = True
    m.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (*rgb, 1.0)
    return m


def box(scene, name, location, size, rgb):
    s = size / 2
    mesh = bpy.data.meshes.new(name)
    corners = [(-s, -s, -s), (s, -s, -s), (s, s, -s), (-s, s, -s), (-s, -s, s), (s, -s, s), (s, s, s), (-s, s, s)]
    faces = [(0, 1, 2, 3), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]
    mesh.from_pydata(corners, [], faces)
    mesh.materials.append(material(name, rgb))
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    obj.rotation_euler = (0.3, 0.2, 0.7)
    scene.collection.objects.link(obj)


def build(width, height, samples, denoise):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = samples
    scene.cycles.use_adaptive_sampling = False  # its convergence test looks at neighbours: see docs/tiles.md
    scene.cycles.use_denoising = denoise
    scene.cycles.seed = 7
    scene.render.resolution_x = width
    scene.render.resolution_y = height
    scene.render.resolution_percentage = 100
    scene.render.image_settings.color_mode = "RGBA"
    scene.frame_start = scene.frame_end = 1
    world = bpy.data.worlds.new("World")
    world.color = (0.05, 0.08, 0.12)
    scene.world = world
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.location = (0.0, -9.0, 4.0)
    camera.rotation_euler = (1.18, 0.0, 0.0)
    scene.collection.objects.link(camera)
    scene.camera = camera
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.rotation_euler = (0.6, 0.3, 0.4)
    scene.collection.objects.link(sun)
    lamp = bpy.data.lights.new("Lamp", "POINT")
    lamp.energy = 400.0
    point = bpy.data.objects.new("Lamp", lamp)
    point.location = (2.0, -3.0, 3.0)
    scene.collection.objects.link(point)
    floor = bpy.data.meshes.new("Floor")
    floor.from_pydata([(-30, -30, -1.2), (30, -30, -1.2), (30, 30, -1.2), (-30, 30, -1.2)], [], [(0, 1, 2, 3)])
    floor.materials.append(material("Floor", (0.6, 0.6, 0.55)))
    scene.collection.objects.link(bpy.data.objects.new("Floor", floor))
    colours = [(0.9, 0.1, 0.1), (0.1, 0.8, 0.2), (0.1, 0.2, 0.9), (0.9, 0.8, 0.1), (0.8, 0.1, 0.8), (0.1, 0.8, 0.8)]
    for row, y in enumerate((-4.0, 0.0, 5.0)):
        for column, x in enumerate((-6.0, -3.5, -1.0, 1.5, 4.0, 6.5)):
            index = row * 6 + column
            box(scene, f"Box{index}", (x + row, y, -0.4 + 0.8 * row), 1.4, colours[index % 6])
    return scene


out = Path(sys.argv[sys.argv.index("--") + 1] if "--" in sys.argv else sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
build(97, 61, 16, False)
bpy.ops.wm.save_as_mainfile(filepath=str(out / "tiles.blend"))
build(97, 61, 16, False).render.image_settings.color_depth = "16"
bpy.ops.wm.save_as_mainfile(filepath=str(out / "tiles16.blend"))
build(97, 61, 16, True)
bpy.ops.wm.save_as_mainfile(filepath=str(out / "denoise.blend"))
'''


# --- Blender installs, their scenes, one session per scene --------------------------------------------------


def make_scenes(install: BlenderInstall, folder: Path) -> Path:
    script = folder / "tile_scenes.py"
    folder.mkdir(parents=True, exist_ok=True)
    script.write_text(SCENES)
    if install.kind == "executable":
        argv = [str(install.path), "-b", "--factory-startup", "--python-exit-code", "1", "--python", str(script)]
        argv += ["--", str(folder)]
    else:
        argv = [str(install.path), str(script), str(folder)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return folder


@pytest.fixture(scope="module")
def scenes(install: BlenderInstall, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scenes(install, tmp_path_factory.mktemp(f"tile-scenes-{install.kind}"))


@contextmanager
def open_session(install: BlenderInstall, blend: Path) -> Iterator[RenderSession]:
    session = RenderSession(install, blend, ONE_THREAD, progress_interval_s=0.0)
    try:
        ready = session.start()
        assert ready.resolution == (WIDTH, HEIGHT)
        yield session
    finally:
        session.close(timeout=5)


@pytest.fixture(scope="module")
def session(install: BlenderInstall, scenes: Path) -> Iterator[RenderSession]:
    """One Blender for all the tile tests of a version (the driver keeps it between frames, as an agent does)."""
    with open_session(install, scenes / "tiles.blend") as started:
        yield started


@pytest.fixture(scope="module")
def out(install: BlenderInstall, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp(f"tiles-out-{install.kind}")


@pytest.fixture(scope="module")
def full_png(session: RenderSession, out: Path) -> np.ndarray[Any, Any]:
    """The single-machine render of frame 1."""
    return load_png(rendered(session.render(1, str(out / "full_####"))))


# --- helpers ------------------------------------------------------------------------------------------------


def rendered(result: FrameFailed | FrameRendered) -> Path:
    assert isinstance(result, FrameRendered), result
    assert check_frame_file(result.path) is None
    return result.path


def load_png(path: Path) -> np.ndarray[Any, Any]:
    return np.asarray(Image.open(path))


def filled(pixels: np.ndarray[Any, Any]) -> tuple[int, int, int, int] | None:
    """The bounding box (x0, y0, x1, y1) of the pixels Blender rendered (alpha > 0; the world is opaque)."""
    found = np.argwhere(pixels[..., 3] > 0)
    if not len(found):
        return None
    (y0, x0), (y1, x1) = found.min(axis=0), found.max(axis=0)
    return int(x0), int(y0), int(x1) + 1, int(y1) + 1


def render_tiles(
    session: RenderSession, tiles: list[Tile], folder: Path, image_format: str | None = None
) -> dict[int, Path]:
    files = {}
    for tile in tiles:
        result = session.render(
            1, str(folder / f"tile{tile.index}_####"), border=tile.render, image_format=image_format
        )
        files[tile.index] = rendered(result)
    return files


# --- borders ------------------------------------------------------------------------------------------------


def test_every_pixel_edge_renders_exactly_its_region(session: RenderSession, out: Path) -> None:
    """Every column and every row of the odd-sized frame as a one-pixel border: each edge 0..97 and 0..61,
    as the start and as the end of a border, is exactly the pixel asked for (x/width would be one pixel off
    for 33 of the 98 x edges and 6 of the 62 y edges; see test_tiles.py)."""
    regions = [(x, 0, x + 1, HEIGHT) for x in range(WIDTH)] + [(0, y, WIDTH, y + 1) for y in range(HEIGHT)]
    wrong = []
    for region in regions:
        pixels = load_png(rendered(session.render(1, str(out / "edges" / "e_####"), border=region)))
        assert pixels.shape == (HEIGHT, WIDTH, 4)  # full size: no crop
        mask = pixels[..., 3] > 0
        expected = np.zeros_like(mask)
        expected[region[1] : region[3], region[0] : region[2]] = True
        if not (mask == expected).all():
            wrong.append((region, filled(pixels)))
    assert wrong == []


def test_a_frame_after_tiles_is_whole_again_and_in_the_scene_format(
    session: RenderSession, out: Path, full_png: np.ndarray[Any, Any]
) -> None:
    """The border and format of a tile are for that frame only: the scene's own settings come back."""
    tile = rendered(session.render(1, str(out / "once" / "t_####"), border=(10, 5, 40, 30), image_format="OPEN_EXR"))
    assert tile.suffix == ".exr"
    again = rendered(session.render(1, str(out / "again" / "f_####")))
    assert again.suffix == ".png"
    assert (load_png(again) == full_png).all()


def test_a_bad_tile_request_fails_the_frame_not_the_session(session: RenderSession, out: Path) -> None:
    # The session checks a border against the resolution the driver reported (the driver checks it too).
    with pytest.raises(ValueError, match="not a region of the 97x61 image"):
        session.render(1, str(out / "bad_####"), border=(0, 0, 98, 61))
    result = session.render(1, str(out / "bad_####"), border=(0, 0, 10, 10), image_format="NO_SUCH_FORMAT")
    assert isinstance(result, FrameFailed)
    assert result.error == "this Blender cannot write NO_SUCH_FORMAT images"
    assert session.alive
    assert not list(out.glob("bad_*"))
    assert filled(load_png(rendered(session.render(1, str(out / "good_####"), border=(0, 0, 10, 10))))) == (
        0,
        0,
        10,
        10,
    )


# --- stitching: pixel for pixel -----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [2, 3, 4, 7])
def test_stitched_tiles_are_the_single_machine_render_pixel_for_pixel(
    session: RenderSession, out: Path, full_png: np.ndarray[Any, Any], count: int
) -> None:
    tiles = plan_tiles(WIDTH, HEIGHT, count)
    folder = out / f"png{count}"
    files = render_tiles(session, tiles, folder, tile_image_format("PNG"))
    for tile in tiles:
        pixels = load_png(files[tile.index])
        assert pixels.shape == full_png.shape
        assert filled(pixels) == tuple(tile.render)
        assert pixels[..., 3].mean() < 0.75 * 255  # mostly transparent: only the tile's region is rendered
    stitched = stitch_tiles(tiles, files, WIDTH, HEIGHT, folder / "stitched.png", "PNG")
    assert np.array_equal(load_png(stitched), full_png)


def test_overlapping_tiles_stitch_to_the_same_pixels(
    session: RenderSession, out: Path, full_png: np.ndarray[Any, Any]
) -> None:
    """Without a denoiser an overlap only costs render time: the cores are the same pixels."""
    tiles = plan_tiles(WIDTH, HEIGHT, 5, overlap=6)
    files = render_tiles(session, tiles, out / "overlap", "PNG")
    stitched = stitch_tiles(tiles, files, WIDTH, HEIGHT, out / "overlap" / "stitched.png", "PNG")
    assert np.array_equal(load_png(stitched), full_png)


def read_exr(path: Path) -> dict[str, np.ndarray[Any, Any]]:
    import OpenEXR  # type: ignore[import-not-found]  # no type information in the package

    image = OpenEXR.File(str(path), separate_channels=True)
    return {
        f"{index}/{name}": channel.pixels.copy()
        for index, part in enumerate(image.parts)
        for name, channel in part.channels.items()
    }


@pytest.mark.parametrize(("image_format", "count"), [("OPEN_EXR", 3), ("OPEN_EXR", 4), ("OPEN_EXR_MULTILAYER", 2)])
def test_stitched_exr_is_the_exr_render_float_for_float(
    session: RenderSession, out: Path, image_format: str, count: int
) -> None:
    folder = out / f"{image_format}-{count}"
    full = read_exr(rendered(session.render(1, str(folder / "full_####"), image_format=image_format)))
    tiles = plan_tiles(WIDTH, HEIGHT, count)
    files = render_tiles(session, tiles, folder, tile_image_format(image_format))
    stitched = read_exr(stitch_tiles(tiles, files, WIDTH, HEIGHT, folder / "stitched.exr", image_format))
    assert sorted(stitched) == sorted(full)
    assert any(p.dtype == np.float32 for p in full.values())  # an 8-bit scene's EXR tiles are full float
    for name, pixels in full.items():
        assert stitched[name].dtype == pixels.dtype, name
        assert np.array_equal(stitched[name], pixels), name


def test_stitched_16_bit_png_is_the_16_bit_render(install: BlenderInstall, scenes: Path, tmp_path: Path) -> None:
    with open_session(install, scenes / "tiles16.blend") as session:
        full_path = rendered(session.render(1, str(tmp_path / "full_####")))
        tiles = plan_tiles(WIDTH, HEIGHT, 3)
        files = render_tiles(session, tiles, tmp_path, "PNG")
    stitched = stitch_tiles(tiles, files, WIDTH, HEIGHT, tmp_path / "stitched.png", "PNG")
    whole = Tile(0, Region(0, 0, WIDTH, HEIGHT), Region(0, 0, WIDTH, HEIGHT))
    full = _read_png_tile(full_path, whole, WIDTH, HEIGHT, stitched)
    assert full.dtype == np.uint16
    assert len(np.unique(full[..., :3] & 0xFF)) > 200  # the low bytes carry information: really 16 bits
    assert np.array_equal(_read_png_tile(stitched, whole, WIDTH, HEIGHT, stitched), full)
    # and Pillow, which reads 16-bit colour as 8 bits, sees the same high bytes
    assert np.array_equal(np.asarray(Image.open(stitched)), np.asarray(Image.open(full_path)))


# --- denoising ----------------------------------------------------------------------------------------------


def test_a_denoised_tile_fails_without_openimagedenoise_in_debians_34(
    exe_install: BlenderInstall, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if exe_install.version[:2] != (3, 4):
        pytest.skip(f"the OpenImageDenoise error is Debian's 3.4 build; this is {exe_install.version_string}")
    scenes = make_scenes(exe_install, tmp_path_factory.mktemp("tile-denoise-34"))
    folder = tmp_path_factory.mktemp("tile-denoise-34-out")
    with open_session(exe_install, scenes / "denoise.blend") as session:
        result = session.render(1, str(folder / "d_####"), border=(0, 0, 48, 30))
        assert isinstance(result, FrameFailed)
        assert result.error == "Build without OpenImageDenoiser"
        assert result.fault is Fault.DENOISER_UNAVAILABLE
        assert session.alive
    assert list(folder.iterdir()) == []


def seam_errors(stitched: np.ndarray[Any, Any], full: np.ndarray[Any, Any], tiles: list[Tile]) -> tuple[float, ...]:
    """Mean and max absolute difference (0..255 levels, RGB averaged) within 2 px of a seam, and elsewhere."""
    seam = np.zeros(full.shape[:2], dtype=bool)
    for tile in tiles:
        if tile.core.x0 > 0:
            seam[:, max(tile.core.x0 - 2, 0) : tile.core.x0 + 2] = True
        if tile.core.y0 > 0:
            seam[max(tile.core.y0 - 2, 0) : tile.core.y0 + 2, :] = True
    diff = np.abs(stitched[..., :3].astype(np.int32) - full[..., :3].astype(np.int32)).mean(axis=2)
    return float(diff[seam].mean()), float(diff[seam].max()), float(diff[~seam].mean()), float(diff[~seam].max())


def test_overlapping_denoised_tiles_hide_the_seams(
    bpy_install: BlenderInstall, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """OpenImageDenoise looks far beyond a pixel, so a tile denoised alone differs from the whole frame near
    its edges. With render regions 16 px larger than the cores, the seams are about as close to the
    single-machine render as the rest (the measurements are in docs/tiles.md)."""
    scenes = make_scenes(bpy_install, tmp_path_factory.mktemp("tile-denoise-50"))
    folder = tmp_path_factory.mktemp("tile-denoise-50-out")
    errors = {}
    with open_session(bpy_install, scenes / "denoise.blend") as session:
        full = load_png(rendered(session.render(1, str(folder / "full_####"))))
        for overlap in (0, 16):
            tiles = plan_tiles(WIDTH, HEIGHT, 4, overlap)
            files = render_tiles(session, tiles, folder / f"o{overlap}", "PNG")
            stitched = stitch_tiles(tiles, files, WIDTH, HEIGHT, folder / f"o{overlap}.png", "PNG")
            errors[overlap] = seam_errors(load_png(stitched), full, tiles)
    print("denoise seam errors (seam mean, seam max, elsewhere mean, elsewhere max):", errors)
    seam0, seam16 = errors[0][0], errors[16][0]
    assert seam0 > 3 * errors[0][2]  # without overlap the seams stand out from the rest of the image
    assert seam16 < seam0 / 3  # the overlap removes most of it
    assert seam16 < 1.0  # below one level of 255 on average
    assert errors[16][1] < errors[0][1]  # and the worst seam pixel is better too
