"""The file panel's warnings, from summaries (no Blender needed)."""

from __future__ import annotations

from dataclasses import replace

from pytestqt.qtbot import QtBot

from farmgui.core.inspect import inspect_file
from farmgui.ui.file_panel import FilePanel
from tests.conftest import BLENDFILES


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
