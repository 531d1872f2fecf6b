"""A task's detail: one cell per frame coloured by state, the newest finished frame, and the log.

Everything that grows with the task (10,000 frames, thousands of events) is prepared off the GUI thread
by :func:`load_detail`, down to the grid's picture and the thumbnail scaled for the view's sizes; the GUI
thread only swaps in the result. The frame grid paints one indexed image (a byte per frame) scaled up,
not one rectangle per frame.
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
    QStyle,
    QStyleOptionTabWidgetFrame,
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
class DetailView:
    """The detail view's sizes and colours when a read starts: :func:`load_detail` makes the grid's picture and
    the scaled thumbnail for them, off the GUI thread (a view that changed meanwhile makes its own)."""

    grid_size: tuple[int, int]
    """The grid's room (its scroll area's viewport): width, height."""
    colours: tuple[int, ...]
    """The grid's colour table (see :func:`colour_table`)."""
    thumbnail_size: tuple[int, int]


@dataclass(frozen=True)
class GridPicture:
    """The frame grid as one image, with what it was made for."""

    image: QImage
    columns: int
    cell: int
    gap: int
    colours: tuple[int, ...]


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
    picture: GridPicture | None = None
    """The grid's picture for the caller's :class:`DetailView`."""
    scaled: QImage | None = None
    """``thumbnail`` scaled to the caller's thumbnail size."""


def load_detail(
    key: str,
    frames: Callable[[str], list[dict[str, Any]]],
    events: Callable[[str], list[dict[str, Any]]],
    frame_files: Callable[[str], list[Path]],
    agent_names: dict[str, str],
    shown: str | None,
    view: DetailView | None = None,
) -> DetailData:
    """Read and prepare a task's detail (runs off the GUI thread; the callables are the service's), with a
    ``view`` down to the grid's picture and the scaled thumbnail (each about 1 ms the GUI thread no longer spends)."""
    rows = frames(key)
    states = state_bytes(rows)
    counts = {s: states.count(i) for i, s in enumerate(FRAME_STATES)}
    if other := len(states) - sum(counts.values()):
        counts["other"] = other
    files = frame_files(key)
    newest = max(files, key=lambda f: f.stat().st_mtime, default=None)
    newest_key = str(newest) if newest is not None else None
    thumbnail = load_thumbnail(newest) if newest is not None and newest_key != shown else None
    log = format_log(events(key), agent_names)
    if view is None:
        return DetailData(key, rows, states, counts, log, newest_key, thumbnail)
    picture = grid_picture(states, *view.grid_size, view.colours) if min(view.grid_size) > 0 else None
    scaled = None
    if thumbnail is not None and not thumbnail.isNull() and min(view.thumbnail_size) > 0:
        scaled = scale_thumbnail(thumbnail, QSize(*view.thumbnail_size))
    return DetailData(key, rows, states, counts, log, newest_key, thumbnail, picture, scaled)


def cell_size(count: int, width: int, height: int) -> tuple[int, int]:
    """(cell, gap): the largest cells whose rows of ``count`` fit ``height`` at ``width`` (else the smallest)."""
    n = max(1, count)
    for cell, gap in CELL_SIZES:
        rows = math.ceil(n / max(1, width // (cell + gap)))
        if rows * (cell + gap) <= height:
            break
    return cell, gap


def colour_table(palette: QPalette) -> tuple[int, ...]:
    """The grid's indexed colours: one per state (:func:`state_colours`), the rest transparent."""
    table = [0] * 256
    for i, colour in enumerate(state_colours(palette)):
        table[i] = colour.rgba()
    return tuple(table)


def render_grid(states: bytes, columns: int, cell: int, gap: int, colours: tuple[int, ...]) -> QImage:
    """The grid as one picture: an indexed image (a byte per frame, a colour per state) scaled up, the gaps
    between cells cut out. QImage only, so any thread may make it (10,000 frames: 1-2 ms)."""
    rows = max(1, math.ceil(len(states) / columns))
    stride = (columns + 3) & ~3  # QImage wants 32-bit aligned lines
    padded = states.ljust(rows * columns, bytes((_EMPTY,)))
    data = b"".join(padded[r * columns : (r + 1) * columns].ljust(stride, b"\xff") for r in range(rows))
    image = QImage(data, columns, rows, stride, QImage.Format.Format_Indexed8)
    image.setColorTable(list(colours))
    step = cell + gap
    picture = QImage(columns * step, rows * step, QImage.Format.Format_ARGB32_Premultiplied)
    picture.fill(Qt.GlobalColor.transparent)
    painter = QPainter(picture)
    painter.drawImage(QRect(0, 0, columns * step, rows * step), image)  # nearest neighbour: crisp cells
    # Cut the gaps between cells in one call: a tile opaque only on its gap strips, repeated, erases.
    tile = QImage(step, step, QImage.Format.Format_ARGB32_Premultiplied)
    tile.fill(Qt.GlobalColor.transparent)
    tile_painter = QPainter(tile)
    tile_painter.fillRect(cell, 0, gap, step, Qt.GlobalColor.black)
    tile_painter.fillRect(0, cell, step, gap, Qt.GlobalColor.black)
    tile_painter.end()
    painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_DestinationOut)
    painter.fillRect(picture.rect(), QBrush(tile))
    painter.end()
    return picture


def grid_picture(states: bytes, width: int, height: int, colours: tuple[int, ...]) -> GridPicture:
    """The picture a grid with ``width`` x ``height`` of room shows for ``states`` (see :meth:`FrameGrid.fit`)."""
    cell, gap = cell_size(len(states), width, height)
    columns = max(1, width // (cell + gap))
    return GridPicture(render_grid(states, columns, cell, gap, colours), columns, cell, gap, colours)


_KEEP_ASPECT = Qt.AspectRatioMode.KeepAspectRatio


def scale_thumbnail(image: QImage, size: QSize) -> QImage:
    """``image`` scaled to fit ``size`` (any thread)."""
    return image.scaled(size, _KEEP_ASPECT, Qt.TransformationMode.SmoothTransformation)


class FrameGrid(QWidget):
    """One cell per frame. Hover a cell for its frame number, state and agent."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.frames: list[dict[str, Any]] = []
        self.states = b""
        self.agent_names: dict[str, str] = {}
        self.cell, self.gap = CELL_SIZES[0]
        self.colours = colour_table(self.palette())
        self.picture: GridPicture | None = None
        """What paints the grid: made off the GUI thread (see :meth:`set_frames`), else at the next paint."""
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_frames(
        self,
        frames: list[dict[str, Any]],
        agent_names: dict[str, str],
        states: bytes | None = None,
        picture: GridPicture | None = None,
    ) -> None:
        """Show ``frames``; ``picture``, made off the GUI thread, is used if it fits the grid when painted."""
        self.frames = frames
        self.states = state_bytes(frames) if states is None else states
        self.agent_names = agent_names
        self.picture = picture
        self.update()

    # -- geometry ----------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self.cell + self.gap

    def _columns(self) -> int:
        return max(1, self.width() // self.step)

    def fit(self, width: int, height: int) -> None:
        """Take the largest cells whose rows fit ``height`` at ``width`` (the smallest when none do)."""
        self.cell, self.gap = cell_size(len(self.states), width, height)
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
    def paintEvent(self, event: QPaintEvent) -> None:
        if not self.states:
            return
        columns = self._columns()
        shown = self.picture
        if shown is None or (shown.columns, shown.cell, shown.gap, shown.colours) != (
            columns, self.cell, self.gap, self.colours
        ):  # fmt: skip
            image = render_grid(self.states, columns, self.cell, self.gap, self.colours)
            shown = self.picture = GridPicture(image, columns, self.cell, self.gap, self.colours)
        painter = QPainter(self)
        area = event.rect()
        painter.drawImage(area, shown.image, area)
        painter.end()

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self.colours = colour_table(self.palette())
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


def pane_colour(widget: QWidget) -> QColor:
    """The colour the style fills a tab widget's pane with (the window's colour where it fills none)."""
    image = QImage(32, 32, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    option = QStyleOptionTabWidgetFrame()
    option.initFrom(widget)
    option.rect = image.rect()
    painter = QPainter(image)
    widget.style().drawPrimitive(QStyle.PrimitiveElement.PE_FrameTabWidget, option, painter)
    painter.end()
    colour = image.pixelColor(16, 16)
    return colour if colour.alpha() == 255 else widget.palette().color(QPalette.ColorRole.Window)


class Thumbnail(QLabel):
    """The newest finished frame, scaled to the label once per image and size (not at every refresh)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("no finished frame yet", parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(200, 150)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setObjectName("thumbnail")
        self.image: QImage | None = None

    def set_image(self, image: QImage | None, text: str = "", scaled: QImage | None = None) -> None:
        """Show ``image`` (a null or no image: ``text`` instead); ``scaled`` is it already scaled off the GUI
        thread, used if it was scaled for this label's size."""
        self.image = image if image is not None and not image.isNull() else None
        if self.image is None:
            self.setPixmap(QPixmap())
            self.setText(text)
        elif scaled is not None and scaled.size() == self.image.size().scaled(self.size(), _KEEP_ASPECT):
            self.setPixmap(QPixmap.fromImage(scaled))
        else:
            self._scale()

    def _scale(self) -> None:
        if self.image is not None:
            self.setPixmap(QPixmap.fromImage(scale_thumbnail(self.image, self.size())))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.size() != event.oldSize():
            self._scale()


class TaskDetail(QWidget):
    """A task's title and counts, its frame grid, its log and its newest frame.

    Two things keep a refresh and a tab switch cheap on the GUI thread (measured with 10,000 frames; see
    BENCHMARKS.md, "Control station responsiveness"):

    - The page is a layout boundary: its contents live in a child widget that :meth:`resizeEvent` sizes, not in
      a layout of the page's own (the page has a set minimum size and no size hint). A change inside (the
      title's counts, a new thumbnail) then lays out the contents only; before, each refresh went up through
      the tab widget's stack to the ``QTabWidget``, whose answer (``setUpLayout``) repaints itself and the
      whole shown page: a second full repaint after every refresh and every switch to this tab.
    - The page paints its own background, in the colour of the tab widget's pane, and says it is opaque, so
      the tab widget paints only its frame's border: a repaint of the tab widget took 4.7 ms with this page
      shown (Fusion filling the pane around its scroll areas; 1.1 ms with a table shown), now 0.9 ms.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._pane = pane_colour(self)
        self.title = QLabel("Select a task to see its frames")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setWordWrap(True)
        self.grid = FrameGrid()
        self.grid_area = FrameGridArea(self.grid)
        self.thumbnail = Thumbnail()
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
        self._contents = QWidget(self)
        layout = QHBoxLayout(self._contents)
        layout.addLayout(left, 3)
        layout.addWidget(self.thumbnail, 1)
        # The tab widget's stack asks every page for its size at each switch; a set minimum answers without
        # calling into Python (the contents' minimum does not change with what they show).
        self.setMinimumSize(self._contents.minimumSizeHint())
        self.shown_thumbnail: str | None = None
        """The file the thumbnail shows (passed to :func:`load_detail`, so an unchanged one is not read again)."""
        self.key: str | None = None
        self._name = ""
        self._counts: dict[str, int] = {}

    # -- the layout boundary and the opaque page ---------------------------------------------------
    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._contents.setGeometry(self.rect())

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(event.rect(), self._pane)
        painter.end()

    def changeEvent(self, event: QEvent) -> None:
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.StyleChange):
            self._pane = pane_colour(self)
            if self.key is not None:
                self._show_title()
        super().changeEvent(event)

    # -- contents ------------------------------------------------------------------------------
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
        self.grid.set_frames(data.frames, agent_names, data.states, data.picture)
        self.grid_area.refit()
        if data.log != self.log.toPlainText():
            bar = self.log.verticalScrollBar()
            at_end = bar.value() == bar.maximum()
            self.log.setPlainText(data.log)
            if at_end:
                bar.setValue(bar.maximum())
        if data.newest != self.shown_thumbnail:
            self._set_thumbnail(data.newest, data.thumbnail, data.scaled)

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

    def _set_thumbnail(self, path: str | None, image: QImage | None, scaled: QImage | None = None) -> None:
        self.shown_thumbnail = path
        suffix = Path(path).suffix if path else ""
        text = f"{suffix} frames have no preview here" if path else "no finished frame yet"
        self.thumbnail.set_image(image, text, scaled)

    def view(self) -> DetailView:
        """What :func:`load_detail` prepares the grid's picture and the thumbnail for (call on the GUI thread)."""
        room = self.grid_area.viewport().size()
        return DetailView(
            (room.width(), room.height()), self.grid.colours, (self.thumbnail.width(), self.thumbnail.height())
        )


def colour_of(state: str, palette: QPalette) -> QColor:
    """The grid's colour for a frame state (tests and the legend use it)."""
    return state_colours(palette)[_STATE_INDEX.get(state, _UNKNOWN)]
