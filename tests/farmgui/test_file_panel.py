"""The file panel alone, from summaries of real files (no Blender needed): its warnings, the external files
a .blend needs and the offer to pack them, split-frame rendering, and a zip project's main .blend."""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from blendfile import RenderOutputType
from farmgui.core.inspect import FileSummary, inspect_file
from farmgui.core.packing import pack_project
from farmgui.ui.dependencies import DependenciesModel, project_bytes
from farmgui.ui.file_panel import FilePanel, format_size
from farmgui.ui.theme import error_colour
from tests.conftest import BLENDFILES
from tests.pngs import png_bytes


def test_auto_run_scripts_are_named_until_allowed(qtbot: QtBot) -> None:
    summary = replace(
        inspect_file(BLENDFILES / "gltf-blender-io/38_pointcloud_GN.blend"), autorun_scripts=("rig_ui.py", "setup.py")
    )
    panel = FilePanel()
    qtbot.addWidget(panel)
    panel.show_summary(summary)
    text = panel.problems.text()
    assert "scripts set to run when it opens (rig_ui.py, setup.py)" in text
    assert panel.render_button.isEnabled(), "a warning, not a reason to refuse the file"
    panel.trusted.setChecked(True)
    assert "scripts set to run" not in panel.problems.text()
    assert panel.options().trusted


def test_no_warning_without_scripts(qtbot: QtBot) -> None:
    panel = FilePanel()
    qtbot.addWidget(panel)
    panel.show_summary(inspect_file(BLENDFILES / "gltf-blender-io/38_pointcloud_GN.blend"))
    assert panel.problems.text() == ""


# -- external files, the offer to pack, split-frame rendering, a zip's main .blend -----------------------------
def linked_copy(tmp_path: Path) -> Path:
    """subdir/doubly_linked_up.blend links //../linked_cube.blend (which links //basic_file.blend) and
    //../material_textures.blend, which is not there: two files found (one of them a library's), one missing."""
    for name in ("subdir/doubly_linked_up.blend", "linked_cube.blend", "basic_file.blend"):
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(BLENDFILES / "bat" / name, target)
    return tmp_path / "subdir/doubly_linked_up.blend"


def shown_panel(qtbot: QtBot, summary: FileSummary, project_bytes: int | None = None) -> FilePanel:
    panel = FilePanel()
    qtbot.addWidget(panel)
    panel.show_summary(summary, project_bytes)
    return panel


def table(model: DependenciesModel) -> list[list[str]]:
    return [[model.data(model.index(r, c)) for c in range(model.columnCount())] for r in range(model.rowCount())]


def test_external_files_are_listed_and_the_missing_one_named(qtbot: QtBot, tmp_path: Path) -> None:
    main = linked_copy(tmp_path)
    summary = inspect_file(main)
    panel = shown_panel(qtbot, summary, project_bytes(summary))
    assert table(panel.dependencies) == [  # the missing one first, a library's own file after its user's
        ["library", "//../material_textures.blend", "this file", "MISSING"],
        ["library", "//../linked_cube.blend", "this file", "found"],
        ["library", "//basic_file.blend", "linked_cube.blend", "found"],
    ]
    assert panel.deps_title.text() == "<b>External files: 3</b> (2 found, 1 MISSING)"
    tip = panel.dependencies.data(panel.dependencies.index(0, 1), Qt.ItemDataRole.ToolTipRole)
    assert str(tmp_path / "material_textures.blend") in tip
    colour = panel.dependencies.data(panel.dependencies.index(0, 3), Qt.ItemDataRole.ForegroundRole)
    assert colour == error_colour(panel.palette())
    warning = panel.problems.text()
    assert "Warning: 1 external file MISSING: //../material_textures.blend. The farm renders without it" in warning
    assert "pink" in warning
    # The offer to pack: on by default, with the number of files and the size of them all.
    total = sum(p.stat().st_size for p in tmp_path.rglob("*.blend"))
    assert panel.pack.isVisibleTo(panel)
    assert panel.pack.isChecked()
    assert panel.pack.text() == f"Pack the .blend and its 2 files into a project ({format_size(total)} in all)"
    assert panel.pack_requested()
    panel.pack.setChecked(False)
    assert not panel.pack_requested()
    assert "unpacked, the farm renders without them" in panel.problems.text()


def test_the_dependencies_model_passes_the_model_tester(
    qtbot: QtBot, qtmodeltester: ModelTester, tmp_path: Path
) -> None:
    model = DependenciesModel()
    qtmodeltester.check(model)
    model.set_summary(inspect_file(linked_copy(tmp_path)))
    qtmodeltester.check(model)
    assert model.rowCount() == 3
    model.set_summary(None)
    assert model.rowCount() == 0


def test_a_file_without_external_files_shows_no_list_and_no_offer(qtbot: QtBot) -> None:
    panel = shown_panel(qtbot, inspect_file(BLENDFILES / "gltf-blender-io/38_pointcloud_GN.blend"))
    assert not panel.deps_view.isVisibleTo(panel)
    assert not panel.pack.isVisibleTo(panel)
    assert not panel.pack_requested()


def test_split_across_agents_only_for_a_single_frame(qtbot: QtBot) -> None:
    panel = shown_panel(qtbot, inspect_file(BLENDFILES / "gltf-blender-io/38_pointcloud_GN.blend"))
    assert (panel.frame_start.value(), panel.frame_end.value()) == (1, 250)
    assert not panel.split.isEnabled()
    assert not panel.split.isChecked(), "off by default"
    assert "single frame" in panel.split.toolTip()
    assert (panel.tiles.minimum(), panel.tiles.maximum()) == (2, 64)
    panel.frame_end.setValue(1)
    assert panel.split.isEnabled()
    assert not panel.tiles.isEnabled()
    assert panel.options().tiles is None
    panel.split.setChecked(True)
    assert panel.tiles.isEnabled()
    panel.tiles.setValue(6)
    assert panel.options().tiles == 6
    assert panel.tiles_label.text() == "agents (3 x 2 tiles of about 640 x 540 px)"
    panel.frame_end.setValue(10)  # a range again: no split, whatever the box says
    assert not panel.split.isEnabled()
    assert panel.options().tiles is None
    assert panel.tiles_label.text() == "agents"
    panel.frame_end.setValue(1)
    assert panel.options().tiles == 6
    assert panel.render_button.isEnabled()


def test_split_is_refused_for_a_format_that_cannot_be_stitched(qtbot: QtBot) -> None:
    summary = inspect_file(BLENDFILES / "gltf-blender-io/38_pointcloud_GN.blend")
    scene = summary.scenes[0]
    hdr = replace(summary, scenes=(replace(scene, output_type=RenderOutputType.HDR, frame_end=scene.frame_start),))
    panel = shown_panel(qtbot, hdr)
    panel.split.setChecked(True)
    assert "Problem: a HDR image cannot be split across agents" in panel.problems.text()
    assert not panel.render_button.isEnabled()
    panel.split.setChecked(False)
    assert panel.render_button.isEnabled()


def two_shot_zip(path: Path) -> Path:
    """A zip project with two .blend files at its top and no word on which one to render."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(BLENDFILES / "gltf-blender-io/38_pointcloud_GN.blend", "shot_010.blend")
        zf.write(BLENDFILES / "gltf-blender-io/36_viewport_material_export.blend", "shot_020.blend")
        zf.writestr("textures/wood.png", png_bytes(8, 8))
    return path


def test_a_zip_with_two_blend_files_asks_which_one(qtbot: QtBot, tmp_path: Path) -> None:
    summary = inspect_file(two_shot_zip(tmp_path / "shots.zip"))
    panel = shown_panel(qtbot, summary)
    assert panel.isEnabled(), "the main .blend can be chosen"
    assert panel.main_box.isVisibleTo(panel)
    assert panel.main_box.isEnabled()
    assert [panel.main_box.itemText(i) for i in range(panel.main_box.count())] == ["shot_010.blend", "shot_020.blend"]
    assert panel.main_box.currentIndex() == -1
    assert panel.problems.text().startswith("Choose the .blend to render (Main .blend, above): 2 .blend files")
    assert not panel.render_button.isEnabled()
    assert not panel.scene_box.isEnabled()
    with qtbot.waitSignal(panel.main_blend_chosen) as chosen:
        panel.main_box.setCurrentIndex(1)
    assert chosen.args == ["shot_020.blend"]
    # What the window does then: read the zip again with that main .blend.
    panel.show_summary(inspect_file(tmp_path / "shots.zip", main_blend="shot_020.blend"))
    assert panel.main_box.currentText() == "shot_020.blend"
    assert panel.labels["version"].text() == "4.5"
    assert panel.render_button.isEnabled()
    assert panel.options().main_blend == "shot_020.blend"
    assert not panel.pack.isVisibleTo(panel), "a zip is a project already"


def test_a_plain_blend_file_has_no_main_blend_row(qtbot: QtBot) -> None:
    panel = shown_panel(qtbot, inspect_file(BLENDFILES / "gltf-blender-io/38_pointcloud_GN.blend"))
    assert not panel.main_box.isVisibleTo(panel)
    assert panel.options().main_blend is None


def test_sending_shows_progress_and_holds_the_button(qtbot: QtBot) -> None:
    panel = shown_panel(qtbot, inspect_file(BLENDFILES / "gltf-blender-io/38_pointcloud_GN.blend"))
    panel.set_sending("Packing shot.blend: 1.0 MiB of 4.0 MiB", 1 << 20, 4 << 20)
    assert panel.progress.isVisibleTo(panel)
    assert (panel.progress.value(), panel.progress.maximum()) == (250, 1000)
    assert not panel.render_button.isEnabled()
    panel.frame_step.setValue(2)  # an edit re-checks the file: the button stays held
    assert not panel.render_button.isEnabled()
    panel.set_sending("Sending shot.zip...")
    assert panel.progress.maximum() == 0  # busy, no measure
    panel.set_sending(None)
    assert not panel.progress.isVisibleTo(panel)
    assert panel.render_button.isEnabled()


def test_a_packed_project_names_its_main_blend_and_offers_the_others(qtbot: QtBot, tmp_path: Path) -> None:
    report = pack_project(linked_copy(tmp_path / "src"), tmp_path / "linked.zip")
    summary = inspect_file(tmp_path / "linked.zip")
    panel = shown_panel(qtbot, summary)
    assert panel.main_box.currentText() == report.main_blend == "subdir/doubly_linked_up.blend"
    assert panel.main_box.count() == 3
    assert panel.main_box.isEnabled()
    assert panel.options().main_blend == "subdir/doubly_linked_up.blend"


def test_another_file_starts_from_the_safe_choices(qtbot: QtBot, tmp_path: Path) -> None:
    first = inspect_file(BLENDFILES / "gltf-blender-io/38_pointcloud_GN.blend")
    panel = shown_panel(qtbot, first)
    panel.trusted.setChecked(True)
    panel.frame_end.setValue(1)
    panel.split.setChecked(True)
    panel.show_summary(first)  # the same file again (read anew): the user's choices stay
    assert panel.trusted.isChecked()
    assert panel.split.isChecked()
    second = inspect_file(linked_copy(tmp_path))
    panel.show_summary(second)
    panel.pack.setChecked(False)
    assert not panel.trusted.isChecked(), "trusting one file's scripts is not trusting the next one's"
    assert not panel.split.isChecked()
    panel.show_summary(first)
    assert not panel.trusted.isChecked()
    panel.show_summary(second)
    assert panel.pack.isChecked()
