"""Qt table models: thin adapters over the core's snapshots (no state of their own)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from ..core.snapshots import AgentRow, TaskRow
from .icons import agent_state_icon

ProgressRole = Qt.ItemDataRole.UserRole + 1
"""A float 0..1 (or a (share, progress) pair for agents) the progress delegate paints."""
KeyRole = Qt.ItemDataRole.UserRole + 2

Row = TypeVar("Row", TaskRow, AgentRow)
_Index = QModelIndex | QPersistentModelIndex
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
# Roles as plain ints: data() runs for every role of every visible cell at each repaint (~600 calls for
# the agents table), and comparing ints is much cheaper than going through the enum class each time.
_DISPLAY = Qt.ItemDataRole.DisplayRole.value
_TOOLTIP = Qt.ItemDataRole.ToolTipRole.value
_ALIGNMENT = Qt.ItemDataRole.TextAlignmentRole.value
_DECORATION = Qt.ItemDataRole.DecorationRole.value
_PROGRESS = int(ProgressRole)
_KEY = int(KeyRole)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _names(names: Sequence[str], shown: int = 3) -> str:
    """A few names and how many more (50 names in a cell help nobody and cost a lot to lay out)."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" +{more} more" if more > 0 else "")


@dataclass(frozen=True)
class Column:
    title: str
    text: Callable[[Any], object]
    sample: str
    """A long typical value: the view sizes the column to it (and to the title)."""
    numeric: bool = False
    """Right-aligned."""


class _SnapshotModel(QAbstractTableModel, Generic[Row]):
    columns: Sequence[Column] = ()
    progress_column = -1

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Row] = []
        self._cells: list[tuple[object, ...]] = []
        """Each row's display texts, made once per snapshot (not once per paint)."""
        self._numeric = [c.numeric for c in self.columns]

    def set_rows(self, rows: Sequence[Row]) -> None:
        """Show a new snapshot with the least change: rows keep their identity by key, so the selection,
        the scroll position and the current row survive rows coming, going and changing order."""
        new = list(rows)
        new_keys = [r.key for r in new]
        if new_keys != [r.key for r in self.rows]:
            self._remove_missing(set(new_keys))
            self._follow_order(new_keys)
            self._insert_new(new)
        # Then the rows' contents: tell the views which cells changed, row by row, so they repaint only
        # those (50 agents change their progress every snapshot; their names and hosts do not).
        spans: list[tuple[int, int, int]] = []  # row, first and last changed column
        cells = self._cells
        for i, (old, row) in enumerate(zip(self.rows, new, strict=True)):
            if old == row:
                continue
            texts = self._texts(row)
            columns = [c for c, (a, b) in enumerate(zip(cells[i], texts, strict=True)) if a != b]
            if self.progress_value(old) != self.progress_value(row):
                columns.append(self.progress_column)
            cells[i] = texts
            spans.append((i, min(columns, default=0), max(columns, default=len(self.columns) - 1)))
        self.rows = new
        start = 0
        while start < len(spans):  # neighbouring rows with the same columns go in one signal
            end = start
            while (
                end + 1 < len(spans)
                and spans[end + 1][0] == spans[end][0] + 1
                and spans[end + 1][1:] == spans[start][1:]
            ):
                end += 1
            first, last = spans[start][1:]
            self.dataChanged.emit(self.index(spans[start][0], first), self.index(spans[end][0], last))
            start = end + 1

    def _remove_missing(self, keep: set[str]) -> None:
        end = len(self.rows)
        while end > 0:
            if self.rows[end - 1].key in keep:
                end -= 1
                continue
            start = end - 1
            while start > 0 and self.rows[start - 1].key not in keep:
                start -= 1
            self.beginRemoveRows(QModelIndex(), start, end - 1)
            del self.rows[start:end]
            del self._cells[start:end]
            self.endRemoveRows()
            end = start

    def _follow_order(self, new_keys: list[str]) -> None:
        """Put the remaining rows in the new snapshot's order (a layout change: persistent indexes follow)."""
        position = {k: i for i, k in enumerate(new_keys)}
        ordered = sorted(self.rows, key=lambda r: position[r.key])
        if [r.key for r in ordered] == [r.key for r in self.rows]:
            return
        self.layoutAboutToBeChanged.emit()
        old_rows = {r.key: i for i, r in enumerate(self.rows)}
        new_rows = {r.key: i for i, r in enumerate(ordered)}
        moved = {old_rows[k]: new_rows[k] for k in old_rows}
        persistent = self.persistentIndexList()
        self.rows = ordered
        self._cells = [self._texts(r) for r in ordered]
        self.changePersistentIndexList(
            persistent, [self.index(moved[i.row()], i.column()) if i.isValid() else i for i in persistent]
        )
        self.layoutChanged.emit()

    def _insert_new(self, new: list[Row]) -> None:
        have = {r.key for r in self.rows}
        i = 0
        while i < len(new):
            if new[i].key in have:
                i += 1
                continue
            j = i
            while j < len(new) and new[j].key not in have:
                j += 1
            self.beginInsertRows(QModelIndex(), i, j - 1)
            self.rows[i:i] = new[i:j]
            self._cells[i:i] = [self._texts(r) for r in new[i:j]]
            self.endInsertRows()
            i = j

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self.columns):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.columns[section].title
        if role == Qt.ItemDataRole.TextAlignmentRole and self.columns[section].numeric:
            return _RIGHT
        return None

    def _texts(self, row: Row) -> tuple[object, ...]:
        return tuple(column.text(row) for column in self.columns)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        r, c = index.row(), index.column()
        if not (0 <= r < len(self.rows) and 0 <= c < len(self.columns)):  # also every invalid index (-1)
            return None
        if role == _DISPLAY:
            return self._cells[r][c]
        if role == _ALIGNMENT:
            return _RIGHT if self._numeric[c] else None
        if role == _DECORATION:
            return self.decoration(self.rows[r], c)
        if role == _TOOLTIP:
            return self.tooltip(self.rows[r], c)
        if role == _PROGRESS:
            return self.progress_value(self.rows[r]) if c == self.progress_column else None
        if role == _KEY:
            return self.rows[r].key
        return None

    def progress_value(self, row: Row) -> object:
        return None

    def tooltip(self, row: Row, column: int = -1) -> str | None:
        return None

    def decoration(self, row: Row, column: int) -> object:
        return None

    def row_of(self, key: str) -> int | None:
        return next((i for i, r in enumerate(self.rows) if r.key == key), None)


class TasksModel(_SnapshotModel[TaskRow]):
    columns = (
        Column("Task", lambda r: r.name, "a_long_shot_name.blend"),
        Column("Stage", lambda r: r.stage, "rendering"),
        Column("Progress", lambda r: f"{r.progress:.0%}", "100% " * 3),
        Column("Frames", lambda r: f"{r.frames_done} / {r.frames_total}", "10000 / 10000", numeric=True),
        Column("Elapsed", lambda r: _duration(r.elapsed_s), "10:00:00", numeric=True),
        Column("Remaining", lambda r: _duration(r.remaining_s), "10:00:00", numeric=True),
        Column("Priority", lambda r: str(r.priority), "Priority", numeric=True),
        Column("Agents", lambda r: _names(r.agents), "render-pc-01, render-pc-02"),
    )
    progress_column = 2
    agents_column = 7

    def progress_value(self, row: TaskRow) -> object:
        return row.progress

    def tooltip(self, row: TaskRow, column: int = -1) -> str | None:
        if column == self.agents_column and len(row.agents) > 3:
            return ", ".join(row.agents)
        return row.error or row.waiting_reason


class AgentsModel(_SnapshotModel[AgentRow]):
    columns = (
        Column("Agent", lambda r: r.name, "render-pc-01 (this PC)"),
        Column("Host", lambda r: f"{r.host}:{r.port}", "255.255.255.255:65535"),
        Column("State", lambda r: r.state, "identity-mismatch"),
        Column("Blender", lambda r: ", ".join(r.blenders), "4.5.3, 3.6.2"),
        Column(
            "Work",
            lambda r: f"{r.share:.0%} of the task, {r.share_progress:.0%} done" if r.share else "",
            "100% done, 100% of the task",
        ),
        Column("Frame", lambda r: "" if r.frame is None else f"{r.frame} ({r.frame_progress:.0%})", "10000 (100%)"),
        Column(
            "Speed", lambda r: "" if r.seconds_per_frame is None else f"{r.seconds_per_frame:.1f} s/frame", "100.0 s/f"
        ),
    )
    progress_column = 4
    state_column = 2

    def progress_value(self, row: AgentRow) -> object:
        return (row.share, row.share_progress) if row.share else None

    def tooltip(self, row: AgentRow, column: int = -1) -> str | None:
        return row.detail or None

    def decoration(self, row: AgentRow, column: int) -> object:
        return agent_state_icon(row.state) if column == self.state_column else None
