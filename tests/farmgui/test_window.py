"""The control station window, offscreen: drop real files and check what it shows."""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QPalette
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from agent import protocol as p
from blendfile import BlendFile
from farmgui.core.links import Link
from farmgui.core.service import FarmService, TaskOptions
from farmgui.ui import NONE_GUARD_APPLIED, compat
from farmgui.ui.icons import icon, icons_dir
from farmgui.ui.main_window import MainWindow
from farmgui.ui.task_detail import CELL_SIZES, FrameGrid, colour_of, state_bytes
from farmgui.ui.theme import FRAME_STATES, error_colour, mix, state_colours
from tests.conftest import BLENDFILES
from tests.pngs import png_bytes

SCREENSHOTS = Path(os.environ.get("FRAMEHERD_SCREENSHOTS", Path(__file__).parents[2] / "artifacts" / "screenshots"))


@pytest.fixture
def window(qtbot: QtBot, tmp_path: Path) -> Iterator[MainWindow]:
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings)
    qtbot.addWidget(win)
    win.resize(1000, 640)
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
    for path in paths:
        wait_read(qtbot, window, path)
    assert window.file_list.count() == 2
    for path, version, problem in ((paths[0], "2.60", ""), (paths[1], "-", "no DNA1 block"), (paths[0], "2.60", "")):
        window.select_file(str(path.resolve()))
        assert window.panel.labels["version"].text() == version
        assert problem in window.panel.problems.text()
        assert window.panel.isEnabled() == (not problem)


# -- a farm driven in-process: tables, the frame grid and the thumbnail, in light and dark ----------------
CAMERA_FILE = BLENDFILES / "gltf-blender-io/36_viewport_material_export.blend"  # 4.5, PNG, has a camera


class _NoLinks:
    def links(self) -> list[Link]:
        return []


@dataclass
class InProcessFarm:
    """What the window needs of a manager: a real FarmService (no HTTP, no threads), no agent links."""

    service: FarmService
    links: _NoLinks = field(default_factory=_NoLinks)


def dark_palette() -> QPalette:
    """A dark palette as a desktop's dark theme gives one (Fusion's colours)."""
    palette = QPalette()
    role = QPalette.ColorRole
    for r, colour in (
        (role.Window, "#353535"), (role.WindowText, "#e0e0e0"), (role.Base, "#232323"),
        (role.AlternateBase, "#2c2c2c"), (role.Text, "#e0e0e0"), (role.Button, "#353535"),
        (role.ButtonText, "#e0e0e0"), (role.Highlight, "#2a82da"), (role.HighlightedText, "#ffffff"),
        (role.ToolTipBase, "#353535"), (role.ToolTipText, "#e0e0e0"), (role.PlaceholderText, "#8a8a8a"),
        (role.Light, "#505050"), (role.Midlight, "#404040"), (role.Mid, "#2a2a2a"), (role.Dark, "#1e1e1e"),
        (role.Shadow, "#141414"),
    ):  # fmt: skip
        palette.setColor(r, QColor(colour))
    return palette


@pytest.fixture
def dark() -> Iterator[QPalette]:
    """The whole application in a dark palette for one test."""
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    light = app.palette()
    palette = dark_palette()
    app.setPalette(palette)
    yield palette
    app.setPalette(light)


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[FarmService]:
    service = FarmService(tmp_path / "data")  # not started: no maintenance thread
    yield service
    service.close()


def run_agents(service: FarmService, frames: int = 600, agents: int = 6, rounds: int = 3) -> str:
    """Submit a task and play ``rounds`` of the protocol for ``agents`` scripted agents."""
    key = str(service.submit_file(CAMERA_FILE, TaskOptions(frame_start=1, frame_end=frames))["task_key"])
    names = [f"render-pc-{i:02d}" for i in range(1, agents + 1)]
    for i, name in enumerate(names):
        blenders = [p.BlenderVersion("4.5.3", "/opt/blender-4.5/blender")]
        service.hello(p.AgentInfo(name, name, f"192.168.1.{20 + i}", 8765, blenders=blenders))
    for round_ in range(rounds):
        for i, name in enumerate(names):
            work = service.request_work(p.WorkRequest(name, [key]))
            assert work is not None
            done = work.frames if round_ < rounds - 1 else work.frames[: len(work.frames) // 2]
            for frame in done:
                upload = service.storage.task_dir(key) / f".upload-{name}-{frame}"
                body = png_bytes(64, 36, shade=(frame * 9) % 256)
                upload.write_bytes(body)
                sha = hashlib.sha256(body).hexdigest()
                assert service.accept_frame(key, frame, name, work.attempt, upload, sha, 1.5 + i / 10, "png").accepted
            rest = [f for f in work.frames if f not in done]
            if rest:
                running = p.FrameProgress(key, work.attempt, rest[0], 0.3 + i / 10)
                service.heartbeat(p.Heartbeat(name, p.AgentState.RENDERING, [running]))
    return key


def farm_window(qtbot: QtBot, tmp_path: Path, service: FarmService) -> MainWindow:
    settings = QSettings(str(tmp_path / "farm.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings, manager=InProcessFarm(service))
    qtbot.addWidget(win)
    win.resize(1100, 720)
    win.show()
    qtbot.waitUntil(lambda: win.tasks_model.rowCount() == 1 and win.agents_model.rowCount() == 6, timeout=10_000)
    return win


def test_the_window_over_a_farm_in_light_and_dark(qtbot: QtBot, tmp_path: Path, farm: FarmService) -> None:
    key = run_agents(farm)
    win = farm_window(qtbot, tmp_path, farm)
    try:
        win.tasks_view.selectRow(0)
        # A small task's detail is read even while its tab is hidden: showing the tab shows it at once.
        qtbot.waitUntil(lambda: len(win.detail.grid.frames) == 600, timeout=10_000)
        win.tabs.setCurrentWidget(win.detail)
        qtbot.waitUntil(lambda: not win.detail.thumbnail.pixmap().isNull(), timeout=10_000)
        states = {f["state"] for f in win.detail.grid.frames}
        assert {"done", "rendering", "queued"} <= states
        done = sum(f["state"] == "done" for f in win.detail.grid.frames)
        assert f"{done}&nbsp;done" in win.detail.title.text()
        row = win.tasks_model.rows[0]
        assert (row.key, row.frames_done, row.frames_total) == (key, done, 600)
        rendering = [a for a in win.agents_model.rows if a.state == "rendering"]
        assert rendering
        assert all(a.share > 0 for a in rendering)
        screenshot(win, "11-task-detail-light")
        app = QApplication.instance()
        assert isinstance(app, QApplication)
        light = app.palette()
        app.setPalette(dark_palette())
        try:
            qtbot.waitUntil(lambda: win.detail.grid.palette().color(QPalette.ColorRole.Base).lightness() < 64)
            screenshot(win, "12-task-detail-dark")
            win.tabs.setCurrentWidget(win.agents_view)
            screenshot(win, "13-agents-dark")
            win.tabs.setCurrentWidget(win.tasks_view)
            screenshot(win, "14-tasks-dark")
        finally:
            app.setPalette(light)
    finally:
        win.close()


def test_a_10000_frame_task_fits_its_grid(qtbot: QtBot, tmp_path: Path, farm: FarmService) -> None:
    run_agents(farm, frames=10_000, rounds=1)
    win = farm_window(qtbot, tmp_path, farm)
    try:
        win.tasks_view.selectRow(0)
        win.tabs.setCurrentWidget(win.detail)
        qtbot.waitUntil(lambda: len(win.detail.grid.frames) == 10_000, timeout=20_000)
        grid = win.detail.grid
        assert (grid.cell, grid.gap) == CELL_SIZES[-1]  # the smallest cells
        assert grid.height() == grid.heightForWidth(grid.width())
        assert grid.width() == win.detail.grid_area.viewport().width()  # no horizontal scrolling
        last = grid.cell_rect(9_999)
        assert grid.frame_at(last.center()) == grid.frames[9_999]
        screenshot(win, "15-10000-frames")
    finally:
        win.close()


# -- the frame grid alone --------------------------------------------------------------------------------
def frames_in(*states: str) -> list[dict[str, object]]:
    return [{"frame": i + 1, "state": s, "agent": "pc1" if s != "queued" else None, "seconds": None}
            for i, s in enumerate(states)]  # fmt: skip


@pytest.mark.parametrize("palette", ["light", "dark"])
def test_the_grid_paints_each_state_in_its_colour(qtbot: QtBot, palette: str) -> None:
    grid = FrameGrid()
    qtbot.addWidget(grid)
    if palette == "dark":
        grid.setPalette(dark_palette())
    states = [*FRAME_STATES, "someday-new"]
    grid.set_frames(frames_in(*states), {"pc1": "render-pc-01"})
    grid.fit(300, 100)
    assert (grid.cell, grid.gap) == CELL_SIZES[0]
    image = grid.grab().toImage()
    for i, state in enumerate(states):
        centre = grid.cell_rect(i).center()
        assert image.pixelColor(centre).name() == colour_of(state, grid.palette()).name(), state
    gap = grid.cell_rect(0).topRight() + QPoint(1, 0)
    assert image.pixelColor(gap).name() != colour_of("queued", grid.palette()).name()  # the gap is not painted
    assert grid.tooltip_for(grid.frames[3]) == "frame 4: done on render-pc-01"
    assert grid.frame_at(grid.cell_rect(2).center()) == grid.frames[2]
    assert grid.frame_at(QPoint(299, 99)) is None


def test_the_grid_takes_smaller_cells_as_frames_grow() -> None:
    grid = FrameGrid()
    for count, expected in ((10, CELL_SIZES[0]), (1_500, CELL_SIZES[2]), (100_000, CELL_SIZES[-1])):
        grid.set_frames(frames_in(*["queued"] * count), {})
        grid.fit(800, 240)
        assert (grid.cell, grid.gap) == expected, count
    assert state_bytes(frames_in("queued", "done", "failed", "what")) == bytes((0, 3, 4, len(FRAME_STATES)))


@pytest.mark.parametrize("palette", ["light", "dark"])
def test_state_colours_stand_out_from_the_background(palette: str) -> None:
    """WCAG's 3:1 for graphics against the grid's background; queued frames are faint on purpose."""
    pal = dark_palette() if palette == "dark" else QApplication.palette()
    base = pal.color(QPalette.ColorRole.Base)
    for state, colour in zip(FRAME_STATES, state_colours(pal), strict=False):
        assert contrast(colour, base) >= (1.8 if state == "queued" else 3.0), (state, colour.name())
    assert contrast(error_colour(pal), pal.color(QPalette.ColorRole.Window)) >= 4.5


def contrast(a: QColor, b: QColor) -> float:
    def luminance(c: QColor) -> float:
        def channel(v: float) -> float:
            return v / 12.92 if v <= 0.03928 else float(((v + 0.055) / 1.055) ** 2.4)

        return 0.2126 * channel(c.redF()) + 0.7152 * channel(c.greenF()) + 0.0722 * channel(c.blueF())

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


# -- icons, palettes, and the guard against the bindings' reference leak ---------------------------------
def test_icons_exist_and_the_window_uses_its_own(window: MainWindow) -> None:
    assert not window.windowIcon().isNull()
    names = sorted(p.stem for p in icons_dir().glob("*.svg"))
    assert {"frameherd", "agent", "agent-idle", "agent-rendering", "agent-offline"} <= set(names)
    for name in names:
        pixmap = icon(name).pixmap(32, 32)
        assert not pixmap.isNull(), name
        image = pixmap.toImage()
        assert image.pixelColor(16, 16).alpha() > 0, name  # something is drawn in the middle


def test_dark_palette_recolours_what_is_not_from_the_style(window: MainWindow, dark: QPalette) -> None:
    assert error_colour(dark).name() in window.panel.problems.styleSheet()
    hint_colour = mix(dark.color(QPalette.ColorRole.Window), dark.color(QPalette.ColorRole.WindowText), 0.5)
    assert hint_colour.name() in window.hint.styleSheet()
    screenshot(window, "16-empty-dark")


def test_void_qt_calls_cannot_free_none() -> None:
    """PySide6 6.12.0 on Python 3.11 drops a reference to None on every void call (see compat.py)."""
    if not NONE_GUARD_APPLIED:
        pytest.skip("these bindings do not leak references to None")
    assert sys.getrefcount(None) > 1 << 39
    assert compat.void_calls_leak_none()  # still leaking, still guarded
