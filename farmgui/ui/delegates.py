"""Progress bars painted by a delegate (no widget per cell: thousands of rows stay cheap).

Colours come from the view's palette (base, text, highlight), so the bars read on light and dark themes.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QPainter, QPalette
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


def _clamp(value: float) -> float:
    return min(max(value, 0.0), 1.0)


_SELECTED = QStyle.StateFlag.State_Selected.value


class ProgressDelegate(QStyledItemDelegate):
    """A float is one bar. A (share, progress) pair is a bar filled to the agent's progress through its
    share, with a strip along its foot as wide as that share is of the whole task.

    Painted with plain rectangles, no antialiasing (a rounded antialiased outline cost 0.4 ms a cell,
    most of a table's repaint), and the text twice only where the fill runs through it.
    """

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
        rect = QRect(option.rect).adjusted(3, 4, -4, -5)
        base = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        highlight = palette.color(QPalette.ColorRole.Highlight)
        on_fill = palette.color(QPalette.ColorRole.HighlightedText)
        if option.state.value & _SELECTED:  # a bar on the selection colour: keep its parts apart
            painter.fillRect(option.rect, highlight)
            base, text = highlight, on_fill
            highlight = mix(highlight, on_fill, 0.55)
        painter.save()
        painter.setPen(mix(base, text, 0.35))
        painter.setBrush(mix(base, text, 0.07))
        painter.drawRect(rect)
        inner = rect.adjusted(1, 1, 0, 0)
        fill = QRect(inner.left(), inner.top(), round(inner.width() * filled), inner.height())
        if fill.width() > 0:
            painter.fillRect(fill, highlight)
        if marked > 0:  # the share of the task: a strip along the foot, in the text colour
            strip = QRect(inner.left(), inner.bottom() - 2, max(2, round(inner.width() * marked)), 3)
            painter.fillRect(strip, mix(base, text, 0.6))
        # The text in the text colour; where the fill runs through it, in the fill's own text colour.
        label = bar_text(value)
        text_width = painter.fontMetrics().horizontalAdvance(label)
        text_left = rect.left() + (rect.width() - text_width) // 2
        if fill.right() < text_left:
            painter.setPen(text)
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, label)
        elif fill.right() >= text_left + text_width:
            painter.setPen(on_fill)
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, label)
        else:
            painter.setPen(text)
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, label)
            painter.setClipRect(fill)
            painter.setPen(on_fill)
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, label)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        hint = super().sizeHint(option, index)
        return QSize(max(hint.width(), 120), hint.height())
