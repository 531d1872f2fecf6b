"""Text blocks registered to run on load, and scripted drivers, read from files real Blenders saved.

Both Blenders (Debian's 3.4 executable and the bpy 5.0.1 module) run ``MAKE_SCRIPT`` below: it saves
a file with text blocks whose ``use_module`` is on and off and with drivers of each kind, plain and
zstd-compressed, and writes what Blender itself says about them as JSON. The reader must agree.
"""

from __future__ import annotations

import json
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from blendfile import (
    BlendFile,
    BlendFileError,
    autorun_scripts,
    python_drivers,
    text_blocks,
)
from blendfile.scripts import TXT_ISSCRIPT
from farmgui.core.inspect import inspect_file
from tests.conftest import BLENDFILES, corpus_files

from .fuzzing import Seed, mutate

MAKE_SCRIPT = r"""
import json
import sys

import bpy

out = sys.argv[sys.argv.index("--") + 1] if "--" in sys.argv else sys.argv[1]
bpy.ops.wm.read_factory_settings(use_empty=True)
for name, body, register in [
    ("autorun.py", "print('on load')\n", True),
    ("notes.txt", "just notes\n", False),
    ("Ünïcode run.py", "x = 1\n", True),
    ("helper.py", "def f():\n    return 1\n", False),
]:
    text = bpy.data.texts.new(name)
    text.write(body)
    text.use_module = register
empty = bpy.data.objects.new("Driven", None)
bpy.context.scene.collection.objects.link(empty)
for index, kind, expression in [
    (0, "SCRIPTED", "__import__('os').getpid() * 0"),
    (1, "AVERAGE", ""),
    (2, "SCRIPTED", "frame / 10"),
]:
    driver = empty.driver_add("location", index).driver
    driver.type = kind
    if expression:
        driver.expression = expression
report = {
    "version": list(bpy.app.version[:2]),
    "texts": {t.name: t.use_module for t in bpy.data.texts},
    "expressions": [
        fc.driver.expression for fc in empty.animation_data.drivers if fc.driver.type == "SCRIPTED"
    ],
}
bpy.ops.wm.save_as_mainfile(filepath=out + "/scripts.blend")
bpy.ops.wm.save_as_mainfile(filepath=out + "/scripts_zstd.blend", compress=True)
with open(out + "/report.json", "w", encoding="utf-8") as f:
    json.dump(report, f)
"""


@dataclass(frozen=True)
class Made:
    files: list[Path]
    report: dict[str, Any]


def _made(argv: list[str], out: Path) -> Made:
    subprocess.run(argv, check=True, capture_output=True, timeout=300)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return Made([out / "scripts.blend", out / "scripts_zstd.blend"], report)


@pytest.fixture(scope="module")
def made_34(blender_exe: Path, tmp_path_factory: pytest.TempPathFactory) -> Made:
    out = tmp_path_factory.mktemp("scripts34")
    script = out / "make.py"
    script.write_text(MAKE_SCRIPT, encoding="utf-8")
    argv = [str(blender_exe), "-b", "--factory-startup", "--python-exit-code", "1", "--python", str(script)]
    return _made([*argv, "--", str(out)], out)


@pytest.fixture(scope="module")
def made_50(bpy_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Made:
    out = tmp_path_factory.mktemp("scripts50")
    script = out / "make.py"
    script.write_text(MAKE_SCRIPT, encoding="utf-8")
    return _made([str(bpy_python), str(script), str(out)], out)


@pytest.fixture(params=["3.4", "5.0"])
def made(request: pytest.FixtureRequest) -> Made:
    name = "made_34" if request.param == "3.4" else "made_50"
    result: Made = request.getfixturevalue(name)
    assert result.report["version"][:2] == [int(x) for x in request.param.split(".")]
    return result


@pytest.mark.blender
def test_text_blocks_and_their_flag_agree_with_blender(made: Made) -> None:
    expected = made.report["texts"]
    for path in made.files:
        with BlendFile.open(path) as bfile:
            blocks = text_blocks(bfile)
            assert {t.name: t.registered for t in blocks} == expected, path.name
            assert sorted(autorun_scripts(bfile)) == sorted(name for name, on in expected.items() if on)
            assert autorun_scripts(bfile) == [t.name for t in blocks if t.registered], "in file order"


@pytest.mark.blender
def test_the_flag_is_txt_isscript(made: Made) -> None:
    """``use_module`` is bit 4 of ``Text.flags`` in both versions, and only that bit tells them apart."""
    with BlendFile.open(made.files[0]) as bfile:
        flags = {view.id_name: view.get_int("flags") for view in bfile.iter_structs(b"TX")}
    assert TXT_ISSCRIPT == 0x10
    assert flags["autorun.py"] & TXT_ISSCRIPT
    assert not flags["notes.txt"] & TXT_ISSCRIPT
    assert flags["autorun.py"] & ~TXT_ISSCRIPT == flags["notes.txt"] & ~TXT_ISSCRIPT


@pytest.mark.blender
def test_scripted_drivers_agree_with_blender(made: Made) -> None:
    for path in made.files:
        with BlendFile.open(path) as bfile:
            assert sorted(python_drivers(bfile)) == sorted(made.report["expressions"]), path.name


@pytest.mark.blender
def test_inspect_file_reports_autorun_scripts(made: Made) -> None:
    summary = inspect_file(made.files[1])
    assert summary.ok, summary.error
    assert sorted(summary.autorun_scripts) == ["autorun.py", "Ünïcode run.py"]


def test_files_without_scripts() -> None:
    """Every corpus file the reader opens: no text registered to run (none of them has one)."""
    checked = 0
    for path in corpus_files():
        try:
            with BlendFile.open(path) as bfile:
                assert autorun_scripts(bfile) == [], path
                python_drivers(bfile)
                checked += 1
        except BlendFileError:
            continue
    assert checked > 20
    summary = inspect_file(BLENDFILES / "bat/basic_file.blend")
    assert summary.ok
    assert summary.autorun_scripts == ()


@pytest.mark.blender
def test_damaged_text_blocks_only_raise_blendfile_errors(made_50: Made, tmp_path: Path) -> None:
    """Mutations aimed at the TX and driver blocks: a BlendFileError naming the file, or an answer."""
    data = made_50.files[0].read_bytes()
    hot: list[int] = []
    with BlendFile.open(made_50.files[0]) as bfile:
        hsize = bfile.header.block_header.size
        driver_index = bfile.sdna.struct_index("ChannelDriver")
        for block in bfile.blocks:
            if block.code in (b"TX\0\0", b"DNA1") or block.sdna_index == driver_index:
                hot.extend(range(block.offset - hsize, block.offset + min(block.size, 512)))
    seed = Seed(data, hot, len(data))
    rng = random.Random(20261129)
    path = tmp_path / "mutant.blend"
    for _ in range(300):
        path.write_bytes(mutate(seed, random.Random(rng.getrandbits(64))))
        try:
            with BlendFile.open(path) as bfile:
                autorun_scripts(bfile)
                python_drivers(bfile)
        except BlendFileError as exc:
            assert str(path) in str(exc)
