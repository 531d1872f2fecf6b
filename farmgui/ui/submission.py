"""Sending the shown file to the farm: as it is, or packed with the files it needs into a zip project first.

Packing and submitting run on the window's :class:`BackgroundRunner`; this object only keeps the one
submission in flight, shows its progress in the file panel, and asks the user when packing found problems.
The zip lives in a temporary folder that is removed once the farm has copied it in (or the user gave up).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QMessageBox, QWidget

from blendfile import BlendFileError

from ..core.inspect import FileSummary
from ..core.packing import PackReport, pack_project
from ..core.service import FarmError, FarmService, TaskOptions
from .file_panel import FilePanel, format_size
from .workers import BackgroundRunner, Progress

SHOWN_PATHS = 6
"""Missing files and problems named in a note or a question before "and N more"."""


class PackCancelled(Exception):
    """The window closed while a project was being packed."""


@dataclass(frozen=True)
class Packed:
    report: PackReport
    folder: Path
    """The temporary folder holding the zip (removed after the submission)."""

    @property
    def zip_path(self) -> Path:
        return Path(self.report.zip_path)


def pack_to(folder: Path, blend: Path, cancelled: threading.Event, progress: Progress) -> Packed:
    """Pack ``blend`` into ``folder/<its name>.zip`` (runs on a worker thread)."""

    def step(done: int, total: int) -> None:
        if cancelled.is_set():
            raise PackCancelled(f"packing {blend.name} was stopped")
        progress(done, total)

    report = pack_project(blend, folder / f"{blend.stem}.zip", progress=step)
    return Packed(report, folder)


def submit_packed(service: FarmService, packed: Packed, options: TaskOptions) -> dict[str, Any]:
    """Copy the project into the farm and run it as the task's file, then remove the temporary zip."""
    try:
        return service.submit_file(packed.zip_path, replace(options, main_blend=packed.report.main_blend))
    finally:
        shutil.rmtree(packed.folder, ignore_errors=True)


def _listing(items: list[str]) -> str:
    more = len(items) - SHOWN_PATHS
    return "; ".join(items[:SHOWN_PATHS]) + (f"; and {more} more" if more > 0 else "")


def describe_pack(report: PackReport) -> str:
    """What the project holds and what it lacks, in words for the user."""
    files = len(report.packed)
    text = (
        f"Packed into {Path(report.zip_path).name}: {files} file{'s' if files != 1 else ''}, "
        f"{format_size(report.total_bytes)} unzipped; the farm renders {report.main_blend}."
    )
    if report.missing:
        paths = [f"{m.path} ({m.kind.value}, used by {Path(m.blend).name})" for m in report.missing]
        text += f"\nNot in the project, as they are missing here: {_listing(paths)}."
    if report.problems:
        text += f"\nProblems: {_listing(list(report.problems))}."
    return text


class Submitter(QObject):
    """One submission at a time, from the file panel to the farm, never waiting on the GUI thread."""

    def __init__(
        self,
        parent: QWidget,
        runner: BackgroundRunner,
        panel: FilePanel,
        message: Callable[[str], None],
        done: Callable[[], None],
    ) -> None:
        super().__init__(parent)
        self._parent = parent
        self._runner = runner
        self._panel = panel
        self._message = message
        self._done = done
        self._cancel = threading.Event()
        self._folders: set[Path] = set()
        """Temporary folders not yet removed by a worker (removed at close at the latest)."""
        self.busy = False
        self.notes: dict[str, str] = {}
        """What the last submission of each file did (the panel shows it with the file)."""
        self.dialog: QMessageBox | None = None
        """The question or error shown now, if any (tests answer it)."""

    def submit(self, service: FarmService, summary: FileSummary, options: TaskOptions, pack: bool) -> None:
        if self.busy:
            self._message("Another file is still being sent to the farm: wait for it to finish")
            return
        path = Path(summary.path)
        self.busy = True
        self.notes.pop(summary.path, None)
        self._panel.show_note("")
        if not pack:
            self._panel.set_sending(f"Sending {path.name}...")
            self._runner.submit(
                partial(self._submit_plain, service, path, options),
                self._sent,
                lambda exc: self._sent((summary.path, f"Could not submit {path.name}: {exc}")),
            )
            return
        folder = Path(tempfile.mkdtemp(prefix="frameherd-pack-"))
        self._folders.add(folder)
        self._panel.set_sending(f"Packing {path.name}...")
        self._message(f"Packing {path.name} and its files into a project...")
        self._runner.submit_with_progress(
            partial(pack_to, folder, path, self._cancel),
            partial(self._packed, service, summary, options),
            partial(self._pack_failed, summary, folder),
            partial(self._pack_progress, path.name),
        )

    @staticmethod
    def _submit_plain(service: FarmService, path: Path, options: TaskOptions) -> tuple[str, str]:
        try:
            service.submit_file(path, options)
        except (FarmError, OSError) as exc:
            return str(path), f"Could not submit {path.name}: {exc}"
        return str(path), f"Submitted {path.name}"

    def _pack_progress(self, name: str, done: int, total: int) -> None:
        if self.busy and total:
            self._panel.set_sending(f"Packing {name}: {format_size(done)} of {format_size(total)}", done, total)

    def _pack_failed(self, summary: FileSummary, folder: Path, exc: Exception) -> None:
        self._remove(folder)
        self.busy = False
        self._panel.set_sending(None)
        if isinstance(exc, PackCancelled) or self._cancel.is_set():
            return
        name = Path(summary.path).name
        why = exc.message if isinstance(exc, BlendFileError) else str(exc)
        text = f"Could not pack {name} into a project, so nothing was sent to the farm: {why}"
        self._note(summary.path, text)
        self._message(f"Could not pack {name}: nothing submitted")
        self._show_box(QMessageBox.Icon.Critical, "Packing failed", text, QMessageBox.StandardButton.Ok, None)

    def _packed(self, service: FarmService, summary: FileSummary, options: TaskOptions, packed: Packed) -> None:
        if self._cancel.is_set():
            self._remove(packed.folder)
            return
        report = packed.report
        if not report.problems:
            self._send(service, summary, options, packed)
            return
        self._panel.set_sending(f"Packed {Path(summary.path).name}: waiting for your answer")
        text = (
            f"Packing {Path(summary.path).name} found problems that may keep it from rendering as it does "
            f"here:\n\n{_listing(list(report.problems))}\n\nSend it to the farm anyway?"
        )

        def answered(yes: bool) -> None:
            if yes:
                self._send(service, summary, options, packed)
                return
            self._remove(packed.folder)
            self.busy = False
            self._panel.set_sending(None)
            self._note(summary.path, describe_pack(report) + "\nNot sent to the farm: you chose not to.")
            self._message(f"{Path(summary.path).name} was not submitted")

        buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
        self._show_box(QMessageBox.Icon.Warning, "Packing found problems", text, buttons, answered)

    def _send(self, service: FarmService, summary: FileSummary, options: TaskOptions, packed: Packed) -> None:
        name = packed.zip_path.name
        self._panel.set_sending(f"Sending {name} ({format_size(packed.report.total_bytes)})...")
        note = describe_pack(packed.report)

        def send() -> tuple[str, str]:
            try:
                submit_packed(service, packed, options)
            except (FarmError, OSError) as exc:
                return summary.path, f"{note}\nCould not submit {name}: {exc}"
            return summary.path, f"{note}\nSubmitted {name}."

        self._runner.submit(
            send,
            lambda result: self._sent(result, packed.folder),
            lambda exc: self._sent((summary.path, f"{note}\nCould not submit {name}: {exc}"), packed.folder),
        )

    def _sent(self, result: tuple[str, str], folder: Path | None = None) -> None:
        path, text = result
        if folder is not None:
            self._folders.discard(folder)  # the worker removed it
        self.busy = False
        self._panel.set_sending(None)
        if folder is not None:
            self._note(path, text)
        self._message(text.rsplit("\n", 1)[-1])
        self._done()

    def _note(self, path: str, text: str) -> None:
        self.notes[path] = text
        summary = self._panel.summary
        if summary is not None and summary.path == path:
            self._panel.show_note(text)

    def _show_box(
        self,
        icon: QMessageBox.Icon,
        title: str,
        text: str,
        buttons: QMessageBox.StandardButton,
        answered: Callable[[bool], None] | None,
    ) -> None:
        """A window-modal box that does not block: the answer arrives by signal."""
        box = QMessageBox(icon, title, text, buttons, self._parent)
        if buttons & QMessageBox.StandardButton.No:
            box.setDefaultButton(QMessageBox.StandardButton.No)
        self.dialog = box

        def finished(_result: int) -> None:
            yes = box.standardButton(box.clickedButton()) == QMessageBox.StandardButton.Yes
            self.dialog = None
            box.deleteLater()
            if answered is not None:
                answered(yes)

        box.finished.connect(finished)
        box.open()

    def _remove(self, folder: Path) -> None:
        """Remove a temporary folder off the GUI thread (it may hold a big zip); at once once the runner is closed."""
        if not self._runner.submit(partial(shutil.rmtree, folder, ignore_errors=True), lambda _: self._forget(folder)):
            shutil.rmtree(folder, ignore_errors=True)
            self._forget(folder)

    def _forget(self, folder: Path) -> None:
        self._folders.discard(folder)

    def cancel(self) -> None:
        """The window closes: stop a packing at its next file (before the runner waits for its work)."""
        self._cancel.set()

    def remove_leftovers(self) -> None:
        """Remove the temporary folders no worker will remove (after the runner has finished its work)."""
        for folder in list(self._folders):
            self._remove(folder)
