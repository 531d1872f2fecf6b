"""The merge with the real ffmpeg: every (container, codec) pair Blender offers, on tiny frames.

Frames are 64x48 test patterns made once per session by ffmpeg's ``testsrc``, numbered with gaps
(1, 3, 5, ...) the way a farm's frames arrive; each encode takes a fraction of a second.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import types
import zipfile
from fractions import Fraction
from pathlib import Path

import pytest

from farmgui.core import merge
from farmgui.core.merge import (
    CODECS,
    CONTAINERS,
    FFmpegCapabilities,
    MergeCancelledError,
    MergeError,
    PreviewUnavailableError,
    blender_pairs,
    ffmpeg_capabilities,
    frame_rate,
    merge_video,
    missing_support,
    preview_mp4,
    probe_video,
    resolve_format,
    zip_frames,
)
from tests.conftest import require

FRAMES = 12
PAIRS = blender_pairs()
# The pairs a farm meets most: on CI each must be written and checked, never skipped.
MUST_TEST = {
    ("MKV", "H264"),
    ("MPEG4", "H264"),
    ("MKV", "FFV1"),
    ("QUICKTIME", "PNG"),
    ("WEBM", "WEBM"),
    ("OGG", "THEORA"),
    ("AVI", "MPEG4"),
}


def _make_frames(ffmpeg_exe: Path, folder: Path, count: int, *, size: str = "64x48", pix_fmt: str = "rgb24",
                 suffix: str = ".png", source: str = "testsrc") -> list[Path]:  # fmt: skip
    """``count`` frames numbered 1, 3, 5, ... (gaps, as chunks from several agents leave them)."""
    folder.mkdir(parents=True, exist_ok=True)
    lavfi = f"{source}=size={size}:rate=25" if source == "testsrc" else source
    subprocess.run(
        [str(ffmpeg_exe), "-v", "error", "-y", "-f", "lavfi", "-i", lavfi, "-frames:v", str(count),
         "-pix_fmt", pix_fmt, str(folder / f"made_%03d{suffix}")],
        check=True, timeout=60,
    )  # fmt: skip
    frames = []
    for index, made in enumerate(sorted(folder.glob(f"made_*{suffix}"))):
        frames.append(made.rename(folder / f"frame_{2 * index + 1:04d}{suffix}"))
    assert len(frames) == count
    return frames


@pytest.fixture(scope="session")
def caps(ffmpeg_exe: Path) -> FFmpegCapabilities:
    return ffmpeg_capabilities(ffmpeg_exe)


@pytest.fixture(scope="session")
def frames(ffmpeg_exe: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _make_frames(ffmpeg_exe, tmp_path_factory.mktemp("frames"), FRAMES)


@pytest.fixture(scope="session")
def exr_frames(ffmpeg_exe: Path, caps: FFmpegCapabilities, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Linear mid-grey (0.18) EXR frames: the tone mapping must not show them at 46 of 255."""
    if "exr" not in caps.encoders:
        pytest.skip("this ffmpeg cannot write EXR test frames")
    grey = "color=c=black:s=32x24:r=25,format=gbrpf32le,geq=r=0.18:g=0.18:b=0.18"
    return _make_frames(ffmpeg_exe, tmp_path_factory.mktemp("exr"), 3, pix_fmt="gbrpf32le", suffix=".exr", source=grey)


def _leftovers(folder: Path) -> list[str]:
    """Scratch files a merge must never leave: partial outputs and frame-link folders."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _child_processes() -> list[str]:
    """Live (not zombie) children of this process, from /proc (Linux only)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rpartition(")")[2].split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            children.append(text.partition(" ")[2].partition(")")[0] + ")")
    return children


# --- the mapping, without running anything ----------------------------------------------------------------


def test_blender_pairs_cover_every_container_and_codec() -> None:
    assert {c for c, _ in PAIRS} == set(CONTAINERS)
    assert {k for _, k in PAIRS} == set(CODECS)
    assert ("MKV", "NONE") not in PAIRS
    assert ("DV", "DV") in PAIRS
    assert ("DV", "H264") not in PAIRS  # DV has no codec menu in Blender


@pytest.mark.parametrize(
    ("container", "codec", "written", "note"),
    [
        ("MKV", "H264", "H264", None),
        ("MKV", "NONE", "H264", "codec NONE"),
        ("WEBM", "H264", "WEBM", "cannot hold"),
        ("MPEG4", "PRORES", "H264", "cannot hold"),
        ("QUICKTIME", "WEBM", "H264", "cannot hold"),
        ("OGG", "H264", "THEORA", "always holds"),
        ("OGG", "NONE", "THEORA", None),
        ("DV", "H264", "DV", "always holds"),
        ("XVID", "NONE", "MPEG4", None),
        ("AV1", "AV1", "AV1", None),
    ],
)
def test_resolve_format_falls_back_as_blender_does(container: str, codec: str, written: str, note: str | None) -> None:
    choice = resolve_format(container, codec)
    assert choice.codec.name == written
    if note is None:
        assert choice.notes == ()
    else:
        assert note in choice.notes[0]


@pytest.mark.parametrize(("container", "codec"), [("UNKNOWN_7", "H264"), ("MKV", "UNKNOWN_5"), ("mkv", "H264")])
def test_resolve_format_rejects_names_blender_does_not_have(container: str, codec: str) -> None:
    with pytest.raises(MergeError, match="unknown video"):
        resolve_format(container, codec)


def test_container_muxers_and_extensions() -> None:
    expected = {"MPEG1": "mpeg", "MPEG2": "dvd", "MPEG4": "mp4", "AVI": "avi", "QUICKTIME": "mov", "DV": "dv",
                "OGG": "ogg", "MKV": "matroska", "FLASH": "flv", "WEBM": "webm"}  # fmt: skip
    assert {name: CONTAINERS[name].muxer for name in expected} == expected
    assert CONTAINERS["MKV"].extension == ".mkv"
    assert CONTAINERS["OGG"].extension == ".ogv"


@pytest.mark.parametrize(
    ("fps", "base", "rate"),
    [(24, 1, Fraction(24)), (30, 1.001, Fraction(30000, 1001)), (60, 1.001, Fraction(60000, 1001)),
     (Fraction(24000, 1001), 1, Fraction(24000, 1001)), (12.5, 1, Fraction(25, 2)), (25, 2, Fraction(25, 2))],
)  # fmt: skip
def test_frame_rate_is_exact(fps: float, base: float, rate: Fraction) -> None:
    assert frame_rate(fps, base) == rate


@pytest.mark.parametrize(
    ("version", "has_it"), [("5.1.9-0+deb12u1", True), ("4.3.6-0+deb11u1", False), ("n4.4", True), ("N-1130-gab", True)]
)
def test_stats_period_only_where_ffmpeg_knows_it(version: str, has_it: bool) -> None:
    assert bool(merge._stats_period(version)) is has_it


def test_frame_rate_rejects_zero() -> None:
    with pytest.raises(MergeError):
        frame_rate(0)


# --- ffmpeg's capabilities and finding it -----------------------------------------------------------------


def test_capabilities_are_asked_once(ffmpeg_exe: Path, caps: FFmpegCapabilities) -> None:
    assert ffmpeg_capabilities(ffmpeg_exe) is caps
    assert {"png", "rawvideo"} <= caps.encoders
    assert {"matroska", "mp4", "null"} <= caps.muxers
    assert "png" in caps.decoders
    assert {"scale", "pad"} <= caps.filters
    assert caps.version


def test_find_ffmpeg_falls_back_to_imageio_ffmpeg(monkeypatch: pytest.MonkeyPatch, ffmpeg_exe: Path) -> None:
    fake = types.ModuleType("imageio_ffmpeg")
    fake.get_ffmpeg_exe = lambda: str(ffmpeg_exe)  # type: ignore[attr-defined]
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", fake)
    assert merge.find_ffmpeg() == ffmpeg_exe


def test_find_ffmpeg_says_when_there_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails
    with pytest.raises(MergeError, match="not installed"):
        merge.find_ffmpeg()


def test_the_pairs_that_matter_are_tested_here(caps: FFmpegCapabilities) -> None:
    """A pair skipped for a missing encoder must not vanish silently on CI."""
    testable = {(c, k) for c, k in PAIRS if not resolve_format(c, k).fell_back and missing_support(c, k, caps) is None}
    require(f"an ffmpeg that writes {sorted(MUST_TEST - testable)}", testable >= MUST_TEST)
    assert testable >= MUST_TEST


# --- every pair -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("container", "codec"), PAIRS, ids=[f"{c}-{k}" for c, k in PAIRS])
def test_every_pair_blender_offers(
    container: str, codec: str, frames: list[Path], caps: FFmpegCapabilities, ffmpeg_exe: Path, tmp_path: Path
) -> None:
    choice = resolve_format(container, codec)
    if choice.fell_back:
        pytest.skip(f"{choice.notes[0]}; that pair is tested as {container}-{choice.codec.name}")
    reason = missing_support(container, codec, caps)
    if reason is not None:
        pytest.skip(reason)
    output = tmp_path / f"video{choice.container.extension}"
    result = merge_video(frames, output, 25, container, codec, ffmpeg_exe=ffmpeg_exe)
    assert result.output == output
    info = probe_video(output, ffmpeg_exe=ffmpeg_exe)
    assert info.frame_count == FRAMES
    assert info.codec_name == CODECS[codec].ffprobe_name
    assert result.frame_count == FRAMES
    assert _leftovers(tmp_path) == []


# --- frame rates, sizes, alpha ----------------------------------------------------------------------------


@pytest.mark.parametrize(("fps", "base", "expected"), [(24, 1, "24/1"), (25, 1, "25/1"), (30, 1.001, "30000/1001")])
@pytest.mark.parametrize("container", ["MKV", "MPEG4"])
def test_frame_rates_survive(
    fps: int, base: float, expected: str, container: str, frames: list[Path], ffmpeg_exe: Path, tmp_path: Path
) -> None:
    result = merge_video(frames, tmp_path / "v", fps, container, "H264", fps_base=base, ffmpeg_exe=ffmpeg_exe)
    assert result.frame_rate == Fraction(expected)
    info = probe_video(result.output, ffmpeg_exe=ffmpeg_exe)
    assert info.frame_rate == Fraction(expected)
    assert info.frame_count == FRAMES


def test_dv_at_24_fps_is_ntsc(frames: list[Path], ffmpeg_exe: Path, tmp_path: Path) -> None:
    result = merge_video(frames, tmp_path / "v.dv", 24, "DV", "DV", ffmpeg_exe=ffmpeg_exe)
    info = probe_video(result.output, ffmpeg_exe=ffmpeg_exe)
    assert (info.width, info.height, info.frame_count) == (720, 480, FRAMES)
    assert info.frame_rate == Fraction(30000, 1001)
    assert any("29.970" in note for note in result.notes)


def test_mpeg1_refuses_rates_it_cannot_carry(frames: list[Path], ffmpeg_exe: Path, tmp_path: Path) -> None:
    with pytest.raises(MergeError, match=r"17\.000 fps"):
        merge_video(frames, tmp_path / "v.mpg", 17, "MPEG1", "MPEG1", ffmpeg_exe=ffmpeg_exe)
    with pytest.raises(MergeError, match="MPEG-2 cannot play"):
        merge_video(frames, tmp_path / "v.mpg", 17, "MPEG2", "MPEG2", ffmpeg_exe=ffmpeg_exe)
    result = merge_video(frames, tmp_path / "v.mpg", 12, "MPEG1", "MPEG1", ffmpeg_exe=ffmpeg_exe)
    assert probe_video(result.output, ffmpeg_exe=ffmpeg_exe).frame_rate == 12
    assert any("unofficial" in note for note in result.notes)


def test_odd_sizes_are_padded_for_yuv420(ffmpeg_exe: Path, tmp_path: Path) -> None:
    odd = _make_frames(ffmpeg_exe, tmp_path / "odd", 3, size="65x49")
    result = merge_video(odd, tmp_path / "v.mkv", 25, "MKV", "H264", ffmpeg_exe=ffmpeg_exe)
    assert (result.width, result.height) == (66, 50)
    assert any("padded" in note for note in result.notes)


def test_paths_with_percent_signs(frames: list[Path], ffmpeg_exe: Path, tmp_path: Path) -> None:
    """image2 patterns treat "%" specially: a folder named "100% final" must still work."""
    folder = tmp_path / "100% final"
    result = merge_video(frames[:3], folder / "v%d.mkv", 25, "MKV", "FFV1", ffmpeg_exe=ffmpeg_exe)
    assert result.output == folder / "v%d.mkv"
    assert probe_video(result.output, ffmpeg_exe=ffmpeg_exe).frame_count == 3


@pytest.mark.parametrize(("container", "codec", "pix_fmt"), [("QUICKTIME", "PNG", "rgba"), ("MKV", "FFV1", "bgra")])
def test_alpha_is_kept_where_the_codec_can(
    container: str, codec: str, pix_fmt: str, ffmpeg_exe: Path, tmp_path: Path
) -> None:
    rgba = _make_frames(ffmpeg_exe, tmp_path / "rgba", 3, pix_fmt="rgba")
    result = merge_video(rgba, tmp_path / "v", 25, container, codec, ffmpeg_exe=ffmpeg_exe)
    assert probe_video(result.output, ffmpeg_exe=ffmpeg_exe).pix_fmt == pix_fmt


def test_fallback_pair_writes_the_default_and_says_so(frames: list[Path], ffmpeg_exe: Path, tmp_path: Path) -> None:
    result = merge_video(frames, tmp_path / "v.webm", 25, "WEBM", "H264", ffmpeg_exe=ffmpeg_exe)
    assert result.codec == "WEBM"
    assert probe_video(result.output, ffmpeg_exe=ffmpeg_exe).codec_name == "vp9"
    assert "cannot hold H.264" in result.notes[0]


# --- progress, cancel, errors -----------------------------------------------------------------------------


def test_progress_goes_from_0_to_1(frames: list[Path], ffmpeg_exe: Path, tmp_path: Path) -> None:
    seen: list[float] = []
    merge_video(frames, tmp_path / "v.mkv", 25, "MKV", "H264", progress=seen.append, ffmpeg_exe=ffmpeg_exe)
    assert seen[0] == 0.0
    assert seen[-1] == 1.0
    assert seen == sorted(seen)
    assert all(0.0 <= v <= 1.0 for v in seen)


@pytest.fixture
def stuck_frames(frames: list[Path], tmp_path: Path) -> list[Path]:
    """Three frames, then a FIFO nobody writes to: ffmpeg blocks on it until it is killed."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("needs a FIFO (POSIX)")
    fifo = tmp_path / "fifo" / "frame_9999.png"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    return [*frames[:3], fifo]


def test_cancel_kills_ffmpeg_and_leaves_nothing(stuck_frames: list[Path], ffmpeg_exe: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(MergeCancelledError):
            merge_video(stuck_frames, out_dir / "v.mkv", 25, "MKV", "H264", cancel=cancel, ffmpeg_exe=ffmpeg_exe)
    finally:
        timer.cancel()
        timer.join()
    assert time.monotonic() - started < 3.0
    assert list(out_dir.iterdir()) == []
    if Path("/proc/self/stat").exists():
        assert _child_processes() == []


def test_timeout_kills_ffmpeg(stuck_frames: list[Path], ffmpeg_exe: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(MergeError, match="too long") as caught:
        merge_video(stuck_frames, tmp_path / "v.mkv", 25, "MKV", "H264", timeout_s=1.0, ffmpeg_exe=ffmpeg_exe)
    assert not isinstance(caught.value, MergeCancelledError)
    assert time.monotonic() - started < 4.0
    assert not (tmp_path / "v.mkv").exists()
    assert _leftovers(tmp_path) == []
    if Path("/proc/self/stat").exists():
        assert _child_processes() == []


def test_a_corrupt_frame_fails_with_ffmpegs_words(frames: list[Path], ffmpeg_exe: Path, tmp_path: Path) -> None:
    broken = [tmp_path / f.name for f in frames]
    for src, dst in zip(frames, broken, strict=True):
        dst.write_bytes(src.read_bytes())
    broken[5].write_bytes(b"this is not a PNG file")
    with pytest.raises(MergeError) as caught:
        merge_video(broken, tmp_path / "v.mkv", 25, "MKV", "H264", ffmpeg_exe=ffmpeg_exe)
    assert caught.value.stderr_tail, "ffmpeg's last lines should travel with the error"
    assert "png" in str(caught.value).lower()
    assert not (tmp_path / "v.mkv").exists()
    assert _leftovers(tmp_path) == []


def test_missing_and_mixed_frames_are_refused(frames: list[Path], ffmpeg_exe: Path, tmp_path: Path) -> None:
    with pytest.raises(MergeError, match="missing"):
        merge_video([*frames, tmp_path / "gone.png"], tmp_path / "v.mkv", 25, "MKV", "H264", ffmpeg_exe=ffmpeg_exe)
    other = tmp_path / "frame.jpg"
    other.write_bytes(b"")
    with pytest.raises(MergeError, match="mix"):
        merge_video([*frames, other], tmp_path / "v.mkv", 25, "MKV", "H264", ffmpeg_exe=ffmpeg_exe)
    with pytest.raises(MergeError, match="no frames"):
        merge_video([], tmp_path / "v.mkv", 25, "MKV", "H264", ffmpeg_exe=ffmpeg_exe)


def test_probe_without_ffprobe_counts_with_ffmpeg(frames: list[Path], ffmpeg_exe: Path, tmp_path: Path) -> None:
    """imageio-ffmpeg brings no ffprobe: ffmpeg itself decodes and counts."""
    result = merge_video(frames, tmp_path / "v.mpg", 25, "MPEG2", "MPEG2", ffmpeg_exe=ffmpeg_exe)
    info = merge._probe_with_ffmpeg(result.output, ffmpeg_exe, count=True, timeout_s=30)
    assert (info.codec_name, info.frame_count, info.width, info.height) == ("mpeg2video", FRAMES, 64, 48)


# --- image outputs: zip and preview -----------------------------------------------------------------------


def test_zip_frames_stores_compressed_images(frames: list[Path], tmp_path: Path) -> None:
    raw = tmp_path / "raw" / "frame_0099.bmp"
    raw.parent.mkdir()
    raw.write_bytes(b"BM" + bytes(4000))
    seen: list[float] = []
    zip_path = zip_frames([*frames, raw], tmp_path / "frames.zip", progress=seen.append)
    with zipfile.ZipFile(zip_path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        assert list(infos) == [f.name for f in frames] + ["frame_0099.bmp"]
        assert {infos[f.name].compress_type for f in frames} == {zipfile.ZIP_STORED}
        assert infos["frame_0099.bmp"].compress_type == zipfile.ZIP_DEFLATED
        assert zf.read(frames[3].name) == frames[3].read_bytes()
        assert zf.testzip() is None
    assert seen[0] == 0.0
    assert seen[-1] == 1.0
    assert _leftovers(tmp_path) == []


def test_zip_frames_refuses_duplicate_names_and_cancels_cleanly(frames: list[Path], tmp_path: Path) -> None:
    with pytest.raises(MergeError, match="same file name"):
        zip_frames([frames[0], frames[0]], tmp_path / "a.zip")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(MergeCancelledError):
        zip_frames(frames, tmp_path / "b.zip", cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_preview_is_h264_with_even_sizes(ffmpeg_exe: Path, caps: FFmpegCapabilities, tmp_path: Path) -> None:
    if missing_support("MPEG4", "H264", caps):
        pytest.skip("no H.264 encoder here")
    odd = _make_frames(ffmpeg_exe, tmp_path / "odd", 5, size="65x49")
    result = preview_mp4(odd, tmp_path / "preview.mp4", 24, ffmpeg_exe=ffmpeg_exe)
    info = probe_video(result.output, ffmpeg_exe=ffmpeg_exe)
    assert (info.codec_name, info.pix_fmt, info.frame_count) == ("h264", "yuv420p", 5)
    assert (info.width, info.height) == (64, 48)


def test_preview_of_exr_is_tone_mapped(
    exr_frames: list[Path], ffmpeg_exe: Path, caps: FFmpegCapabilities, tmp_path: Path
) -> None:
    if "exr" not in caps.decoders:
        with pytest.raises(PreviewUnavailableError):
            preview_mp4(exr_frames, tmp_path / "p.mp4", 24, ffmpeg_exe=ffmpeg_exe)
        return
    result = preview_mp4(exr_frames, tmp_path / "p.mp4", 24, ffmpeg_exe=ffmpeg_exe)
    assert probe_video(result.output, ffmpeg_exe=ffmpeg_exe).frame_count == 3
    pixel = subprocess.run(
        [str(ffmpeg_exe), "-v", "error", "-i", str(result.output), "-frames:v", "1", "-vf", "format=rgb24",
         "-f", "rawvideo", "-"],
        check=True, capture_output=True, timeout=30,
    ).stdout  # fmt: skip
    # Linear 0.18 is 118 of 255 in Blender's Standard view; unmapped it would be 46.
    assert 100 <= pixel[len(pixel) // 2] <= 130


def test_preview_is_unavailable_for_frames_ffmpeg_cannot_read(ffmpeg_exe: Path, tmp_path: Path) -> None:
    frame = tmp_path / "frame_0001.xyz"
    frame.write_bytes(b"?")
    with pytest.raises(PreviewUnavailableError, match="cannot read"):
        preview_mp4([frame], tmp_path / "p.mp4", 24, ffmpeg_exe=ffmpeg_exe)
