"""A dropped .blend's external files: the rows the file panel lists, and the table model over them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QGuiApplication

from blendfile.deps import Dependency, expand_files

from ..core.inspect import FileSummary
from .theme import error_colour

_Index = QModelIndex | QPersistentModelIndex
FOUND, MISSING = "found", "MISSING"


@dataclass(frozen=True, slots=True)
class DependencyRow:
    """One external file as listed: what uses it, the path as stored, whether it is here."""

    dependency: Dependency
    blend: str
    """The .blend that stores the path (the dropped file, or one of its libraries)."""

    @property
    def status(self) -> str:
        return FOUND if self.dependency.exists else MISSING


def dependency_rows(summary: FileSummary) -> list[DependencyRow]:
    """Each external file the .blend and its libraries need to render, once (as
    :attr:`FileSummary.external_files`), the missing ones first, each with the first .blend that uses it.

    References nothing reads to render (where an appended ID came from, a brush's icon) are left out: they
    are neither packed nor missed on the farm."""
    rows: dict[str, DependencyRow] = {}
    for blend in summary.dependencies:
        for dep in blend.dependencies:
            if dep.is_set and dep.kind.needed_to_render and dep.resolved not in rows:
                rows[dep.resolved] = DependencyRow(dep, blend.path)
    return sorted(rows.values(), key=lambda r: r.status != MISSING)


def needed(summary: FileSummary) -> list[Dependency]:
    """The external files the farm needs to render the .blend as it looks here (found or not)."""
    return [d for d in summary.external_files if d.kind.needed_to_render]


def missing(summary: FileSummary) -> list[Dependency]:
    """The needed external files that are not where the .blend says."""
    return [d for d in needed(summary) if not d.exists]


def found(summary: FileSummary) -> list[Dependency]:
    """The needed external files that are here: what a project of the .blend would hold besides it."""
    return [d for d in needed(summary) if d.exists]


def unreadable_blends(summary: FileSummary) -> list[tuple[str, str]]:
    """(path, error) of each library (or the file itself) whose own files could not be listed."""
    return [(b.path, b.error) for b in summary.dependencies if b.error is not None]


def project_bytes(summary: FileSummary) -> int:
    """Bytes on disk of the .blend and every file a project of it would hold (reads the disk: run it
    off the GUI thread). Whole sequences, UDIM tile sets and cache folders count."""
    files: set[str] = set()
    for dep in found(summary):
        try:
            files.update(expand_files(dep))
        except OSError:  # a folder that cannot be listed: packing will say what it could not take
            continue
    total = summary.size_bytes
    for path in files:
        try:
            total += Path(path).stat().st_size
        except OSError:  # gone since it was listed: packing will say so
            continue
    return total


class DependenciesModel(QAbstractTableModel):
    """A thin, read-only adapter over :func:`dependency_rows` (a new summary replaces every row)."""

    titles = ("Kind", "Path (as stored)", "In", "Status")
    status_column = 3

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[DependencyRow] = []
        self._main = ""

    def set_summary(self, summary: FileSummary | None) -> None:
        self.beginResetModel()
        self.rows = [] if summary is None else dependency_rows(summary)
        # The .blend the user dropped, or in a zip project its main one (named as in the zip).
        self._main = "" if summary is None else summary.main_blend or summary.path
        self.endResetModel()

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.titles)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.titles[section] if 0 <= section < len(self.titles) else None
        return None

    def text(self, row: DependencyRow, column: int) -> str:
        dep = row.dependency
        if column == 0:
            return dep.kind.value.replace("_", " ")
        if column == 1:
            return dep.path
        if column == 2:
            return "this file" if row.blend == self._main else Path(row.blend).name
        return row.status

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        r, c = index.row(), index.column()
        if not (0 <= r < len(self.rows) and 0 <= c < len(self.titles)):
            return None
        row = self.rows[r]
        if role == Qt.ItemDataRole.DisplayRole:
            return self.text(row, c)
        if role == Qt.ItemDataRole.ToolTipRole:
            where = "this file" if row.blend == self._main else row.blend
            return f"{row.dependency.resolved}\n({row.status}; the path is stored in {where})"
        if role == Qt.ItemDataRole.ForegroundRole and c == self.status_column and row.status == MISSING:
            return error_colour(QGuiApplication.palette())
        return None


def names(deps: Sequence[Dependency], shown: int = 4) -> str:
    """A few stored paths and how many more."""
    more = len(deps) - shown
    return ", ".join(d.path for d in deps[:shown]) + (f" and {more} more" if more > 0 else "")
