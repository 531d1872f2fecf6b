"""Composition root of the control station's window: the manager runs in the same process."""

from __future__ import annotations

import gc
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from .icons import app_icon
from .main_window import MainWindow

if TYPE_CHECKING:
    from ..manager import ManagerConfig


def quiet_gc() -> None:
    """Keep Python's full garbage collections short: they hold the GIL, so they stall the event loop.

    What is alive once the app has started (Qt's bindings, SQLAlchemy, FastAPI) lives as long as the app;
    ``gc.freeze()`` takes it out of the collector's walks, which then only cover what was made since.
    """
    gc.collect()
    gc.freeze()


def run_gui(files: Sequence[str], config: ManagerConfig | None = None) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Frameherd")
    app.setOrganizationName("Frameherd")
    QApplication.setDesktopFileName("frameherd")
    QApplication.setWindowIcon(app_icon())
    manager = None
    if config is not None:
        from ..core.tls import TlsError
        from ..manager import Manager

        try:
            manager = Manager(config).start()
        except (OSError, TlsError) as exc:  # the port is taken by another station; a TLS key lost or damaged
            QMessageBox.critical(None, "Frameherd", f"The farm manager could not start: {exc}")
            return 1
    # Ctrl+C and SIGTERM close the window properly (so the manager and its local agent are shut down).
    signal.signal(signal.SIGINT, lambda *_: app.quit())
    signal.signal(signal.SIGTERM, lambda *_: app.quit())
    wakeup = QTimer()
    wakeup.timeout.connect(lambda: None)  # lets Python run its signal handlers while Qt's loop runs
    wakeup.start(250)
    try:
        window = MainWindow(manager=manager)
        quiet_gc()  # after start-up: the modules and the manager's long-lived objects are not walked again
        window.show()
        if files:
            window.add_files(list(files))
        return app.exec()
    finally:
        if manager is not None:
            manager.close()
