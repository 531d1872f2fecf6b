"""The table models over the core's snapshots: checked by pytest-qt's model tester through a series of
snapshots (rows coming, going, changing and reordering), and their values read without any widget."""

from __future__ import annotations

from dataclasses import replace

import pytest
from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QIcon
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from farmgui.core.snapshots import AgentRow, TaskRow
from farmgui.ui.models import AgentsModel, KeyRole, ProgressRole, TasksModel

DISPLAY = Qt.ItemDataRole.DisplayRole
RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter


def task(key: str, **changes: object) -> TaskRow:
    row = TaskRow(
        key=key, name=f"{key}.blend", stage="rendering", progress=0.5, frames_done=50, frames_total=100,
        elapsed_s=125.0, remaining_s=3725.0, agents=("pc1", "pc2"), priority=0, error=None, waiting_reason=None,
        output_type="PNG", has_result=False, data_dir_path=f"/data/tasks/{key}",
    )  # fmt: skip
    return replace(row, **changes)  # type: ignore[arg-type]


def agent(key: str, **changes: object) -> AgentRow:
    row = AgentRow(
        key=key, name=key, host="192.168.1.20", port=8765, state="rendering", blenders=("4.5.3", "3.6.2"),
        task="t1", frame=42, frame_progress=0.25, share=0.1, share_progress=0.4, seconds_per_frame=12.34,
    )  # fmt: skip
    return replace(row, **changes)  # type: ignore[arg-type]


def texts(model: TasksModel | AgentsModel, row: int) -> list[object]:
    return [model.data(model.index(row, c), DISPLAY) for c in range(model.columnCount())]


def keys(model: TasksModel | AgentsModel) -> list[str]:
    return [model.data(model.index(r, 0), KeyRole) for r in range(model.rowCount())]


# -- the model tester over a sequence of snapshots ------------------------------------------------------
TASK_SNAPSHOTS: list[list[TaskRow]] = [
    [],
    [task("a")],
    [task("a"), task("c")],
    [task("a"), task("b"), task("c")],  # one inserted in the middle
    [task("a", progress=0.7, frames_done=70), task("b", stage="paused"), task("c")],  # changed in place
    [task("b", stage="paused"), task("c")],  # the first removed
    [task("c"), task("b", stage="queued"), task("d"), task("e")],  # reordered, two added, one changed
    [task("e"), task("a")],  # most gone, one back
    [],
]


def no_qt_tester_failures(capfd: pytest.CaptureFixture[str]) -> None:
    """Qt's own tester (QAbstractItemModelTester) reports a failure on stderr, not as an exception."""
    err = capfd.readouterr().err
    assert "FAIL!" not in err, err


@pytest.mark.parametrize("force_py", [True, False], ids=["python-tester", "qt-tester"])
def test_tasks_model_through_snapshots(
    qtmodeltester: ModelTester, capfd: pytest.CaptureFixture[str], force_py: bool
) -> None:
    model = TasksModel()
    qtmodeltester.check(model, force_py=force_py)  # stays connected: checks every change below
    for snapshot in TASK_SNAPSHOTS:
        model.set_rows(snapshot)
        assert keys(model) == [t.key for t in snapshot]
        assert [texts(model, r) for r in range(model.rowCount())] == [
            [c.text(t) for c in TasksModel.columns] for t in snapshot
        ]
    no_qt_tester_failures(capfd)


AGENT_SNAPSHOTS: list[list[AgentRow]] = [
    [agent("pc1", state="idle", share=0.0, frame=None)],
    [agent("pc1"), agent("pc2"), agent("pc3", state="unpaired", blenders=())],
    [agent("pc1", share_progress=0.9), agent("pc2", state="offline"), agent("pc3", state="unpaired", blenders=())],
    [agent("pc3", state="idle", share=0.0, frame=None), agent("pc1")],  # pc2 gone, pc3 paired (renamed first)
    [agent(f"pc{i}") for i in range(10, 0, -1)],
]


@pytest.mark.parametrize("force_py", [True, False], ids=["python-tester", "qt-tester"])
def test_agents_model_through_snapshots(
    qtmodeltester: ModelTester, capfd: pytest.CaptureFixture[str], force_py: bool
) -> None:
    model = AgentsModel()
    qtmodeltester.check(model, force_py=force_py)  # stays connected: checks every change below
    for snapshot in AGENT_SNAPSHOTS:
        model.set_rows(snapshot)
        assert keys(model) == [a.key for a in snapshot]
        assert [texts(model, r) for r in range(model.rowCount())] == [
            [c.text(a) for c in AgentsModel.columns] for a in snapshot
        ]
    no_qt_tester_failures(capfd)


# -- identity: what a view holds survives a snapshot ----------------------------------------------------
def test_a_persistent_index_follows_its_row_through_inserts_removals_and_reorders() -> None:
    model = TasksModel()
    model.set_rows([task("a"), task("b"), task("c")])
    held = QPersistentModelIndex(model.index(1, 3))  # what a selection keeps: row "b"
    for snapshot in (
        [task("x"), task("a"), task("b"), task("c")],
        [task("b"), task("x")],
        [task("c"), task("x"), task("y"), task("b", progress=0.9)],
    ):
        model.set_rows(snapshot)
        assert held.isValid()
        assert held.data(KeyRole) == "b"
        assert held.column() == 3
    model.set_rows([task("c")])
    assert not held.isValid()  # its row is gone


def test_a_new_snapshot_resets_nothing_and_says_which_cells_changed(qtbot: QtBot) -> None:
    model = AgentsModel()
    model.set_rows([agent("pc1"), agent("pc2"), agent("pc3")])
    signals: list[tuple[int, int, int, int]] = []
    model.dataChanged.connect(lambda a, b, *_: signals.append((a.row(), a.column(), b.row(), b.column())))
    model.modelAboutToBeReset.connect(lambda: pytest.fail("a snapshot must not reset the model"))
    with qtbot.assertNotEmitted(model.rowsInserted), qtbot.assertNotEmitted(model.layoutChanged):
        model.set_rows([agent("pc1"), agent("pc2", share_progress=0.8, frame=43), agent("pc3")])
    work, frame = 4, 5
    assert signals == [(1, work, 1, frame)]  # only pc2's Work and Frame cells repaint
    signals.clear()
    model.set_rows([agent("pc1"), agent("pc2", share_progress=0.8, frame=43), agent("pc3")])
    assert signals == []  # nothing changed, nothing repaints
    model.set_rows([agent("pc1", share_progress=0.5), agent("pc2", share_progress=0.9, frame=43), agent("pc3")])
    assert signals == [(0, work, 1, work)]  # neighbouring rows with the same change: one signal


# -- values, read without a view ------------------------------------------------------------------------
def test_task_values() -> None:
    model = TasksModel()
    model.set_rows([task("t1", agents=("pc1", "pc2", "pc3", "pc4", "pc5"), priority=5)])
    assert texts(model, 0) == [
        "t1.blend", "rendering", "50%", "50 / 100", "2:05", "1:02:05", "5", "pc1, pc2, pc3 +2 more",
    ]  # fmt: skip
    headers = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    assert headers == ["Task", "Stage", "Progress", "Frames", "Elapsed", "Remaining", "Priority", "Agents"]
    assert model.headerData(0, Qt.Orientation.Vertical) is None
    assert model.headerData(99, Qt.Orientation.Horizontal) is None
    progress = model.index(0, model.progress_column)
    assert model.data(progress, ProgressRole) == 0.5
    assert model.data(model.index(0, 0), ProgressRole) is None  # only the progress column has a bar
    assert model.data(model.index(0, 5), KeyRole) == "t1"
    assert model.data(model.index(0, 3), Qt.ItemDataRole.TextAlignmentRole) == RIGHT  # numbers line up
    assert model.data(model.index(0, 0), Qt.ItemDataRole.TextAlignmentRole) is None
    assert model.data(model.index(0, 7), Qt.ItemDataRole.ToolTipRole) == "pc1, pc2, pc3, pc4, pc5"
    assert model.data(model.index(0, 0), Qt.ItemDataRole.ToolTipRole) is None
    assert model.data(model.index(0, 0), Qt.ItemDataRole.DecorationRole) is None
    assert model.data(QModelIndex(), DISPLAY) is None
    assert model.data(model.index(5, 0), DISPLAY) is None  # no such row: an invalid index
    assert model.row_of("t1") == 0
    assert model.row_of("nope") is None


def test_task_tooltips_say_why_it_failed_or_waits() -> None:
    model = TasksModel()
    model.set_rows(
        [
            task("f", stage="failed", error="frame 3 failed on 3 agents: Build without OpenImageDenoiser"),
            task("w", stage="queued", waiting_reason="no agent can open a Blender 5.0 file", elapsed_s=None),
        ]
    )
    tooltip = Qt.ItemDataRole.ToolTipRole
    assert "OpenImageDenoiser" in model.data(model.index(0, 1), tooltip)
    assert model.data(model.index(1, 1), tooltip) == "no agent can open a Blender 5.0 file"
    assert model.data(model.index(1, 4), DISPLAY) == ""  # not started: no elapsed time


def test_agent_values() -> None:
    model = AgentsModel()
    model.set_rows(
        [
            agent("pc1"),
            agent("pc2", state="idle", share=0.0, share_progress=0.0, frame=None, seconds_per_frame=None),
            agent("10.0.0.9:8765", state="unpaired", blenders=(), detail="it does not hold this farm's token"),
        ]
    )
    assert texts(model, 0) == [
        "pc1", "192.168.1.20:8765", "rendering", "4.5.3, 3.6.2", "10% of the task, 40% done", "42 (25%)",
        "12.3 s/frame",
    ]  # fmt: skip
    assert texts(model, 1)[4:] == ["", "", ""]
    work = model.progress_column
    assert model.data(model.index(0, work), ProgressRole) == (0.1, 0.4)  # the seed's (share, progress)
    assert model.data(model.index(1, work), ProgressRole) is None  # no work: no bar
    assert model.data(model.index(2, 0), Qt.ItemDataRole.ToolTipRole) == "it does not hold this farm's token"
    assert model.data(model.index(2, 0), KeyRole) == "10.0.0.9:8765"
    headers = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    assert headers == ["Agent", "Host", "State", "Blender", "Work", "Frame", "Speed"]


def test_agent_state_column_has_an_icon_per_state() -> None:
    model = AgentsModel()
    states = ["idle", "rendering", "offline", "unpaired", "unreachable", "disabled", "pending", "incompatible"]
    model.set_rows([agent(f"pc{i}", state=s) for i, s in enumerate(states)])
    decoration = Qt.ItemDataRole.DecorationRole
    for row in range(len(states)):
        icon = model.data(model.index(row, model.state_column), decoration)
        assert isinstance(icon, QIcon)
        assert not icon.isNull()
        assert model.data(model.index(row, 0), decoration) is None
