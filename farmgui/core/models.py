"""What the manager stores (SQLAlchemy 2.0 typed models): tasks, their frames, agents, the log.

The whole farm state lives here, so a manager that is killed and restarted with the same data
directory carries on where it was. Enum columns store the enums' string values.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import orm as so

from blendfile import BlenderDataType, RenderOutputType

from .scheduler import FrameState
from .states import Stage


def utcnow() -> datetime:
    return datetime.now(UTC)


def _enum(cls: type) -> sa.Enum:
    # Store values (e.g. "rendering"), not member names, and as plain strings: adding a member
    # later needs no migration of a CHECK constraint.
    return sa.Enum(
        cls, native_enum=False, create_constraint=False, length=32, values_callable=lambda e: [m.value for m in e]
    )


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out (SQLite stores them without a zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(so.DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        Stage: _enum(Stage),
        FrameState: _enum(FrameState),
        BlenderDataType: _enum(BlenderDataType),
        RenderOutputType: _enum(RenderOutputType),
        datetime: UTCDateTime(),
    }


class RenderTask(Base):
    """One submitted file to render (the seed's RenderTask, plus what a farm needs)."""

    __tablename__ = "render_tasks"

    id: so.Mapped[str] = so.mapped_column(sa.String(32), primary_key=True)
    """The task key the API hands out."""
    file_server_address: so.Mapped[str] = so.mapped_column(sa.String(255), default="")
    file_server_port: so.Mapped[int] = so.mapped_column(default=0)
    data_type: so.Mapped[BlenderDataType | None]
    output_type: so.Mapped[RenderOutputType | None]
    start: so.Mapped[int | None]
    end: so.Mapped[int | None]
    step: so.Mapped[int] = so.mapped_column(default=1)
    stage: so.Mapped[Stage] = so.mapped_column(default=Stage.UPLOADED, index=True)

    original_name: so.Mapped[str] = so.mapped_column(sa.String(255), default="")
    file_sha256: so.Mapped[str | None] = so.mapped_column(sa.String(64), index=True)
    file_size: so.Mapped[int] = so.mapped_column(sa.BigInteger, default=0)
    scene: so.Mapped[str | None] = so.mapped_column(sa.String(255))
    blender_version: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    fps: so.Mapped[float | None]
    fps_numerator: so.Mapped[int | None]
    fps_base: so.Mapped[float | None]
    resolution_x: so.Mapped[int | None]
    resolution_y: so.Mapped[int | None]
    engine: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    container: so.Mapped[str | None] = so.mapped_column(sa.String(32))
    codec: so.Mapped[str | None] = so.mapped_column(sa.String(32))
    camera: so.Mapped[str | None] = so.mapped_column(sa.String(255))

    priority: so.Mapped[int] = so.mapped_column(default=0)
    trusted: so.Mapped[bool] = so.mapped_column(default=False)
    preview_first: so.Mapped[bool] = so.mapped_column(default=False)
    frame_timeout_s: so.Mapped[float | None]
    memory_limit_mb: so.Mapped[float | None]
    tiles: so.Mapped[int | None]
    """A still split across agents: its number of tiles, each a work unit numbered 0.. in ``frames``
    (None: whole frames)."""
    tile_overlap: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    """Pixels each tile renders beyond its own region, so a denoiser sees across the seams."""
    main_blend: so.Mapped[str | None] = so.mapped_column(sa.Text)
    """For a zip project: the main .blend inside it (``/``-separated)."""

    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    queued_at: so.Mapped[datetime | None]
    started_at: so.Mapped[datetime | None]
    finished_at: so.Mapped[datetime | None]
    error: so.Mapped[str | None] = so.mapped_column(sa.Text)
    merge_progress: so.Mapped[float] = so.mapped_column(default=0.0)
    result_path: so.Mapped[str | None] = so.mapped_column(sa.Text)
    """Relative to the data directory."""

    frames: so.WriteOnlyMapped[Frame] = so.relationship(
        back_populates="task", cascade="all, delete-orphan", passive_deletes=True
    )


class Frame(Base):
    """One frame of a task; ``done`` frames have their file in the task's frames folder."""

    __tablename__ = "frames"
    __table_args__ = (sa.UniqueConstraint("task_id", "number"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    task_id: so.Mapped[str] = so.mapped_column(sa.ForeignKey("render_tasks.id", ondelete="CASCADE"), index=True)
    number: so.Mapped[int]
    state: so.Mapped[FrameState] = so.mapped_column(default=FrameState.QUEUED)
    agent_id: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    render_seconds: so.Mapped[float | None]
    renders: so.Mapped[int] = so.mapped_column(default=0)
    sha256: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    path: so.Mapped[str | None] = so.mapped_column(sa.Text)
    """Relative to the data directory."""
    updated_at: so.Mapped[datetime] = so.mapped_column(default=utcnow, onupdate=utcnow)

    task: so.Mapped[RenderTask] = so.relationship(back_populates="frames")


class Agent(Base):
    """A render PC the manager knows, found by zeroconf or added by address."""

    __tablename__ = "agents"

    id: so.Mapped[str] = so.mapped_column(sa.String(64), primary_key=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(255), default="")
    host: so.Mapped[str] = so.mapped_column(sa.String(255), default="")
    port: so.Mapped[int] = so.mapped_column(default=0)
    blenders: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    """Comma-separated ``major.minor.patch`` versions."""
    cpus: so.Mapped[int] = so.mapped_column(default=0)
    gpus: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    enabled: so.Mapped[bool] = so.mapped_column(default=True)
    manual: so.Mapped[bool] = so.mapped_column(default=False)
    """Added by address (kept even when zeroconf does not see it)."""
    last_seen: so.Mapped[datetime | None]


class TaskEvent(Base):
    """The task's log: failures with Blender's own text, lost agents, merges."""

    __tablename__ = "task_events"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    task_id: so.Mapped[str] = so.mapped_column(sa.ForeignKey("render_tasks.id", ondelete="CASCADE"), index=True)
    at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    level: so.Mapped[str] = so.mapped_column(sa.String(16), default="info")
    agent_id: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    frame: so.Mapped[int | None]
    fault: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    message: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    log_tail: so.Mapped[str | None] = so.mapped_column(sa.Text)


class BlockedAgent(Base):
    """An agent taken off a task after failing it 3 times (the user can clear it)."""

    __tablename__ = "blocked_agents"

    task_id: so.Mapped[str] = so.mapped_column(sa.ForeignKey("render_tasks.id", ondelete="CASCADE"), primary_key=True)
    agent_id: so.Mapped[str] = so.mapped_column(sa.String(64), primary_key=True)
