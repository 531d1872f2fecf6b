"""The control station window, offscreen: drop real files and check what it shows."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QMimeData, QObject, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QPalette
from PySide6.QtWidgets import QApplication, QMessageBox, QTabWidget, QWidget
from pytestqt.qtbot import QtBot

from agent import protocol as p
from blendfile import BlenderDataType, BlendFile, open_project
from farmgui.core.links import Link
from farmgui.core.packing import PackReport, pack_project
from farmgui.core.service import FarmService, FrameUpload, TaskOptions
from farmgui.ui import NONE_GUARD_APPLIED, compat, submission
from farmgui.ui.file_panel import format_size
from farmgui.ui.icons import icon, icons_dir
from farmgui.ui.main_window import MainWindow
from farmgui.ui.task_detail import (
    CELL_SIZES,
    FrameGrid,
    GridPicture,
    colour_of,
    grid_picture,
    load_detail,
    pane_colour,
    state_bytes,
)
from farmgui.ui.theme import FRAME_STATES, error_colour, mix, state_colours
from tests.blender_run import run_blender
from tests.conftest import BLENDFILES, DATA
from tests.pngs import png_bytes

from .test_file_panel import two_shot_zip

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
    for _ in range(3):  # pending layout passes first (a label that now wraps to more lines gets its height)
        QApplication.processEvents()
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
                arrived = FrameUpload(key, frame, name, work.attempt, upload, sha, 1.5 + i / 10, "png")
                assert service.accept_frame(arrived).accepted
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


def test_a_grid_picture_made_on_another_thread_is_the_one_the_grid_would_make(qtbot: QtBot) -> None:
    grid = FrameGrid()
    qtbot.addWidget(grid)
    frames = frames_in(*[FRAME_STATES[i % len(FRAME_STATES)] for i in range(1_000)])
    grid.set_frames(frames, {})
    grid.fit(400, 200)
    made_here = grid.grab().toImage()
    states = state_bytes(frames)
    made: list[GridPicture] = []
    worker = threading.Thread(target=lambda: made.append(grid_picture(states, 400, 200, grid.colours)))
    worker.start()
    worker.join()
    grid.set_frames(frames, {}, states, made[0])
    grid.fit(400, 200)
    assert grid.grab().toImage() == made_here
    assert grid.picture is made[0]  # painted as it came, not made again
    grid.fit(300, 200)  # another width: the grid makes its own
    grid.grab()
    assert grid.picture is not made[0]
    assert grid.picture is not None
    assert grid.picture.columns == 300 // grid.step


class LayoutRequests(QObject):
    """Counts the layout requests a widget receives."""

    def __init__(self, widget: QWidget) -> None:
        super().__init__(widget)
        self.count = 0
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # Qt's name
        self.count += event.type() == QEvent.Type.LayoutRequest
        return False


def test_a_detail_refresh_is_laid_out_within_the_detail(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    """A new title and thumbnail stay inside the page: a layout request reaching the tab widget makes it
    repaint itself and the whole page (see TaskDetail). The picture and the thumbnail come prepared."""
    detail = window.detail
    window.tabs.setCurrentWidget(detail)
    frames = frames_in(*["done"] * 300, *["queued"] * 700)
    files = []
    for i in range(2):
        files.append(tmp_path / f"frame_{i}.png")
        files[-1].write_bytes(png_bytes(640, 360, shade=40 * i))

    def read(done: int, newest: Path) -> None:
        rows = [dict(f, state="done") if i < done else f for i, f in enumerate(frames)]
        data = load_detail("k" * 32, lambda _: rows, lambda _: [], lambda _: [newest], {}, None, detail.view())
        assert data.picture is not None
        assert data.scaled is not None
        detail.show_data("shot.blend", data, {})
        assert detail.grid.picture is data.picture
        for _ in range(3):
            QApplication.processEvents()

    read(300, files[0])
    requests = LayoutRequests(window.tabs)
    read(400, files[1])
    assert "400&nbsp;done" in detail.title.text()
    assert detail.shown_thumbnail == str(files[1])
    pixmap = detail.thumbnail.pixmap()
    assert max(pixmap.width() - detail.thumbnail.width(), pixmap.height() - detail.thumbnail.height()) == 0
    assert requests.count == 0


@pytest.mark.parametrize("palette", ["light", "dark"])
def test_the_detail_paints_its_page_in_the_tab_panes_colour(qtbot: QtBot, window: MainWindow, palette: str) -> None:
    if palette == "dark":
        window.setPalette(dark_palette())
    tabs = QTabWidget()
    page = QWidget()
    tabs.addTab(page, "page")
    tabs.setPalette(window.palette())
    qtbot.addWidget(tabs)
    tabs.resize(300, 200)
    tabs.show()
    centre = page.mapTo(tabs, page.rect().center())
    assert tabs.grab().toImage().pixelColor(centre).name() == pane_colour(page).name()  # what a plain page shows
    window.tabs.setCurrentWidget(window.detail)
    QApplication.processEvents()
    assert window.detail.grab().toImage().pixelColor(QPoint(2, 2)).name() == pane_colour(page).name()


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


# -- a .blend's external files, packing it into a project, a zip's main .blend, split-frame rendering -----
@pytest.fixture(scope="module")
def render_world(bpy_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """make_scenes.py's render project, saved by the bpy module: ``world/project/shots/main.blend`` (one
    frame, 32 x 32, a camera) uses ``//textures/wood.png``, ``//../textures/shared.png``, an absolute image
    outside the project and ``//../libs/lib.blend``, whose object uses the library's own ``//tex/lib.png``."""
    work = tmp_path_factory.mktemp("render_world")
    run_blender([str(bpy_python), str(DATA / "deps/make_scenes.py"), "render", str(work)], cwd=work)
    return work / "world"


@pytest.fixture
def shot(render_world: Path, tmp_path: Path) -> Path:
    """This test's own copy of the render project (the absolute image stays where the fixture made it)."""
    world = Path(shutil.copytree(render_world, tmp_path / "world"))
    return world / "project/shots/main.blend"


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the window's temporary files go for this test (to check that none is left behind)."""
    folder = tmp_path / "temp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def tall(window: MainWindow) -> None:
    """Room for the whole file panel (the window scrolls it when it is smaller)."""
    window.resize(1100, 900)
    window.splitter.setSizes([560, 340])


def rows(window: MainWindow) -> list[list[str]]:
    model = window.panel.dependencies
    return [[model.data(model.index(r, c)) for c in range(model.columnCount())] for r in range(model.rowCount())]


@pytest.fixture
def farm_station(qtbot: QtBot, tmp_path: Path, farm: FarmService) -> Iterator[MainWindow]:
    """The window over an in-process farm without agents: submissions land in ``farm``."""
    win = MainWindow(QSettings(str(tmp_path / "farm.ini"), QSettings.Format.IniFormat), manager=InProcessFarm(farm))
    qtbot.addWidget(win)
    tall(win)
    win.show()
    yield win
    win.close()


def answer(qtbot: QtBot, window: MainWindow, button: QMessageBox.StandardButton) -> str:
    """Wait for the window's question (or error), answer it, and return its text."""
    qtbot.waitUntil(lambda: window.submitter.dialog is not None and window.submitter.dialog.isVisible())
    box = window.submitter.dialog
    assert box is not None
    text = box.text()
    box.button(button).click()
    qtbot.waitUntil(lambda: window.submitter.dialog is None)
    return text


@pytest.mark.blender
def test_a_blend_with_external_files_lists_them_and_names_the_missing(
    qtbot: QtBot, window: MainWindow, shot: Path, render_world: Path
) -> None:
    (shot.parent / "textures/wood.png").unlink()
    tall(window)
    drop(window, shot)
    wait_read(qtbot, window, shot)
    absolute = str(render_world.parent / "world/elsewhere/abs.png")
    assert rows(window) == [
        ["image", "//textures/wood.png", "this file", "MISSING"],
        ["image", absolute, "this file", "found"],
        ["image", "//../textures/shared.png", "this file", "found"],
        ["library", "//../libs/lib.blend", "this file", "found"],
        ["image", "//tex/lib.png", "lib.blend", "found"],
    ]
    panel = window.panel
    assert panel.deps_view.isVisible()
    assert panel.deps_title.text() == "<b>External files: 5</b> (4 found, 1 MISSING)"
    assert "Warning: 1 external file MISSING: //textures/wood.png. The farm renders without it" in (
        panel.problems.text()
    )
    assert panel.pack.isVisible()
    assert panel.pack.isChecked()
    size = window.project_sizes[str(shot.resolve())]
    project = [p for p in shot.parents[1].rglob("*") if p.is_file()]  # the copy's, and the absolute image
    assert size == sum(p.stat().st_size for p in project) + Path(absolute).stat().st_size
    assert panel.pack.text() == f"Pack the .blend and its 4 files into a project ({format_size(size)} in all)"
    assert panel.render_button.isEnabled(), "missing files are a warning: the user decides"
    screenshot(window, "17-external-files-one-missing")


@pytest.mark.blender
def test_render_packs_the_project_off_the_gui_thread_then_sends_it(
    qtbot: QtBot, farm_station: MainWindow, farm: FarmService, shot: Path, temp_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    (shot.parent / "textures/wood.png").unlink()
    halfway, go_on = threading.Event(), threading.Event()

    def slow_pack(blend: Path, zip_path: Path, *, progress: Callable[[int, int], None]) -> PackReport:
        progress(1 << 20, 4 << 20)
        halfway.set()
        assert go_on.wait(10)
        return pack_project(blend, zip_path, progress=progress)

    monkeypatch.setattr(submission, "pack_project", slow_pack)
    window = farm_station
    drop(window, shot)
    wait_read(qtbot, window, shot)
    panel = window.panel
    panel.split.setChecked(True)  # one frame: split it as well
    panel.tiles.setValue(4)
    panel.render_button.click()
    # The packing waits in its thread while the window goes on: it shows the progress and holds the button.
    qtbot.waitUntil(lambda: panel.progress.isVisible() and panel.progress.value() == 250)
    assert halfway.is_set()
    assert panel.progress.text() == "Packing main.blend: 1.0 MiB of 4.0 MiB"
    assert window.statusBar().currentMessage() == "Packing main.blend and its files into a project..."
    assert not panel.render_button.isEnabled()
    screenshot(window, "18-packing-a-project")
    go_on.set()
    qtbot.waitUntil(lambda: not window.submitter.busy, timeout=20_000)
    (task,) = farm.tasks()
    assert task["error"] is None
    assert (task["original_name"], task["main_blend"], task["tiles"]) == ("main.zip", "shots/main.blend", 4)
    assert task["data_type"] == BlenderDataType.MULTI_FILE.value
    with open_project(farm.file_for(task["file_sha256"])) as project:
        assert project.main_blend == "shots/main.blend"
        assert {"libs/lib.blend", "libs/tex/lib.png", "textures/shared.png"} <= set(project.blend_files()) | {
            m.name for m in project.members
        }
    assert list(temp_dir.iterdir()) == [], "the zip is removed once the farm has its copy"
    note = panel.note.text()
    assert note.startswith("Packed into main.zip: 5 files")
    assert "the farm renders shots/main.blend" in note
    assert "Not in the project, as they are missing here: //textures/wood.png (image, used by main.blend)" in note
    assert note.endswith("Submitted main.zip.")
    assert not panel.progress.isVisible()
    qtbot.waitUntil(lambda: window.tasks_model.rowCount() == 1)
    assert window.tabs.currentWidget() is window.tasks_view
    screenshot(window, "19-project-packed-and-sent")


@pytest.mark.blender
def test_a_dropped_zip_lists_the_files_its_blends_need(
    qtbot: QtBot, farm_station: MainWindow, shot: Path, tmp_path: Path
) -> None:
    """A zip project (here packed from the shot with one texture missing) shows the files its main .blend and its
    library need, by their place in the zip: the one the zip lacks is MISSING; no offer to pack a zip."""
    (shot.parent / "textures/wood.png").unlink()
    zip_path = tmp_path / "upload/main.zip"
    pack_project(shot, zip_path)
    window = farm_station
    drop(window, zip_path)
    wait_read(qtbot, window, zip_path)
    panel = window.panel
    assert panel.deps_title.isVisible()
    assert panel.deps_title.text() == "<b>External files: 5</b> (4 found, 1 MISSING)"
    rows = {(r.dependency.path, r.status) for r in panel.dependencies.rows}
    assert ("//textures/wood.png", "MISSING") in rows
    assert ("//tex/lib.png", "found") in rows
    ins = {panel.dependencies.data(panel.dependencies.index(i, 2)) for i in range(5)}
    assert ins == {"this file", "lib.blend"}
    tips = [panel.dependencies.data(panel.dependencies.index(i, 1), Qt.ItemDataRole.ToolTipRole) for i in range(5)]
    assert any(t.startswith("shots/textures/wood.png\n") for t in tips), tips
    assert not panel.pack.isVisible()
    assert "Warning: 1 external file MISSING: //textures/wood.png" in panel.problems.text()
    screenshot(window, "23-zip-project-files-listed")


@pytest.mark.blender
def test_packing_problems_are_asked_about_before_sending(
    qtbot: QtBot, farm_station: MainWindow, farm: FarmService, shot: Path, temp_dir: Path
) -> None:
    library = shot.parents[1] / "libs/lib.blend"
    library.write_bytes(b"BLENDER-v279 not a library any more")
    window = farm_station
    drop(window, shot)
    wait_read(qtbot, window, shot)
    assert "Warning: the files used by lib.blend could not be listed" in window.panel.problems.text()
    window.panel.render_button.click()
    question = answer(qtbot, window, QMessageBox.StandardButton.No)
    assert "found problems" in question
    assert f"{library}: packed as it is, it could not be read" in question
    assert farm.tasks() == []
    qtbot.waitUntil(lambda: not any(temp_dir.iterdir()))  # removed off the GUI thread
    assert window.panel.note.text().endswith("Not sent to the farm: you chose not to.")
    assert window.panel.render_button.isEnabled()
    window.panel.render_button.click()
    answer(qtbot, window, QMessageBox.StandardButton.Yes)
    qtbot.waitUntil(lambda: not window.submitter.busy, timeout=20_000)
    (task,) = farm.tasks()
    assert task["main_blend"] == "shots/main.blend"
    assert list(temp_dir.iterdir()) == []


@pytest.mark.blender
def test_a_failure_to_pack_is_shown_and_nothing_is_sent(
    qtbot: QtBot, farm_station: MainWindow, farm: FarmService, shot: Path, temp_dir: Path
) -> None:
    window = farm_station
    drop(window, shot)
    wait_read(qtbot, window, shot)
    shot.write_bytes(b"BLENDER-v279 damaged since it was read")
    window.panel.render_button.click()
    text = answer(qtbot, window, QMessageBox.StandardButton.Ok)
    assert text.startswith("Could not pack main.blend into a project, so nothing was sent to the farm: ")
    assert window.panel.note.text() == text
    assert farm.tasks() == []
    qtbot.waitUntil(lambda: not any(temp_dir.iterdir()))
    assert window.panel.render_button.isEnabled()


def test_a_zip_with_two_blend_files_lets_the_user_pick_the_main_one(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    path = two_shot_zip(tmp_path / "shots.zip")
    tall(window)
    drop(window, path)
    wait_read(qtbot, window, path)
    panel = window.panel
    assert panel.main_box.isVisible()
    assert panel.main_box.isEnabled()
    assert panel.main_box.currentIndex() == -1
    assert "2 .blend files at the top of the zip" in panel.problems.text()
    assert window.file_list.item(0).text() == "\u26a0 shots.zip"
    assert not panel.render_button.isEnabled()
    screenshot(window, "20-zip-project-choose-the-main-blend")
    panel.main_box.setCurrentText("shot_020.blend")
    wait_read(qtbot, window, path)
    assert panel.main_box.currentText() == "shot_020.blend"
    assert panel.labels["version"].text() == "4.5"
    assert panel.labels["camera"].text() == "Camera"
    assert panel.problems.text() == ""
    assert panel.options().main_blend == "shot_020.blend"
    assert window.file_list.item(0).text() == "shots.zip"
    screenshot(window, "21-zip-project-two-blend-files")
    panel.main_box.setCurrentText("shot_010.blend")
    wait_read(qtbot, window, path)
    assert panel.labels["version"].text() == "5.1 (zstd-compressed)"
    assert panel.options().main_blend == "shot_010.blend"


def test_a_zip_project_is_sent_with_its_main_blend(
    qtbot: QtBot, farm_station: MainWindow, farm: FarmService, tmp_path: Path
) -> None:
    path = two_shot_zip(tmp_path / "shots.zip")
    window = farm_station
    drop(window, path)
    wait_read(qtbot, window, path)
    window.panel.main_box.setCurrentText("shot_020.blend")
    wait_read(qtbot, window, path)
    assert not window.panel.pack.isVisible()
    window.panel.frame_end.setValue(3)
    window.panel.render_button.click()
    qtbot.waitUntil(lambda: not window.submitter.busy and len(farm.tasks()) == 1, timeout=20_000)
    (task,) = farm.tasks()
    assert (task["original_name"], task["main_blend"], task["frames_total"]) == ("shots.zip", "shot_020.blend", 3)


@pytest.mark.blender
def test_a_single_frame_can_be_split_across_agents(qtbot: QtBot, window: MainWindow, shot: Path) -> None:
    tall(window)
    drop(window, shot)
    wait_read(qtbot, window, shot)
    panel = window.panel
    assert (panel.frame_start.value(), panel.frame_end.value()) == (1, 1)
    assert panel.split.isEnabled()
    assert not panel.split.isChecked()
    panel.split.setChecked(True)
    panel.tiles.setValue(4)
    assert panel.options().tiles == 4
    assert panel.problems.text() == ""
    assert panel.tiles_label.text() == "agents (2 x 2 tiles of about 16 x 16 px)"
    screenshot(window, "22-split-frame-across-agents")


@pytest.mark.blender
def test_closing_the_window_stops_a_packing_and_leaves_nothing(
    qtbot: QtBot, farm_station: MainWindow, farm: FarmService, shot: Path, temp_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    started = threading.Event()

    def endless_pack(blend: Path, zip_path: Path, *, progress: Callable[[int, int], None]) -> PackReport:
        zip_path.write_bytes(b"half a zip")
        started.set()
        for done in range(10_000):  # a big project: one file after another
            progress(done, 10_000)  # raises once the window closes
            time.sleep(0.01)
        raise AssertionError("the packing was not stopped")

    monkeypatch.setattr(submission, "pack_project", endless_pack)
    window = farm_station
    drop(window, shot)
    wait_read(qtbot, window, shot)
    window.panel.render_button.click()
    qtbot.waitUntil(started.is_set)
    began = time.monotonic()
    window.close()
    assert time.monotonic() - began < 5, "closing waits for one file at most, not the whole packing"
    assert list(temp_dir.iterdir()) == []
    assert farm.tasks() == []
