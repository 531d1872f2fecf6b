"""Every real file of the corpus, against what the corpus README says a probe read from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from blendfile import (
    BlenderDataType,
    BlendFile,
    Compression,
    MissingSDNAError,
    NoSceneError,
    NotABlendFileError,
    RenderOutputType,
    detect_data_type,
)
from tests.conftest import BLENDFILES, corpus_files

# file: (version, pointer size, endian, compression, frames, resolution, percent, fps, engine, output, camera)
EXPECTED: dict[str, tuple[str, int, str, str, tuple[int, int], tuple[int, int], int, float, str, str, bool]] = {
    "assimp/BlenderDefault_248.blend": ("2.48", 4, "little", "none", (1, 250), (800, 600), 100, 25, "BLENDER_RENDER", "JPEG", True),
    "assimp/BlenderDefault_250_Compressed.blend": ("2.52", 8, "little", "gzip", (1, 250), (1920, 1080), 25, 24, "BLENDER_RENDER", "PNG", True),
    "assimp/BlenderDefault_262.blend": ("2.62", 8, "little", "none", (1, 250), (1920, 1080), 50, 24, "BLENDER_RENDER", "PNG", True),
    "assimp/HUMAN.blend": ("2.49", 4, "little", "none", (1, 250), (800, 600), 100, 25, "BLENDER_RENDER", "JPEG", True),
    "assimp/yxa_1.blend": ("2.60", 4, "big", "none", (1, 250), (1026, 320), 100, 24, "BLENDER_RENDER", "PNG", True),
    "bat/T55539-particles/particle.blend": ("2.79", 8, "little", "gzip", (1, 250), (1920, 1080), 50, 24, "BLENDER_RENDER", "PNG", True),
    "bat/absolute_path.blend": ("2.80", 8, "little", "none", (1, 250), (1920, 1080), 100, 24, "BLENDER_EEVEE", "PNG", False),
    "bat/basic_file.blend": ("2.79", 8, "little", "none", (1, 250), (1920, 1080), 50, 24, "CYCLES", "FFMPEG", False),
    "bat/basic_file_compressed.blend": ("2.79", 8, "little", "gzip", (1, 250), (1920, 1080), 50, 24, "CYCLES", "FFMPEG", False),
    "bat/basic_file_compressed_zstd.blend": ("3.0", 8, "little", "zstd", (1, 250), (1920, 1080), 50, 24, "CYCLES", "FFMPEG", False),
    "bat/basic_file_zstandard.blend": ("3.1", 8, "little", "zstd", (1, 250), (1920, 1080), 50, 24, "CYCLES", "FFMPEG", False),
    "bat/doubly_linked.blend": ("2.79", 8, "little", "none", (1, 250), (1920, 1080), 50, 24, "CYCLES", "FFMPEG", False),
    "bat/geometry-nodes/file_to_pack.blend": ("2.93", 8, "little", "none", (1, 250), (2048, 858), 100, 24, "CYCLES", "PNG", True),
    "bat/geometry-nodes/node_lib.blend": ("2.93", 8, "little", "none", (1, 250), (2048, 858), 100, 24, "CYCLES", "PNG", False),
    "bat/geometry-nodes/object_lib.blend": ("2.93", 8, "little", "none", (1, 250), (2048, 858), 100, 24, "CYCLES", "PNG", False),
    "bat/linked_cube.blend": ("2.79", 8, "little", "none", (1, 250), (1920, 1080), 50, 24, "CYCLES", "FFMPEG", False),
    "bat/linked_cube_compressed.blend": ("2.79", 8, "little", "gzip", (1, 250), (1920, 1080), 50, 24, "CYCLES", "FFMPEG", False),
    "bat/recursive_dependency_1.blend": ("2.79", 8, "little", "none", (1, 250), (1920, 1080), 50, 24, "CYCLES", "FFMPEG", False),
    "bat/recursive_dependency_2.blend": ("2.79", 8, "little", "none", (1, 250), (1920, 1080), 50, 24, "CYCLES", "FFMPEG", False),
    "bat/subdir/doubly_linked_up.blend": ("2.79", 8, "little", "none", (1, 250), (1920, 1080), 50, 24, "CYCLES", "FFMPEG", False),
    "bat/udim/v01_UDIM_BAT_debugging.blend": ("3.2", 8, "little", "zstd", (1, 250), (1920, 1080), 100, 24, "BLENDER_EEVEE", "PNG", True),
    "bat/with_sequencer.blend": ("2.79", 8, "little", "none", (1, 45), (1920, 1080), 50, 24, "CYCLES", "FFMPEG", False),
    "cakelab/2.80.75-2.80.0.blend": ("2.80", 8, "little", "none", (1, 250), (1920, 1080), 100, 24, "BLENDER_EEVEE", "PNG", True),
    "gltf-blender-io/01_linked_collection.blend": ("4.3", 8, "little", "none", (1, 200), (1920, 1080), 100, 24, "BLENDER_EEVEE_NEXT", "PNG", False),
    "gltf-blender-io/10_custom_normals.blend": ("4.0", 8, "little", "none", (1, 250), (1920, 1080), 50, 24, "CYCLES", "PNG", True),
    "gltf-blender-io/21_scene.blend": ("3.3", 8, "little", "none", (1, 10), (1920, 1080), 100, 24, "BLENDER_EEVEE", "PNG", False),
    "gltf-blender-io/24_vertex_color_corner_vertex.blend": ("4.3", 8, "little", "none", (1, 250), (1920, 1080), 100, 24, "BLENDER_EEVEE_NEXT", "PNG", False),
    "gltf-blender-io/27_apply_modifier_with_shapekeys.blend": ("5.0", 8, "little", "none", (1, 250), (1920, 1080), 100, 24, "BLENDER_EEVEE", "PNG", False),
    "gltf-blender-io/28_sk_no_reset.blend": ("5.3", 8, "little", "none", (1, 10), (1920, 1080), 100, 24, "BLENDER_EEVEE", "PNG", False),
    "gltf-blender-io/28_sparse_sk.blend": ("3.6", 8, "little", "none", (1, 250), (1920, 1080), 100, 24, "BLENDER_EEVEE", "PNG", False),
    "gltf-blender-io/34_animation_pointer_extras.blend": ("5.2", 8, "little", "zstd", (1, 250), (1920, 1080), 100, 24, "BLENDER_EEVEE", "PNG", True),
    "gltf-blender-io/36_viewport_material_export.blend": ("4.5", 8, "little", "none", (1, 250), (1920, 1080), 100, 24, "BLENDER_EEVEE_NEXT", "PNG", True),
    "gltf-blender-io/38_pointcloud_GN.blend": ("5.1", 8, "little", "zstd", (1, 250), (1920, 1080), 100, 24, "BLENDER_EEVEE", "PNG", True),
}  # fmt: skip
NO_SCENE = {"cakelab/2.69.0-2.62.0.blend": NoSceneError, "bat/corrupt_only_magic.blend": MissingSDNAError}


def test_corpus_is_fully_covered() -> None:
    names = {p.relative_to(BLENDFILES).as_posix() for p in corpus_files()}
    assert names == set(EXPECTED) | set(NO_SCENE)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file(name: str) -> None:
    version, ptr, endian, compression, frames, res, pct, fps, engine, output, has_camera = EXPECTED[name]
    with BlendFile.open(BLENDFILES / name) as bfile:
        assert (bfile.version, bfile.pointer_size, bfile.endian) == (version, ptr, endian)
        assert bfile.compression is Compression(compression)
        scene = bfile.current_scene()
        assert [s.name for s in bfile.scenes()] == [scene.name]
    assert scene.name == "Scene"
    assert (scene.frame_start, scene.frame_end, scene.frame_step) == (*frames, 1)
    assert (scene.resolution_x, scene.resolution_y, scene.resolution_percentage) == (*res, pct)
    assert scene.fps == fps
    assert scene.engine == engine
    assert scene.output_type is RenderOutputType(output)
    assert (scene.camera is not None) == has_camera
    if has_camera:
        assert scene.camera == "Camera"
    if output == "FFMPEG":
        # 2.79-era files store H.264 as 28 (FFmpeg 3's numbering), read as Blender 5.2 reads it.
        assert scene.ffmpeg is not None
        assert (scene.ffmpeg.container, scene.ffmpeg.codec) == ("MKV", "H264")
    else:
        assert scene.ffmpeg is None
    assert BlendFile.get_current_scene(BLENDFILES / name) == scene


@pytest.mark.parametrize(("name", "error"), sorted(NO_SCENE.items()))
def test_files_without_a_scene(name: str, error: type[Exception]) -> None:
    with pytest.raises(error, match=name.rsplit("/", 1)[-1]):
        BlendFile.get_current_scene(BLENDFILES / name)


def test_data_type_from_bytes(tmp_path: Path) -> None:
    assert detect_data_type(BLENDFILES / "bat/basic_file_compressed.blend") is BlenderDataType.SINGLE_FILE
    assert detect_data_type(BLENDFILES / "bat/basic_file_zstandard.blend") is BlenderDataType.SINGLE_FILE
    project = tmp_path / "looks-like-a.blend"
    import zipfile

    with zipfile.ZipFile(project, "w") as zf:
        zf.writestr("shot.blend", b"BLENDER-v279")
    assert detect_data_type(project) is BlenderDataType.MULTI_FILE
    empty = tmp_path / "empty.blend"
    empty.write_bytes(b"")
    with pytest.raises(NotABlendFileError, match="empty"):
        detect_data_type(empty)
    text = tmp_path / "notes.blend"
    text.write_text("hello")
    with pytest.raises(NotABlendFileError):
        detect_data_type(text)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blendfile", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_json_shape(tmp_path: Path) -> None:
    bad = tmp_path / "bad.blend"
    bad.write_bytes(b"not a blend file at all")
    good = BLENDFILES / "bat/basic_file.blend"
    result = run_cli("info", "--json", str(good), str(bad))
    assert result.returncode == 1
    out = json.loads(result.stdout)
    assert [o["path"] for o in out] == [str(good), str(bad)]
    assert set(out[0]) == {
        "path", "blender_version", "pointer_size", "endian", "compression", "current_scene", "scenes",
    }  # fmt: skip
    assert out[0]["blender_version"] == "2.79"
    assert out[0]["compression"] == "none"
    scene = out[0]["scenes"][0]
    assert set(scene) == {
        "name", "frame_start", "frame_end", "frame_step", "frame_current", "fps", "resolution_x",
        "resolution_y", "resolution_percentage", "engine", "output_path", "output_type", "ffmpeg",
        "camera", "film_transparent",
    }  # fmt: skip
    assert scene["ffmpeg"] == {"container": "MKV", "codec": "H264"}
    assert isinstance(scene["fps"], float)
    assert set(out[1]) == {"path", "error"}
    assert "not a blend file" in out[1]["error"]


def test_cli_summary_and_success_status() -> None:
    result = run_cli("info", str(BLENDFILES / "gltf-blender-io/27_apply_modifier_with_shapekeys.blend"))
    assert result.returncode == 0
    assert "Blender 5.0" in result.stdout
    assert "frames 1-250" in result.stdout
