"""Zip projects: hostile zips are refused before anything is written, bombs are stopped while
extracting, and the main .blend is found (or the candidates listed).

The zips are made here with :mod:`zipfile` (and a few raw byte patches for what zipfile refuses to
write); the .blend files inside are real ones from the corpus.
"""

from __future__ import annotations

import stat
import struct
import zipfile
from pathlib import Path

import pytest

from blendfile import BlenderDataType, ProjectError, detect_data_type, open_project
from blendfile.project import (
    MAIN_BLEND_COMMENT_PREFIX,
    MAX_COMPRESSION_RATIO,
    MAX_MEMBERS,
    MAX_TOTAL_BYTES,
    ZipLimits,
    check_member_name,
)
from tests.conftest import BLENDFILES

BLEND = (BLENDFILES / "bat/basic_file.blend").read_bytes()
OTHER_BLEND = (BLENDFILES / "bat/linked_cube.blend").read_bytes()


def make_zip(path: Path, members: dict[str, bytes], comment: str = "") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.comment = comment.encode()
    return path


# -- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "/etc/passwd",
        "../escape.png",
        "shot/../../escape.png",
        "a/./b.png",
        "a//b.png",
        "C:/Windows/x.png",
        "C:x.png",
        "..\\..\\evil.png",
        "tex\\wood.png",
        "stream.png:hidden",
        "bad\x00name",
        "line\nbreak.png",
        "trailing./x.png",
        "space /x.png",
        "",
        "x" * 2000,
    ],
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(ProjectError):
        check_member_name(name)


@pytest.mark.parametrize("name", ["shot.blend", "shot/tex/wood.png", "Ünïcode/シーン.blend", "folder/", ".hidden/x"])
def test_plain_names_are_accepted(name: str) -> None:
    assert check_member_name(name) == name.rstrip("/")


def test_zip_slip_entry_is_refused_before_writing(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "p.zip", {"shot.blend": BLEND, "../../outside.txt": b"x"})
    with pytest.raises(ProjectError, match=r"'\.\.' component") as info:
        open_project(archive)
    assert info.value.member == "../../outside.txt"
    assert info.value.path == str(archive)
    assert not (tmp_path.parent / "outside.txt").exists()


def test_symlink_entry_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "p.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("shot.blend", BLEND)
        link = zipfile.ZipInfo("tex")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc")
    with pytest.raises(ProjectError, match="symbolic link"):
        open_project(archive)


def test_encrypted_entry_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "p.zip", {"shot.blend": BLEND})
    # Set the "encrypted" bit in the central directory (zipfile cannot write encrypted entries).
    data = bytearray(archive.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    (flags,) = struct.unpack_from("<H", data, central + 8)
    struct.pack_into("<H", data, central + 8, flags | 0x1)
    archive.write_bytes(bytes(data))
    with pytest.raises(ProjectError, match="encrypted"):
        open_project(archive)


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "p.zip", {"shot.blend": BLEND, "Tex/a.png": b"1", "tex/a.png": b"2"})
    with pytest.raises(ProjectError, match="same name"):
        open_project(archive)


def test_file_and_folder_with_one_name_are_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "p.zip", {"shot.blend": BLEND, "tex": b"1", "tex/a.png": b"2"})
    with pytest.raises(ProjectError, match="a file and a folder"):
        open_project(archive)


# -- sizes and bombs ----------------------------------------------------------------------------


def test_limits_are_documented_constants() -> None:
    assert ZipLimits().max_members == MAX_MEMBERS
    assert ZipLimits().max_total_bytes == MAX_TOTAL_BYTES
    assert ZipLimits().max_compression_ratio == MAX_COMPRESSION_RATIO


def test_too_many_members(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "p.zip", {"shot.blend": BLEND, **{f"t/{i}.png": b"x" for i in range(20)}})
    with pytest.raises(ProjectError, match="21 entries"):
        open_project(archive, limits=ZipLimits(max_members=20))
    with open_project(archive, limits=ZipLimits(max_members=21)) as project:
        assert len(project.members) == 21


def test_declared_total_over_the_limit_is_refused_up_front(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "p.zip", {"shot.blend": BLEND, "big.bin": bytes(4096)})
    with pytest.raises(ProjectError, match="extracts to more than"):
        open_project(archive, limits=ZipLimits(max_total_bytes=len(BLEND) + 1000))


def test_compression_ratio_is_measured_while_extracting(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "p.zip", {"shot.blend": BLEND, "zeros.bin": bytes(4 << 20)})
    limits = ZipLimits(ratio_grace_bytes=1 << 20)
    # The directory itself looks fine: the bomb shows only while inflating.
    with (
        open_project(archive, limits=limits) as project,
        pytest.raises(ProjectError, match="inflates more than 250 times") as info,
    ):
        project.extract(tmp_path / "out")
    assert info.value.member == "zeros.bin"
    assert not (tmp_path / "out").exists(), "a failed extraction leaves nothing behind"
    # The same file within the grace size, or with a higher ratio allowed, extracts.
    with open_project(archive, limits=ZipLimits(max_compression_ratio=10_000)) as project:
        project.extract(tmp_path / "ok")
    assert (tmp_path / "ok/zeros.bin").stat().st_size == 4 << 20


def test_entry_larger_than_its_header_says_is_stopped(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "p.zip", {"shot.blend": BLEND, "data.bin": b"y" * 100_000})
    # Understate the uncompressed size in the central directory: the real data is bigger. Reading
    # stops at the declared size, so the entry's checksum cannot match.
    data = bytearray(archive.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 1000)
    archive.write_bytes(bytes(data))
    with (
        open_project(archive) as project,
        pytest.raises(ProjectError, match=r"damaged entry.*CRC|larger than its header says") as info,
    ):
        project.extract(tmp_path / "out")
    assert info.value.member == "data.bin"
    assert not (tmp_path / "out").exists()


def test_total_is_measured_while_extracting(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "p.zip", {"shot.blend": BLEND, "a.bin": bytes(3000), "b.bin": bytes(3000)})
    with open_project(archive) as project:
        # As if the headers had passed the up-front check with sizes smaller than the truth.
        project.limits = ZipLimits(max_total_bytes=len(BLEND) + 4000)
        with pytest.raises(ProjectError, match="extracts to more than") as info:
            project.extract(tmp_path / "out")
    assert info.value.member == "b.bin"
    assert not (tmp_path / "out").exists()


def test_overlapping_entries_are_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "p.zip", {"shot.blend": BLEND, "a.bin": bytes(1000), "b.bin": bytes(1000)})
    # Point the last entry at the previous one's data, as "overlapping" zip bombs do.
    data = bytearray(archive.read_bytes())
    entries = [i for i in range(len(data)) if data[i : i + 4] == b"PK\x01\x02"]
    (previous,) = struct.unpack_from("<I", data, entries[1] + 42)
    struct.pack_into("<I", data, entries[2] + 42, previous)
    archive.write_bytes(bytes(data))
    with pytest.raises(ProjectError, match="share their compressed data"):
        open_project(archive)


def test_not_a_zip(tmp_path: Path) -> None:
    bogus = tmp_path / "p.zip"
    bogus.write_bytes(b"PK\x03\x04 but then garbage")
    with pytest.raises(ProjectError, match="not a readable zip"):
        open_project(bogus)
    with pytest.raises(ProjectError, match="does not exist"):
        open_project(tmp_path / "nothing.zip")


# -- the main .blend ----------------------------------------------------------------------------


def test_single_blend_at_the_top(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "p.zip", {"shot.blend": BLEND, "lib/lib.blend": OTHER_BLEND, "shot.blend1": b"x"})
    assert detect_data_type(archive) is BlenderDataType.MULTI_FILE
    with open_project(archive) as project:
        assert project.main_blend == "shot.blend"
        assert project.root == ""
        assert project.blend_files() == ["shot.blend", "lib/lib.blend"]


def test_everything_in_one_folder(tmp_path: Path) -> None:
    members = {"proj/": b"", "proj/shot.blend": BLEND, "proj/lib/lib.blend": OTHER_BLEND}
    archive = make_zip(tmp_path / "p.zip", {**members, "__MACOSX/proj/._shot.blend": b"junk", "proj/.DS_Store": b""})
    with open_project(archive) as project:
        assert project.root == "proj"
        assert project.main_blend == "proj/shot.blend"
        assert [m.name for m in project.members] == ["proj", "proj/shot.blend", "proj/lib/lib.blend"]


def test_ambiguous_main_lists_the_candidates(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "p.zip", {"a.blend": BLEND, "b.blend": OTHER_BLEND, "c/d.blend": BLEND})
    with pytest.raises(ProjectError, match=r"2 \.blend files at the top of the zip") as info:
        open_project(archive)
    assert info.value.candidates == ("a.blend", "b.blend")
    assert "a.blend, b.blend" in str(info.value)
    with open_project(archive, main="b.blend") as project:
        assert project.main_blend == "b.blend"
    with open_project(archive, main="c/d.blend") as project:
        assert project.main_blend == "c/d.blend"


def test_no_main_lists_every_blend(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "p.zip", {"tex/a.png": b"1", "shots/s1.blend": BLEND, "shots/s2.blend": BLEND})
    with pytest.raises(ProjectError, match=r"no \.blend file at the top") as info:
        open_project(archive)
    assert info.value.candidates == ("shots/s1.blend", "shots/s2.blend")
    with pytest.raises(ProjectError, match=r"no 'nope\.blend'"):
        open_project(archive, main="nope.blend")


def test_name_relative_to_the_single_folder(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "p.zip", {"proj/shots/a.blend": BLEND, "proj/shots/b.blend": BLEND})
    with open_project(archive, main="shots\\b.blend") as project:
        assert project.main_blend == "proj/shots/b.blend"


def test_comment_written_by_the_packer_names_the_main(tmp_path: Path) -> None:
    members = {"shots/a.blend": BLEND, "shots/b.blend": OTHER_BLEND}
    archive = make_zip(tmp_path / "p.zip", members, comment=f"{MAIN_BLEND_COMMENT_PREFIX}shots/b.blend")
    with open_project(archive) as project:
        assert project.main_blend == "shots/b.blend"
    # A comment naming nothing in the zip is ignored, and the caller's choice wins over it.
    stale = make_zip(tmp_path / "q.zip", members, comment=f"{MAIN_BLEND_COMMENT_PREFIX}../../etc/passwd")
    with pytest.raises(ProjectError, match="name the main one"):
        open_project(stale)
    with open_project(archive, main="shots/a.blend") as project:
        assert project.main_blend == "shots/a.blend"


# -- reading and extracting ---------------------------------------------------------------------


def test_open_main_blend_reads_scenes_without_extracting(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "p.zip", {"proj/shot.blend": BLEND, "proj/big.bin": bytes(1 << 20)})
    with open_project(archive) as project:
        with project.open_main_blend() as bfile:
            assert [s.name for s in bfile.scenes()] == ["Scene"]
            assert bfile.version == "2.79"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["p.zip"]


def test_extract_writes_every_file_and_returns_the_main(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "p.zip", {"proj/shot.blend": BLEND, "proj/tex/wood.png": b"png", "proj/e/": b""})
    with open_project(archive) as project:
        main = project.extract(tmp_path / "out")
    assert main == tmp_path / "out/proj/shot.blend"
    assert main.read_bytes() == BLEND
    assert (tmp_path / "out/proj/tex/wood.png").read_bytes() == b"png"
    assert (tmp_path / "out/proj/e").is_dir()


def test_extract_refuses_a_folder_in_use(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "p.zip", {"shot.blend": BLEND})
    (tmp_path / "out").mkdir()
    (tmp_path / "out/keep.txt").write_text("mine")
    with open_project(archive) as project, pytest.raises(ProjectError, match="not empty"):
        project.extract(tmp_path / "out")
    assert (tmp_path / "out/keep.txt").read_text() == "mine"


def test_damaged_entry_is_a_project_error(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "p.zip", {"shot.blend": BLEND})
    data = bytearray(archive.read_bytes())
    data[200] ^= 0xFF  # inside the deflated data
    archive.write_bytes(bytes(data))
    with open_project(archive) as project, pytest.raises(ProjectError, match="damaged entry"):
        project.extract(tmp_path / "out")
