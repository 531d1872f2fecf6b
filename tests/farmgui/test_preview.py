"""EXR previews for the task detail's thumbnail: tone mapping, channel choice, bad files, a real Blender EXR."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import OpenEXR  # type: ignore[import-not-found]  # no type information in the package
import pytest
from pytestqt.qtbot import QtBot

from farmgui.core.preview import PreviewError, exr_preview, is_exr, tone_map
from farmgui.ui.task_detail import load_thumbnail


def write_exr(path: Path, channels: dict[str, np.ndarray]) -> Path:
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {name: OpenEXR.Channel(p) for name, p in channels.items()}).write(str(path))
    return path


def test_tone_map_keeps_the_usual_range_and_rolls_highlights_off() -> None:
    values = np.array([0.0, 0.5, 0.8, 1.0, 2.0, 1e9, -1.0, np.nan, np.inf], np.float32)
    out = tone_map(values).tolist()
    assert out[:3] == [0, 188, 231]  # sRGB of 0.5 and 0.8: shown as they are
    assert out[2] < out[3] < out[4] < 255  # brighter stays brighter
    assert out[5] == 255
    assert out[6:8] == [0, 0]  # negative and NaN: black, not garbage
    assert out[8] == 255


def test_plain_exr_is_scaled_down_to_the_preview_size(tmp_path: Path) -> None:
    height, width = 300, 1000
    ramp = np.tile(np.linspace(0.0, 2.0, width, dtype=np.float32), (height, 1))
    path = write_exr(tmp_path / "f.exr", {"R": ramp, "G": ramp * 0.5, "B": np.zeros_like(ramp)})
    preview = exr_preview(path, max_side=200)
    assert (preview.width, preview.height) == (200, 60)
    pixels = np.frombuffer(preview.rgba, np.uint8).reshape(60, 200, 4)
    assert pixels[0, 0].tolist() == [0, 0, 0, 255]
    assert pixels[0, -1, 0] > 240
    assert pixels[0, -1, 1] > pixels[0, 100, 1]
    assert (pixels[..., 2] == 0).all()


def test_multilayer_exr_shows_the_combined_pass(tmp_path: Path) -> None:
    ones, zeros = np.ones((4, 4), np.float32), np.zeros((4, 4), np.float32)
    path = write_exr(
        tmp_path / "m.exr",
        {
            "ViewLayer.Depth.V": ones * 9,
            "ViewLayer.Combined.R": zeros,
            "ViewLayer.Combined.G": ones * 0.5,
            "ViewLayer.Combined.B": zeros,
            "ViewLayer.Combined.A": ones * 0.5,
            "ViewLayer.Normal.X": ones,
        },
    )
    pixels = np.frombuffer(exr_preview(path).rgba, np.uint8).reshape(4, 4, 4)
    assert pixels[0, 0].tolist() == [0, 188, 0, 128]


def test_a_single_channel_is_shown_grey(tmp_path: Path) -> None:
    path = write_exr(tmp_path / "y.exr", {"Y": np.full((2, 3), 0.5, np.float32)})
    pixels = np.frombuffer(exr_preview(path).rgba, np.uint8).reshape(2, 3, 4)
    assert pixels[1, 2].tolist() == [188, 188, 188, 255]


def test_files_that_are_not_exr_or_are_damaged(tmp_path: Path) -> None:
    png = tmp_path / "f.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    assert not is_exr(png)
    with pytest.raises(PreviewError, match="not an OpenEXR file"):
        exr_preview(png)
    damaged = tmp_path / "d.exr"
    damaged.write_bytes(b"\x76\x2f\x31\x01" + bytes(100))
    with pytest.raises(PreviewError, match="does not decode"):
        exr_preview(damaged)
    assert not is_exr(tmp_path / "missing.exr")


@pytest.mark.blender
def test_thumbnail_of_a_frame_blender_wrote_as_exr(qtbot: QtBot, tmp_path: Path, scenes_34: Path) -> None:
    subprocess.run(
        ["blender", "-b", "-Y", str(scenes_34 / "png.blend"), "-o", str(tmp_path / "f_####"), "-F", "OPEN_EXR",
         "-f", "2"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    image = load_thumbnail(tmp_path / "f_0002.exr")
    assert not image.isNull()
    assert (image.width(), image.height()) == (32, 32)
    centre = image.pixelColor(16, 16)
    assert centre.red() + centre.green() + centre.blue() > 0  # the lit cube, not a black square
