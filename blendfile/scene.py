"""The farm's questions about a file: its scenes and their render settings, as frozen values.

Codes stored in the file are translated the way Blender itself reads them (see
``shared/notes/blend-format.md`` section 5): retired image types, the pre-2.80 FFmpeg codec
numbering, the 5.0 ``media_type`` split of multilayer EXR and video.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from .errors import NoSceneError

if TYPE_CHECKING:
    from .file import BlendFile, StructView


class RenderOutputType(StrEnum):
    """A scene's output file format, named like Blender's Python identifiers (``file_format``)."""

    PNG = "PNG"
    JPEG = "JPEG"
    OPEN_EXR = "OPEN_EXR"
    OPEN_EXR_MULTILAYER = "OPEN_EXR_MULTILAYER"
    FFMPEG = "FFMPEG"
    TARGA = "TARGA"
    TARGA_RAW = "TARGA_RAW"
    TIFF = "TIFF"
    WEBP = "WEBP"
    BMP = "BMP"
    IRIS = "IRIS"
    JPEG2000 = "JPEG2000"
    CINEON = "CINEON"
    DPX = "DPX"
    HDR = "HDR"
    AVI_JPEG = "AVI_JPEG"
    AVI_RAW = "AVI_RAW"
    DDS = "DDS"
    PSD = "PSD"
    AVIF = "AVIF"
    UNKNOWN = "UNKNOWN"
    """A code no Blender version writes; the file is probably damaged."""

    @property
    def is_movie(self) -> bool:
        return self in _MOVIE_TYPES

    @property
    def is_renderable(self) -> bool:
        """Whether Blender can write this format as render output."""
        return self not in (RenderOutputType.UNKNOWN, RenderOutputType.DDS, RenderOutputType.PSD)


_MOVIE_TYPES = frozenset({RenderOutputType.FFMPEG, RenderOutputType.AVI_JPEG, RenderOutputType.AVI_RAW})


class BlenderDataType(StrEnum):
    """What a submitted file is: one ``.blend``, or a ``.zip`` project with its resources."""

    SINGLE_FILE = "SINGLE_FILE"
    MULTI_FILE = "MULTI_FILE"


# R_IMF_IMTYPE_* codes (never renumbered, only retired).
_IMTYPES: dict[int, RenderOutputType] = {
    0: RenderOutputType.TARGA,
    1: RenderOutputType.IRIS,
    4: RenderOutputType.JPEG,
    7: RenderOutputType.IRIS,  # IRIZ: Iris with Z, read as Iris
    14: RenderOutputType.TARGA_RAW,
    15: RenderOutputType.AVI_RAW,
    16: RenderOutputType.AVI_JPEG,
    17: RenderOutputType.PNG,
    18: RenderOutputType.AVI_JPEG,  # AVICODEC (Windows codecs), retired in 2.5
    19: RenderOutputType.FFMPEG,  # QUICKTIME, converted to FFmpeg's QuickTime container
    20: RenderOutputType.BMP,
    21: RenderOutputType.HDR,
    22: RenderOutputType.TIFF,
    23: RenderOutputType.OPEN_EXR,
    24: RenderOutputType.FFMPEG,
    26: RenderOutputType.CINEON,
    27: RenderOutputType.DPX,
    28: RenderOutputType.OPEN_EXR_MULTILAYER,
    29: RenderOutputType.DDS,
    30: RenderOutputType.JPEG2000,
    31: RenderOutputType.FFMPEG,  # legacy H264 preset
    32: RenderOutputType.FFMPEG,  # legacy XVID preset
    33: RenderOutputType.FFMPEG,  # legacy THEORA preset
    34: RenderOutputType.PSD,
    35: RenderOutputType.WEBP,
    36: RenderOutputType.FFMPEG,  # legacy AV1 preset
    37: RenderOutputType.AVIF,
}
# Codec the legacy single-codec presets stand for (when the stored codec is NONE).
_LEGACY_PRESET_CODEC = {31: "H264", 32: "MPEG4", 33: "THEORA", 36: "AV1"}
_MEDIA_MULTILAYER = 1
_MEDIA_VIDEO = 2

# FFMpegCodecData.type -> Blender's Python name (``ffmpeg.format``).
_CONTAINERS = {
    0: "MPEG1", 1: "MPEG2", 2: "MPEG4", 3: "AVI", 4: "QUICKTIME", 5: "DV", 6: "H264", 7: "XVID",
    8: "FLASH", 9: "MKV", 10: "OGG", 12: "WEBM", 13: "AV1",
}  # fmt: skip
# FFMpegCodecData.codec (the AVCodecID values of FFmpeg >= 4) -> Blender's Python name.
_CODECS = {
    0: "NONE", 1: "MPEG1", 2: "MPEG2", 12: "MPEG4", 21: "FLASH", 24: "DV", 25: "HUFFYUV", 27: "H264",
    30: "THEORA", 33: "FFV1", 55: "QTRLE", 61: "PNG", 99: "DNXHD", 147: "PRORES", 167: "WEBM",
    173: "H265", 226: "AV1",
}  # fmt: skip
_H264_OLD = 28


def codec_name(codec_id: int, file_version: int) -> str:
    """Blender's name for a stored video codec id.

    Files saved by Blender <= 2.79 used FFmpeg 3's numbering, where every id from 3 on is one
    higher (H.264 is 28, not 27). Such values survive re-saves in 2.8x-5.1, and Blender 5.2 turns
    28 back into H.264 when loading: we read them the same way.
    """
    if file_version < 280 and codec_id >= 3:
        codec_id -= 1
    elif codec_id == _H264_OLD:
        codec_id = 27
    return _CODECS.get(codec_id, f"UNKNOWN_{codec_id}")


@dataclass(frozen=True, slots=True)
class FFmpegSettings:
    """Video output: container and codec, named as in Blender's Python API."""

    container: str
    codec: str


@dataclass(frozen=True, slots=True)
class Scene:
    """One scene and the render settings a farm needs."""

    name: str
    frame_start: int
    frame_end: int
    frame_step: int
    frame_current: int
    fps_numerator: int
    fps_base: float
    resolution_x: int
    resolution_y: int
    resolution_percentage: int
    engine: str
    output_path: str
    """``r.pic`` as stored: may start with ``//`` (relative to the file) and hold ``#`` padding."""
    output_type: RenderOutputType
    ffmpeg: FFmpegSettings | None
    camera: str | None
    film_transparent: bool
    use_file_extension: bool

    @property
    def fps(self) -> float:
        return self.fps_numerator / self.fps_base if self.fps_base else float(self.fps_numerator)

    @property
    def frames(self) -> range:
        """The frames ``-a`` renders (empty when end < start)."""
        return range(self.frame_start, self.frame_end + 1, max(self.frame_step, 1))

    @property
    def frame_count(self) -> int:
        return len(self.frames)

    @property
    def render_size(self) -> tuple[int, int]:
        """Output size in pixels, after the resolution percentage."""
        pct = self.resolution_percentage
        return self.resolution_x * pct // 100, self.resolution_y * pct // 100


def _output_type(r: StructView, file_version: int) -> tuple[RenderOutputType, int]:
    """The output type and the raw imtype code of a RenderData."""
    if r.has("im_format"):
        im = r.get_struct("im_format")
        imtype = im.get_int("imtype")
        media = im.get_int("media_type", 0)
        if media == _MEDIA_VIDEO:
            return RenderOutputType.FFMPEG, imtype
        if media == _MEDIA_MULTILAYER and imtype in (23, 28):
            return RenderOutputType.OPEN_EXR_MULTILAYER, imtype
    else:  # before 2.62 the format lived directly in RenderData
        imtype = r.get_int("imtype")
    return _IMTYPES.get(imtype, RenderOutputType.UNKNOWN), imtype


def _ffmpeg(r: StructView, imtype: int, file_version: int) -> FFmpegSettings | None:
    if not r.has("ffcodecdata"):
        return FFmpegSettings("MPEG4", _LEGACY_PRESET_CODEC.get(imtype, "NONE"))
    ff = r.get_struct("ffcodecdata")
    container_id = ff.get_int("type")
    codec = codec_name(ff.get_int("codec"), file_version)
    if codec == "NONE" and imtype in _LEGACY_PRESET_CODEC:
        codec = _LEGACY_PRESET_CODEC[imtype]
    return FFmpegSettings(_CONTAINERS.get(container_id, f"UNKNOWN_{container_id}"), codec)


def read_scene(bfile: BlendFile, view: StructView) -> Scene:
    """Decode one ``Scene`` struct."""
    r = view.get_struct("r")
    version = bfile.header.file_version
    output_type, imtype = _output_type(r, version)
    camera_name: str | None = None
    if view.has("camera"):
        camera = view.deref("camera")
        if camera is not None and camera.has("id"):
            camera_name = camera.id_name
    # Film > Transparent is the R_ALPHAPREMUL bit of alphamode (rna_scene.cc: film_transparent).
    alphamode = r.get_int("alphamode", 0)
    return Scene(
        name=view.id_name,
        frame_start=r.get_int("sfra"),
        frame_end=r.get_int("efra"),
        frame_step=r.get_int("frame_step", 1) or 1,
        frame_current=r.get_int("cfra"),
        fps_numerator=r.get_int("frs_sec"),
        fps_base=r.get_float("frs_sec_base", 1.0),
        resolution_x=r.get_int("xsch"),
        resolution_y=r.get_int("ysch"),
        resolution_percentage=r.get_int("size"),
        engine=r.get_str("engine", "BLENDER_RENDER") or "BLENDER_RENDER",
        output_path=r.get_str("pic"),
        output_type=output_type,
        ffmpeg=_ffmpeg(r, imtype, version) if output_type is RenderOutputType.FFMPEG else None,
        camera=camera_name,
        film_transparent=bool(alphamode & 1),
        use_file_extension=bool(r.get_int("scemode", 0) & (1 << 4)),
    )


def read_scenes(bfile: BlendFile) -> list[Scene]:
    """All local scenes, in file order."""
    return [read_scene(bfile, view) for view in bfile.iter_structs(b"SC")]


def current_scene_block_address(bfile: BlendFile) -> int:
    """``FileGlobal.curscene`` (0 when there is no GLOB block or no current scene)."""
    globs = bfile.find_blocks(b"GLOB")
    if not globs:
        return 0
    glob = bfile.struct_view(globs[0])
    return glob.get_pointer("curscene") if glob.has("curscene") else 0


def read_current_scene(bfile: BlendFile) -> Scene:
    """The scene Blender renders for ``blender -b FILE -a``.

    That is the first window's scene, saved as ``FileGlobal.curscene``; a file saved without a
    window (a library, some scripted saves) has none, and Blender then takes the first scene.
    """
    bfile.sdna  # noqa: B018 - a file without SDNA says so, rather than "no scene"
    scene_blocks = bfile.find_blocks(b"SC")
    if not scene_blocks:
        raise NoSceneError("the file has no scene to render", bfile.path)
    current = bfile.block_at(current_scene_block_address(bfile))
    if current is None or current.code != b"SC\0\0":
        current = scene_blocks[0]
    return read_scene(bfile, bfile.struct_view(current))


__all__ = [
    "BlenderDataType",
    "FFmpegSettings",
    "RenderOutputType",
    "Scene",
    "codec_name",
    "read_current_scene",
    "read_scene",
    "read_scenes",
]
