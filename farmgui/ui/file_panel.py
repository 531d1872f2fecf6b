"""The panel that shows a dropped file before submission: its scenes and what would be rendered."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from blendfile import Scene

from ..core.inspect import FileSummary, scene_problems
from ..core.scheduler import can_open, version_tuple
from ..core.service import TaskOptions
from .theme import error_colour

_FRAME_LIMIT = 1_048_574  # Blender's MAXFRAME


def _format_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


class FilePanel(QGroupBox):
    """Shows one :class:`FileSummary`; the frame range and step are editable overrides."""

    submit_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._summary: FileSummary | None = None
        self.agent_versions: set[tuple[int, int]] | None = None
        """``major.minor`` of every Blender the farm's agents have (None: not known yet)."""
        self.priority = QSpinBox()
        self.priority.setRange(-100, 100)
        self.trusted = QCheckBox("Allow the file's Python scripts to run (only for files you trust)")
        self.render_button = QPushButton("Render on the farm")
        self.render_button.setObjectName("render")
        self.render_button.clicked.connect(self.submit_requested.emit)
        self.trusted.toggled.connect(lambda _checked: self._update_problems())
        self.scene_box = QComboBox()
        self.frame_start = QSpinBox()
        self.frame_end = QSpinBox()
        self.frame_step = QSpinBox()
        for box in (self.frame_start, self.frame_end):
            box.setRange(-_FRAME_LIMIT, _FRAME_LIMIT)
        self.frame_step.setRange(1, _FRAME_LIMIT)
        for box in (self.frame_start, self.frame_end, self.frame_step, self.priority):
            box.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.priority.setToolTip("Higher renders first; tasks of equal priority render in the order they came")
        self.scene_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.scene_box.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.labels: dict[str, QLabel] = {}
        # Two columns: what to render (editable) on the left, what the file says on the right.
        render = QFormLayout()
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
        priority = QHBoxLayout()
        priority.addWidget(self.priority)
        priority.addSpacing(6)
        priority.addWidget(QLabel("higher renders first"))
        priority.addStretch(1)
        render.addRow("Priority", priority)
        render.addRow(self.trusted)
        button = QHBoxLayout()
        button.addWidget(self.render_button)
        button.addStretch(1)
        render.addRow(button)
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
        self.problems = QLabel()
        self.problems.setObjectName("problems")
        self.problems.setWordWrap(True)
        self.problems.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._colour_problems()
        layout = QVBoxLayout(self)
        layout.addLayout(columns)
        layout.addWidget(self.problems)
        layout.addStretch(1)
        self.scene_box.currentTextChanged.connect(self._show_scene)
        for box in (self.frame_start, self.frame_end, self.frame_step):
            box.valueChanged.connect(self._update_count)
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

    def show_summary(self, summary: FileSummary) -> None:
        self._summary = summary
        self.setTitle(Path(summary.path).name)
        self.setEnabled(summary.ok)
        self.labels["size"].setText(_format_size(summary.size_bytes))
        if not summary.ok:
            self.scene_box.clear()
            for key, label in self.labels.items():
                if key != "size":
                    label.setText("-")
            self.problems.setText(f"Cannot use this file: {summary.error}")
            self.render_button.setEnabled(False)
            return
        compression = "" if summary.compression == "none" else f" ({summary.compression}-compressed)"
        self.labels["version"].setText(f"{summary.blender_version}{compression}")
        self.scene_box.blockSignals(True)
        self.scene_box.clear()
        self.scene_box.addItems([s.name for s in summary.scenes])
        self.scene_box.blockSignals(False)
        self.scene_box.setCurrentText(summary.current_scene or "")
        self._show_scene(summary.current_scene or "")

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

    def problem_list(self) -> tuple[list[str], list[str]]:
        """(problems that stop a submission, warnings: the task would wait) for what is shown now."""
        summary = self._summary
        scene = self.selected_scene()
        if summary is None or scene is None:
            return [], []
        checked = replace(
            scene,
            frame_start=self.frame_start.value(),
            frame_end=self.frame_end.value(),
            frame_step=self.frame_step.value(),
        )
        warnings: list[str] = []
        version = summary.blender_version
        if self.agent_versions is not None and version and not can_open(self.agent_versions, version_tuple(version)):
            have = ", ".join(f"{a}.{b}" for a, b in sorted(self.agent_versions)) or "no agent is online"
            warnings.append(f"no agent can open a Blender {version} file (agents have: {have})")
        if summary.autorun_scripts and not self.trusted.isChecked():
            names = ", ".join(summary.autorun_scripts)
            warnings.append(
                f"the file has scripts set to run when it opens ({names}): they will not run unless you allow them"
            )
        return list(scene_problems(checked)), warnings

    def _update_problems(self) -> None:
        if self._summary is None or not self._summary.ok:
            self.render_button.setEnabled(False)
            return
        blocking, warnings = self.problem_list()
        self.problems.setText("\n".join(f"Problem: {p}" for p in [*blocking, *warnings]))
        self.render_button.setEnabled(not blocking)

    def options(self) -> TaskOptions:
        return TaskOptions(
            scene=self.scene_box.currentText() or None,
            frame_start=self.frame_start.value(),
            frame_end=self.frame_end.value(),
            frame_step=self.frame_step.value(),
            priority=self.priority.value(),
            trusted=self.trusted.isChecked(),
        )

    def _update_count(self) -> None:
        count = len(range(self.frame_start.value(), self.frame_end.value() + 1, self.frame_step.value()))
        self.labels["count"].setText(str(count))
        self._update_problems()
