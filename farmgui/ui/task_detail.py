"""A task's detail: one cell per frame coloured by state, the newest finished frame, and the log."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtGui import QColor, QHelpEvent, QImage, QPainter, QPaintEvent, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QSizePolicy, QToolTip, QVBoxLayout, QWidget

STATE_COLOURS = {
    "queued": QColor("#8a8f98"),
    "assigned": QColor("#c9a227"),
    "rendering": QColor("#3b82f6"),
    "done": QColor("#22a06b"),
    "failed": QColor("#d9534f"),
}
_CELL = 14
_GAP = 2


class FrameGrid(QWidget):
    """One cell per frame. Hover a cell for its frame number, state and agent."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.frames: list[dict[str, Any]] = []
        self.agent_names: dict[str, str] = {}
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def set_frames(self, frames: list[dict[str, Any]], agent_names: dict[str, str]) -> None:
        self.frames = frames
        self.agent_names = agent_names
        self.updateGeometry()
        self.update()

    def _columns(self) -> int:
        return max(1, (self.width() + _GAP) // (_CELL + _GAP))

    def sizeHint(self) -> QSize:
        rows = math.ceil(len(self.frames) / self._columns()) if self.frames else 1
        return QSize(400, rows * (_CELL + _GAP))

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        columns = max(1, (width + _GAP) // (_CELL + _GAP))
        return max(1, math.ceil(len(self.frames) / columns)) * (_CELL + _GAP)

    def cell_rect(self, i: int) -> QRect:
        columns = self._columns()
        return QRect((i % columns) * (_CELL + _GAP), (i // columns) * (_CELL + _GAP), _CELL, _CELL)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        for i, frame in enumerate(self.frames):
            painter.fillRect(self.cell_rect(i), STATE_COLOURS.get(frame["state"], QColor("#555")))
        painter.end()

    def frame_at(self, pos: QPoint) -> dict[str, Any] | None:
        columns = self._columns()
        col, row = pos.x() // (_CELL + _GAP), pos.y() // (_CELL + _GAP)
        i = row * columns + col
        if col < columns and 0 <= i < len(self.frames) and self.cell_rect(i).contains(pos):
            return self.frames[i]
        return None

    def tooltip_for(self, frame: dict[str, Any]) -> str:
        agent = frame.get("agent")
        who = f" on {self.agent_names.get(agent, agent[:8])}" if agent else ""
        seconds = f", {frame['seconds']:.1f} s" if frame.get("seconds") else ""
        return f"frame {frame['frame']}: {frame['state']}{who}{seconds}"

    def event(self, event: Any) -> bool:
        if isinstance(event, QHelpEvent):
            frame = self.frame_at(event.pos())
            if frame is not None:
                QToolTip.showText(event.globalPos(), self.tooltip_for(frame), self)
            else:
                QToolTip.hideText()
            return True
        return super().event(event)


class TaskDetail(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("Select a task to see its frames")
        self.title.setStyleSheet("font-weight: bold;")
        self.grid = FrameGrid()
        self.thumbnail = QLabel("no finished frame yet")
        self.thumbnail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumbnail.setMinimumSize(200, 150)
        self.thumbnail.setObjectName("thumbnail")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setPlaceholderText("Errors and events of the task, with Blender's own words")
        left = QVBoxLayout()
        left.addWidget(self.title)
        left.addWidget(self.grid)
        left.addWidget(self.log, 1)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 3)
        layout.addWidget(self.thumbnail, 1)
        self._thumb_path: str | None = None

    def show_detail(
        self,
        title: str,
        frames: list[dict[str, Any]],
        events: list[dict[str, Any]],
        agent_names: dict[str, str],
        newest: Path | None,
    ) -> None:
        counts: dict[str, int] = {}
        for frame in frames:
            counts[frame["state"]] = counts.get(frame["state"], 0) + 1
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        self.title.setText(f"{title}: {summary}")
        self.grid.set_frames(frames, agent_names)
        lines = []
        for e in events:
            who = f" [{agent_names.get(e['agent'], e['agent'][:8])}]" if e.get("agent") else ""
            at_frame = f" frame {e['frame']}" if e.get("frame") is not None else ""
            lines.append(f"{e['at'][11:19]} {e['level']}{who}{at_frame}: {e['message']}")
            lines += [f"    {line}" for line in e.get("log_tail", [])[-5:]]
        text = "\n".join(lines)
        if text != self.log.toPlainText():
            self.log.setPlainText(text)
            self.log.verticalScrollBar().setValue(self.log.verticalScrollBar().maximum())
        self._set_thumbnail(newest)

    def _set_thumbnail(self, path: Path | None) -> None:
        key = str(path) if path else None
        if key == self._thumb_path:
            return
        self._thumb_path = key
        if path is None:
            self.thumbnail.setPixmap(QPixmap())
            self.thumbnail.setText("no finished frame yet")
            return
        image = QImage(str(path))
        if image.isNull():
            self.thumbnail.setText(f"{path.suffix} frames have no preview here")
            return
        self.thumbnail.setPixmap(
            QPixmap.fromImage(image).scaled(
                self.thumbnail.size(), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
        )
