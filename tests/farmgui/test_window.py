"""The control station window, offscreen: drop real files and check what it shows."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from blendfile import BlendFile
from farmgui.ui.main_window import MainWindow
from tests.conftest import BLENDFILES

SCREENSHOTS = Path(os.environ.get("FRAMEHERD_SCREENSHOTS", Path(__file__).parents[2] / "artifacts" / "screenshots"))


@pytest.fixture
def window(qtbot: QtBot, tmp_path: Path) -> Iterator[MainWindow]:
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings)
    qtbot.addWidget(win)
    win.resize(900, 560)
    win.show()
    yield win
    win.close()


def drop(window: MainWindow, *paths: Path) -> None:
    """What a file manager does: a drag enters the window (and is accepted), then the drop."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    buttons, modifiers = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # PySide marks the QPoint overload, Qt has no other
        enter = QDragEnterEvent(QPoint(100, 100), Qt.DropAction.CopyAction, mime, buttons, modifiers)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    event = QDropEvent(QPointF(100, 100), Qt.DropAction.CopyAction, mime, buttons, modifiers)
    QApplication.sendEvent(window, event)
    assert event.isAccepted()


def screenshot(window: MainWindow, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert window.grab().save(str(SCREENSHOTS / f"{name}.png"))


def wait_read(qtbot: QtBot, window: MainWindow, path: Path) -> None:
    key = str(path.resolve())
    qtbot.waitUntil(lambda: key in window.summaries and not window.pending, timeout=10_000)


def test_empty_window(window: MainWindow) -> None:
    assert window.hint.isVisible()
    assert not window.panel.isVisible()
    screenshot(window, "01-empty")


def test_drop_a_blend_file_shows_its_scene(qtbot: QtBot, window: MainWindow) -> None:
    path = BLENDFILES / "bat/basic_file.blend"
    drop(window, path)
    wait_read(qtbot, window, path)
    scene = BlendFile.get_current_scene(path)
    panel = window.panel
    assert panel.isVisible()
    assert panel.scene_box.currentText() == scene.name
    assert (panel.frame_start.value(), panel.frame_end.value(), panel.frame_step.value()) == (1, 250, 1)
    assert panel.labels["version"].text() == "2.79"
    assert panel.labels["count"].text() == "250"
    assert panel.labels["fps"].text() == "24 fps"
    assert panel.labels["resolution"].text().startswith("960 x 540 px")
    assert panel.labels["engine"].text() == "CYCLES"
    assert panel.labels["output"].text().startswith("FFMPEG (MKV, H264)")
    assert panel.labels["camera"].text() == "none"
    assert "no camera" in panel.problems.text()
    panel.frame_step.setValue(10)
    assert panel.labels["count"].text() == "25"
    screenshot(window, "02-file-dropped-problem")


def test_drop_a_5_0_file(qtbot: QtBot, window: MainWindow) -> None:
    path = BLENDFILES / "gltf-blender-io/38_pointcloud_GN.blend"
    drop(window, path)
    wait_read(qtbot, window, path)
    assert window.panel.labels["version"].text() == "5.1 (zstd-compressed)"
    assert window.panel.labels["camera"].text() == "Camera"
    assert window.panel.problems.text() == ""
    screenshot(window, "03-file-dropped")


def test_drop_a_file_that_is_not_a_blend_file(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    path = tmp_path / "holiday.blend"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    drop(window, path)
    wait_read(qtbot, window, path)
    assert not window.panel.isEnabled()
    assert "neither a blend file nor a zip project" in window.panel.problems.text()
    screenshot(window, "04-not-a-blend-file")


def test_drop_several_files(qtbot: QtBot, window: MainWindow) -> None:
    paths = [BLENDFILES / "assimp/yxa_1.blend", BLENDFILES / "bat/corrupt_only_magic.blend"]
    drop(window, *paths)
    for p in paths:
        wait_read(qtbot, window, p)
    assert window.file_list.count() == 2
    for path, version, problem in ((paths[0], "2.60", ""), (paths[1], "-", "no DNA1 block"), (paths[0], "2.60", "")):
        window.select_file(str(path.resolve()))
        assert window.panel.labels["version"].text() == version
        assert problem in window.panel.problems.text()
        assert window.panel.isEnabled() == (not problem)
