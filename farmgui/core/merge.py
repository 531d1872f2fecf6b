"""Merge: rendered frames into the scene's video, or into a zip and a preview MP4 (Qt-free).

Blender names containers and codecs with its own Python identifiers (``scene.render.ffmpeg.format``
and ``.codec``); this module maps them to FFmpeg's muxers and encoders the way Blender's writer
(``imbuf/movie/intern/movie_write.cc``) does, including the codec it forces on some containers.
Where Blender would fail or write no video at all (codec NONE, a codec the container cannot hold),
the farm falls back to the container's default codec and says so in the result's ``notes``.

Every encode runs the local ``ffmpeg`` (the system one, else the one bundled with ``imageio-ffmpeg``)
as a subprocess built with ffmpeg-python. Frames are linked under sequential names into a scratch
folder next to the output, so any frame numbers, gaps included, become one image2 sequence. The
result is written under a hidden ``.partial`` name and renamed only after ffprobe has counted its
frames: a cancelled, failed or short encode never leaves a file under the output's name.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import ffmpeg

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float], None]
"""Called with the share done, from 0.0 to 1.0, on the thread that called the merge."""

_STDERR_TAIL_LINES = 20
_POLL_S = 0.1
# Short enough that a 20-frame merge still reports progress; -stats_period exists since FFmpeg 4.4.
_STATS_PERIOD_S = "0.1"
_PROBE_TIMEOUT_S = 30.0


# --- errors -----------------------------------------------------------------------------------------------


class MergeError(Exception):
    """A merge, zip or preview failed; ``stderr_tail`` holds ffmpeg's (or ffprobe's) last words."""

    def __init__(
        self,
        message: str,
        *,
        output: Path | None = None,
        stderr_tail: Sequence[str] = (),
        command: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.output = output
        self.stderr_tail = tuple(stderr_tail)
        self.command = tuple(command)

    def __str__(self) -> str:
        if not self.stderr_tail:
            return self.message
        # The last lines are where ffmpeg says what went wrong; the user sees them verbatim.
        return self.message + "\n" + "\n".join(self.stderr_tail[-5:])


class MergeCancelledError(MergeError):
    """The cancel event was set: ffmpeg was killed and nothing was left under the output's name."""


class PreviewUnavailableError(MergeError):
    """No preview can be made here (no decoder for the frames, no H.264 encoder, ffmpeg failed).

    The caller reports it and finishes the task without a preview: the frames are the result.
    """


# --- finding ffmpeg ---------------------------------------------------------------------------------------


def find_ffmpeg() -> Path:
    """The system ``ffmpeg``, else the one ``imageio-ffmpeg`` bundles (when that package is importable)."""
    found = shutil.which("ffmpeg")
    if found:
        return Path(found)
    try:
        # Imported by name: imageio-ffmpeg is an optional extra, not one of our dependencies.
        module = importlib.import_module("imageio_ffmpeg")
        return Path(str(module.get_ffmpeg_exe()))
    except (ImportError, RuntimeError, OSError) as exc:
        raise MergeError("ffmpeg is not installed (and imageio-ffmpeg has none to offer)") from exc


def find_ffprobe(ffmpeg_exe: Path | None = None) -> Path | None:
    """``ffprobe`` beside the given ffmpeg, else on PATH; ``None`` when there is none.

    imageio-ffmpeg ships no ffprobe: verification then falls back to ffmpeg itself.
    """
    if ffmpeg_exe is not None:
        sibling = ffmpeg_exe.with_name("ffprobe" + ffmpeg_exe.suffix)
        if sibling.is_file():
            return sibling
    found = shutil.which("ffprobe")
    return Path(found) if found else None


@dataclass(frozen=True, slots=True)
class FFmpegCapabilities:
    """What one ffmpeg executable can do, as it lists itself."""

    ffmpeg: Path
    version: str
    encoders: frozenset[str]
    muxers: frozenset[str]
    decoders: frozenset[str]
    filters: frozenset[str]


def _list_names(exe: Path, what: str) -> frozenset[str]:
    """Names from ``ffmpeg -encoders`` / ``-muxers`` / ``-decoders``: the word after the flags column."""
    out = _check_output([str(exe), "-hide_banner", f"-{what}"])
    _, sep, table = out.partition(" --")
    names: set[str] = set()
    for line in (table if sep else out).splitlines():
        parts = line.split()
        if len(parts) >= 2 and "=" not in parts:
            names.update(parts[1].split(","))  # muxer rows may list aliases: "mov,mp4,m4a"
    return frozenset(names)


_FILTER_ROW = re.compile(r"^\s*[T.][S.][C.]\s+(\S+)\s+\S+->\S+")


def _check_output(argv: list[str]) -> str:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", timeout=_PROBE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise MergeError(f"could not run {argv[0]}: {exc}", command=argv) from exc
    if done.returncode != 0:
        raise MergeError(
            f"{Path(argv[0]).name} exited with status {done.returncode}",
            stderr_tail=_tail(done.stderr),
            command=argv,
        )
    return done.stdout


@lru_cache(maxsize=8)
def _capabilities(exe: Path) -> FFmpegCapabilities:
    version_line = _check_output([str(exe), "-hide_banner", "-version"]).partition("\n")[0]
    filters_out = _check_output([str(exe), "-hide_banner", "-filters"])
    filters = frozenset(m.group(1) for m in map(_FILTER_ROW.match, filters_out.splitlines()) if m)
    caps = FFmpegCapabilities(
        ffmpeg=exe,
        version=version_line.removeprefix("ffmpeg version ").split(" ")[0],
        encoders=_list_names(exe, "encoders"),
        muxers=_list_names(exe, "muxers"),
        decoders=_list_names(exe, "decoders"),
        filters=filters,
    )
    log.info("ffmpeg %s at %s: %d encoders, %d muxers", caps.version, exe, len(caps.encoders), len(caps.muxers))
    return caps


def ffmpeg_capabilities(ffmpeg_exe: Path | None = None) -> FFmpegCapabilities:
    """The encoders, muxers, decoders and filters of ``ffmpeg_exe`` (default: :func:`find_ffmpeg`).

    Asked once per executable and cached: five short runs of ffmpeg.
    """
    return _capabilities(ffmpeg_exe or find_ffmpeg())


# --- Blender's names -> FFmpeg's ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EncoderSpec:
    """One FFmpeg encoder for a codec, with the options that make it a sensible final render."""

    name: str
    options: Mapping[str, str] = field(default_factory=dict)
    min_size: tuple[int, int] = (1, 1)
    """Smaller frames are padded (DNxHR refuses < 256x120, SVT-AV1 < 64x64)."""


@dataclass(frozen=True, slots=True)
class CodecSpec:
    """A video codec by Blender's name (``ffmpeg.codec``)."""

    name: str
    label: str
    ffprobe_name: str
    """``codec_name`` as ffprobe reports it for a stream of this codec."""
    encoders: tuple[EncoderSpec, ...]
    """In order of preference; the first the local ffmpeg has is used."""
    pix_fmt: str
    alpha_pix_fmt: str | None = None
    """Used when the frames carry alpha and the codec can keep it (as Blender does for RGBA output)."""
    alpha_options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """A container by Blender's name (``ffmpeg.format``)."""

    name: str
    label: str
    muxer: str
    extension: str
    codecs: frozenset[str]
    """Blender codec names the FFmpeg muxer takes and FFmpeg reads back (checked with FFmpeg 5.1)."""
    default_codec: str
    forced_codec: str | None = None
    """Blender writes this codec whatever ``ffmpeg.codec`` says (movie_write.cc, start_ffmpeg_impl)."""
    codec_menu: bool = False
    """Blender's Encoding panel shows the codec menu for this container."""
    legacy: bool = False
    """Only old files have it (the pre-2.8 H264 / XVID presets, the 3.x AV1 one)."""
    output_options: Mapping[str, str] = field(default_factory=dict)


def _enc(name: str, options: Mapping[str, str] | None = None, min_size: tuple[int, int] = (1, 1)) -> EncoderSpec:
    return EncoderSpec(name, dict(options or {}), min_size)


# Quality follows Blender's defaults: CRF "Medium" (23; H.265's remapped 28), "Good" speed.
# Lossless and intra codecs get FFmpeg's defaults, which are their best.
_CODEC_LIST = (
    CodecSpec("H264", "H.264", "h264", (_enc("libx264", {"crf": "23", "preset": "medium"}),
                                        _enc("libopenh264", {"b:v": "8M"})), "yuv420p"),
    CodecSpec("H265", "H.265 / HEVC", "hevc",
              (_enc("libx265", {"crf": "28", "preset": "medium", "x265-params": "log-level=error"}),), "yuv420p"),
    # b:v 0 turns libvpx's CRF into constant quality; cpu-used 4 keeps "good" from crawling.
    CodecSpec("WEBM", "WebM / VP9", "vp9",
              (_enc("libvpx-vp9", {"crf": "23", "b:v": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"}),),
              "yuv420p", "yuva420p"),
    # Blender's order for its "Good" preset: libaom-av1, else SVT-AV1, else rav1e.
    CodecSpec("AV1", "AV1", "av1", (_enc("libaom-av1", {"crf": "23", "cpu-used": "6", "row-mt": "1"}),
                                    _enc("libsvtav1", {"crf": "23", "preset": "5"}, (64, 64)),
                                    _enc("librav1e", {"qp": "115", "speed": "6"})), "yuv420p"),
    CodecSpec("THEORA", "Theora", "theora", (_enc("libtheora", {"q:v": "7"}),), "yuv420p"),
    CodecSpec("MPEG4", "MPEG-4 (divx)", "mpeg4", (_enc("mpeg4", {"q:v": "3"}),), "yuv420p"),
    # DNxHR HQ takes any resolution from 256x120 (classic DNxHD profiles need fixed sizes and rates).
    CodecSpec("DNXHD", "DNxHD", "dnxhd", (_enc("dnxhd", {"profile:v": "dnxhr_hq"}, (256, 120)),), "yuv422p"),
    # 422 HQ, or 4444 when the frames carry alpha.
    CodecSpec("PRORES", "ProRes", "prores",
              (_enc("prores_ks", {"profile:v": "3"}), _enc("prores_aw", {"profile:v": "3"})),
              "yuv422p10le", "yuva444p10le", {"profile:v": "4"}),
    CodecSpec("FFV1", "FFmpeg video codec #1", "ffv1", (_enc("ffv1", {"level": "3"}),), "bgr0", "bgra"),
    CodecSpec("HUFFYUV", "HuffYUV", "huffyuv", (_enc("huffyuv"),), "rgb24", "bgra"),
    CodecSpec("PNG", "PNG", "png", (_enc("png"),), "rgb24", "rgba"),
    CodecSpec("QTRLE", "QuickTime Animation", "qtrle", (_enc("qtrle"),), "rgb24", "argb"),
    CodecSpec("DV", "DV", "dvvideo", (_enc("dvvideo"),), "yuv420p"),
    CodecSpec("FLASH", "Flash Video", "flv1", (_enc("flv", {"q:v": "3"}),), "yuv420p"),
    CodecSpec("MPEG1", "MPEG-1", "mpeg1video", (_enc("mpeg1video", {"q:v": "3"}),), "yuv420p"),
    CodecSpec("MPEG2", "MPEG-2", "mpeg2video", (_enc("mpeg2video", {"q:v": "3"}),), "yuv420p"),
)  # fmt: skip
CODECS: Mapping[str, CodecSpec] = {c.name: c for c in _CODEC_LIST}

_ALL = frozenset(CODECS)
# Which codecs each muxer takes *and* FFmpeg reads back: AVI "takes" H.265 and QTRLE but writes a
# tag nothing decodes, Matroska takes QTRLE but ffprobe cannot read it, MPEG program streams take
# anything and give back "unknown". Measured with FFmpeg 5.1; tests/farmgui/test_merge.py re-checks.
_MP4 = frozenset({"H264", "H265", "AV1", "WEBM", "MPEG4", "MPEG1", "MPEG2", "PNG"})
_FAST_START = {"movflags": "+faststart"}  # index first, so a download starts playing at once
_XVID_TAG = {"tag:v": "XVID"}  # Blender's codec_tag for legacy Xvid, a little-endian fourcc

_CONTAINER_LIST = (
    ContainerSpec("MPEG4", "MPEG-4", "mp4", ".mp4", _MP4, "H264", codec_menu=True, output_options=_FAST_START),
    ContainerSpec("MKV", "Matroska", "matroska", ".mkv", _ALL - {"QTRLE"}, "H264", codec_menu=True),
    ContainerSpec("WEBM", "WebM", "webm", ".webm", frozenset({"WEBM", "AV1"}), "WEBM", codec_menu=True),
    ContainerSpec("AVI", "AVI", "avi", ".avi", _ALL - {"H265", "QTRLE"}, "H264", codec_menu=True),
    ContainerSpec("QUICKTIME", "QuickTime", "mov", ".mov", _ALL - {"AV1", "WEBM"}, "H264", codec_menu=True,
                  output_options=_FAST_START),
    # Blender shows the codec menu for Ogg but always writes Theora.
    ContainerSpec("OGG", "Ogg", "ogg", ".ogv", frozenset({"THEORA"}), "THEORA", "THEORA", codec_menu=True),
    ContainerSpec("DV", "DV", "dv", ".dv", frozenset({"DV"}), "DV", "DV"),
    ContainerSpec("FLASH", "Flash", "flv", ".flv", frozenset({"FLASH", "H264"}), "FLASH", "FLASH"),
    ContainerSpec("MPEG1", "MPEG-1", "mpeg", ".mpg", frozenset({"MPEG1"}), "MPEG1", "MPEG1"),
    # Blender guesses the muxer from ".dvd" (FFmpeg's "dvd" MPEG-2 program stream) and names the
    # file so; we name it .mpg, which players open.
    ContainerSpec("MPEG2", "MPEG-2", "dvd", ".mpg", frozenset({"MPEG2"}), "MPEG2", "MPEG2"),
    ContainerSpec("H264", "H.264 (legacy)", "avi", ".avi", frozenset({"H264"}), "H264", "H264", legacy=True),
    ContainerSpec("XVID", "Xvid (legacy)", "avi", ".avi", frozenset({"MPEG4"}), "MPEG4", "MPEG4", legacy=True,
                  output_options=_XVID_TAG),
    ContainerSpec("AV1", "AV1 (legacy)", "mp4", ".mp4", frozenset({"AV1"}), "AV1", "AV1", legacy=True,
                  output_options=_FAST_START),
)  # fmt: skip
CONTAINERS: Mapping[str, ContainerSpec] = {c.name: c for c in _CONTAINER_LIST}


def blender_pairs() -> list[tuple[str, str]]:
    """Every (container, codec) Blender offers: the codec menu's choices, else the forced codec."""
    pairs: list[tuple[str, str]] = []
    for container in CONTAINERS.values():
        if container.codec_menu:
            pairs.extend((container.name, codec) for codec in CODECS)
        else:
            pairs.append((container.name, container.forced_codec or container.default_codec))
    return pairs


@dataclass(frozen=True, slots=True)
class FormatChoice:
    """What a (container, codec) pair from a scene becomes on disk."""

    container: ContainerSpec
    codec: CodecSpec
    requested_codec: str
    notes: tuple[str, ...] = ()

    @property
    def fell_back(self) -> bool:
        return self.codec.name != self.requested_codec


def resolve_format(container: str, codec: str) -> FormatChoice:
    """Blender's container and codec names -> the pair actually written, and why it differs.

    Blender itself forces the codec of Ogg, DV, Flash, MPEG-1/2 and the legacy containers. Codec
    NONE makes Blender write a file with no video, and a codec the container cannot hold makes it
    fail ("probably unsupported codec combination"); a farm must deliver a video, so both fall back
    to the container's default codec (H.264 where it fits, the codec Blender picks for new video
    output) and the note says so.
    """
    spec = CONTAINERS.get(container)
    if spec is None:
        raise MergeError(f"unknown video container {container!r} (Blender's names: {', '.join(CONTAINERS)})")
    if codec != "NONE" and codec not in CODECS:
        raise MergeError(f"unknown video codec {codec!r} (Blender's names: NONE, {', '.join(CODECS)})")
    if spec.forced_codec is not None:
        chosen = spec.forced_codec
        notes = (
            () if codec in (chosen, "NONE") else (f"{spec.label} always holds {CODECS[chosen].label}, as in Blender",)
        )
    elif codec == "NONE":
        chosen = spec.default_codec
        notes = (f"codec NONE would give a file without video: using {CODECS[chosen].label}, the container's default",)
    elif codec not in spec.codecs:
        chosen = spec.default_codec
        notes = (
            f"{spec.label} cannot hold {CODECS[codec].label} (Blender's file would fail or not play): "
            f"using {CODECS[chosen].label}, the container's default",
        )
    else:
        chosen, notes = codec, ()
    return FormatChoice(spec, CODECS[chosen], codec, notes)


def choose_encoder(codec: CodecSpec, caps: FFmpegCapabilities) -> EncoderSpec | None:
    """The first of the codec's encoders the local ffmpeg has, or ``None``."""
    return next((e for e in codec.encoders if e.name in caps.encoders), None)


def missing_support(container: str, codec: str, caps: FFmpegCapabilities) -> str | None:
    """Why the local ffmpeg cannot write this pair (after Blender's forcing and our fallback), else None."""
    choice = resolve_format(container, codec)
    if choice.container.muxer not in caps.muxers:
        return f"the local ffmpeg has no {choice.container.muxer!r} muxer"
    if choose_encoder(choice.codec, caps) is None:
        names = ", ".join(e.name for e in choice.codec.encoders)
        return f"the local ffmpeg has no {choice.codec.label} encoder (looked for {names})"
    return None


# --- frame rates ------------------------------------------------------------------------------------------


def frame_rate(fps: float | Fraction, fps_base: float | Fraction = 1) -> Fraction:
    """Blender's ``fps / fps_base`` as an exact rational: 30 / 1.001 -> 30000/1001.

    Denominators stay <= 65535, which also fits the MPEG-4 part 2 time base.
    """
    if fps <= 0 or fps_base <= 0:
        raise MergeError(f"the frame rate must be positive, not {fps}/{fps_base}")
    rate = Fraction(fps).limit_denominator(1_000_000) / Fraction(fps_base).limit_denominator(1_000_000)
    return rate.limit_denominator(65535)


_MPEG_RATES = tuple(Fraction(r) for r in ("24000/1001", "24", "25", "30000/1001", "30", "50", "60000/1001", "60"))
# libavcodec's extra MPEG-1 rate codes (Xing's 15, libmpeg3's "economy" rates): "-strict unofficial".
_MPEG1_UNOFFICIAL = tuple(Fraction(r) for r in (5, 10, 12, 15))


def _mpeg2_rate_ok(rate: Fraction) -> bool:
    # MPEG-2 codes rate * (n+1)/(d+1) with frame_rate_extension n < 4, d < 32 (ISO 13818-2, 6.3.3).
    return any(base * (n + 1) / (d + 1) == rate for base in _MPEG_RATES for n in range(4) for d in range(32))


# --- probing ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """The first video stream of a file (or one image)."""

    codec_name: str
    width: int
    height: int
    pix_fmt: str
    frame_rate: Fraction | None
    frame_count: int | None
    """Counted (packets, then decoded frames when those disagree), or ``None`` when not asked."""

    @property
    def has_alpha(self) -> bool:
        return _pix_fmt_has_alpha(self.pix_fmt)

    @property
    def is_float(self) -> bool:
        return "f32" in self.pix_fmt or "f16" in self.pix_fmt


def _pix_fmt_has_alpha(pix_fmt: str) -> bool:
    return pix_fmt.startswith(("rgba", "bgra", "argb", "abgr", "ya", "yuva", "gbra"))


# "Stream #0:0: Video: h264 (High), yuv420p(tv, bt709, progressive), 64x48, ..." from ffmpeg -i.
_STREAM_LINE = re.compile(r"Stream #0:\d+\S*: Video: (\w+).*?, (\w+)(?:\([^)]*\))?, (\d+)x(\d+)")


def probe_video(
    path: Path,
    *,
    count: bool = True,
    expect_frames: int | None = None,
    ffmpeg_exe: Path | None = None,
    ffprobe_exe: Path | None = None,
    timeout_s: float = 300.0,
) -> VideoInfo:
    """Codec, size, pixel format, rate and (``count``) frame count of ``path``'s first video stream.

    Counting packets reads no pixels, so it is quick even for long videos; when the count differs
    from ``expect_frames`` the frames are decoded and counted before anyone is told.
    With no ffprobe (imageio-ffmpeg ships none) ffmpeg itself decodes and counts.
    """
    exe = ffmpeg_exe or find_ffmpeg()
    probe = ffprobe_exe or find_ffprobe(exe)
    if probe is None:
        return _probe_with_ffmpeg(path, exe, count=count, timeout_s=timeout_s)
    info = _ffprobe(probe, path, "-count_packets" if count else None, timeout_s)
    if count and expect_frames is not None and info.frame_count != expect_frames:
        info = _ffprobe(probe, path, "-count_frames", timeout_s)
    return info


def _ffprobe(probe: Path, path: Path, count_flag: str | None, timeout_s: float) -> VideoInfo:
    entries = "stream=codec_name,width,height,pix_fmt,r_frame_rate,nb_read_packets,nb_read_frames"
    argv = [str(probe), "-v", "error", "-select_streams", "v:0"]
    argv += [count_flag] if count_flag else []
    argv += ["-show_entries", entries, "-of", "json", str(path)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MergeError(f"ffprobe took more than {timeout_s:.0f} s on {path.name}", command=argv) from exc
    except OSError as exc:
        raise MergeError(f"could not run ffprobe: {exc}", command=argv) from exc
    streams = json.loads(done.stdout or "{}").get("streams", []) if done.returncode == 0 else []
    if not streams:
        raise MergeError(f"ffprobe found no video in {path.name}", stderr_tail=_tail(done.stderr), command=argv)
    s: dict[str, Any] = streams[0]
    counted = s.get("nb_read_frames") if count_flag == "-count_frames" else s.get("nb_read_packets")
    return VideoInfo(
        codec_name=str(s.get("codec_name", "unknown")),
        width=int(s.get("width", 0)),
        height=int(s.get("height", 0)),
        pix_fmt=str(s.get("pix_fmt", "")),
        frame_rate=_parse_rate(str(s.get("r_frame_rate", ""))),
        frame_count=int(counted) if counted not in (None, "N/A") else None,
    )


def _parse_rate(text: str) -> Fraction | None:
    try:
        rate = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    return rate if rate > 0 else None


def _probe_with_ffmpeg(path: Path, exe: Path, *, count: bool, timeout_s: float) -> VideoInfo:
    argv = [str(exe), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0"]
    argv += ["-f", "null", "-"] if count else ["-frames:v", "1", "-f", "null", "-"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout_s, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise MergeError(f"could not probe {path.name} with ffmpeg: {exc}", command=argv) from exc
    # Only the input's description: the output section below it lists the null muxer's stream.
    match = _STREAM_LINE.search(done.stderr.partition("Stream mapping:")[0])
    if done.returncode != 0 or match is None:
        raise MergeError(f"ffmpeg found no video in {path.name}", stderr_tail=_tail(done.stderr), command=argv)
    frames = re.findall(r"frame=\s*(\d+)", done.stderr)
    rate = re.search(r"(\d+(?:\.\d+)?) tbr", done.stderr)
    return VideoInfo(
        codec_name=match.group(1),
        width=int(match.group(3)),
        height=int(match.group(4)),
        pix_fmt=match.group(2),
        frame_rate=Fraction(rate.group(1)).limit_denominator(1001) if rate else None,  # printed rounded
        frame_count=int(frames[-1]) if count and frames else None,
    )


# --- results ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MergeResult:
    """A verified video: what was written, how, and what differs from the scene's settings."""

    output: Path
    container: str
    codec: str
    muxer: str
    encoder: str
    frame_count: int
    frame_rate: Fraction
    width: int
    height: int
    notes: tuple[str, ...]
    command: tuple[str, ...]
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class _Tools:
    ffmpeg: Path
    ffprobe: Path | None
    caps: FFmpegCapabilities


def _tools(ffmpeg_exe: Path | None) -> _Tools:
    exe = ffmpeg_exe or find_ffmpeg()
    return _Tools(exe, find_ffprobe(exe), ffmpeg_capabilities(exe))


# Decoders for the image formats Blender renders (the image2 demuxer picks them by extension).
_IMAGE_DECODERS = {
    ".png": "png",
    ".jpg": "mjpeg",
    ".jpeg": "mjpeg",
    ".exr": "exr",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".tga": "targa",
    ".bmp": "bmp",
    ".hdr": "hdr",
    ".dpx": "dpx",
    ".webp": "webp",
    ".jp2": "jpeg2000",
    ".j2c": "jpeg2000",
    ".rgb": "sgi",
    ".sgi": "sgi",
    ".cin": "cineon",  # FFmpeg has no Cineon decoder: such frames are zipped, never encoded
}


# --- video merge ------------------------------------------------------------------------------------------


def merge_video(
    frames: Sequence[Path],
    output: Path,
    fps: float | Fraction,
    container: str,
    codec: str,
    *,
    fps_base: float | Fraction = 1,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    timeout_s: float | None = None,
    ffmpeg_exe: Path | None = None,
) -> MergeResult:
    """Encode ``frames`` (in order) into ``output`` with Blender's ``container`` and ``codec``.

    ``fps`` / ``fps_base`` are the scene's (30, 1.001 for 29.97). The result is verified with
    ffprobe (frame count, codec) before it appears under ``output``. Raises :class:`MergeError`
    with ffmpeg's last words, or :class:`MergeCancelledError` when ``cancel`` is set.
    ``timeout_s`` defaults to 2 minutes plus 10 s a frame.
    """
    started = time.monotonic()
    tools = _tools(ffmpeg_exe)
    choice = resolve_format(container, codec)
    encoder = choose_encoder(choice.codec, tools.caps)
    if encoder is None or choice.container.muxer not in tools.caps.muxers:
        problem = missing_support(container, codec, tools.caps)
        raise MergeError(f"cannot write {choice.codec.label} in {choice.container.label}: {problem}")
    paths = _check_frames(frames, tools.caps, MergeError)
    notes = list(choice.notes)
    options: dict[str, str] = {**choice.container.output_options, **encoder.options}
    rate = _fix_rate(choice, frame_rate(fps, fps_base), options, notes)
    if choice.codec.name == "H265" and choice.container.muxer in ("mp4", "mov"):
        options["tag:v"] = "hvc1"  # as Blender: Apple players want hvc1, not FFmpeg's default hev1
    first = probe_video(paths[0], count=False, ffmpeg_exe=tools.ffmpeg, ffprobe_exe=tools.ffprobe)
    pix_fmt = choice.codec.pix_fmt
    if choice.codec.name == "DV" and rate != 25:
        pix_fmt = "yuv411p"  # NTSC DV25 samples chroma 4:1:1
    # VP9 alpha travels as Matroska block additions: MP4 and the others would drop it silently.
    keeps_alpha = choice.codec.name != "WEBM" or choice.container.muxer in ("webm", "matroska")
    if first.has_alpha and choice.codec.alpha_pix_fmt is not None and keeps_alpha:
        pix_fmt = choice.codec.alpha_pix_fmt
        options.update(choice.codec.alpha_options)
        notes.append(f"the frames have alpha: kept ({pix_fmt})")
    options["pix_fmt"] = pix_fmt

    def filters(stream: Any) -> Any:
        stream = _display_filters(stream, first, tools.caps, notes)
        if choice.codec.name == "DV":
            return _dv_filters(stream, first, rate, notes)
        return _pad_filters(stream, first, pix_fmt, encoder.min_size, notes)

    return _encode(
        paths,
        output,
        rate,
        filters,
        options,
        tools=tools,
        first=first,
        container=choice.container,
        codec=choice.codec,
        encoder=encoder,
        notes=notes,
        progress=progress,
        cancel=cancel,
        timeout_s=timeout_s,
        started=started,
        error=MergeError,
    )


def _fix_rate(choice: FormatChoice, rate: Fraction, options: dict[str, str], notes: list[str]) -> Fraction:
    """Rates the codec cannot carry: DV knows two, MPEG-1/2 a table (Blender fails on the others)."""
    name = choice.codec.name
    if name == "DV":
        # As Blender: PAL at exactly 25 fps, otherwise NTSC (its "bad hack" for DV).
        dv_rate = Fraction(25) if rate == 25 else Fraction(30000, 1001)
        if dv_rate != rate:
            notes.append(
                f"DV plays at {float(dv_rate):.3f} fps only: frames kept, timing changed from {float(rate):.3f}"
            )
        return dv_rate
    if name == "MPEG1" and rate not in _MPEG_RATES:
        if rate not in _MPEG1_UNOFFICIAL:
            raise MergeError(
                f"MPEG-1 cannot play {float(rate):.3f} fps (it knows 23.976, 24, 25, 29.97, 30, 50, 59.94, 60)"
            )
        options["strict"] = "unofficial"
        notes.append(f"{float(rate):g} fps is an unofficial MPEG-1 rate: some players may refuse it")
    if name == "MPEG2" and not _mpeg2_rate_ok(rate):
        raise MergeError(f"MPEG-2 cannot play {float(rate):.3f} fps exactly: choose another container")
    return rate


def _display_filters(stream: Any, first: VideoInfo, caps: FFmpegCapabilities, notes: list[str]) -> Any:
    """Linear float frames (EXR, HDR) -> display values: FFmpeg would otherwise clip them unmapped."""
    if not first.is_float:
        return stream
    if {"zscale", "tonemap"} <= caps.filters:
        # Reinhard keeps mid-grey near Blender's "Standard" view (0.18 -> 114 of 255 vs 118) and
        # rolls highlights off instead of clipping them; Hable darkens mid-tones by a third.
        fmt = "gbrapf32le" if first.has_alpha else "gbrpf32le"
        notes.append("linear float frames tone-mapped for display (Reinhard, sRGB)")
        stream = stream.filter("zscale", tin="linear", t="linear", npl="100").filter("format", fmt)
        stream = stream.filter("tonemap", "reinhard", desat="0")
        # Back to float RGB with the sRGB curve: zscale itself cannot go on to YUV without a matrix.
        return stream.filter("zscale", tin="linear", t="iec61966-2-1", r="full").filter("format", fmt)
    if first.codec_name == "exr":
        notes.append("linear float frames shown with the sRGB curve (no zscale here): highlights clip")
    else:
        notes.append("linear float frames shown unmapped (no zscale here): they look dark")
    return stream  # for EXR the decoder's apply_trc option does the sRGB curve (see _input_options)


def _pad_filters(stream: Any, first: VideoInfo, pix_fmt: str, min_size: tuple[int, int], notes: list[str]) -> Any:
    """Pad (never scale: pixels stay as rendered) to even sizes for chroma subsampling, and minimums."""
    subsampled = pix_fmt.startswith(("yuv4", "yuva4")) and not pix_fmt.startswith(("yuv444", "yuva444"))
    width, height = first.width, first.height
    if subsampled:
        width, height = width + width % 2, height + height % 2
    width, height = max(width, min_size[0]), max(height, min_size[1])
    if (width, height) == (first.width, first.height):
        return stream
    notes.append(f"padded from {first.width}x{first.height} to {width}x{height} (the codec needs it)")
    x, y = (width - first.width) // 2, (height - first.height) // 2
    return stream.filter("pad", width=str(width), height=str(height), x=str(x), y=str(y))


def _dv_filters(stream: Any, first: VideoInfo, rate: Fraction, notes: list[str]) -> Any:
    """Fit the frame into 4:3 DV (720x576 PAL, 720x480 NTSC, non-square pixels), letterboxed."""
    pal = rate == 25
    height = 576 if pal else 480
    square_width = 768 if pal else 640  # the 4:3 picture in square pixels
    scale = min(square_width / first.width, height / first.height)
    fit_w = max(2, round(first.width * scale * 720 / square_width / 2) * 2)
    fit_h = max(2, round(first.height * scale / 2) * 2)
    notes.append(f"DV is 720x{height} ({'PAL' if pal else 'NTSC'}, 4:3): the frames were scaled to fit")
    stream = stream.filter("scale", width=str(fit_w), height=str(fit_h))
    stream = stream.filter(
        "pad", width="720", height=str(height), x=str((720 - fit_w) // 2), y=str((height - fit_h) // 2)
    )
    return stream.filter("setsar", "16/15" if pal else "8/9")


# --- preview and zip --------------------------------------------------------------------------------------


def preview_mp4(
    frames: Sequence[Path],
    output: Path,
    fps: float | Fraction,
    *,
    fps_base: float | Fraction = 1,
    max_size: tuple[int, int] = (1920, 1080),
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    timeout_s: float | None = None,
    ffmpeg_exe: Path | None = None,
) -> MergeResult:
    """An H.264 MP4 of image frames to watch in a browser: yuv420p, even sizes, at most ``max_size``.

    EXR and HDR frames are tone-mapped. Raises :class:`PreviewUnavailableError` when the local
    ffmpeg cannot read the frames or has no H.264 encoder: the caller reports "no preview" and the
    task still finishes with its frames.
    """
    started = time.monotonic()
    tools = _tools(ffmpeg_exe)
    codec, container = CODECS["H264"], CONTAINERS["MPEG4"]
    encoder = choose_encoder(codec, tools.caps)
    if encoder is None or "mp4" not in tools.caps.muxers:
        raise PreviewUnavailableError(f"no preview: {missing_support('MPEG4', 'H264', tools.caps)}")
    paths = _check_frames(frames, tools.caps, PreviewUnavailableError)
    rate = frame_rate(fps, fps_base)
    try:
        first = probe_video(paths[0], count=False, ffmpeg_exe=tools.ffmpeg, ffprobe_exe=tools.ffprobe)
    except MergeError as exc:
        raise PreviewUnavailableError(f"no preview: {exc.message}", stderr_tail=exc.stderr_tail) from exc
    notes: list[str] = []
    options = {**container.output_options, **encoder.options, "pix_fmt": "yuv420p"}
    max_w, max_h = max_size

    def filters(stream: Any) -> Any:
        stream = _display_filters(stream, first, tools.caps, notes)
        # Fit in max_size without upscaling; both sides even (yuv420p); aspect ratio kept.
        scale = min(1.0, max_w / first.width, max_h / first.height)
        width = max(2, int(first.width * scale) // 2 * 2)
        height = max(2, int(first.height * scale) // 2 * 2)
        if (width, height) != (first.width, first.height):
            notes.append(f"scaled from {first.width}x{first.height} to {width}x{height}")
            stream = stream.filter("scale", width=str(width), height=str(height))
        return stream

    return _encode(
        paths,
        output,
        rate,
        filters,
        options,
        tools=tools,
        first=first,
        container=container,
        codec=codec,
        encoder=encoder,
        notes=notes,
        progress=progress,
        cancel=cancel,
        timeout_s=timeout_s,
        started=started,
        error=PreviewUnavailableError,
    )


# Formats whose pixels are stored uncompressed (or barely): only these are worth deflating.
_DEFLATE_SUFFIXES = frozenset({".bmp", ".tga", ".dpx", ".cin", ".hdr", ".rgb", ".sgi", ".tif", ".tiff"})
_ZIP_CHUNK = 1 << 20


def zip_frames(
    frames: Sequence[Path],
    zip_path: Path,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """The frames in one zip, by file name, streamed in 1 MiB chunks (never a whole frame in memory).

    PNG, JPEG, EXR, WebP... are already compressed: they are stored, which costs no CPU and loses
    nothing; only raw formats (BMP, TGA, DPX, TIFF...) are deflated. Zip64 is used past 4 GiB.
    """
    paths = [Path(f) for f in frames]
    if not paths:
        raise MergeError("no frames to zip", output=zip_path)
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise MergeError("two frames have the same file name: the zip would hold only one", output=zip_path)
    total = sum(p.stat().st_size for p in paths) or 1
    done = 0
    _report(progress, 0.0)
    with _partial_file(zip_path) as partial:
        try:
            with zipfile.ZipFile(partial, "w", allowZip64=True) as zf:
                for path in paths:
                    info = zipfile.ZipInfo.from_file(path, path.name, strict_timestamps=False)
                    deflate = path.suffix.lower() in _DEFLATE_SUFFIXES
                    info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
                    with open(path, "rb") as src, zf.open(info, "w") as dst:
                        while chunk := src.read(_ZIP_CHUNK):
                            if cancel is not None and cancel.is_set():
                                raise MergeCancelledError("zipping was cancelled", output=zip_path)
                            dst.write(chunk)
                            done += len(chunk)
                            _report(progress, min(done / total, 0.99))
        except OSError as exc:
            raise MergeError(f"could not write {zip_path.name}: {exc}", output=zip_path) from exc
        partial.replace(zip_path)
    _report(progress, 1.0)
    return zip_path


# --- the encode itself ------------------------------------------------------------------------------------


def _check_frames(frames: Sequence[Path], caps: FFmpegCapabilities, error: type[MergeError]) -> list[Path]:
    paths = [Path(f) for f in frames]
    if not paths:
        raise MergeError("no frames to merge")
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise MergeError(f"{len(missing)} frame(s) missing, first {missing[0]}")
    suffixes = {p.suffix.lower() for p in paths}
    if len(suffixes) != 1:
        raise MergeError(f"the frames mix image formats ({', '.join(sorted(suffixes))}): one sequence needs one")
    suffix = suffixes.pop()
    decoder = _IMAGE_DECODERS.get(suffix)
    if decoder is None or decoder not in caps.decoders:
        raise error(f"the local ffmpeg cannot read {suffix or 'extension-less'} frames")
    return paths


def _input_options(first: VideoInfo, caps: FFmpegCapabilities) -> dict[str, str]:
    if first.is_float and not {"zscale", "tonemap"} <= caps.filters and first.codec_name == "exr":
        return {"apply_trc": "iec61966_2_1"}  # the EXR decoder's own sRGB curve
    return {}


def _encode(
    paths: list[Path],
    output: Path,
    rate: Fraction,
    filters: Callable[[Any], Any],
    options: dict[str, str],
    *,
    tools: _Tools,
    first: VideoInfo,
    container: ContainerSpec,
    codec: CodecSpec,
    encoder: EncoderSpec,
    notes: list[str],
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    timeout_s: float | None,
    started: float,
    error: type[MergeError],
) -> MergeResult:
    total = len(paths)
    timeout = timeout_s if timeout_s is not None else 120.0 + 10.0 * total
    deadline = started + timeout
    suffix = paths[0].suffix.lower()
    _report(progress, 0.0)
    output.parent.mkdir(parents=True, exist_ok=True)
    with _partial_file(output) as partial, _sequence_folder(paths, output.parent, suffix, cancel, output) as pattern:
        source = ffmpeg.input(
            pattern, f="image2", framerate=str(rate), start_number="0", **_input_options(first, tools.caps)
        )
        stream = filters(source)
        node = ffmpeg.output(stream, str(partial), f=container.muxer, vcodec=encoder.name, **options)
        node = node.global_args(*_GLOBAL_ARGS, *_stats_period(tools.caps.version)).overwrite_output()
        argv: list[str] = node.compile(cmd=str(tools.ffmpeg))
        log.info("merging %d frames: %s", total, " ".join(argv))
        _run_ffmpeg(argv, total, progress, cancel, deadline, output, error)
        info = probe_video(
            partial,
            expect_frames=total,
            ffmpeg_exe=tools.ffmpeg,
            ffprobe_exe=tools.ffprobe,
            timeout_s=max(30.0, deadline - time.monotonic()),
        )
        if info.frame_count != total:
            raise error(
                f"{output.name} holds {info.frame_count} frames, not the {total} merged",
                output=output,
                command=argv,
            )
        if info.codec_name != codec.ffprobe_name:
            raise error(f"{output.name} holds {info.codec_name}, not {codec.ffprobe_name}", output=output, command=argv)
        partial.replace(output)
    _report(progress, 1.0)
    return MergeResult(
        output=output,
        container=container.name,
        codec=codec.name,
        muxer=container.muxer,
        encoder=encoder.name,
        frame_count=total,
        frame_rate=rate,
        width=info.width,
        height=info.height,
        notes=tuple(notes),
        command=tuple(argv),
        elapsed_s=time.monotonic() - started,
    )


def _stats_period(version: str) -> tuple[str, ...]:
    """``-stats_period`` for FFmpeg >= 4.4 (Debian 11 has 4.3); git builds ("N-...") have it."""
    match = re.match(r"n?(\d+)\.(\d+)", version)
    if match and (int(match.group(1)), int(match.group(2))) < (4, 4):
        return ()
    return ("-stats_period", _STATS_PERIOD_S)


# -xerror: a frame that does not decode stops the merge, rather than silently going missing.
_GLOBAL_ARGS = ("-hide_banner", "-nostdin", "-loglevel", "warning", "-xerror", "-nostats", "-progress", "pipe:1")


@contextmanager
def _partial_file(output: Path) -> Iterator[Path]:
    """A hidden sibling to write to; removed unless the caller has renamed it onto ``output``."""
    partial = output.with_name(f".{output.stem}.partial{output.suffix}")
    try:
        yield partial
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def _sequence_folder(
    paths: list[Path], near: Path, suffix: str, cancel: threading.Event | None, output: Path
) -> Iterator[str]:
    """The frames as ``0000000.png, 0000001.png...`` in a scratch folder; yields the image2 pattern.

    Symbolic links cost nothing; where they are not allowed (Windows without the privilege) hard
    links, and across file systems copies. The folder sits beside the output to make hard links
    likely, and goes away afterwards.
    """
    folder = Path(tempfile.mkdtemp(prefix=".merge-frames-", dir=near))
    try:
        for index, path in enumerate(paths):
            if cancel is not None and cancel.is_set() and index % 256 == 0:
                raise MergeCancelledError("the merge was cancelled", output=output)
            _link(path.resolve(), folder / f"{index:07d}{suffix}")
        # image2 reads "%" as a pattern character; "%%" is a literal one in the folder's path.
        yield str(folder).replace("%", "%%") + os.sep + "%07d" + suffix
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _link(target: Path, link: Path) -> None:
    try:
        link.symlink_to(target)
    except OSError:
        try:
            link.hardlink_to(target)
        except OSError:
            shutil.copyfile(target, link)


def _run_ffmpeg(
    argv: list[str],
    total: int,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    deadline: float,
    output: Path,
    error: type[MergeError],
) -> None:
    """Run ffmpeg, turning its ``-progress`` lines into callbacks; kill it on cancel or timeout.

    stderr goes to a temporary file (no second pipe to drain); stdout is read by one short-lived
    thread that ends when ffmpeg closes it, so the calling thread can wait for cancel at the same
    time. Every path out kills and reaps ffmpeg and joins the reader.
    """
    with tempfile.TemporaryFile() as stderr:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
        except OSError as exc:
            raise error(f"could not start ffmpeg: {exc}", output=output, command=argv) from exc
        assert proc.stdout is not None  # noqa: S101 - stdout=PIPE
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_pump, args=(proc.stdout, lines), name="ffmpeg-progress", daemon=True)
        reader.start()
        try:
            _follow(lines, total, progress, cancel, deadline, output, argv, error)
            returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired as exc:
            raise error("ffmpeg did not exit after closing its output", output=output, command=argv) from exc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            reader.join()
            proc.stdout.close()
        if returncode != 0:
            stderr.seek(0, os.SEEK_END)
            stderr.seek(max(0, stderr.tell() - 65536))
            raise error(
                f"ffmpeg failed (exit status {returncode}) writing {output.name}",
                output=output,
                stderr_tail=_tail(stderr.read().decode("utf-8", "replace")),
                command=argv,
            )


def _follow(
    lines: queue.Queue[str | None],
    total: int,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    deadline: float,
    output: Path,
    argv: list[str],
    error: type[MergeError],
) -> None:
    """Consume progress lines until ffmpeg closes stdout; raise on cancel or past the deadline."""
    while True:
        if cancel is not None and cancel.is_set():
            raise MergeCancelledError("the merge was cancelled", output=output, command=argv)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise error(f"ffmpeg took too long: stopped after the time allowed for {total} frames", output=output)
        try:
            line = lines.get(timeout=min(_POLL_S, remaining))
        except queue.Empty:
            continue
        if line is None:
            return
        key, _, value = line.partition("=")
        if key == "frame" and value.isdigit():
            # Capped below 1: the file is not done until ffprobe has counted it.
            _report(progress, min(int(value) / total, 0.99))


def _pump(stream: IO[bytes], lines: queue.Queue[str | None]) -> None:
    try:
        for raw in stream:
            lines.put(raw.decode("utf-8", "replace").strip())
    finally:
        lines.put(None)


def _report(progress: ProgressCallback | None, value: float) -> None:
    if progress is not None:
        progress(value)


def _tail(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.splitlines() if line.strip())[-_STDERR_TAIL_LINES:]


__all__ = [
    "CODECS",
    "CONTAINERS",
    "CodecSpec",
    "ContainerSpec",
    "EncoderSpec",
    "FFmpegCapabilities",
    "FormatChoice",
    "MergeCancelledError",
    "MergeError",
    "MergeResult",
    "PreviewUnavailableError",
    "ProgressCallback",
    "VideoInfo",
    "blender_pairs",
    "choose_encoder",
    "ffmpeg_capabilities",
    "find_ffmpeg",
    "find_ffprobe",
    "frame_rate",
    "merge_video",
    "missing_support",
    "preview_mp4",
    "probe_video",
    "resolve_format",
    "zip_frames",
]
