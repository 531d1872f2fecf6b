"""Progress bars painted by a delegate (no widget per cell: thousands of rows stay cheap)."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QApplication, QStyle, QStyledItemDelegate, QStyleOptionProgressBar, QStyleOptionViewItem

from .models import ProgressRole


class ProgressDelegate(QStyledItemDelegate):
    """A float is one bar; a (share, progress) pair is a bar as wide as the share, filled to the progress."""

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        value = index.data(ProgressRole)
        if value is None:
            super().paint(painter, option, index)
            return
        rect = QRect(option.rect).adjusted(2, 3, -2, -3)
        if isinstance(value, tuple):
            share, progress = value
            rect.setWidth(max(int(rect.width() * min(max(share, 0.0), 1.0)), 24))
            text = f"{progress:.0%}"
        else:
            progress = float(value)
            text = f"{progress:.0%}"
        bar = QStyleOptionProgressBar()
        bar.rect = rect
        bar.minimum = 0
        bar.maximum = 1000
        bar.progress = int(min(max(progress, 0.0), 1.0) * 1000)
        bar.text = text
        bar.textVisible = True
        bar.state = option.state
        style = option.widget.style() if option.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter)
