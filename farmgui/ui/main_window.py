"""The control station's main window: drop files, submit them, watch tasks and agents."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QEvent, QPoint, QSettings, Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFrame,
    QHeaderView,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QSystemTrayIcon,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..core.inspect import FileSummary, inspect_file
from ..core.links import AgentLinks, Link, PairingFailed, PairingOffer
from ..core.scheduler import version_tuple
from ..core.service import FarmError, FarmService
from ..core.snapshots import FarmSnapshot, take_snapshot
from .delegates import ProgressDelegate
from .dependencies import project_bytes
from .file_panel import FilePanel
from .icons import app_icon
from .models import AgentsModel, KeyRole, TasksModel
from .submission import Submitter
from .task_detail import DetailData, TaskDetail, load_detail
from .theme import mix
from .workers import BackgroundRunner

POLL_MS = 500
"""How often the window refreshes from the core (2 Hz: smooth bars, no load)."""
DETAIL_COST_FACTOR = 3
"""A task's detail is read again no sooner than this many times its last read took (at least POLL_MS):
reading 10,000 frames takes the core ~0.4 s, which must not become most of a CPU."""
DETAIL_READ_DELAY_MS = 30
"""Showing the detail's tab reads the task again this long after, when the tab has been painted."""
HIDDEN_DETAIL_FRAMES = 2_000
"""While its tab is hidden, the detail of a task with up to this many frames is kept fresh (a read costs
a few ms), so showing the tab shows current frames at once; a bigger task is read when the tab is shown."""


class LinkSource(Protocol):
    def links(self) -> list[Link]: ...


class FarmSource(Protocol):
    """What the window needs of a manager (:class:`farmgui.manager.Manager` is one)."""

    @property
    def service(self) -> FarmService: ...

    @property
    def links(self) -> LinkSource: ...


ACCEPTED_SUFFIXES = {".blend", ".zip"}


def read_file(path: str, main_blend: str | None = None) -> tuple[FileSummary, int | None]:
    """A dropped file's summary, and the size of the project it would be packed into (None: it needs no
    project). Reads the disk: runs on a worker thread."""
    summary = inspect_file(path, main_blend)
    return summary, project_bytes(summary) if summary.ok and summary.needs_project else None


def dropped_paths(event: QDropEvent | QDragEnterEvent) -> list[str]:
    """Local file paths carried by a drag (any name: the reader tells a blend file by its bytes)."""
    mime = event.mimeData()
    if not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile()]


class MainWindow(QMainWindow):
    """Dropped files and the selected one's details on top; tasks, agents and a task's frames below."""

    def __init__(self, settings: QSettings | None = None, manager: FarmSource | None = None) -> None:
        super().__init__()
        self.manager = manager
        self.snapshot: FarmSnapshot | None = None
        self._polling = False
        self._detail_loading = False
        self._detail_due = 0.0
        """time.monotonic() before which the detail is not read again (see DETAIL_COST_FACTOR)."""
        self._shown_rows: list[list[dict[str, object]]] = []
        self._stages: dict[str, str] = {}
        self.setWindowTitle("Frameherd")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self._settings = settings or QSettings("Frameherd", "Frameherd")
        self._runner = BackgroundRunner(self)
        self.summaries: dict[str, FileSummary] = {}
        self.project_sizes: dict[str, int | None] = {}
        self.pending: set[str] = set()
        self._main_wanted: dict[str, str] = {}
        """Zip projects being read again with another main .blend: path -> the latest one asked for."""

        self.file_list = QListWidget()
        self.file_list.currentItemChanged.connect(self._item_selected)
        self._items: dict[str, QListWidgetItem] = {}
        self.panel = FilePanel()
        self.hint = QLabel("Drop .blend files or zip projects here\n(or File > Open)")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setObjectName("dropHint")
        self._style_hint()
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(6, 6, 6, 6)
        right_layout.addWidget(self.hint)
        right_layout.addWidget(self.panel)
        self.panel.hide()
        scroll = QScrollArea()  # a small window scrolls the file's details instead of squashing them
        scroll.setWidget(right)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setMinimumHeight(150)
        self.top_splitter = QSplitter()
        self.top_splitter.addWidget(self.file_list)
        self.top_splitter.addWidget(scroll)
        self.top_splitter.setStretchFactor(0, 1)
        self.top_splitter.setStretchFactor(1, 4)
        self.top_splitter.setSizes([170, 830])
        self.panel.submit_requested.connect(self._submit)
        self.panel.main_blend_chosen.connect(self._choose_main_blend)
        self.submitter = Submitter(self, self._runner, self.panel, self._show_message, self._submitted)

        self.tasks_model = TasksModel()
        self.tasks_view = self._table(self.tasks_model)
        self.tasks_view.customContextMenuRequested.connect(self._task_menu)
        self.tasks_view.selectionModel().currentRowChanged.connect(lambda *_: self._task_selected())
        self.agents_model = AgentsModel()
        self.agents_view = self._table(self.agents_model)
        self.agents_view.customContextMenuRequested.connect(self._agent_menu)
        self.detail = TaskDetail()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.tasks_view, "Tasks")
        self.tabs.addTab(self.agents_view, "Agents")
        self.tabs.addTab(self.detail, "Task detail")
        # Showing the detail reads the task again, once the tab has been painted: the read (10,000 frames on a
        # worker) holds the GIL, which the paint's Python parts would otherwise wait for.
        self._detail_shown = QTimer(self)
        self._detail_shown.setSingleShot(True)
        self._detail_shown.setInterval(DETAIL_READ_DELAY_MS)
        self._detail_shown.timeout.connect(lambda: self._refresh_detail(force=True))
        self.tabs.currentChanged.connect(
            lambda *_: self._detail_shown.start() if self.tabs.currentWidget() is self.detail else None
        )
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.top_splitter)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setSizes([320, 400])  # the file's details whole, the rest for the farm
        self.setCentralWidget(self.splitter)
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
            self.resize(1100, 720)
        for name, splitter in (("window/splitter", self.splitter), ("window/top", self.top_splitter)):
            state = self._settings.value(name)
            if state is not None:
                splitter.restoreState(state)

    def _table(self, model: TasksModel | AgentsModel) -> QTableView:
        view = QTableView()
        view.setModel(model)
        view.setItemDelegateForColumn(model.progress_column, ProgressDelegate(view))
        view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        view.verticalHeader().hide()
        view.setAlternatingRowColors(True)
        view.setWordWrap(False)
        header = view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setHighlightSections(False)
        # Columns sized once to a typical long value (not to contents: that would measure every row on
        # every refresh); the user can still drag them.
        metrics = view.fontMetrics()
        for i, column in enumerate(model.columns[:-1]):  # the last one stretches
            width = max(metrics.horizontalAdvance(column.sample), metrics.horizontalAdvance(column.title) + 16)
            view.setColumnWidth(i, width + 24 + (20 if i == getattr(model, "state_column", -1) else 0))
        return view

    def _style_hint(self) -> None:
        colour = mix(self.palette().window().color(), self.palette().windowText().color(), 0.5).name()
        self.hint.setStyleSheet(
            f"font-size: 18px; color: {colour}; border: 2px dashed {colour}; border-radius: 8px; padding: 40px;"
        )

    def changeEvent(self, event: QEvent) -> None:  # Qt's name
        if event.type() == QEvent.Type.PaletteChange:
            self._style_hint()
        super().changeEvent(event)

    # -- the farm ----------------------------------------------------------------------------
    def poll(self) -> None:
        """Take a snapshot off the GUI thread; a slow core skips refreshes instead of queueing them."""
        if self.manager is None or self._polling:
            return
        self._polling = True
        manager = self.manager
        self._runner.submit(
            lambda: take_snapshot(manager.service, manager.links.links()), self._snapshot_ready, self._poll_failed
        )

    def _poll_failed(self, exc: Exception) -> None:
        self._polling = False
        self.statusBar().showMessage(f"Could not read the farm's state: {exc}", 10_000)

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

    def _task_selected(self) -> None:
        if self.selected_task() is None:
            self.detail.clear()
            return
        self.detail.clear("Loading the task's frames...")
        self._refresh_detail(force=True)

    def _refresh_detail(self, force: bool = False) -> None:
        """Read the selected task's frames and log off the GUI thread: at once when forced (another task,
        the tab just shown and painted), else no more often than DETAIL_COST_FACTOR times what the last read
        cost, and while the tab is hidden only for a small task (HIDDEN_DETAIL_FRAMES)."""
        key = self.selected_task()
        if key is None or self.manager is None or self._detail_loading:
            return
        if not force:
            if time.monotonic() < self._detail_due:
                return
            if self.tabs.currentWidget() is not self.detail:
                row = next((t for t in (self.snapshot.tasks if self.snapshot else ()) if t.key == key), None)
                if row is None or row.frames_total > HIDDEN_DETAIL_FRAMES:
                    return
        self._detail_loading = True
        service = self.manager.service
        names = {a.key: a.name for a in (self.snapshot.agents if self.snapshot else ())}
        shown = self.detail.shown_thumbnail if self.detail.key == key else None
        view = self.detail.view()
        # The rows the detail showed before: freed on the worker (10,000 of them take the GUI thread 0.8 ms).
        release, self._shown_rows = self._shown_rows, []
        started = time.monotonic()

        def load() -> tuple[DetailData, dict[str, str], float]:
            release.clear()
            data = load_detail(key, service.frames, service.events, service.frame_files, names, shown, view)
            return data, names, time.monotonic() - started

        self._runner.submit(load, self._detail_ready, self._detail_failed)

    def _detail_failed(self, exc: Exception) -> None:
        self._detail_loading = False
        self._detail_due = time.monotonic() + 2.0
        self.detail.title.setText(f"Could not read the task's frames: {exc}")

    def _detail_ready(self, result: tuple[DetailData, dict[str, str], float]) -> None:
        self._detail_loading = False
        data, names, seconds = result
        self._detail_due = time.monotonic() + max(POLL_MS / 1000, DETAIL_COST_FACTOR * seconds) - POLL_MS / 2000
        if data.key != self.selected_task():  # the user picked another task meanwhile
            self._refresh_detail(force=True)
            return
        row = next((t for t in (self.snapshot.tasks if self.snapshot else ()) if t.key == data.key), None)
        title = row.name if row else data.key[:8]
        if row is not None and row.stage == "merging":
            title += f" (merging {row.progress:.0%})"
        self._shown_rows.append(self.detail.grid.frames)  # freed by the next read (see _refresh_detail)
        self.detail.show_data(title, data, names)

    def _submit(self) -> None:
        """Send the shown file (packed into a project first when it needs files beside it): see Submitter."""
        summary = self.panel.summary
        if summary is None or self.manager is None:
            self.statusBar().showMessage("No farm manager is running")
            return
        self.submitter.submit(self.manager.service, summary, self.panel.options(), self.panel.pack_requested())

    def _show_message(self, message: str) -> None:
        self.statusBar().showMessage(message, 10_000)

    def _submitted(self) -> None:
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

        self._runner.submit(run, self._action_done, lambda exc: self._action_done(f"{label} failed: {exc}"))

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
                lambda: shutil.copyfile(result, target),
                lambda _: self.statusBar().showMessage(f"Saved {target}", 8000),
                lambda exc: self.statusBar().showMessage(f"Could not save {target}: {exc}", 10_000),
            )

    def _agent_menu(self, pos: QPoint) -> None:
        index = self.agents_view.currentIndex()
        if not index.isValid() or self.manager is None:
            return
        key = str(index.data(KeyRole))
        row = self.agents_model.rows[index.row()]
        service = self.manager.service
        pairing = self.manager.links if isinstance(self.manager.links, AgentLinks) else None
        menu = QMenu(self)
        if row.state == "unpaired":
            if pairing is not None:
                menu.addAction("Pair with this farm...", lambda: self._pair(row.host, row.port))
        else:
            menu.addAction(
                "Enable for the farm", lambda: self._run_action("Enable", lambda: service.set_agent_enabled(key, True))
            )
            menu.addAction(
                "Disable for the farm",
                lambda: self._run_action("Disable", lambda: service.set_agent_enabled(key, False)),
            )
            if pairing is not None:
                menu.addSeparator()
                menu.addAction(
                    "Revoke (the agent forgets the farm token)",
                    lambda: self._run_action("Revoke", lambda: pairing.revoke(row.host, row.port)),
                )
        menu.exec(self.agents_view.viewport().mapToGlobal(pos))

    def _pair(self, host: str, port: int) -> None:
        """Ask the agent, then show its code: the user approves only if the agent shows the same."""
        if self.manager is None or not isinstance(self.manager.links, AgentLinks):
            return
        links = self.manager.links

        def ask() -> PairingOffer | str:
            try:
                return links.start_pairing(host, port)
            except PairingFailed as exc:
                return f"Pairing failed: {exc}"

        self._runner.submit(ask, self._pairing_offer)

    def _pairing_offer(self, offer: PairingOffer | str) -> None:
        if isinstance(offer, str) or self.manager is None:
            self.statusBar().showMessage(str(offer), 10_000)
            return
        answer = QMessageBox.question(
            self,
            "Pair an agent",
            f"Agent {offer.name} at {offer.host}:{offer.port} shows a code.\n\n"
            f"Pair it only if its code is {offer.code}",
        )
        links = self.manager.links
        if answer == QMessageBox.StandardButton.Yes and isinstance(links, AgentLinks):
            self._run_action(f"Pair {offer.name}", lambda: links.finish_pairing(offer))

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
            self._main_wanted.pop(key, None)
            self.statusBar().showMessage(f"Reading {Path(key).name}...")
            self._runner.submit(partial(read_file, key), self._summary_ready, partial(self._read_failed, key))

    def _choose_main_blend(self, name: str) -> None:
        """Read the shown zip project again with another main .blend (off the GUI thread)."""
        summary = self.panel.summary
        if summary is None:
            return
        path = summary.path
        self._main_wanted[path] = name
        self.pending.add(path)
        self.panel.set_reading(True)
        self.statusBar().showMessage(f"Reading {name} in {Path(path).name}...")
        self._runner.submit(
            partial(read_file, path, name), partial(self._main_blend_read, path, name), partial(self._read_failed, path)
        )

    def _main_blend_read(self, path: str, name: str, result: tuple[FileSummary, int | None]) -> None:
        if self._main_wanted.get(path) != name:
            return  # the user picked yet another one meanwhile: that reading's result counts
        del self._main_wanted[path]
        self.pending.discard(path)
        summary, size = result
        self.summaries[path], self.project_sizes[path] = summary, size
        self._name_item(summary)
        if self.panel.summary is not None and self.panel.summary.path == path:
            self._select(path)
        state = "read" if summary.ok else "cannot be used"
        self.statusBar().showMessage(f"{name} in {Path(path).name} {state}")

    def _read_failed(self, path: str, exc: Exception) -> None:
        self.pending.discard(path)
        if self._main_wanted.pop(path, None) is not None:
            self.panel.set_reading(False)
        self.statusBar().showMessage(f"Could not read {Path(path).name}: {exc}", 10_000)

    def _summary_ready(self, result: tuple[FileSummary, int | None]) -> None:
        summary, size = result
        self.pending.discard(summary.path)
        is_new = summary.path not in self.summaries
        self.summaries[summary.path] = summary
        self.project_sizes[summary.path] = size
        if is_new:
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole, summary.path)
            item.setToolTip(summary.path)
            self._items[summary.path] = item
            self.file_list.addItem(item)
        self._name_item(summary)
        self.file_list.setCurrentItem(self._items[summary.path])
        self._select(summary.path)
        state = "read" if summary.ok else "cannot be used"
        self.statusBar().showMessage(f"{Path(summary.path).name} {state}")

    def _name_item(self, summary: FileSummary) -> None:
        self._items[summary.path].setText(("" if summary.ok else "\u26a0 ") + Path(summary.path).name)

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
        self.panel.show_summary(summary, self.project_sizes.get(path))
        self.panel.set_reading(path in self._main_wanted)
        self.panel.show_note(self.submitter.notes.get(path, ""))

    def closeEvent(self, event: QCloseEvent) -> None:  # Qt's name
        self._timer.stop()
        self._detail_shown.stop()
        self.submitter.cancel()  # a packing stops at its next file, so closing does not wait for all of it
        self._runner.close()
        self.submitter.remove_leftovers()
        self._settings.setValue("window/geometry", self.saveGeometry())
        self._settings.setValue("window/splitter", self.splitter.saveState())
        self._settings.setValue("window/top", self.top_splitter.saveState())
        super().closeEvent(event)
