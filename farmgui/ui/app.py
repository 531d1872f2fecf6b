"""Composition root of the control station's window."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from PySide6.QtWidgets import QApplication

from .main_window import MainWindow


def run_gui(files: Sequence[str]) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Frameherd")
    app.setOrganizationName("Frameherd")
    window = MainWindow()
    window.show()
    if files:
        window.add_files(list(files))
    return app.exec()
