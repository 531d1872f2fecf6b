"""The control station against a real farm: a manager in-process, real agents, real Blender 3.4.

Drop a real .blend, check what the window shows, submit it, watch it render, check the frame grid
and the result; a file whose render fails shows Blender's error; a 5.0 file with only 3.4 agents
says why it waits. Screenshots of each state are written for people to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from farmgui.manager import Manager, ManagerConfig
from farmgui.ui.main_window import MainWindow
from tests.integration.farm import TOKEN, Agent

from .test_window import drop, screenshot, wait_read

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture
def farm(tmp_path: Path, blender_exe: Path) -> Iterator[tuple[Manager, list[Agent]]]:
    root = tmp_path / "farm"
    agents = [Agent(root, f"pc{i}", bpy=False, blender=str(blender_exe)) for i in (1, 2, 3)]
    config = ManagerConfig(
        host="127.0.0.1", port=0, data_dir=root / "manager", token=TOKEN, local_agent=False,
        agents=[a.address for a in agents], discovery=False, heartbeat_timeout_s=6,
    )  # fmt: skip
    manager = Manager(config).start()
    try:
        yield manager, agents
    finally:
        manager.close()
        for agent in agents:
            agent.stop()


@pytest.fixture
def window(qtbot: QtBot, tmp_path: Path, farm: tuple[Manager, list[Agent]]) -> Iterator[MainWindow]:
    win = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat), manager=farm[0])
    qtbot.addWidget(win)
    win.resize(1100, 760)
    win.show()
    qtbot.waitUntil(
        lambda: win.snapshot is not None and sum(a.state == "idle" for a in win.snapshot.agents) == 3, timeout=60_000
    )
    yield win
    win.close()


def task_row(window: MainWindow, name: str) -> int | None:
    return next((i for i, t in enumerate(window.tasks_model.rows) if t.name == name), None)


def test_drop_submit_render_and_see_the_result(qtbot: QtBot, window: MainWindow, scenes_34: Path) -> None:
    path = scenes_34 / "slow.blend"
    drop(window, path)
    wait_read(qtbot, window, path)
    panel = window.panel
    assert panel.labels["version"].text() == "3.4"
    assert panel.labels["count"].text() == "16"
    assert panel.labels["camera"].text() == "Camera"
    assert panel.problems.text() == ""
    panel.frame_end.setValue(9)
    assert panel.labels["count"].text() == "9"
    assert panel.render_button.isEnabled()
    screenshot(window, "05-ready-to-render")
    panel.render_button.click()
    qtbot.waitUntil(lambda: task_row(window, "slow.blend") is not None, timeout=20_000)
    row = task_row(window, "slow.blend")
    assert row is not None
    window.tasks_view.selectRow(row)
    # Three agents at work at once: the screenshot a person wants to see.
    qtbot.waitUntil(
        lambda: window.snapshot is not None and sum(a.state == "rendering" for a in window.snapshot.agents) >= 2,
        timeout=120_000,
    )
    window.tabs.setCurrentWidget(window.agents_view)
    screenshot(window, "06-rendering-agents")
    window.tabs.setCurrentWidget(window.detail)
    screenshot(window, "07-rendering-frames")
    qtbot.waitUntil(lambda: window.tasks_model.rows[row].stage == "finished", timeout=300_000)
    qtbot.waitUntil(
        lambda: len(window.detail.grid.frames) == 9 and all(f["state"] == "done" for f in window.detail.grid.frames),
        timeout=10_000,
    )
    qtbot.waitUntil(lambda: not window.detail.thumbnail.pixmap().isNull(), timeout=10_000)
    # The detail's title is read with its frames, a little after the table: a read during the merge says so.
    qtbot.waitUntil(lambda: "merging" not in window.detail.title.text(), timeout=10_000)
    assert window.tasks_model.rows[row].frames_done == 9
    screenshot(window, "08-finished-with-thumbnail")
    result = window.manager.service.result_file(window.tasks_model.rows[row].key)  # type: ignore[union-attr]
    assert result.name == "frames.zip"


def test_a_render_error_is_shown_with_blenders_words(qtbot: QtBot, window: MainWindow, scenes_34: Path) -> None:
    path = scenes_34 / "denoise.blend"  # Debian's 3.4 has no OpenImageDenoise
    drop(window, path)
    wait_read(qtbot, window, path)
    window.panel.render_button.click()
    qtbot.waitUntil(lambda: task_row(window, "denoise.blend") is not None, timeout=20_000)
    row = task_row(window, "denoise.blend")
    assert row is not None
    qtbot.waitUntil(lambda: window.tasks_model.rows[row].stage == "failed", timeout=180_000)
    assert "OpenImageDenoiser" in (window.tasks_model.rows[row].error or "")
    window.tasks_view.selectRow(row)
    window.tabs.setCurrentWidget(window.detail)
    qtbot.waitUntil(lambda: "OpenImageDenoiser" in window.detail.log.toPlainText(), timeout=10_000)
    screenshot(window, "09-error-shown")


def test_a_5_0_file_with_only_3_4_agents_says_why(qtbot: QtBot, window: MainWindow, scenes_50: Path) -> None:
    path = scenes_50 / "png.blend"
    drop(window, path)
    wait_read(qtbot, window, path)
    assert window.panel.labels["version"].text().startswith("5.0")
    qtbot.waitUntil(
        lambda: "no agent can open a Blender 5.0 file (agents have: 3.4)" in window.panel.problems.text(),
        timeout=10_000,
    )
    screenshot(window, "10-needs-newer-blender")
