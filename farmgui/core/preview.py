"""Previews of frames Qt cannot show itself: OpenEXR (linear, high dynamic range) tone-mapped to 8-bit sRGB.

Qt-free, so the detail view's loader (off the GUI thread) and any other client can use it. Blender writes EXR
channels as ``R``/``G``/``B``/``A`` in a plain file and as ``<layer>.<pass>.R`` (``ViewLayer.Combined.R``) in a
multilayer one; the preview shows the combined image when there is one, else the first RGB triple, else the
first single channel as grey.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

EXR_MAGIC = b"\x76\x2f\x31\x01"
SHOULDER = 0.8
"""Linear values up to this are shown as they are; above it, highlights roll off smoothly towards white
instead of being cut flat at 1.0 (a render's lamps and sky keep some shape)."""
SHOULDER_SPREAD = 4.0
"""How far the roll-off reaches: 1.0 shows as 0.84, 2.0 as 0.96, 4.0 as 0.996 of white."""


class PreviewError(ValueError):
    """The file is not an image this module can preview (not EXR, damaged, or without colour channels)."""


@dataclass(frozen=True)
class Preview:
    width: int
    height: int
    rgba: bytes
    """8-bit RGBA rows, top row first, ``width * 4`` bytes each."""


def is_exr(path: str | os.PathLike[str]) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == EXR_MAGIC
    except OSError:
        return False


def _pick_channels(names: list[str]) -> tuple[str, str, str, str | None] | str:
    """(R, G, B, A or None) of the image to show, or one channel's name for a grey image."""
    by_name = set(names)
    prefixes = ["", *sorted({n.rsplit(".", 1)[0] + "." for n in names if "." in n}, key=_combined_first)]
    for prefix in prefixes:
        rgb = [f"{prefix}{c}" for c in "RGB"]
        if all(c in by_name for c in rgb):
            alpha = f"{prefix}A"
            return rgb[0], rgb[1], rgb[2], alpha if alpha in by_name else None
    if not names:
        raise PreviewError("the image has no channels")
    return sorted(names, key=_combined_first)[0]


def _combined_first(name: str) -> tuple[int, str]:
    return (0 if "Combined" in name or "Composite" in name else 1, name)


def tone_map(linear: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.uint8]:
    """Scene-linear values -> 8-bit sRGB, with a soft shoulder above :data:`SHOULDER`."""
    x = np.nan_to_num(linear.astype(np.float32), nan=0.0, posinf=1e6, neginf=0.0)
    x = np.maximum(x, 0.0)
    over = x > SHOULDER
    room = 1.0 - SHOULDER
    x[over] = SHOULDER + room * (1.0 - np.exp(-(x[over] - SHOULDER) / (room * SHOULDER_SPREAD)))
    srgb = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    encoded: npt.NDArray[np.uint8] = np.clip(np.rint(srgb * 255.0), 0, 255).astype(np.uint8)
    return encoded


def exr_preview(path: str | os.PathLike[str], max_side: int = 480) -> Preview:
    """The EXR's image scaled down (every n-th pixel: a preview, not a resample) to at most ``max_side``."""
    if not is_exr(path):
        raise PreviewError(f"{os.fspath(path)} is not an OpenEXR file")
    exr: Any = importlib.import_module("OpenEXR")  # ships no type information
    try:
        image = exr.File(os.fspath(path), separate_channels=True)
        channels: dict[str, Any] = {name: ch.pixels for name, ch in image.parts[0].channels.items()}
    except (RuntimeError, ValueError, OSError, IndexError) as exc:
        raise PreviewError(f"{os.fspath(path)} does not decode: {exc}") from exc
    picked = _pick_channels(list(channels))
    first = channels[picked if isinstance(picked, str) else picked[0]]
    height, width = first.shape[:2]
    step = max(1, -(-max(width, height) // max_side))

    def plane(name: str) -> npt.NDArray[Any]:
        return np.asarray(channels[name])[::step, ::step]

    if isinstance(picked, str):
        grey = tone_map(plane(picked))
        rgb = np.stack([grey, grey, grey], axis=-1)
        alpha = np.full(grey.shape, 255, np.uint8)
    else:
        r, g, b, a = picked
        rgb = tone_map(np.stack([plane(r), plane(g), plane(b)], axis=-1))
        alpha = (
            np.full(rgb.shape[:2], 255, np.uint8)
            if a is None
            else np.clip(np.rint(np.nan_to_num(plane(a).astype(np.float32)) * 255.0), 0, 255).astype(np.uint8)
        )
    rgba = np.ascontiguousarray(np.concatenate([rgb, alpha[..., None]], axis=-1))
    return Preview(int(rgba.shape[1]), int(rgba.shape[0]), rgba.tobytes())
