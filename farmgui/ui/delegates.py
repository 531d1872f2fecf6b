"""Progress bars painted by a delegate (no widget per cell: thousands of rows stay cheap).

Colours come from the view's palette (base, text, highlight), so the bars read on light and dark themes.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from .models import ProgressRole
from .theme import mix


def bar_text(value: object) -> str:
    """What a bar says: ``40%``, or for an agent's work ``40% done, 11% of the task`` (the seed's
    per-worker progress: its progress through its share, and its share of the task)."""
    if isinstance(value, tuple):
        share, progress = value
        return f"{progress:.0%} done, {share:.0%} of the task"
    return f"{float(value):.0%}"  # type: ignore[arg-type]


_CENTRE = Qt.AlignmentFlag.AlignCenter


def _clamp(value: float) -> float:
    return min(max(value, 0.0), 1.0)


_SELECTED = QStyle.StateFlag.State_Selected.value


@dataclass(frozen=True)
class _BarColours:
    outline: QColor
    back: QColor
    fill: QColor
    strip: QColor
    text: QColor
    on_fill: QColor


def _bar_colours(palette: QPalette, selected: bool) -> _BarColours:
    base = palette.color(QPalette.ColorRole.Base)
    text = palette.color(QPalette.ColorRole.Text)
    highlight = palette.color(QPalette.ColorRole.Highlight)
    on_fill = palette.color(QPalette.ColorRole.HighlightedText)
    if selected:  # a bar on the selection colour: keep its parts apart
        base, text = highlight, on_fill
        highlight = mix(highlight, on_fill, 0.55)
    return _BarColours(mix(base, text, 0.35), mix(base, text, 0.07), highlight, mix(base, text, 0.6), text, on_fill)


class ProgressDelegate(QStyledItemDelegate):
    """A float is one bar. A (share, progress) pair is a bar filled to the agent's progress through its
    share, with a strip along its foot as wide as that share is of the whole task.

    Painted with plain rectangles, no antialiasing (a rounded antialiased outline cost 0.4 ms a cell,
    most of a table's repaint), and the text twice only where the fill runs through it. The colours are
    mixed once per palette, not per bar (a bar took ~70 us to paint, now ~40 us).
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._colours: dict[tuple[int, QPalette.ColorGroup, bool], _BarColours] = {}

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        value = index.data(ProgressRole)
        if value is None:
            super().paint(painter, option, index)
            return
        if isinstance(value, tuple):
            marked, filled = _clamp(value[0]), _clamp(value[1])
        else:
            filled, marked = _clamp(float(value)), 0.0
        palette = option.palette
        selected = bool(option.state.value & _SELECTED)
        key = (palette.cacheKey(), palette.currentColorGroup(), selected)
        colours = self._colours.get(key)
        if colours is None:
            if len(self._colours) > 16:  # palettes come and go (a theme change); keep the few in use
                self._colours.clear()
            colours = self._colours[key] = _bar_colours(palette, selected)
        if selected:
            painter.fillRect(option.rect, palette.color(QPalette.ColorRole.Highlight))
        rect = option.rect.adjusted(3, 4, -4, -5)
        painter.save()
        painter.setPen(colours.outline)
        painter.setBrush(colours.back)
        painter.drawRect(rect)
        left, top, width, height = rect.left() + 1, rect.top() + 1, rect.width() - 1, rect.height() - 1
        fill = QRect(left, top, round(width * filled), height)
        if fill.width() > 0:
            painter.fillRect(fill, colours.fill)
        if marked > 0:  # the share of the task: a strip along the foot, in the text colour
            painter.fillRect(left, top + height - 3, max(2, round(width * marked)), 3, colours.strip)
        # The text in the text colour; where the fill runs through it, in the fill's own text colour.
        label = bar_text(value)
        text_width = option.fontMetrics.horizontalAdvance(label)
        text_left = rect.left() + (rect.width() - text_width) // 2
        fill_right = fill.right()
        if fill_right < text_left:
            painter.setPen(colours.text)
            painter.drawText(rect, _CENTRE, label)
        elif fill_right >= text_left + text_width:
            painter.setPen(colours.on_fill)
            painter.drawText(rect, _CENTRE, label)
        else:
            painter.setPen(colours.text)
            painter.drawText(rect, _CENTRE, label)
            painter.setClipRect(fill)
            painter.setPen(colours.on_fill)
            painter.drawText(rect, _CENTRE, label)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        hint = super().sizeHint(option, index)
        return QSize(max(hint.width(), 120), hint.height())
