"""The panel that shows a dropped file before submission: its scenes, what would be rendered, the files it
needs, and how it would be sent (packed into a project, split across agents)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from blendfile import BlenderDataType, Scene

from ..core.inspect import FileSummary, scene_problems
from ..core.scheduler import can_open, version_tuple
from ..core.service import MAX_TILES, TaskOptions
from ..core.tiles import can_stitch, grid_shape
from .dependencies import DependenciesModel, found, missing, names, unreadable_blends
from .theme import error_colour

_FRAME_LIMIT = 1_048_574  # Blender's MAXFRAME
DEFAULT_TILES = 4
VISIBLE_DEPENDENCIES = 6
"""Rows the external files' list shows before it scrolls."""
SPLIT_TIP = (
    "Render this one frame faster: the image is cut into this many tiles, each rendered by a different agent "
    "at the same time, and the farm stitches them into one image in the scene's format.\n"
    "Only for a single frame: set the first and last frame equal.\n"
    "Without denoising the stitched image is the same as a whole render; with denoising each tile renders "
    "a margin beyond its edges so the seams do not show."
)
PACK_TIP = (
    "The agents only get what the farm sends them. Packed, the .blend, the libraries it links and every "
    "file they use travel together as one zip project; paths that point outside the project are rewritten "
    "in the copies, never in your files.\n"
    "Unpacked, only the .blend is sent, and the farm renders it without those files."
)
MAIN_BLEND_TIP = "The .blend in the zip that the farm renders (the others are its libraries or other shots)"


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


class FilePanel(QGroupBox):
    """Shows one :class:`FileSummary`; the frame range and step are editable overrides."""

    submit_requested = Signal()
    main_blend_chosen = Signal(str)
    """The user picked another main .blend of a zip project (the window reads the zip again)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._summary: FileSummary | None = None
        self._project_bytes: int | None = None
        self._reading = False
        self._sending = False
        self.agent_versions: set[tuple[int, int]] | None = None
        """``major.minor`` of every Blender the farm's agents have (None: not known yet)."""
        self.priority = QSpinBox()
        self.priority.setRange(-100, 100)
        self.trusted = QCheckBox("Allow the file's Python scripts to run (only for files you trust)")
        self.render_button = QPushButton("Render on the farm")
        self.render_button.setObjectName("render")
        self.render_button.clicked.connect(self.submit_requested.emit)
        self.trusted.toggled.connect(lambda _checked: self._update_problems())
        self.main_box = QComboBox()
        self.main_box.setToolTip(MAIN_BLEND_TIP)
        self.main_box.setPlaceholderText("choose the .blend to render")
        self.main_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.main_box.currentTextChanged.connect(self._main_chosen)
        self.scene_box = QComboBox()
        self.frame_start = QSpinBox()
        self.frame_end = QSpinBox()
        self.frame_step = QSpinBox()
        for box in (self.frame_start, self.frame_end):
            box.setRange(-_FRAME_LIMIT, _FRAME_LIMIT)
        self.frame_step.setRange(1, _FRAME_LIMIT)
        self.split = QCheckBox("Split the frame across")
        self.tiles = QSpinBox()
        self.tiles.setRange(2, MAX_TILES)
        self.tiles.setValue(DEFAULT_TILES)
        self.tiles.setEnabled(False)
        self.split.toggled.connect(lambda _checked: self._update_split())
        self.tiles.valueChanged.connect(lambda _value: self._update_problems())
        self.tiles_label = QLabel("agents")
        for widget in (self.split, self.tiles, self.tiles_label):
            widget.setToolTip(SPLIT_TIP)
        self.pack = QCheckBox()
        self.pack.setChecked(True)
        self.pack.setToolTip(PACK_TIP)
        self.pack.toggled.connect(lambda _checked: self._update_problems())
        for box in (self.frame_start, self.frame_end, self.frame_step, self.priority, self.tiles):
            box.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.priority.setToolTip("Higher renders first; tasks of equal priority render in the order they came")
        self.scene_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.scene_box.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.labels: dict[str, QLabel] = {}
        # Two columns: what to render (editable) on the left, what the file says on the right.
        self.render_form = render = QFormLayout()
        render.addRow("Main .blend", self.main_box)
        render.addRow("Scene", self.scene_box)
        frames = QHBoxLayout()
        frames.setSpacing(6)
        frames.addWidget(self.frame_start)
        frames.addWidget(QLabel("to"))
        frames.addWidget(self.frame_end)
        frames.addSpacing(6)
        frames.addWidget(QLabel("step"))
        frames.addWidget(self.frame_step)
        frames.addStretch(1)
        render.addRow("Frames", frames)
        render.addRow("Number of frames", self._label("count"))
        split = QHBoxLayout()
        split.setSpacing(6)
        split.addWidget(self.split)
        split.addWidget(self.tiles)
        split.addWidget(self.tiles_label)
        split.addStretch(1)
        render.addRow(split)
        priority = QHBoxLayout()
        priority.addWidget(self.priority)
        priority.addSpacing(6)
        priority.addWidget(QLabel("higher renders first"))
        priority.addStretch(1)
        render.addRow("Priority", priority)
        render.addRow(self.trusted)
        render.addRow(self.pack)
        self._button_row = QHBoxLayout()
        self._button_row.addWidget(self.render_button)
        self._button_row.addWidget(self.progress, 1)
        self._button_row.addStretch(1)  # none while the progress bar shows: it takes the row
        render.addRow(self._button_row)
        facts = QFormLayout()
        for key, title in (
            ("version", "Blender version"),
            ("size", "Size"),
            ("fps", "Frame rate"),
            ("resolution", "Resolution"),
            ("engine", "Render engine"),
            ("output", "Output"),
            ("camera", "Camera"),
        ):
            facts.addRow(title, self._label(key))
        for form in (render, facts):
            form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
            form.setVerticalSpacing(4)
        columns = QHBoxLayout()
        columns.addLayout(render, 1)
        columns.addSpacing(16)
        columns.addLayout(facts, 1)
        # The external files: a thin model over the summary's dependencies, in a compact table.
        self.dependencies = DependenciesModel()
        self.deps_title = QLabel()
        self.deps_title.setObjectName("dependenciesTitle")
        self.deps_view = QTableView()
        self.deps_view.setModel(self.dependencies)
        self.deps_view.verticalHeader().hide()
        self.deps_view.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.deps_view.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.deps_view.setWordWrap(False)
        self.deps_view.setShowGrid(False)
        self.deps_view.setAlternatingRowColors(True)
        self.deps_view.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # a long path keeps its file name
        self.deps_view.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        header = self.deps_view.horizontalHeader()
        for column in range(self.dependencies.columnCount()):
            mode = QHeaderView.ResizeMode.Stretch if column == 1 else QHeaderView.ResizeMode.ResizeToContents
            header.setSectionResizeMode(column, mode)
        self.problems = QLabel()
        self.problems.setObjectName("problems")
        self.problems.setWordWrap(True)
        self.problems.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note = QLabel()
        self.note.setObjectName("note")
        self.note.setWordWrap(True)
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note.hide()
        self._colour_problems()
        layout = QVBoxLayout(self)
        layout.addLayout(columns)
        layout.addWidget(self.problems)
        layout.addWidget(self.note)
        layout.addWidget(self.deps_title)
        layout.addWidget(self.deps_view)
        layout.addStretch(1)
        self.scene_box.currentTextChanged.connect(self._show_scene)
        for box in (self.frame_start, self.frame_end, self.frame_step):
            box.valueChanged.connect(self._update_count)
        self._show_dependencies(None)
        self.render_form.setRowVisible(self.main_box, False)
        self.pack.hide()
        self.setEnabled(False)

    def _colour_problems(self) -> None:
        colour = error_colour(self.palette()).name()
        self.problems.setStyleSheet(f"color: {colour}; font-weight: bold;")

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self._colour_problems()
        super().changeEvent(event)

    def _label(self, key: str) -> QLabel:
        label = QLabel("-")
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        label.setWordWrap(True)  # a long output path wraps instead of widening the window
        self.labels[key] = label
        return label

    @property
    def summary(self) -> FileSummary | None:
        return self._summary

    def show_summary(self, summary: FileSummary, project_bytes: int | None = None) -> None:
        """Show a file; ``project_bytes``: the size of the project it would be packed into, when known."""
        if self._summary is None or self._summary.path != summary.path:
            # Another file: its own choices start from the safe defaults.
            self.trusted.setChecked(False)
            self.split.setChecked(False)
            self.pack.setChecked(True)
            self.note.hide()
        self._summary = summary
        self._project_bytes = project_bytes
        self.setTitle(Path(summary.path).name)
        self.labels["size"].setText(format_size(summary.size_bytes))
        self._show_main_blends(summary)
        self._show_dependencies(summary)
        self._show_pack(summary)
        # A zip whose main .blend is not clear still lets the user pick it.
        self.setEnabled(summary.ok or bool(summary.project_blends))
        for widget in (self.scene_box, self.frame_start, self.frame_end, self.frame_step, self.priority):
            widget.setEnabled(summary.ok)
        if not summary.ok:
            self.scene_box.clear()
            for key, label in self.labels.items():
                if key != "size":
                    label.setText("-")
            self.split.setEnabled(False)
            self.tiles.setEnabled(False)
            self._update_problems()
            return
        compression = "" if summary.compression == "none" else f" ({summary.compression}-compressed)"
        self.labels["version"].setText(f"{summary.blender_version}{compression}")
        self.scene_box.blockSignals(True)
        self.scene_box.clear()
        self.scene_box.addItems([s.name for s in summary.scenes])
        self.scene_box.blockSignals(False)
        self.scene_box.setCurrentText(summary.current_scene or "")
        self._show_scene(summary.current_scene or "")

    def _show_main_blends(self, summary: FileSummary) -> None:
        is_project = summary.data_type is BlenderDataType.MULTI_FILE and bool(summary.project_blends)
        self.render_form.setRowVisible(self.main_box, is_project)
        self.main_box.blockSignals(True)
        self.main_box.clear()
        self.main_box.addItems(list(summary.project_blends))
        self.main_box.setCurrentIndex(
            summary.project_blends.index(summary.main_blend) if summary.main_blend in summary.project_blends else -1
        )
        self.main_box.blockSignals(False)
        self.main_box.setEnabled(len(summary.project_blends) > 1 and not self._reading)

    def _main_chosen(self, name: str) -> None:
        if name and self._summary is not None and name != self._summary.main_blend:
            self.main_blend_chosen.emit(name)

    def _show_dependencies(self, summary: FileSummary | None) -> None:
        self.dependencies.set_summary(summary)
        rows = self.dependencies.rows
        visible = bool(rows)
        self.deps_title.setVisible(visible)
        self.deps_view.setVisible(visible)
        if not visible or summary is None:
            return
        lost = len(missing(summary))
        counts = f"{len(rows) - lost} found" + (f", {lost} MISSING" if lost else "")
        self.deps_title.setText(f"<b>External files: {len(rows)}</b> ({counts})")
        shown = min(len(rows), VISIBLE_DEPENDENCIES)
        height = self.deps_view.horizontalHeader().sizeHint().height() + 2 * self.deps_view.frameWidth()
        height += shown * self.deps_view.verticalHeader().defaultSectionSize()
        self.deps_view.setFixedHeight(height)

    def _show_pack(self, summary: FileSummary) -> None:
        files = found(summary) if summary.needs_project else []
        self.pack.setVisible(bool(files))
        size = "" if self._project_bytes is None else f" ({format_size(self._project_bytes)} in all)"
        self.pack.setText(f"Pack the .blend and its {_plural(len(files), 'file')} into a project{size}")

    def pack_requested(self) -> bool:
        """Whether the submission packs the .blend and its files into a zip project first."""
        summary = self._summary
        return (
            summary is not None
            and summary.data_type is not BlenderDataType.MULTI_FILE
            and summary.needs_project
            and bool(found(summary))
            and self.pack.isChecked()
        )

    def selected_scene(self) -> Scene | None:
        return None if self._summary is None else self._summary.scene(self.scene_box.currentText())

    def _show_scene(self, name: str) -> None:
        scene = self._summary.scene(name) if self._summary else None
        if scene is None:
            return
        self.frame_start.setValue(scene.frame_start)
        self.frame_end.setValue(scene.frame_end)
        self.frame_step.setValue(max(scene.frame_step, 1))
        self.labels["fps"].setText(f"{scene.fps:.6g} fps")
        width, height = scene.render_size
        self.labels["resolution"].setText(
            f"{width} x {height} px ({scene.resolution_x} x {scene.resolution_y} at {scene.resolution_percentage}%)"
        )
        self.labels["engine"].setText(scene.engine)
        output = scene.output_type.value
        if scene.ffmpeg is not None:
            output += f" ({scene.ffmpeg.container}, {scene.ffmpeg.codec})"
        self.labels["output"].setText(f"{output}  {scene.output_path}")
        self.labels["camera"].setText(scene.camera or "none")
        self._update_count()

    def set_agent_versions(self, versions: set[tuple[int, int]] | None) -> None:
        if versions != self.agent_versions:
            self.agent_versions = versions
            self._update_problems()

    def frame_count(self) -> int:
        return len(range(self.frame_start.value(), self.frame_end.value() + 1, self.frame_step.value()))

    def splitting(self) -> bool:
        """Whether the one frame is split across agents (the option is on and the range is one frame)."""
        return self.split.isEnabled() and self.split.isChecked()

    def problem_list(self) -> tuple[list[str], list[str]]:
        """(problems that stop a submission, warnings: the task would wait or miss something) for what is
        shown now."""
        summary = self._summary
        if summary is not None and not summary.ok:
            return [str(summary.error)], []
        scene = self.selected_scene()
        if summary is None or scene is None:
            return [], []
        checked = replace(
            scene,
            frame_start=self.frame_start.value(),
            frame_end=self.frame_end.value(),
            frame_step=self.frame_step.value(),
        )
        blocking = list(scene_problems(checked))
        if self.splitting():
            if not can_stitch(scene.output_type.value):
                blocking.append(f"a {scene.output_type.value} image cannot be split across agents (no stitching)")
            elif isinstance(shape := self._tile_shape(scene), str):
                blocking.append(shape)
        warnings: list[str] = []
        version = summary.blender_version
        if self.agent_versions is not None and version and not can_open(self.agent_versions, version_tuple(version)):
            have = ", ".join(f"{a}.{b}" for a, b in sorted(self.agent_versions)) or "no agent is online"
            warnings.append(f"no agent can open a Blender {version} file (agents have: {have})")
        if summary.autorun_scripts and not self.trusted.isChecked():
            names_ = ", ".join(summary.autorun_scripts)
            warnings.append(
                f"the file has scripts set to run when it opens ({names_}): they will not run unless you allow them"
            )
        warnings.extend(self._file_warnings(summary))
        return blocking, warnings

    def _tile_shape(self, scene: Scene) -> tuple[int, int] | str:
        """(columns, rows) of the tiles the frame would be cut into, or why it cannot be."""
        width, height = scene.render_size
        try:
            return grid_shape(width, height, self.tiles.value())
        except ValueError as exc:
            return str(exc)

    def _tiles_text(self) -> str:
        scene = self.selected_scene()
        shape = self._tile_shape(scene) if scene is not None and self.splitting() else None
        if scene is None or not isinstance(shape, tuple):
            return "agents"
        (columns, rows), (width, height) = shape, scene.render_size
        return f"agents ({columns} x {rows} tiles of about {width // columns} x {height // rows} px)"

    def _file_warnings(self, summary: FileSummary) -> list[str]:
        warnings: list[str] = []
        lost = missing(summary)
        if lost:
            warnings.append(
                f"{_plural(len(lost), 'external file')} MISSING: {names(lost)}. The farm renders without "
                f"{'it' if len(lost) == 1 else 'them'}: a missing texture renders pink, a missing library's "
                "objects are left out"
            )
        for path, error in unreadable_blends(summary):
            what = "the file" if path == summary.path else Path(path).name
            warnings.append(f"the files used by {what} could not be listed: {error}")
        have = found(summary) if summary.needs_project else []
        if have and not self.pack.isChecked():
            warnings.append(
                f"the .blend uses {_plural(len(have), 'file')} beside it: unpacked, the farm renders without them"
            )
        return warnings

    def _update_problems(self) -> None:
        summary = self._summary
        blocking, warnings = self.problem_list()
        if summary is not None and not summary.ok:
            if summary.project_blends:  # the zip is fine, its main .blend is not clear or not readable
                self.problems.setText(f"Choose the .blend to render (Main .blend, above): {summary.error}")
            else:
                self.problems.setText(f"Cannot use this file: {summary.error}")
        else:
            self.problems.setText(
                "\n".join([*(f"Problem: {p}" for p in blocking), *(f"Warning: {w}" for w in warnings)])
            )
        ready = summary is not None and summary.ok and not blocking
        self.tiles_label.setText(self._tiles_text())
        self.problems.setVisible(bool(self.problems.text()))
        self.render_button.setEnabled(ready and not self._reading and not self._sending)

    def options(self) -> TaskOptions:
        summary = self._summary
        return TaskOptions(
            scene=self.scene_box.currentText() or None,
            frame_start=self.frame_start.value(),
            frame_end=self.frame_end.value(),
            frame_step=self.frame_step.value(),
            priority=self.priority.value(),
            trusted=self.trusted.isChecked(),
            tiles=self.tiles.value() if self.splitting() else None,
            main_blend=summary.main_blend if summary is not None else None,
        )

    # -- what the window is doing for this panel ------------------------------------------------
    def set_reading(self, reading: bool) -> None:
        """A zip is being read again (another main .blend): nothing can be submitted meanwhile."""
        self._reading = reading
        self.main_box.setEnabled(not reading and self._summary is not None and len(self._summary.project_blends) > 1)
        self._update_problems()

    def set_sending(self, text: str | None, done: int = 0, total: int = 0) -> None:
        """Show a submission at work (``total`` 0: no measure of progress), or none (``text`` None)."""
        self._sending = text is not None
        self.progress.setVisible(self._sending)
        self._button_row.setStretch(2, 0 if self._sending else 1)
        if text is not None:
            self.progress.setRange(0, 1000 if total else 0)
            self.progress.setValue(round(1000 * done / total) if total else 0)
            self.progress.setFormat(text)
        self._update_problems()

    def show_note(self, text: str) -> None:
        """What the last submission of this file did (kept until another file is shown)."""
        self.note.setText(text)
        self.note.setVisible(bool(text))

    def _update_split(self) -> None:
        single = self._summary is not None and self._summary.ok and self.frame_count() == 1
        self.split.setEnabled(single)
        self.tiles.setEnabled(single and self.split.isChecked())
        self.tiles_label.setEnabled(single)
        self._update_problems()

    def _update_count(self) -> None:
        self.labels["count"].setText(str(self.frame_count()))
        self._update_split()
