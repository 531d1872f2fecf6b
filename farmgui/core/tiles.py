"""Split-frame rendering of a still: plan the tiles, then stitch the rendered tiles into one image (Qt-free).

A tile is rendered by an agent as a border render without crop (``agent.driver``): a full-size image in which
only the tile's ``render`` region is filled. The stitch pastes each tile's ``core`` region (the cores partition
the image) into the final image. Cycles samples every pixel the same way whatever the border, so without
denoising the stitched image is the single-machine render, pixel for pixel. A denoiser looks at neighbours:
render regions that overlap their neighbours by ``overlap`` pixels give it context beyond the core, which is
kept, so the seams mostly vanish (numbers in ``docs/tiles.md``).

Tiles are lossless (PNG in the scene's colour depth, or EXR for EXR output, ``agent.command.tile_image_format``);
the stitch writes the task's own format, so only that last encode can be lossy: PNG, JPEG, TIFF, BMP, Targa,
WebP, Iris, JPEG 2000 and AVIF with Pillow, 16-bit PNG and TIFF with our own small encoders (Pillow has no
48/64-bit RGB), OpenEXR (single- and multilayer) with the ``openexr`` package, and PNG for a movie task (the
merge encodes it). HDR, DPX and Cineon are not written: :func:`can_stitch` says so before tiles are planned.

Memory: the final image plus one decoded tile at a time (a PNG tile is decoded only down to its core's last
row). The output is written under a hidden temporary name and renamed when complete.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from PIL import Image, features

from .merge import MergeError
from .preview import EXR_MAGIC

MAX_TILES = 4096
"""A sanity bound, not a tuning knob: the farm plans 2..64."""
DEFAULT_QUALITY = 90
"""Blender's default JPEG/WebP quality."""
DEFAULT_COMPRESSION = 15
"""Blender's default PNG compression (percent): zlib level 1. Level 6 (Pillow's default) took 4.1 s instead of
0.9 s to write a noisy 1920x1080 RGBA stitch on a 2-core machine, for a file 15 % smaller."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHUNK = struct.Struct(">I4s")
_IHDR = struct.Struct(">IIBBBBB")
_BAND_ROWS = 64
"""Rows encoded at a time by the 16-bit encoders (bounded extra memory)."""


# --- regions and the plan ---------------------------------------------------------------------------------


class Region(NamedTuple):
    """Pixels ``x0 <= x < x1``, ``y0 <= y < y1`` of the final image, origin at the top left.

    A tuple, so it goes as is where a ``(x0, y0, x1, y1)`` is wanted (``RenderSession.render(border=...)``,
    ``list(region)`` for ``WorkAssignment.tile_regions``)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return self.width * self.height

    def grown(self, by: int, width: int, height: int) -> Region:
        """This region with ``by`` more pixels on each side, clipped to a ``width`` x ``height`` image."""
        return Region(max(self.x0 - by, 0), max(self.y0 - by, 0), min(self.x1 + by, width), min(self.y1 + by, height))

    @property
    def slices(self) -> tuple[slice, slice]:
        """``array[region.slices]`` for an array of rows (y first)."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


@dataclass(frozen=True, slots=True)
class Tile:
    index: int
    """Row-major from the top left; the frame number of the tile's upload (``WorkAssignment.tile_frame``)."""
    core: Region
    """What this tile contributes to the final image; the cores of a plan partition the image."""
    render: Region
    """What the agent renders: the core grown by the plan's overlap, clipped to the image."""


def _cuts(size: int, parts: int) -> list[int]:
    """``parts + 1`` edges splitting ``size`` pixels into parts that differ by at most one pixel."""
    return [size * i // parts for i in range(parts + 1)]


def grid_shape(width: int, height: int, count: int) -> tuple[int, int]:
    """``(columns, rows)`` with ``columns * rows == count`` whose cells are closest to square.

    Every tile then has the same size give or take a pixel per axis, so the same work: a prime count is a
    row (or column) of strips. Ties go to fewer rows."""
    if width < 1 or height < 1:
        raise ValueError(f"the image must be at least 1x1 pixels, not {width}x{height}")
    if not 1 <= count <= MAX_TILES:
        raise ValueError(f"a frame is split into 1 to {MAX_TILES} tiles, not {count}")
    shapes = [(count // rows, rows) for rows in range(1, count + 1) if count % rows == 0]
    shapes = [(columns, rows) for columns, rows in shapes if columns <= width and rows <= height]
    if not shapes:
        raise ValueError(f"a {width}x{height} image cannot be split into {count} tiles of at least one pixel")
    # How far a cell is from square, as |log(aspect)|; rounded so that float noise cannot break a tie.
    return min(shapes, key=lambda s: (round(abs(math.log((width / s[0]) / (height / s[1]))), 9), s[1]))


def plan_tiles(width: int, height: int, count: int, overlap: int = 0) -> list[Tile]:
    """Split a ``width`` x ``height`` image into ``count`` tiles on a near-square grid (:func:`grid_shape`).

    Cores differ in size by at most one pixel per axis; each render region is its core grown by ``overlap``
    pixels (clipped to the image), the context a denoiser needs to leave no seam."""
    if overlap < 0:
        raise ValueError(f"the overlap is 0 or more pixels, not {overlap}")
    columns, rows = grid_shape(width, height, count)
    xs, ys = _cuts(width, columns), _cuts(height, rows)
    tiles: list[Tile] = []
    for row in range(rows):
        for column in range(columns):
            core = Region(xs[column], ys[row], xs[column + 1], ys[row + 1])
            tiles.append(Tile(len(tiles), core, core.grown(overlap, width, height)))
    return tiles


# --- errors -----------------------------------------------------------------------------------------------


class StitchError(MergeError):
    """The tiles of a frame cannot be stitched: one is missing, has the wrong size, or does not decode, or the
    output format cannot be written here. ``tile`` and ``path`` name the culprit when there is one."""

    def __init__(
        self, message: str, *, output: Path | None = None, tile: int | None = None, path: Path | None = None
    ) -> None:
        super().__init__(message, output=output)
        self.tile = tile
        self.path = path


def _tile_error(tile: Tile, path: Path, out_path: Path, what: str) -> StitchError:
    return StitchError(f"tile {tile.index}: {what}", output=out_path, tile=tile.index, path=path)


# --- output formats ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Format:
    pillow: str
    extension: str
    alpha: bool = True
    """Can hold an alpha channel."""
    feature: str | None = None
    """Pillow feature the format needs (a codec library Pillow may be built without)."""


_PILLOW_FORMATS: dict[str, _Format] = {
    "PNG": _Format("PNG", ".png"),
    "JPEG": _Format("JPEG", ".jpg", alpha=False),
    "BMP": _Format("BMP", ".bmp"),
    "TARGA": _Format("TGA", ".tga"),
    "TARGA_RAW": _Format("TGA", ".tga"),
    "TIFF": _Format("TIFF", ".tif"),
    "WEBP": _Format("WEBP", ".webp", feature="webp"),
    "IRIS": _Format("SGI", ".rgb"),
    "JPEG2000": _Format("JPEG2000", ".jp2", feature="jpg_2000"),
    "AVIF": _Format("AVIF", ".avif", feature="avif"),
}
_EXR_TYPES = frozenset({"OPEN_EXR", "OPEN_EXR_MULTILAYER"})
_MOVIE_TYPES = frozenset({"FFMPEG", "AVI_JPEG", "AVI_RAW"})
_SIXTEEN_BIT = frozenset({"PNG", "TIFF"})
"""Output types whose 16-bit images we write (Pillow writes only 8-bit colour)."""


def _stitch_type(output_type: str) -> str:
    """The format the stitched image is written in: movies become PNG frames for the merge."""
    return "PNG" if output_type in _MOVIE_TYPES else output_type


def can_stitch(output_type: str) -> bool:
    """Whether :func:`stitch_tiles` can write a task of this output type (decide before splitting a frame)."""
    kind = _stitch_type(output_type)
    if kind in _EXR_TYPES:
        return True
    spec = _PILLOW_FORMATS.get(kind)
    return spec is not None and (spec.feature is None or bool(features.check(spec.feature)))


def stitched_extension(output_type: str) -> str:
    """The extension of the stitched image (Blender's for the format; ``.png`` for a movie task)."""
    kind = _stitch_type(output_type)
    if kind in _EXR_TYPES:
        return ".exr"
    spec = _PILLOW_FORMATS.get(kind)
    if spec is None:
        raise StitchError(f"split-frame rendering cannot write {output_type} images")
    return spec.extension


# --- stitching --------------------------------------------------------------------------------------------

_Pixels = npt.NDArray[Any]


def stitch_tiles(
    tiles: Sequence[Tile],
    tile_files: Mapping[int, Path],
    width: int,
    height: int,
    out_path: Path,
    output_type: str,
    *,
    quality: int = DEFAULT_QUALITY,
    compression: int = DEFAULT_COMPRESSION,
    color_depth: str | None = None,
) -> Path:
    """Paste each tile's core from its file (``tile_files[tile.index]``) into one ``width`` x ``height`` image
    and write it to ``out_path`` in the task's ``output_type`` (a Blender ``file_format`` name).

    ``quality`` (0-100) is for the lossy formats (JPEG, WebP: 100 is lossless, AVIF), ``compression`` (0-100,
    Blender's percent) for PNG. ``color_depth``
    (``"8"``, ``"16"``; ``"16"``/``"32"`` for EXR half/full float) defaults to the tiles' own, which the
    agents render in the scene's. Raises :class:`StitchError`; nothing is left under ``out_path`` then."""
    out_path = Path(out_path)
    kind = _stitch_type(output_type)
    if not can_stitch(output_type):
        raise StitchError(f"split-frame rendering cannot write {output_type} images here", output=out_path)
    _check_plan(tiles, width, height, out_path)
    missing = [t.index for t in tiles if t.index not in tile_files]
    if missing:
        raise StitchError(f"no file for tiles {missing}", output=out_path, tile=missing[0])
    partial = out_path.with_name("." + out_path.name + ".partial")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if kind in _EXR_TYPES:
            _stitch_exr(tiles, tile_files, width, height, partial, out_path, color_depth)
        else:
            canvas = _paste_all(tiles, tile_files, width, height, out_path)
            level = max(0, min(round(compression / 11.1111), 9))  # as Blender maps it to zlib's 0-9
            _write_image(canvas, kind, partial, out_path, quality, level, color_depth)
        partial.replace(out_path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    return out_path


def _check_plan(tiles: Sequence[Tile], width: int, height: int, out_path: Path) -> None:
    """The cores must cover the image exactly once (a plan from another image size would not)."""
    if not tiles:
        raise StitchError("no tiles to stitch", output=out_path)
    covered = np.zeros((height, width), dtype=bool)
    for tile in tiles:
        core = tile.core
        if not (0 <= core.x0 < core.x1 <= width and 0 <= core.y0 < core.y1 <= height):
            raise StitchError(
                f"tile {tile.index}'s core {tuple(core)} is not inside the {width}x{height} image",
                output=out_path,
                tile=tile.index,
            )
        if covered[core.slices].any():
            raise StitchError(f"tile {tile.index}'s core overlaps another tile's", output=out_path, tile=tile.index)
        covered[core.slices] = True
    if not covered.all():
        raise StitchError(f"the tiles' cores do not cover the {width}x{height} image exactly once", output=out_path)


def _paste_all(
    tiles: Sequence[Tile], tile_files: Mapping[int, Path], width: int, height: int, out_path: Path
) -> _Pixels:
    canvas: _Pixels | None = None
    for tile in tiles:
        path = Path(tile_files[tile.index])
        pixels = _read_png_tile(path, tile, width, height, out_path)
        if canvas is None:
            canvas = np.zeros((height, width, pixels.shape[2]), dtype=pixels.dtype)
        elif pixels.shape[2] != canvas.shape[2] or pixels.dtype != canvas.dtype:
            raise StitchError(
                f"tile {tile.index} has {pixels.shape[2]} channels of {pixels.dtype}, the first tile "
                f"{canvas.shape[2]} of {canvas.dtype}: tiles of one frame must share one format",
                output=out_path,
                tile=tile.index,
                path=path,
            )
        core = tile.core
        canvas[core.slices] = pixels[core.y0 : core.y1, core.x0 : core.x1]
        del pixels
    if canvas is None:  # _check_plan makes sure there is a tile
        raise StitchError("no tiles to stitch", output=out_path)
    return canvas


# --- reading PNG tiles ------------------------------------------------------------------------------------

# (colour type, bit depth) -> Pillow mode and raw mode of the unfiltered rows, channels. 16-bit colour is
# decoded twice (see _decode_png16): Pillow has no 48/64-bit RGB mode.
_PNG_KINDS: dict[tuple[int, int], tuple[str, str, int]] = {
    (0, 8): ("L", "L", 1),
    (4, 8): ("LA", "LA", 2),
    (2, 8): ("RGB", "RGB", 3),
    (6, 8): ("RGBA", "RGBA", 4),
    (0, 16): ("I;16B", "I;16B", 1),
    (2, 16): ("RGB", "RGB;16", 3),
    (6, 16): ("RGBA", "RGBA;16", 4),
}


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = _CHUNK.unpack_from(data, pos)
        end = pos + 8 + length
        if end + 4 > len(data):
            raise ValueError(f"truncated inside a {kind!r} chunk")
        body = data[pos + 8 : end]
        (crc,) = struct.unpack_from(">I", data, end)
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"the {kind.decode('latin-1')} chunk has a bad CRC")
        yield kind, body
        if kind == b"IEND":
            return
        pos = end + 4
    raise ValueError("no IEND chunk (truncated)")


def _read_png_tile(path: Path, tile: Tile, width: int, height: int, out_path: Path) -> _Pixels:
    """The tile's pixels down to its core's last row, as (rows, width, channels) uint8 or uint16."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _tile_error(tile, path, out_path, f"cannot read {path}: {exc}") from exc
    try:
        header: tuple[int, ...] | None = None
        idat = bytearray()
        for kind, body in _png_chunks(data):
            if kind == b"IHDR":
                header = _IHDR.unpack(body)
            elif kind == b"IDAT":
                idat += body
        if header is None or not idat:
            raise ValueError("no IHDR or no image data")
        png_width, png_height, depth, colour, _, _, interlace = header
        if (png_width, png_height) != (width, height):
            raise _tile_error(
                tile,
                path,
                out_path,
                f"{path} is {png_width}x{png_height}, not the {width}x{height} of the frame "
                "(a tile is rendered at full size, without crop)",
            )
        if (colour, depth) not in _PNG_KINDS or interlace:
            raise ValueError(f"unsupported PNG kind (colour type {colour}, {depth} bits, interlace {interlace})")
        return _decode_png(bytes(idat), (colour, depth), width, tile.core.y1)
    except StitchError:
        raise
    except (ValueError, SyntaxError, OSError, zlib.error, struct.error, MemoryError) as exc:
        raise _tile_error(tile, path, out_path, f"{path} does not decode: {exc}") from exc


def _decode_png(idat: bytes, kind: tuple[int, int], width: int, rows: int) -> _Pixels:
    """Inflate and unfilter the first ``rows`` rows with Pillow's PNG decoder (C speed)."""
    mode, raw, channels = _PNG_KINDS[kind]
    if kind[1] == 8:
        image = Image.frombytes(mode, (width, rows), idat, "zip", raw)
        return np.asarray(image).reshape(rows, width, channels)
    if channels == 1:
        image = Image.frombytes(mode, (width, rows), idat, "zip", raw)
        return np.asarray(image).astype(np.uint16).reshape(rows, width, 1)
    return _decode_png16(idat, mode, raw, channels, width, rows)


def _decode_png16(idat: bytes, mode: str, raw: str, channels: int, width: int, rows: int) -> _Pixels:
    """16-bit RGB(A): Pillow unfilters the rows correctly but keeps one byte per sample. Its ``RGB;16B``
    unpacker keeps the first (high, PNG being big-endian) byte and ``RGB;16L`` the second (low) one, so two
    decodes give both halves. (``tests/farmgui/test_tiles.py`` checks this on every filter type.)"""
    high = np.asarray(Image.frombytes(mode, (width, rows), idat, "zip", raw + "B")).astype(np.uint16)
    low = np.asarray(Image.frombytes(mode, (width, rows), idat, "zip", raw + "L"))
    high <<= 8
    high |= low
    return high.reshape(rows, width, channels)


# --- writing images ---------------------------------------------------------------------------------------


def _to_depth(canvas: _Pixels, bits: int) -> _Pixels:
    if bits == 16 and canvas.dtype == np.uint8:
        return canvas.astype(np.uint16) * 257  # 0..255 -> 0..65535 exactly
    if bits == 8 and canvas.dtype == np.uint16:
        return ((canvas.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return canvas


def _write_image(
    canvas: _Pixels, kind: str, partial: Path, out_path: Path, quality: int, level: int, color_depth: str | None
) -> None:
    spec = _PILLOW_FORMATS[kind]
    if color_depth not in (None, "8", "16"):
        raise StitchError(f"{kind} images are 8 or 16 bits, not {color_depth}", output=out_path)
    bits = int(color_depth) if color_depth else (16 if canvas.dtype == np.uint16 else 8)
    if kind not in _SIXTEEN_BIT:
        bits = 8
    canvas = _to_depth(canvas, bits)
    if not spec.alpha and canvas.shape[2] in (2, 4):
        canvas = canvas[:, :, :-1]  # JPEG has no alpha: Blender writes such scenes as RGB (or BW) too
    if bits == 16:
        if kind == "PNG":
            _write_png16(canvas, partial, level)
        else:
            _write_tiff16(canvas, partial)
        return
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[canvas.shape[2]]
    image = Image.fromarray(np.ascontiguousarray(canvas if canvas.shape[2] > 1 else canvas[:, :, 0]), mode)
    options: dict[str, Any] = {}
    if kind == "PNG":
        options = {"compress_level": level}
    elif kind == "JPEG":
        options = {"quality": max(1, min(quality, 100))}
    elif kind == "WEBP":
        # Blender writes quality 100 losslessly; "exact" keeps the colour under transparent pixels too.
        options = {"quality": max(0, min(quality, 100)), "lossless": quality >= 100, "exact": True}
    elif kind == "AVIF":
        options = {"quality": max(0, min(quality, 100))}
    elif kind == "TARGA":
        options = {"compression": "tga_rle"}
    elif kind == "TIFF" and features.check("libtiff"):
        options = {"compression": "tiff_deflate"}  # Blender's default TIFF codec
    elif kind == "JPEG2000":
        options = {"irreversible": False}  # lossless: Pillow has no match for Blender's quality here
    try:
        image.save(partial, format=spec.pillow, **options)
    except (OSError, ValueError, KeyError) as exc:
        raise StitchError(f"cannot write the stitched {kind} image: {exc}", output=out_path) from exc


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return _CHUNK.pack(len(body), kind) + body + struct.pack(">I", zlib.crc32(kind + body))


def _bands(canvas: _Pixels) -> Iterable[_Pixels]:
    for start in range(0, canvas.shape[0], _BAND_ROWS):
        yield canvas[start : start + _BAND_ROWS]


def _write_png16(canvas: _Pixels, path: Path, level: int = 1) -> None:
    """A 16-bit grey, RGB or RGBA PNG. Every row uses the Up filter (vectorises, and compresses renders
    about as well as libpng's adaptive choice); rows are filtered and deflated a band at a time."""
    rows, width, channels = canvas.shape
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    compressor = zlib.compressobj(level)
    previous = np.zeros(width * channels * 2, dtype=np.uint8)
    with open(path, "wb") as out:
        out.write(_PNG_SIGNATURE + _png_chunk(b"IHDR", _IHDR.pack(width, rows, 16, colour, 0, 0, 0)))
        for band in _bands(canvas):
            raw = band.astype(">u2").reshape(band.shape[0], -1).view(np.uint8)
            above = np.vstack([previous[None, :], raw[:-1]])
            filtered = np.empty((raw.shape[0], raw.shape[1] + 1), dtype=np.uint8)
            filtered[:, 0] = 2  # Up
            np.subtract(raw, above, out=filtered[:, 1:])  # uint8 arithmetic wraps: mod 256, as PNG wants
            previous = raw[-1].copy()
            data = compressor.compress(filtered.tobytes())
            if data:
                out.write(_png_chunk(b"IDAT", data))
        out.write(_png_chunk(b"IDAT", compressor.flush()))
        out.write(_png_chunk(b"IEND", b""))


def _write_tiff16(canvas: _Pixels, path: Path) -> None:
    """A 16-bit little-endian TIFF, deflate-compressed strips of :data:`_BAND_ROWS` rows (Blender's default
    TIFF codec), alpha as unassociated extra sample as Blender writes it."""
    rows, width, channels = canvas.shape
    strips: list[tuple[int, int]] = []
    with open(path, "wb") as out:
        out.write(b"II*\0" + struct.pack("<I", 0))  # the IFD offset is patched in at the end
        for band in _bands(canvas):
            data = zlib.compress(band.astype("<u2").tobytes(), 6)
            strips.append((out.tell(), len(data)))
            out.write(data)
            if out.tell() % 2:
                out.write(b"\0")

        def array(kind: str, values: list[int]) -> int:
            """A tag's values: inline when they fit in the entry's four bytes, else written here."""
            packed = struct.pack(f"<{len(values)}{kind}", *values)
            if len(packed) <= 4:
                return int.from_bytes(packed.ljust(4, b"\0"), "little")
            at = out.tell()
            out.write(packed)
            return at

        entries = [
            (256, 4, 1, width),  # ImageWidth
            (257, 4, 1, rows),  # ImageLength
            (258, 3, channels, array("H", [16] * channels)),  # BitsPerSample
            (259, 3, 1, 8),  # Compression: Adobe deflate
            (262, 3, 1, 2 if channels >= 3 else 1),  # Photometric: RGB or BlackIsZero
            (273, 4, len(strips), array("I", [o for o, _ in strips])),  # StripOffsets
            (277, 3, 1, channels),  # SamplesPerPixel
            (278, 4, 1, _BAND_ROWS),  # RowsPerStrip
            (279, 4, len(strips), array("I", [n for _, n in strips])),  # StripByteCounts
            (284, 3, 1, 1),  # PlanarConfiguration: chunky
        ]
        if channels in (2, 4):
            entries.append((338, 3, 1, 2))  # ExtraSamples: unassociated alpha
        entries.append((339, 3, channels, array("H", [1] * channels)))  # SampleFormat: unsigned
        ifd_at = out.tell()
        out.write(struct.pack("<H", len(entries)))
        for tag, kind, count, value in entries:
            out.write(struct.pack("<HHII", tag, kind, count, value))
        out.write(struct.pack("<I", 0))
        out.seek(4)
        out.write(struct.pack("<I", ifd_at))


# --- EXR --------------------------------------------------------------------------------------------------

_EXR_STRUCTURE = frozenset({"channels", "dataWindow", "displayWindow", "RenderTime"})
"""Header attributes the writer derives from the pixels, or that belong to one tile's render."""


def _openexr() -> Any:
    # The openexr package ships no type information; everything it returns is Any here.
    return importlib.import_module("OpenEXR")


def _exr_header(header: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: value
        for name, value in header.items()
        if name not in _EXR_STRUCTURE and not (name.startswith("cycles.") and name.endswith("_time"))
    }


def _stitch_exr(
    tiles: Sequence[Tile],
    tile_files: Mapping[int, Path],
    width: int,
    height: int,
    partial: Path,
    out_path: Path,
    color_depth: str | None,
) -> None:
    exr = _openexr()
    if color_depth not in (None, "16", "32"):
        raise StitchError(f"EXR images are 16 (half) or 32 (float) bits, not {color_depth}", output=out_path)
    headers: list[dict[str, Any]] = []
    names: list[str] = []
    canvases: list[dict[str, _Pixels]] = []
    for tile in tiles:
        path = Path(tile_files[tile.index])
        parts = _read_exr_tile(exr, path, tile, width, height, out_path)
        layout = [{name: (p.dtype, p.shape) for name, p in channels.items()} for _, _, channels in parts]
        if not canvases:
            for header, name, channels in parts:
                headers.append(_exr_header(header))
                names.append(name)
                canvases.append({c: np.zeros((height, width), dtype=p.dtype) for c, p in channels.items()})
        elif layout != [{c: (p.dtype, p.shape) for c, p in canvas.items()} for canvas in canvases]:
            raise StitchError(
                f"tile {tile.index} has other EXR channels than the first tile: tiles of one frame must match",
                output=out_path,
                tile=tile.index,
                path=path,
            )
        core = tile.core
        for canvas, (_, _, channels) in zip(canvases, parts, strict=True):
            for channel, pixels in channels.items():
                canvas[channel][core.slices] = pixels[core.slices]
        del parts
    dtype = {None: None, "16": np.float16, "32": np.float32}[color_depth]
    written = []
    for header, name, canvas in zip(headers, names, canvases, strict=True):
        channels = {
            c: exr.Channel(p.astype(dtype) if dtype is not None and p.dtype.kind == "f" else p)
            for c, p in canvas.items()
        }
        written.append((header, name, channels))
    try:
        if len(written) == 1:
            header, _, channels = written[0]
            out = exr.File(header, channels)
        else:
            out = exr.File([exr.Part({**header, "name": name}, channels, name) for header, name, channels in written])
        out.write(str(partial))
    except (RuntimeError, ValueError, TypeError, OSError) as exc:
        raise StitchError(f"cannot write the stitched EXR image: {exc}", output=out_path) from exc


def _read_exr_tile(
    exr: Any, path: Path, tile: Tile, width: int, height: int, out_path: Path
) -> list[tuple[dict[str, Any], str, dict[str, _Pixels]]]:
    """Each part's header, name and channels (name -> (height, width) array) of one EXR tile."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise _tile_error(tile, path, out_path, f"cannot read {path}: {exc}") from exc
    if magic != EXR_MAGIC:
        raise StitchError(
            f"tile {tile.index} ({path}) does not decode: not an OpenEXR file",
            output=out_path,
            tile=tile.index,
            path=path,
        )
    try:
        image = exr.File(str(path), separate_channels=True)
        parts = []
        for part in image.parts:
            header = dict(part.header)
            (x0, y0), (x1, y1) = (tuple(int(v) for v in corner) for corner in header["dataWindow"])
            if (x0, y0, x1 + 1, y1 + 1) != (0, 0, width, height):
                raise StitchError(
                    f"tile {tile.index}'s data window is {x0},{y0}..{x1},{y1}, not the full {width}x{height} "
                    "frame (a tile is rendered at full size, without crop)",
                    output=out_path,
                    tile=tile.index,
                    path=path,
                )
            channels = {}
            for name, channel in part.channels.items():
                if channel.xSampling != 1 or channel.ySampling != 1:
                    raise ValueError(f"channel {name} is subsampled")
                channels[name] = channel.pixels
            name = part.name() if callable(part.name) else part.name  # a method in openexr 3.x
            parts.append((header, str(name or header.get("name", "")), channels))
    except StitchError:
        raise
    except (RuntimeError, ValueError, TypeError, KeyError, OSError, MemoryError) as exc:
        raise _tile_error(tile, path, out_path, f"{path} does not decode: {exc}") from exc
    return parts


__all__ = [
    "DEFAULT_COMPRESSION",
    "DEFAULT_QUALITY",
    "Region",
    "StitchError",
    "Tile",
    "can_stitch",
    "grid_shape",
    "plan_tiles",
    "stitch_tiles",
    "stitched_extension",
]
