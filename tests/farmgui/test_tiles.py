"""The manager's side of split-frame rendering: the tile plan, and stitching synthetic tiles (no Blender).

Tiles are made the way an agent's Blender makes them: a full-size image, transparent black outside the tile's
render region. ``tests/agent/test_tiles_blender.py`` does the same with real Blender renders.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import OpenEXR  # type: ignore[import-not-found]  # no type information in the package
import pytest
from PIL import Image

from farmgui.core.merge import MergeError
from farmgui.core.tiles import (
    Region,
    StitchError,
    Tile,
    _decode_png,
    _write_png16,
    can_stitch,
    grid_shape,
    plan_tiles,
    stitch_tiles,
    stitched_extension,
)

Pixels = np.ndarray[Any, Any]
W, H = 53, 37


def image(channels: int = 4, dtype: Any = np.uint8, seed: int = 1, height: int = H, width: int = W) -> Pixels:
    rng = np.random.default_rng(seed)
    top = 256 if dtype == np.uint8 else 65536
    return rng.integers(0, top, size=(height, width, channels)).astype(dtype)


def tile_pixels(full: Pixels, tile: Tile) -> Pixels:
    """What Blender writes for a tile: the full size, only the render region filled."""
    out = np.zeros_like(full)
    out[tile.render.slices] = full[tile.render.slices]
    return out


def save_png(pixels: Pixels, path: Path) -> Path:
    if pixels.dtype == np.uint16:
        _write_png16(pixels, path)
    else:
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]
        Image.fromarray(pixels if pixels.shape[2] > 1 else pixels[:, :, 0], mode).save(path, format="PNG")
    return path


def make_tiles(full: Pixels, tiles: list[Tile], folder: Path) -> dict[int, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {t.index: save_png(tile_pixels(full, t), folder / f"tile{t.index}.png") for t in tiles}


def read_png(path: Path) -> Pixels:
    """Any of our PNGs, 16-bit ones included, through an independent pure-numpy decoder (slow, small images)."""
    data = path.read_bytes()
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, colour = header[:4]
    channels = {0: 1, 4: 2, 2: 3, 6: 4}[colour]
    return unfilter(zlib.decompress(idat), width, height, channels, depth // 8)


def unfilter(raw: bytes, width: int, height: int, channels: int, sample_bytes: int) -> Pixels:
    bpp = channels * sample_bytes
    stride = width * bpp
    rows = np.zeros((height, stride), dtype=np.int64)
    previous = np.zeros(stride, dtype=np.int64)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=y * (stride + 1) + 1).astype(np.int64)
        out = np.zeros(stride, dtype=np.int64)
        for i in range(stride):
            left = out[i - bpp] if i >= bpp else 0
            up = previous[i]
            corner = previous[i - bpp] if i >= bpp else 0
            if kind == 0:
                predictor = 0
            elif kind == 1:
                predictor = left
            elif kind == 2:
                predictor = up
            elif kind == 3:
                predictor = (left + up) // 2
            else:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            out[i] = (line[i] + predictor) % 256
        rows[y] = previous = out
    data = rows.astype(np.uint8)
    if sample_bytes == 2:
        return data.view(">u2").astype(np.uint16).reshape(height, width, channels)
    return data.reshape(height, width, channels)


def filtered_png_rows(pixels: Pixels, kinds: list[int]) -> bytes:
    """The image's rows filtered with the given PNG filter types (cycled), as a PNG encoder would."""
    height, _, channels = pixels.shape
    sample_bytes = pixels.dtype.itemsize
    bpp = channels * sample_bytes
    data = pixels.astype(">u2" if sample_bytes == 2 else np.uint8).reshape(height, -1).view(np.uint8).astype(np.int64)
    out = bytearray()
    previous = np.zeros(data.shape[1], dtype=np.int64)
    for y in range(height):
        kind = kinds[y % len(kinds)]
        line = data[y]
        left = np.concatenate([np.zeros(bpp, dtype=np.int64), line[:-bpp]])
        corner = np.concatenate([np.zeros(bpp, dtype=np.int64), previous[:-bpp]])
        if kind == 0:
            predictor = np.zeros_like(line)
        elif kind == 1:
            predictor = left
        elif kind == 2:
            predictor = previous
        elif kind == 3:
            predictor = (left + previous) // 2
        else:
            p = left + previous - corner
            pa, pb, pc = np.abs(p - left), np.abs(p - previous), np.abs(p - corner)
            predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, previous, corner))
        out.append(kind)
        out += ((line - predictor) % 256).astype(np.uint8).tobytes()
        previous = line
    return zlib.compress(bytes(out))


# --- the plan -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(97, 61), (1920, 1080), (1080, 1920), (64, 64), (4, 4), (333, 4)])
@pytest.mark.parametrize("count", range(1, 65))
def test_cores_partition_the_image_in_near_equal_tiles(width: int, height: int, count: int) -> None:
    try:
        tiles = plan_tiles(width, height, count)
    except ValueError:
        assert count > width * height or min(width, height) < 8  # only a tiny image cannot take the count
        return
    assert [t.index for t in tiles] == list(range(count))
    covered = np.zeros((height, width), dtype=int)
    for tile in tiles:
        covered[tile.core.slices] += 1
        assert tile.render == tile.core
    assert (covered == 1).all()
    widths = {t.core.width for t in tiles}
    heights = {t.core.height for t in tiles}
    assert max(widths) - min(widths) <= 1
    assert max(heights) - min(heights) <= 1
    # row-major from the top left
    assert sorted(tiles, key=lambda t: (t.core.y0, t.core.x0)) == tiles


@pytest.mark.parametrize(
    ("width", "height", "count", "shape"),
    [
        (1920, 1080, 2, (2, 1)),
        (1920, 1080, 4, (2, 2)),
        (1920, 1080, 6, (3, 2)),
        (1920, 1080, 8, (4, 2)),
        (1920, 1080, 12, (4, 3)),
        (1920, 1080, 16, (4, 4)),
        (1920, 1080, 64, (8, 8)),
        (1920, 1080, 7, (7, 1)),  # a prime: strips, equal work
        (1080, 1920, 7, (1, 7)),
        (1080, 1920, 8, (2, 4)),
        (97, 61, 4, (2, 2)),
        (97, 61, 61, (61, 1)),
    ],
)
def test_the_grid_is_the_squarest_of_the_exact_ones(
    width: int, height: int, count: int, shape: tuple[int, int]
) -> None:
    assert grid_shape(width, height, count) == shape


def test_render_regions_grow_by_the_overlap_within_the_image() -> None:
    tiles = plan_tiles(97, 61, 4, overlap=16)
    assert [tuple(t.core) for t in tiles] == [(0, 0, 48, 30), (48, 0, 97, 30), (0, 30, 48, 61), (48, 30, 97, 61)]
    assert [tuple(t.render) for t in tiles] == [(0, 0, 64, 46), (32, 0, 97, 46), (0, 14, 64, 61), (32, 14, 97, 61)]
    assert tiles[0].render.width == 64
    assert tiles[0].render.area == 64 * 46
    big = plan_tiles(97, 61, 2, overlap=500)
    assert all(t.render == Region(0, 0, 97, 61) for t in big)


@pytest.mark.parametrize(
    ("width", "height", "count", "overlap"),
    [(10, 10, 0, 0), (10, 10, 5000, 0), (3, 1, 5, 0), (0, 10, 2, 0), (10, 10, 2, -1), (2, 2, 7, 0)],
)
def test_impossible_plans_are_refused(width: int, height: int, count: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        plan_tiles(width, height, count, overlap)


# --- decoding PNG tiles -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "dtype"),
    # 16-bit grey+alpha is not a kind Blender writes, nor one we read
    [(1, np.uint8), (2, np.uint8), (3, np.uint8), (4, np.uint8), (1, np.uint16), (3, np.uint16), (4, np.uint16)],
)
@pytest.mark.parametrize("kinds", [[0], [1], [2], [3], [4], [0, 1, 2, 3, 4]])
def test_png_rows_decode_exactly_whatever_the_filter(channels: int, dtype: Any, kinds: list[int]) -> None:
    """Every PNG filter type, 8 and 16 bits: the 16-bit colour decode (two Pillow passes) must be exact."""
    pixels = image(channels, dtype, seed=channels + len(kinds), height=9, width=11)
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    depth = 16 if dtype == np.uint16 else 8
    decoded = _decode_png(filtered_png_rows(pixels, kinds), (colour, depth), 11, 9)
    assert decoded.dtype == dtype
    assert np.array_equal(decoded, pixels)
    # Only the rows asked for: a tile is decoded down to its core's last row.
    assert np.array_equal(_decode_png(filtered_png_rows(pixels, kinds), (colour, depth), 11, 4), pixels[:4])


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_our_16_bit_png_encoder_round_trips(tmp_path: Path, channels: int) -> None:
    pixels = image(channels, np.uint16, height=150, width=7)  # more than one band of rows
    path = save_png(pixels, tmp_path / "x.png")
    assert np.array_equal(read_png(path), pixels)
    if channels in (1, 3, 4):
        high = np.asarray(Image.open(path))  # Pillow reads 16-bit colour as its high bytes
        expected = pixels[..., 0] if channels == 1 else (pixels >> 8).astype(np.uint8)
        assert np.array_equal(high, expected)


# --- stitching ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [2, 3, 5, 7, 16])
@pytest.mark.parametrize("overlap", [0, 4])
@pytest.mark.parametrize(("channels", "dtype"), [(4, np.uint8), (3, np.uint8), (1, np.uint8), (4, np.uint16)])
def test_stitched_png_is_the_image_the_tiles_came_from(
    tmp_path: Path, count: int, overlap: int, channels: int, dtype: Any
) -> None:
    full = image(channels, dtype, seed=count)
    tiles = plan_tiles(W, H, count, overlap)
    # Overlapping render regions hold *other* values than the full image (a denoiser's), which must not leak.
    files = {}
    for tile in tiles:
        pixels = tile_pixels(full, tile)
        ring = np.ones((H, W), dtype=bool)
        ring[tile.core.slices] = False
        pixels[ring & (pixels[..., 0] > 0)] //= 2
        files[tile.index] = save_png(pixels, tmp_path / f"t{tile.index}.png")
    out = stitch_tiles(tiles, files, W, H, tmp_path / "out.png", "PNG")
    assert out == tmp_path / "out.png"
    assert np.array_equal(read_png(out), full)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def decode(path: Path) -> Pixels:
    """Pillow's decode, except for 32-bit BMP: Pillow writes its alpha but reads it as RGB."""
    data = path.read_bytes()
    if data[:2] == b"BM" and struct.unpack_from("<H", data, 28)[0] == 32:
        (offset,) = struct.unpack_from("<I", data, 10)
        width, height = struct.unpack_from("<ii", data, 18)
        bgra = np.frombuffer(data, dtype=np.uint8, count=width * height * 4, offset=offset)
        return bgra.reshape(height, width, 4)[::-1][..., [2, 1, 0, 3]]  # bottom-up rows
    return np.asarray(Image.open(path))


@pytest.mark.parametrize("output_type", ["PNG", "TIFF", "BMP", "TARGA", "TARGA_RAW", "IRIS", "JPEG2000", "FFMPEG"])
@pytest.mark.parametrize("channels", [3, 4])
def test_lossless_formats_hold_the_exact_pixels(tmp_path: Path, output_type: str, channels: int) -> None:
    full = image(channels)
    tiles = plan_tiles(W, H, 4)
    extension = stitched_extension(output_type)
    out = stitch_tiles(tiles, make_tiles(full, tiles, tmp_path / "t"), W, H, tmp_path / f"o{extension}", output_type)
    assert np.array_equal(decode(out), full)


@pytest.mark.parametrize(
    ("output_type", "pillow"), [("TARGA", "tga_rle"), ("TARGA_RAW", "raw"), ("TIFF", "tiff_adobe_deflate")]
)
def test_formats_are_written_with_blenders_compression(tmp_path: Path, output_type: str, pillow: str) -> None:
    full = image(3)
    tiles = plan_tiles(W, H, 2)
    out = stitch_tiles(tiles, make_tiles(full, tiles, tmp_path / "t"), W, H, tmp_path / "o", output_type)
    with Image.open(out) as written:
        assert written.info.get("compression", "raw") == pillow


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_compression_is_blenders_percent(tmp_path: Path, dtype: Any) -> None:
    y, x = np.mgrid[0:H, 0:W]
    full = np.stack([x * 4, y * 6, (x * y) % 256], axis=2).astype(dtype)
    tiles = plan_tiles(W, H, 2)
    files = make_tiles(full, tiles, tmp_path / "t")
    stored = stitch_tiles(tiles, files, W, H, tmp_path / "none.png", "PNG", compression=0)
    packed = stitch_tiles(tiles, files, W, H, tmp_path / "most.png", "PNG", compression=100)
    assert packed.stat().st_size < stored.stat().st_size
    assert np.array_equal(read_png(stored), read_png(packed))


def test_jpeg_uses_the_quality_and_drops_alpha(tmp_path: Path) -> None:
    # A smooth image, as renders are: random noise would not show what the quality does.
    y, x = np.mgrid[0:H, 0:W]
    full = np.stack([x * 4, y * 6, (x + y) * 2, np.full_like(x, 255)], axis=2).astype(np.uint8)
    tiles = plan_tiles(W, H, 3)
    files = make_tiles(full, tiles, tmp_path / "t")
    sizes = {}
    for quality in (30, 95):
        out = stitch_tiles(tiles, files, W, H, tmp_path / f"q{quality}.jpg", "JPEG", quality=quality)
        decoded = np.asarray(Image.open(out))
        assert decoded.shape == (H, W, 3)
        assert np.abs(decoded.astype(int) - full[..., :3]).mean() < (8 if quality == 30 else 2)
        sizes[quality] = out.stat().st_size
    assert sizes[30] < sizes[95]


def test_webp_at_quality_100_is_lossless_as_in_blender(tmp_path: Path) -> None:
    full = image(4)
    tiles = plan_tiles(W, H, 2)
    files = make_tiles(full, tiles, tmp_path / "t")
    out = stitch_tiles(tiles, files, W, H, tmp_path / "o.webp", "WEBP", quality=100)
    assert np.array_equal(decode(out), full)
    lossy = stitch_tiles(tiles, files, W, H, tmp_path / "l.webp", "WEBP", quality=50)
    assert np.asarray(Image.open(lossy)).shape == (H, W, 4)


def test_avif_is_written(tmp_path: Path) -> None:
    if not can_stitch("AVIF"):
        pytest.skip("this Pillow has no AVIF encoder")
    tiles = plan_tiles(W, H, 2)
    out = stitch_tiles(tiles, make_tiles(image(3), tiles, tmp_path / "t"), W, H, tmp_path / "o.avif", "AVIF")
    assert Image.open(out).size == (W, H)


def read_tiff16(path: Path) -> Pixels:
    """Our 16-bit TIFFs, read by the book: the IFD's tags, then the deflated strips."""
    data = path.read_bytes()
    assert data[:4] == b"II*\0"
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    tags: dict[int, list[int]] = {}
    for i in range(count):
        tag, kind, n, value = struct.unpack_from("<HHII", data, ifd + 2 + 12 * i)
        size = {3: 2, 4: 4}[kind] * n
        raw = struct.pack("<I", value)[:size] if size <= 4 else data[value : value + size]
        tags[tag] = list(struct.unpack(f"<{n}{'H' if kind == 3 else 'I'}", raw))
    assert tags[259] == [8]
    strips = b"".join(zlib.decompress(data[o : o + n]) for o, n in zip(tags[273], tags[279], strict=True))
    channels = tags[277][0]
    assert tags[258] == [16] * channels
    return np.frombuffer(strips, dtype="<u2").reshape(tags[257][0], tags[256][0], channels)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16_bit_tiff_keeps_16_bits(tmp_path: Path, channels: int) -> None:
    full = image(channels, np.uint16, height=150)
    tiles = plan_tiles(W, 150, 3)
    files = make_tiles(full, tiles, tmp_path / "t")
    out = stitch_tiles(tiles, files, W, 150, tmp_path / "o.tif", "TIFF")
    assert np.array_equal(read_tiff16(out), full)
    with Image.open(out) as pillow:  # a TIFF others can read (Pillow: 8 bits of 16-bit colour)
        assert pillow.size == (W, 150)
        pillow.load()


def test_colour_depth_can_be_asked_for(tmp_path: Path) -> None:
    full = image(3)
    tiles = plan_tiles(W, H, 2)
    files = make_tiles(full, tiles, tmp_path / "t")
    wide = stitch_tiles(tiles, files, W, H, tmp_path / "wide.png", "PNG", color_depth="16")
    assert np.array_equal(read_png(wide), full.astype(np.uint16) * 257)
    deep = image(3, np.uint16)
    files16 = make_tiles(deep, tiles, tmp_path / "t16")
    narrow = stitch_tiles(tiles, files16, W, H, tmp_path / "narrow.png", "PNG", color_depth="8")
    expected = ((deep.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    assert np.array_equal(np.asarray(Image.open(narrow)), expected)
    jpeg_from_16 = stitch_tiles(tiles, files16, W, H, tmp_path / "j.bmp", "BMP")
    assert np.array_equal(np.asarray(Image.open(jpeg_from_16)), expected)  # 8-bit formats get 8 bits
    with pytest.raises(StitchError, match="8 or 16 bits"):
        stitch_tiles(tiles, files, W, H, tmp_path / "x.png", "PNG", color_depth="12")


# --- EXR ----------------------------------------------------------------------------------------------------


def save_exr(channels: dict[str, Pixels], path: Path, parts: int = 1) -> Path:
    def header() -> dict[str, Any]:
        return {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, "Camera": "Camera"}

    if parts == 1:
        OpenEXR.File(header(), {n: OpenEXR.Channel(p) for n, p in channels.items()}).write(str(path))
    else:
        made = [
            OpenEXR.Part(
                {**header(), "name": f"view{i}"}, {n: OpenEXR.Channel(p) for n, p in channels.items()}, f"view{i}"
            )
            for i in range(parts)
        ]
        OpenEXR.File(made).write(str(path))
    return path


def exr_channels(seed: int, dtype: Any, names: list[str]) -> dict[str, Pixels]:
    rng = np.random.default_rng(seed)
    return {n: (rng.standard_normal((H, W)) * 4).astype(dtype) for n in names}


def read_exr(path: Path) -> list[dict[str, Pixels]]:
    image = OpenEXR.File(str(path), separate_channels=True)
    return [{n: c.pixels.copy() for n, c in part.channels.items()} for part in image.parts]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize(
    ("output_type", "names"),
    [
        ("OPEN_EXR", ["R", "G", "B", "A"]),
        ("OPEN_EXR_MULTILAYER", ["ViewLayer.Combined.R", "ViewLayer.Combined.A", "ViewLayer.Depth.Z"]),
    ],
)
@pytest.mark.parametrize("parts", [1, 2])
def test_stitched_exr_is_float_for_float(
    tmp_path: Path, dtype: Any, output_type: str, names: list[str], parts: int
) -> None:
    full = exr_channels(3, dtype, names)
    tiles = plan_tiles(W, H, 5, overlap=3)
    files = {}
    for tile in tiles:
        channels = {n: np.zeros_like(p) for n, p in full.items()}
        for n, p in channels.items():
            p[tile.render.slices] = full[n][tile.render.slices] + 0.5  # overlap differs: must not leak
            p[tile.core.slices] = full[n][tile.core.slices]
        files[tile.index] = save_exr(channels, tmp_path / f"t{tile.index}.exr", parts)
    out = stitch_tiles(tiles, files, W, H, tmp_path / "o.exr", output_type)
    stitched = read_exr(out)
    assert len(stitched) == parts
    for part in stitched:
        assert sorted(part) == sorted(full)
        for name, pixels in full.items():
            assert part[name].dtype == dtype
            assert np.array_equal(part[name], pixels), name
    header = OpenEXR.File(str(out), header_only=True).parts[0].header
    assert header["compression"] == OpenEXR.ZIP_COMPRESSION
    assert header["Camera"] == "Camera"
    half = read_exr(stitch_tiles(tiles, files, W, H, tmp_path / "h.exr", output_type, color_depth="16"))
    assert all(p.dtype == np.float16 for part in half for p in part.values())


# --- errors -------------------------------------------------------------------------------------------------


@pytest.fixture
def good(tmp_path: Path) -> tuple[list[Tile], dict[int, Path]]:
    tiles = plan_tiles(W, H, 3)
    return tiles, make_tiles(image(4), tiles, tmp_path / "t")


def assert_nothing_written(folder: Path) -> None:
    assert not list(folder.glob("out*")), "a failed stitch left its output"
    assert not list(folder.glob(".out*")), "a failed stitch left its partial file"


def test_stitch_errors_are_merge_errors() -> None:
    assert issubclass(StitchError, MergeError)


def test_a_missing_tile_is_named(tmp_path: Path, good: tuple[list[Tile], dict[int, Path]]) -> None:
    tiles, files = good
    del files[1]
    with pytest.raises(StitchError, match=r"no file for tiles \[1\]") as caught:
        stitch_tiles(tiles, files, W, H, tmp_path / "out.png", "PNG")
    assert caught.value.tile == 1
    assert_nothing_written(tmp_path)


def test_a_tile_file_gone_from_disk(tmp_path: Path, good: tuple[list[Tile], dict[int, Path]]) -> None:
    tiles, files = good
    files[2].unlink()
    with pytest.raises(StitchError, match="tile 2: cannot read") as caught:
        stitch_tiles(tiles, files, W, H, tmp_path / "out.png", "PNG")
    assert caught.value.path == files[2]
    assert_nothing_written(tmp_path)


Damage = Callable[[Path], None]


def _corrupt_idat(path: Path) -> None:
    """Valid chunks and CRCs around image data that does not inflate."""
    raw = zlib.compress(b"\0" * 10)  # far too few rows
    header = struct.pack(">IIBBBBB", W, H, 8, 6, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-30]), "does not decode"),
        (lambda p: p.write_bytes(p.read_bytes()[:60]), "does not decode"),
        (lambda p: p.write_bytes(b"not an image at all"), "does not decode: not a PNG"),
        (lambda p: p.write_bytes(b""), "does not decode"),
        (lambda p: Image.new("RGBA", (W - 1, H)).save(p, format="PNG"), rf"is {W - 1}x{H}, not the {W}x{H}"),
        (_corrupt_idat, "does not decode: not enough image data"),
    ],
)
def test_a_tile_that_does_not_decode_or_has_the_wrong_size(
    tmp_path: Path, good: tuple[list[Tile], dict[int, Path]], damage: Damage, message: str
) -> None:
    tiles, files = good
    damage(files[1])
    with pytest.raises(StitchError, match=message) as caught:
        stitch_tiles(tiles, files, W, H, tmp_path / "out.png", "PNG")
    assert caught.value.tile == 1
    assert caught.value.output == tmp_path / "out.png"
    assert_nothing_written(tmp_path)


def test_tiles_of_different_kinds_do_not_mix(tmp_path: Path) -> None:
    tiles = plan_tiles(W, H, 2)
    files = {0: save_png(tile_pixels(image(4), tiles[0]), tmp_path / "a.png")}
    files[1] = save_png(tile_pixels(image(3), tiles[1]), tmp_path / "b.png")
    with pytest.raises(StitchError, match="tile 1 has 3 channels"):
        stitch_tiles(tiles, files, W, H, tmp_path / "out.png", "PNG")


def test_a_plan_for_another_size_is_refused(tmp_path: Path, good: tuple[list[Tile], dict[int, Path]]) -> None:
    tiles, files = good
    with pytest.raises(StitchError, match="do not cover"):
        stitch_tiles(tiles, files, W + 1, H, tmp_path / "out.png", "PNG")
    with pytest.raises(StitchError, match="not inside"):
        stitch_tiles(tiles, files, W - 1, H, tmp_path / "out.png", "PNG")
    with pytest.raises(StitchError, match="do not cover"):
        stitch_tiles(tiles[:2], files, W, H, tmp_path / "out.png", "PNG")
    twice = [*tiles, Tile(3, tiles[0].core, tiles[0].core)]
    with pytest.raises(StitchError, match="tile 3's core overlaps"):
        stitch_tiles(twice, {**files, 3: files[0]}, W, H, tmp_path / "out.png", "PNG")


def test_exr_tile_errors(tmp_path: Path) -> None:
    tiles = plan_tiles(W, H, 2)
    full = exr_channels(1, np.float32, ["R", "G", "B"])
    files = {t.index: save_exr(full, tmp_path / f"t{t.index}.exr") for t in tiles}
    files[1].write_bytes(files[1].read_bytes()[:200])
    with pytest.raises(StitchError, match=r"tile 1: .* does not decode"):
        stitch_tiles(tiles, files, W, H, tmp_path / "out.exr", "OPEN_EXR")
    save_png(image(3), files[1])
    with pytest.raises(StitchError, match="not an OpenEXR file"):
        stitch_tiles(tiles, files, W, H, tmp_path / "out.exr", "OPEN_EXR")
    save_exr({"R": full["R"]}, files[1])
    with pytest.raises(StitchError, match="other EXR channels"):
        stitch_tiles(tiles, files, W, H, tmp_path / "out.exr", "OPEN_EXR")
    save_exr({n: p[:, :-1].copy() for n, p in full.items()}, files[1])
    with pytest.raises(StitchError, match="data window"):
        stitch_tiles(tiles, files, W, H, tmp_path / "out.exr", "OPEN_EXR")
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("output_type", ["HDR", "DPX", "CINEON", "UNKNOWN", "PSD"])
def test_formats_we_cannot_write_are_said_up_front(tmp_path: Path, output_type: str) -> None:
    assert not can_stitch(output_type)
    tiles = plan_tiles(W, H, 2)
    with pytest.raises(StitchError, match=f"cannot write {output_type}"):
        stitch_tiles(tiles, {}, W, H, tmp_path / "out", output_type)
    with pytest.raises(StitchError):
        stitched_extension(output_type)


@pytest.mark.parametrize(
    ("output_type", "extension"),
    [("PNG", ".png"), ("FFMPEG", ".png"), ("AVI_RAW", ".png"), ("JPEG", ".jpg"), ("OPEN_EXR", ".exr"),
     ("OPEN_EXR_MULTILAYER", ".exr"), ("TIFF", ".tif"), ("TARGA", ".tga"), ("IRIS", ".rgb")],
)  # fmt: skip
def test_stitched_extensions_are_blenders(output_type: str, extension: str) -> None:
    assert can_stitch(output_type)
    assert stitched_extension(output_type) == extension
