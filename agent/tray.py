"""The agent's tray icon: a thin Qt shell over :class:`AgentCore` (state, pause/resume, log folder, quit)."""

from __future__ import annotations

import sys

from PySide6.QtCore import QTimer, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QIcon
from PySide6.QtWidgets import QApplication, QMenu, QStyle, QSystemTrayIcon

from .service import AgentCore, status_text


def run_tray(core: AgentCore) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    if not isinstance(app, QApplication) or not QSystemTrayIcon.isSystemTrayAvailable():
        # No tray on this desktop: keep rendering headless until interrupted.
        from threading import Event

        Event().wait()
        return 0
    app.setQuitOnLastWindowClosed(False)
    icon = QIcon.fromTheme("applications-graphics", app.style().standardIcon(QStyle.StandardPixmap.SP_ComputerIcon))
    tray = QSystemTrayIcon(icon)
    menu = QMenu()
    state = QAction("Idle", menu)
    state.setEnabled(False)
    pause = QAction("Pause (finish the current frame)", menu)
    resume = QAction("Resume", menu)
    logs = QAction("Open log folder", menu)
    quit_action = QAction("Quit", menu)
    pause.triggered.connect(core.pause)
    resume.triggered.connect(core.resume)
    logs.triggered.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(core.config.work_dir))))
    quit_action.triggered.connect(app.quit)
    for action in (state, pause, resume, logs, quit_action):
        menu.addAction(action)
    tray.setContextMenu(menu)

    def refresh() -> None:
        text = status_text(core)
        state.setText(text)
        tray.setToolTip(f"Frameherd agent {core.config.name}: {text}")
        pause.setVisible(not core.paused)
        resume.setVisible(core.paused)

    timer = QTimer()
    timer.timeout.connect(refresh)
    timer.start(500)
    refresh()
    tray.show()
    return app.exec()
