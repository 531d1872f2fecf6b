"""A task's detail: one cell per frame coloured by state, the newest finished frame, and the log.

Everything that grows with the task (10,000 frames, thousands of events) is prepared off the GUI thread
by :func:`load_detail`; the GUI thread only swaps in the result. The frame grid paints one indexed
image (a byte per frame) scaled up, not one rectangle per frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QPoint, QRect, QSize, Qt
from PySide6.QtGui import QBrush, QColor, QHelpEvent, QImage, QPainter, QPaintEvent, QPalette, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from ..core.preview import PreviewError, exr_preview, is_exr
from .theme import FRAME_STATES, state_colours

_STATE_INDEX = {state: i for i, state in enumerate(FRAME_STATES)}
_UNKNOWN = len(FRAME_STATES)
_EMPTY = 255
"""Index of the cells past the last frame (transparent)."""
CELL_SIZES = ((14, 2), (10, 2), (8, 2), (6, 1), (4, 1))
"""(cell, gap) in pixels, largest first: the grid takes the largest whose rows fit the height it has."""
THUMBNAIL_MAX = 480
"""The thumbnail is scaled to this many pixels (longer side) off the GUI thread."""
LOG_EVENTS = 300
"""The log shows the task's newest events (each with up to 5 lines of Blender's output)."""


def state_bytes(frames: list[dict[str, Any]]) -> bytes:
    """One byte per frame: its state's index in :data:`FRAME_STATES` (the grid's picture of the task)."""
    index = _STATE_INDEX.get
    return bytes(index(f["state"], _UNKNOWN) for f in frames)


def format_log(events: list[dict[str, Any]], agent_names: dict[str, str]) -> str:
    lines: list[str] = []
    skipped = len(events) - LOG_EVENTS
    if skipped > 0:
        lines.append(f"({skipped} earlier events not shown)")
    for e in events[-LOG_EVENTS:]:
        agent = e.get("agent")
        who = f" [{agent_names.get(agent, agent[:8])}]" if agent else ""
        at_frame = f" frame {e['frame']}" if e.get("frame") is not None else ""
        lines.append(f"{e['at'][11:19]} {e['level']}{who}{at_frame}: {e['message']}")
        lines += [f"    {line}" for line in e.get("log_tail", [])[-5:]]
    return "\n".join(lines)


def load_thumbnail(path: Path) -> QImage:
    """The frame scaled down for the detail view; EXR tone-mapped by the core (a null image: unreadable)."""
    if is_exr(path):
        try:
            preview = exr_preview(path, THUMBNAIL_MAX)
        except PreviewError:
            return QImage()
        stride = preview.width * 4
        return QImage(preview.rgba, preview.width, preview.height, stride, QImage.Format.Format_RGBA8888).copy()
    image = QImage(str(path))
    if image.isNull() or max(image.width(), image.height()) <= THUMBNAIL_MAX:
        return image
    return image.scaled(
        THUMBNAIL_MAX, THUMBNAIL_MAX, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )


@dataclass(frozen=True)
class DetailData:
    """Everything the detail view shows of one task, ready to be swapped in on the GUI thread."""

    key: str
    frames: list[dict[str, Any]]
    states: bytes
    counts: dict[str, int]
    log: str
    newest: str | None
    """The newest finished frame's file."""
    thumbnail: QImage | None
    """Its image, read when ``newest`` changed since the caller's ``shown`` (else None: keep the shown one)."""


def load_detail(
    key: str,
    frames: Callable[[str], list[dict[str, Any]]],
    events: Callable[[str], list[dict[str, Any]]],
    frame_files: Callable[[str], list[Path]],
    agent_names: dict[str, str],
    shown: str | None,
) -> DetailData:
    """Read and prepare a task's detail (runs off the GUI thread; the callables are the service's)."""
    rows = frames(key)
    states = state_bytes(rows)
    counts = {s: states.count(i) for i, s in enumerate(FRAME_STATES)}
    if other := len(states) - sum(counts.values()):
        counts["other"] = other
    files = frame_files(key)
    newest = max(files, key=lambda f: f.stat().st_mtime, default=None)
    newest_key = str(newest) if newest is not None else None
    thumbnail = load_thumbnail(newest) if newest is not None and newest_key != shown else None
    return DetailData(key, rows, states, counts, format_log(events(key), agent_names), newest_key, thumbnail)


class FrameGrid(QWidget):
    """One cell per frame. Hover a cell for its frame number, state and agent."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.frames: list[dict[str, Any]] = []
        self.states = b""
        self.agent_names: dict[str, str] = {}
        self.cell, self.gap = CELL_SIZES[0]
        self._picture: QPixmap | None = None
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_frames(
        self, frames: list[dict[str, Any]], agent_names: dict[str, str], states: bytes | None = None
    ) -> None:
        self.frames = frames
        self.states = state_bytes(frames) if states is None else states
        self.agent_names = agent_names
        self._picture = None
        self.update()

    # -- geometry ----------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self.cell + self.gap

    def _columns(self) -> int:
        return max(1, self.width() // self.step)

    def fit(self, width: int, height: int) -> None:
        """Take the largest cells whose rows fit ``height`` at ``width`` (the smallest when none do)."""
        n = max(1, len(self.states))
        for cell, gap in CELL_SIZES:
            rows = math.ceil(n / max(1, width // (cell + gap)))
            if rows * (cell + gap) <= height:
                break
        if (cell, gap) != (self.cell, self.gap):
            self.cell, self.gap = cell, gap
            self._picture = None
        self.setFixedSize(width, self.heightForWidth(width))

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        columns = max(1, width // self.step)
        return max(1, math.ceil(len(self.states) / columns)) * self.step

    def sizeHint(self) -> QSize:
        return QSize(400, self.heightForWidth(max(self.width(), 400)))

    def cell_rect(self, i: int) -> QRect:
        columns = self._columns()
        return QRect((i % columns) * self.step, (i // columns) * self.step, self.cell, self.cell)

    # -- painting ----------------------------------------------------------------------------
    def _render(self) -> QPixmap:
        """The grid as one picture: an indexed image (a byte per frame, a colour per state) scaled up."""
        columns = self._columns()
        rows = max(1, math.ceil(len(self.states) / columns))
        stride = (columns + 3) & ~3  # QImage wants 32-bit aligned lines
        padded = self.states.ljust(rows * columns, bytes((_EMPTY,)))
        data = b"".join(padded[r * columns : (r + 1) * columns].ljust(stride, b"\xff") for r in range(rows))
        image = QImage(data, columns, rows, stride, QImage.Format.Format_Indexed8)
        table = [0] * 256  # transparent
        for i, colour in enumerate(state_colours(self.palette())):
            table[i] = colour.rgba()
        image.setColorTable(table)
        step = self.step
        picture = QPixmap(columns * step, rows * step)
        picture.fill(Qt.GlobalColor.transparent)
        painter = QPainter(picture)
        painter.drawImage(QRect(0, 0, columns * step, rows * step), image)  # nearest neighbour: crisp cells
        # Cut the gaps between cells in one call: a tile opaque only on its gap strips, repeated, erases.
        tile = QPixmap(step, step)
        tile.fill(Qt.GlobalColor.transparent)
        tile_painter = QPainter(tile)
        tile_painter.fillRect(self.cell, 0, self.gap, step, Qt.GlobalColor.black)
        tile_painter.fillRect(0, self.cell, step, self.gap, Qt.GlobalColor.black)
        tile_painter.end()
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_DestinationOut)
        painter.fillRect(picture.rect(), QBrush(tile))
        painter.end()
        return picture

    def paintEvent(self, event: QPaintEvent) -> None:
        if not self.states:
            return
        if self._picture is None or self._picture.width() // self.step != self._columns():
            self._picture = self._render()
        painter = QPainter(self)
        area = event.rect()
        painter.drawPixmap(area, self._picture, area)
        painter.end()

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self._picture = None
        super().changeEvent(event)

    # -- hover -------------------------------------------------------------------------------
    def frame_at(self, pos: QPoint) -> dict[str, Any] | None:
        columns = self._columns()
        col, row = pos.x() // self.step, pos.y() // self.step
        i = row * columns + col
        if col < columns and 0 <= i < len(self.frames) and self.cell_rect(i).contains(pos):
            return self.frames[i]
        return None

    def tooltip_for(self, frame: dict[str, Any]) -> str:
        agent = frame.get("agent")
        who = f" on {self.agent_names.get(agent, agent[:8])}" if agent else ""
        seconds = f", {frame['seconds']:.1f} s" if frame.get("seconds") else ""
        return f"frame {frame['frame']}: {frame['state']}{who}{seconds}"

    def event(self, event: QEvent) -> bool:
        if isinstance(event, QHelpEvent):
            frame = self.frame_at(event.pos())
            if frame is not None:
                QToolTip.showText(event.globalPos(), self.tooltip_for(frame), self)
            else:
                QToolTip.hideText()
            return True
        return super().event(event)


class FrameGridArea(QScrollArea):
    """Holds the grid: sizes its cells to the room there is, and scrolls when even the smallest do not fit."""

    def __init__(self, grid: FrameGrid, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.grid = grid
        self.setWidget(grid)
        self.setWidgetResizable(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMinimumHeight(2 * CELL_SIZES[0][0])
        self.setBackgroundRole(QPalette.ColorRole.Base)  # the grid's colours are chosen against Base
        self.viewport().setBackgroundRole(QPalette.ColorRole.Base)

    def refit(self) -> None:
        viewport = self.viewport().size()
        self.grid.fit(viewport.width(), viewport.height())
        # A small task takes only the rows it needs (the log below gets the rest); a big one may grow.
        cell, gap = CELL_SIZES[0]
        rows = math.ceil(max(1, len(self.grid.states)) / max(1, viewport.width() // (cell + gap)))
        needed = rows * (cell + gap) + 2 * self.frameWidth()
        self.setMaximumHeight(needed if needed <= self.minimumHeight() * 8 else 16_777_215)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.refit()

    def sizeHint(self) -> QSize:
        return QSize(400, 160)


class TaskDetail(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("Select a task to see its frames")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setWordWrap(True)
        self.grid = FrameGrid()
        self.grid_area = FrameGridArea(self.grid)
        self.thumbnail = QLabel("no finished frame yet")
        self.thumbnail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumbnail.setMinimumSize(200, 150)
        self.thumbnail.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.thumbnail.setObjectName("thumbnail")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setPlaceholderText("Errors and events of the task, with Blender's own words")
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(self.grid_area)
        body.addWidget(self.log)
        body.setStretchFactor(0, 2)
        body.setStretchFactor(1, 1)
        body.setSizes([240, 120])
        body.setChildrenCollapsible(False)
        left = QVBoxLayout()
        left.addWidget(self.title)
        left.addWidget(body, 1)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 3)
        layout.addWidget(self.thumbnail, 1)
        self._image: QImage | None = None
        self.shown_thumbnail: str | None = None
        """The file the thumbnail shows (passed to :func:`load_detail`, so an unchanged one is not read again)."""
        self.key: str | None = None
        self._name = ""
        self._counts: dict[str, int] = {}

    def clear(self, message: str = "Select a task to see its frames") -> None:
        self.key = None
        self.title.setText(message)
        self.grid.set_frames([], {})
        self.log.clear()
        self._set_thumbnail(None, None)

    def show_data(self, title: str, data: DetailData, agent_names: dict[str, str]) -> None:
        self.key = data.key
        self._name, self._counts = title, data.counts
        self._show_title()
        self.grid.set_frames(data.frames, agent_names, data.states)
        self.grid_area.refit()
        if data.log != self.log.toPlainText():
            bar = self.log.verticalScrollBar()
            at_end = bar.value() == bar.maximum()
            self.log.setPlainText(data.log)
            if at_end:
                bar.setValue(bar.maximum())
        if data.newest != self.shown_thumbnail:
            self._set_thumbnail(data.newest, data.thumbnail)

    def _show_title(self) -> None:
        """The task's name, then each state's count behind a swatch of its grid colour (the legend)."""
        colours = state_colours(self.palette())
        parts = []
        for i, state in enumerate(FRAME_STATES):
            if n := self._counts.get(state):
                parts.append(f'<span style="color:{colours[i].name()}">\u25a0</span>&nbsp;{n}&nbsp;{state}')
        if n := self._counts.get("other"):
            parts.append(f"{n} other")
        name = self._name.replace("&", "&amp;").replace("<", "&lt;")
        self.title.setText(f"<b>{name}</b>: " + " &nbsp; ".join(parts))

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange and self.key is not None:
            self._show_title()
        super().changeEvent(event)

    def _set_thumbnail(self, path: str | None, image: QImage | None) -> None:
        self.shown_thumbnail = path
        self._image = image if image is not None and not image.isNull() else None
        if self._image is None:
            self.thumbnail.setPixmap(QPixmap())
            suffix = Path(path).suffix if path else ""
            self.thumbnail.setText(f"{suffix} frames have no preview here" if path else "no finished frame yet")
            return
        self._scale_thumbnail()

    def _scale_thumbnail(self) -> None:
        if self._image is not None:
            size = self.thumbnail.size()
            self.thumbnail.setPixmap(
                QPixmap.fromImage(self._image).scaled(
                    size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
                )
            )

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._scale_thumbnail()


def colour_of(state: str, palette: QPalette) -> QColor:
    """The grid's colour for a frame state (tests and the legend use it)."""
    return state_colours(palette)[_STATE_INDEX.get(state, _UNKNOWN)]
