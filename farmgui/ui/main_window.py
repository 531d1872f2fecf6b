"""The control station's main window: drop files, see what they hold."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..core.inspect import FileSummary, inspect_file
from .file_panel import FilePanel
from .workers import BackgroundRunner

ACCEPTED_SUFFIXES = {".blend", ".zip"}


def dropped_paths(event: QDropEvent | QDragEnterEvent) -> list[str]:
    """Local file paths carried by a drag (any name: the reader tells a blend file by its bytes)."""
    mime = event.mimeData()
    if not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile()]


class MainWindow(QMainWindow):
    """Files on the left, the selected file's details on the right."""

    def __init__(self, settings: QSettings | None = None) -> None:
        super().__init__()
        self.setWindowTitle("Frameherd")
        self.setAcceptDrops(True)
        self._settings = settings or QSettings("Frameherd", "Frameherd")
        self._runner = BackgroundRunner(self)
        self.summaries: dict[str, FileSummary] = {}
        self.pending: set[str] = set()

        self.file_list = QListWidget()
        self.file_list.currentItemChanged.connect(self._item_selected)
        self._items: dict[str, QListWidgetItem] = {}
        self.panel = FilePanel()
        self.hint = QLabel("Drop .blend files here\n(or File > Open)")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setObjectName("dropHint")
        self.hint.setStyleSheet("font-size: 18px; color: palette(mid); border: 2px dashed palette(mid); padding: 40px;")
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.hint)
        right_layout.addWidget(self.panel)
        self.panel.hide()
        splitter = QSplitter()
        splitter.addWidget(self.file_list)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 3)
        self.setCentralWidget(splitter)
        self._build_menu()
        self.statusBar().showMessage("Ready")
        geometry = self._settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(900, 560)

    def _build_menu(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        open_action = QAction("&Open...", self)
        open_action.setShortcut(QKeySequence.StandardKey.Open)
        open_action.triggered.connect(self._open_dialog)
        file_menu.addAction(open_action)
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)

    def _open_dialog(self) -> None:
        folder = str(self._settings.value("folders/open", str(Path.home())))
        paths, _ = QFileDialog.getOpenFileNames(self, "Open", folder, "Blender files (*.blend *.zip);;All files (*)")
        if paths:
            self._settings.setValue("folders/open", str(Path(paths[0]).parent))
            self.add_files(paths)

    # -- drag and drop ---------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # Qt's name
        if dropped_paths(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # Qt's name
        paths = dropped_paths(event)
        if paths:
            event.acceptProposedAction()
            self.add_files(paths)

    # -- files -----------------------------------------------------------------------------
    def add_files(self, paths: list[str]) -> None:
        """Read each file off the GUI thread; it appears when its summary arrives."""
        for path in paths:
            key = str(Path(path).resolve())
            if key in self.pending:
                continue
            self.pending.add(key)
            self.statusBar().showMessage(f"Reading {Path(key).name}...")
            self._runner.submit(partial(inspect_file, key), self._summary_ready)

    def _summary_ready(self, summary: FileSummary) -> None:
        self.pending.discard(summary.path)
        is_new = summary.path not in self.summaries
        self.summaries[summary.path] = summary
        if is_new:
            item = QListWidgetItem(("" if summary.ok else "\u26a0 ") + Path(summary.path).name)
            item.setData(Qt.ItemDataRole.UserRole, summary.path)
            item.setToolTip(summary.path)
            self._items[summary.path] = item
            self.file_list.addItem(item)
        self.file_list.setCurrentItem(self._items[summary.path])
        self._select(summary.path)
        state = "read" if summary.ok else "cannot be used"
        self.statusBar().showMessage(f"{Path(summary.path).name} {state}")

    def select_file(self, path: str) -> None:
        self.file_list.setCurrentItem(self._items[path])

    def _item_selected(self, item: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        if item is not None:
            self._select(str(item.data(Qt.ItemDataRole.UserRole)))

    def _select(self, path: str) -> None:
        summary = self.summaries.get(path)
        if summary is None:
            return
        self.hint.hide()
        self.panel.show()
        self.panel.show_summary(summary)

    def closeEvent(self, event: QCloseEvent) -> None:  # Qt's name
        self._runner.wait()
        self._settings.setValue("window/geometry", self.saveGeometry())
        super().closeEvent(event)
