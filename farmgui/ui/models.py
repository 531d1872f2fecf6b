"""Qt table models: thin adapters over the core's snapshots (no state of their own)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from ..core.snapshots import AgentRow, TaskRow

ProgressRole = Qt.ItemDataRole.UserRole + 1
"""A float 0..1 (or a (share, progress) pair for agents) the progress delegate paints."""
KeyRole = Qt.ItemDataRole.UserRole + 2

Row = TypeVar("Row", TaskRow, AgentRow)
_Index = QModelIndex | QPersistentModelIndex


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class _SnapshotModel(QAbstractTableModel, Generic[Row]):
    columns: Sequence[tuple[str, Callable[[Any], object]]] = ()
    progress_column = -1

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Row] = []

    def set_rows(self, rows: Sequence[Row]) -> None:
        """Show a new snapshot: rows whose keys did not change are updated in place (no flicker, no lost selection)."""
        new = list(rows)
        if [r.key for r in new] != [r.key for r in self.rows]:
            self.beginResetModel()
            self.rows = new
            self.endResetModel()
            return
        changed = [i for i, (a, b) in enumerate(zip(self.rows, new, strict=True)) if a != b]
        self.rows = new
        if changed:
            self.dataChanged.emit(self.index(min(changed), 0), self.index(max(changed), len(self.columns) - 1))

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.columns[section][0]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.rows):
            return None
        row = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self.columns[index.column()][1](row)
        if role == KeyRole:
            return row.key
        if role == ProgressRole and index.column() == self.progress_column:
            return self.progress_value(row)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.tooltip(row)
        return None

    def progress_value(self, row: Row) -> object:
        return None

    def tooltip(self, row: Row) -> str | None:
        return None

    def row_of(self, key: str) -> int | None:
        return next((i for i, r in enumerate(self.rows) if r.key == key), None)


class TasksModel(_SnapshotModel[TaskRow]):
    columns = (
        ("Task", lambda r: r.name),
        ("Stage", lambda r: r.stage),
        ("Progress", lambda r: f"{r.progress:.0%}"),
        ("Frames", lambda r: f"{r.frames_done} / {r.frames_total}"),
        ("Elapsed", lambda r: _duration(r.elapsed_s)),
        ("Remaining", lambda r: _duration(r.remaining_s)),
        ("Agents", lambda r: ", ".join(r.agents)),
        ("Priority", lambda r: r.priority),
    )
    progress_column = 2

    def progress_value(self, row: TaskRow) -> object:
        return row.progress

    def tooltip(self, row: TaskRow) -> str | None:
        return row.error or row.waiting_reason


class AgentsModel(_SnapshotModel[AgentRow]):
    columns = (
        ("Agent", lambda r: r.name),
        ("Host", lambda r: f"{r.host}:{r.port}"),
        ("State", lambda r: r.state),
        ("Blender", lambda r: ", ".join(r.blenders)),
        ("Work", lambda r: f"{r.share:.0%} of the task, {r.share_progress:.0%} done" if r.share else ""),
        ("Frame", lambda r: "" if r.frame is None else f"{r.frame} ({r.frame_progress:.0%})"),
        ("Speed", lambda r: "" if r.seconds_per_frame is None else f"{r.seconds_per_frame:.1f} s/frame"),
    )
    progress_column = 4

    def progress_value(self, row: AgentRow) -> object:
        return (row.share, row.share_progress) if row.share else None

    def tooltip(self, row: AgentRow) -> str | None:
        return row.detail or None
