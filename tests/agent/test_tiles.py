"""Pure: the agent's side of split-frame rendering (tile format, border floats, border checks).

Blender turns a border into pixels with ``int(float32(border) * size)``, in its render pipeline and again in
Cycles. The tests here emulate that exactly (a product of two float32 values is exact in a double, so rounding
it to float32 is IEEE float32 multiplication); ``test_tiles_blender.py`` checks the same edges in real Blender.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from agent.blender import BlenderInstall
from agent.command import tile_image_format
from agent.driver import DriverError, border_floats, check_border
from agent.session import RenderSession


def to_float32(value: float) -> float:
    result: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return result


def blender_pixel(border: float, size: int) -> int:
    """What Blender makes of one border edge: the float is stored in single precision (RNA), multiplied by
    the size in single precision, and truncated."""
    return int(to_float32(to_float32(border) * float(size)))


def blender_region(region: list[int], width: int, height: int) -> tuple[int, int, int, int]:
    """The pixel region (origin top left) Blender renders for our border floats of ``region``."""
    min_x, min_y, max_x, max_y = border_floats(region, width, height)
    x0, x1 = blender_pixel(min_x, width), blender_pixel(max_x, width)
    bottom, top = blender_pixel(min_y, height), blender_pixel(max_y, height)
    return x0, height - top, x1, height - bottom


@pytest.mark.parametrize(
    ("output_type", "expected"),
    [
        ("OPEN_EXR", "OPEN_EXR"),
        ("OPEN_EXR_MULTILAYER", "OPEN_EXR_MULTILAYER"),
        ("PNG", "PNG"),
        ("JPEG", "PNG"),
        ("TIFF", "PNG"),
        ("FFMPEG", "PNG"),
        ("AVI_JPEG", "PNG"),
        ("WEBP", "PNG"),
    ],
)
def test_tiles_are_rendered_lossless(output_type: str, expected: str) -> None:
    assert tile_image_format(output_type) == expected


def test_every_edge_of_every_size_up_to_2048_truncates_to_its_pixel() -> None:
    """All edges 0..size of all sizes 1..2048, vectorised: float32 * float32 in numpy is IEEE single."""
    for size in range(1, 2049):
        pixels = np.arange(size + 1)
        floats = np.array([border_floats([int(p), 0, int(p), 1], size, 1)[0] for p in pixels], dtype=np.float32)
        assert (np.trunc(floats * np.float32(size)).astype(int) == pixels).all(), size


@pytest.mark.parametrize("size", [3840, 4096, 7680, 8192, 15360, 16384, 32767, 65536])
def test_edges_of_large_images_truncate_to_their_pixel(size: int) -> None:
    pixels = np.arange(size + 1)
    floats = np.where(pixels == 0, 0.0, np.where(pixels == size, 1.0, (pixels + 0.5) / size)).astype(np.float32)
    assert (np.trunc(floats * np.float32(size)).astype(int) == pixels).all()
    # and the function itself agrees with that vector form on a sample
    for p in range(0, size + 1, 997):
        assert blender_pixel(border_floats([p, 0, size, 1], size, 1)[0], size) == p


def test_the_naive_mapping_would_be_off_by_one() -> None:
    """Why the half pixel: x/width truncates to x - 1 for a third of the edges of a 97 px image."""
    wrong = [x for x in range(98) if blender_pixel(x / 97, 97) != x]
    assert len(wrong) == 33
    assert all(blender_pixel(border_floats([x, 0, 97, 1], 97, 1)[0], 97) == x for x in range(98))


@pytest.mark.parametrize(("width", "height"), [(97, 61), (1920, 1080), (1, 1), (333, 4), (4099, 2161)])
def test_regions_round_trip_with_the_y_axis_flipped(width: int, height: int) -> None:
    rng = np.random.default_rng(width * height)
    regions = [[0, 0, width, height]]
    for _ in range(200):
        x0, x1 = sorted(rng.choice(width + 1, 2, replace=False)) if width > 1 else (0, 1)
        y0, y1 = sorted(rng.choice(height + 1, 2, replace=False)) if height > 1 else (0, 1)
        regions.append([int(x0), int(y0), int(x1), int(y1)])
    for region in regions:
        assert blender_region(region, width, height) == tuple(region)


def test_the_top_left_region_is_at_the_top_of_blenders_border() -> None:
    # Blender's border starts at the bottom left: the top rows are its highest y.
    min_x, min_y, max_x, max_y = border_floats([0, 0, 10, 5], 100, 50)
    assert (min_x, max_y) == (0.0, 1.0)
    assert blender_pixel(min_y, 50) == 45
    assert blender_pixel(max_x, 100) == 10
    assert border_floats([0, 0, 100, 50], 100, 50) == (0.0, 0.0, 1.0, 1.0)  # Blender then renders no border


@pytest.mark.parametrize(
    "border",
    [
        [0, 0, 98, 61],
        [0, 0, 97, 62],
        [-1, 0, 10, 10],
        [10, 0, 10, 10],
        [10, 10, 5, 20],
        [0, 0, 10],
        "0,0,10,10",
        [0.5, 0, 10, 10],
        [True, 0, 10, 10],
        None,
    ],
)
def test_a_border_outside_the_image_or_malformed_is_refused(border: object) -> None:
    with pytest.raises(DriverError, match="border"):
        check_border(border, 97, 61)


def test_a_border_inside_the_image_is_taken() -> None:
    assert check_border([0, 0, 97, 61], 97, 61) == [0, 0, 97, 61]
    assert check_border((3, 4, 5, 6), 97, 61) == [3, 4, 5, 6]


@pytest.mark.parametrize("border", [(0, 0, 0, 10), (5, 0, 4, 10), (-1, 0, 3, 3), (0, 0, 1.5, 2)])
def test_the_session_refuses_a_bad_border_before_sending_it(border: tuple[int, int, int, int]) -> None:
    session = RenderSession(BlenderInstall("bpy", Path("/no/python"), (5, 0, 1), "5.0.1"), Path("/no/file.blend"))
    with pytest.raises(ValueError, match="border"):
        session.render(1, "/tmp/f_####", border=border)
