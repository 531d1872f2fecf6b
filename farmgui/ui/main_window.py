"""The control station's main window: drop files, submit them, watch tasks and agents."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPoint, QSettings, Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHeaderView,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QSplitter,
    QSystemTrayIcon,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..core.inspect import FileSummary, inspect_file
from ..core.scheduler import version_tuple
from ..core.service import FarmError
from ..core.snapshots import FarmSnapshot, take_snapshot
from .delegates import ProgressDelegate
from .file_panel import FilePanel
from .models import AgentsModel, KeyRole, TasksModel
from .task_detail import TaskDetail
from .workers import BackgroundRunner

if TYPE_CHECKING:
    from ..manager import Manager

POLL_MS = 500
"""How often the window refreshes from the core (2 Hz: smooth bars, no load)."""

ACCEPTED_SUFFIXES = {".blend", ".zip"}


def dropped_paths(event: QDropEvent | QDragEnterEvent) -> list[str]:
    """Local file paths carried by a drag (any name: the reader tells a blend file by its bytes)."""
    mime = event.mimeData()
    if not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile()]


class MainWindow(QMainWindow):
    """Dropped files and the selected one's details on top; tasks, agents and a task's frames below."""

    def __init__(self, settings: QSettings | None = None, manager: Manager | None = None) -> None:
        super().__init__()
        self.manager = manager
        self.snapshot: FarmSnapshot | None = None
        self._polling = False
        self._detail_loading = False
        self._stages: dict[str, str] = {}
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
        top = QSplitter()
        top.addWidget(self.file_list)
        top.addWidget(right)
        top.setStretchFactor(1, 3)
        self.panel.submit_requested.connect(self._submit)

        self.tasks_model = TasksModel()
        self.tasks_view = self._table(self.tasks_model)
        self.tasks_view.customContextMenuRequested.connect(self._task_menu)
        self.tasks_view.selectionModel().currentRowChanged.connect(lambda *_: self._refresh_detail())
        self.agents_model = AgentsModel()
        self.agents_view = self._table(self.agents_model)
        self.agents_view.customContextMenuRequested.connect(self._agent_menu)
        self.detail = TaskDetail()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.tasks_view, "Tasks")
        self.tabs.addTab(self.agents_view, "Agents")
        self.tabs.addTab(self.detail, "Task detail")
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        self.setCentralWidget(splitter)
        self.tray = QSystemTrayIcon(self.windowIcon(), self) if QSystemTrayIcon.isSystemTrayAvailable() else None
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.poll)
        if manager is not None:
            self._timer.start(POLL_MS)
            self.poll()
        self._build_menu()
        self.statusBar().showMessage("Ready")
        geometry = self._settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(900, 560)

    def _table(self, model: TasksModel | AgentsModel) -> QTableView:
        view = QTableView()
        view.setModel(model)
        view.setItemDelegateForColumn(model.progress_column, ProgressDelegate(view))
        view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        view.verticalHeader().hide()
        view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        view.horizontalHeader().setStretchLastSection(True)
        view.setColumnWidth(0, 220)
        view.setColumnWidth(model.progress_column, 160)
        return view

    # -- the farm ----------------------------------------------------------------------------
    def poll(self) -> None:
        """Take a snapshot off the GUI thread; a slow core skips refreshes instead of queueing them."""
        if self.manager is None or self._polling:
            return
        self._polling = True
        manager = self.manager
        self._runner.submit(lambda: take_snapshot(manager.service, manager.links.links()), self._snapshot_ready)

    def _snapshot_ready(self, snapshot: FarmSnapshot) -> None:
        self._polling = False
        self.snapshot = snapshot
        self.tasks_model.set_rows(snapshot.tasks)
        self.agents_model.set_rows(snapshot.agents)
        versions = {
            version_tuple(b) for a in snapshot.agents if a.state not in ("offline", "unpaired") for b in a.blenders
        }
        self.panel.set_agent_versions(versions)
        for task in snapshot.tasks:
            before = self._stages.get(task.key)
            if before is not None and before != task.stage and task.stage in ("finished", "failed"):
                self._notify(task.name, task.stage, task.error)
            self._stages[task.key] = task.stage
        self._refresh_detail()

    def _notify(self, name: str, stage: str, error: str | None) -> None:
        text = f"{name} {stage}" + (f": {error}" if error else "")
        self.statusBar().showMessage(text, 10_000)
        if self.tray is not None:
            icon = (
                QSystemTrayIcon.MessageIcon.Critical if stage == "failed" else QSystemTrayIcon.MessageIcon.Information
            )
            self.tray.show()
            self.tray.showMessage("Frameherd", text, icon, 5000)

    def selected_task(self) -> str | None:
        index = self.tasks_view.currentIndex()
        return None if not index.isValid() else str(index.data(KeyRole))

    def _refresh_detail(self) -> None:
        key = self.selected_task()
        if key is None or self.manager is None or self._detail_loading:
            return
        self._detail_loading = True
        service = self.manager.service

        def load() -> tuple[str, list[dict[str, Any]], list[dict[str, Any]], Path | None]:
            files = service.frame_files(key)
            return (
                key,
                service.frames(key),
                service.events(key),
                max(files, key=lambda f: f.stat().st_mtime, default=None),
            )

        self._runner.submit(load, self._detail_ready)

    def _detail_ready(self, result: tuple[str, list[dict[str, Any]], list[dict[str, Any]], Path | None]) -> None:
        self._detail_loading = False
        key, frames, events, newest = result
        row = next((t for t in (self.snapshot.tasks if self.snapshot else ()) if t.key == key), None)
        names = {a.key: a.name for a in (self.snapshot.agents if self.snapshot else ())}
        title = row.name if row else key[:8]
        if row is not None and row.stage == "merging":
            title += f" (merging {row.progress:.0%})"
        self.detail.show_detail(title, frames, events, names, newest)

    def _submit(self) -> None:
        summary = self.panel.summary
        if summary is None or self.manager is None:
            self.statusBar().showMessage("No farm manager is running")
            return
        options = self.panel.options()
        service = self.manager.service
        path = Path(summary.path)

        def submit() -> str:
            try:
                service.submit_file(path, options)
            except (FarmError, OSError) as exc:
                return f"Could not submit {path.name}: {exc}"
            return f"Submitted {path.name}"

        self.panel.render_button.setEnabled(False)
        self._runner.submit(submit, self._submitted)

    def _submitted(self, message: str) -> None:
        self.statusBar().showMessage(message, 10_000)
        self.panel.render_button.setEnabled(True)
        self.tabs.setCurrentWidget(self.tasks_view)
        self.poll()

    def _task_menu(self, pos: QPoint) -> None:
        key = self.selected_task()
        if key is None or self.manager is None:
            return
        service = self.manager.service
        menu = QMenu(self)
        actions: list[tuple[str, Callable[[], object]]] = [
            ("Pause", lambda: service.pause(key)),
            ("Resume", lambda: service.resume(key)),
            ("Cancel", lambda: service.cancel(key)),
            ("Retry failed frames", lambda: service.retry(key)),
            ("Clear block list", lambda: service.clear_blocklist(key)),
        ]
        for label, action in actions:
            menu.addAction(label, partial(self._run_action, label, action))
        menu.addSeparator()
        menu.addAction("Change priority...", lambda: self._change_priority(key))
        menu.addAction("Open output folder", lambda: self._open_folder(key))
        menu.addAction("Save result as...", lambda: self._save_result(key))
        menu.exec(self.tasks_view.viewport().mapToGlobal(pos))

    def _run_action(self, label: str, action: Callable[[], object]) -> None:
        """Run a user action on the core off the GUI thread; say how it went in the status bar."""

        def run() -> str:
            try:
                action()
            except FarmError as exc:
                return f"{label}: {exc}"
            return f"{label}: done"

        self._runner.submit(run, self._action_done)

    def _action_done(self, message: str) -> None:
        self.statusBar().showMessage(message, 8000)
        self.poll()

    def _change_priority(self, key: str) -> None:
        if self.manager is None:
            return
        row = next((t for t in (self.snapshot.tasks if self.snapshot else ()) if t.key == key), None)
        value, ok = QInputDialog.getInt(
            self, "Priority", "Higher renders first:", row.priority if row else 0, -100, 100
        )
        if ok:
            service = self.manager.service
            self._run_action("Priority", lambda: service.set_priority(key, value))

    def _open_folder(self, key: str) -> None:
        row = next((t for t in (self.snapshot.tasks if self.snapshot else ()) if t.key == key), None)
        if row is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(row.data_dir_path))

    def _save_result(self, key: str) -> None:
        if self.manager is None:
            return
        try:
            result = self.manager.service.result_file(key)
        except FarmError as exc:
            self.statusBar().showMessage(str(exc), 8000)
            return
        folder = str(self._settings.value("folders/save", str(Path.home())))
        target, _ = QFileDialog.getSaveFileName(self, "Save result as", str(Path(folder) / result.name))
        if target:
            self._settings.setValue("folders/save", str(Path(target).parent))
            self._runner.submit(
                lambda: shutil.copyfile(result, target), lambda _: self.statusBar().showMessage(f"Saved {target}", 8000)
            )

    def _agent_menu(self, pos: QPoint) -> None:
        index = self.agents_view.currentIndex()
        if not index.isValid() or self.manager is None:
            return
        key = str(index.data(KeyRole))
        service = self.manager.service
        menu = QMenu(self)
        menu.addAction(
            "Enable for the farm", lambda: self._run_action("Enable", lambda: service.set_agent_enabled(key, True))
        )
        menu.addAction(
            "Disable for the farm", lambda: self._run_action("Disable", lambda: service.set_agent_enabled(key, False))
        )
        menu.exec(self.agents_view.viewport().mapToGlobal(pos))

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
        self._timer.stop()
        self._runner.wait()
        self._settings.setValue("window/geometry", self.saveGeometry())
        super().closeEvent(event)
