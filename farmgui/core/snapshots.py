"""Immutable pictures of the farm for the window: taken off the GUI thread, shown as they are.

The window keeps no state of its own: everything it shows comes from the latest snapshot, so
closing and reopening it (or restarting the whole app on the same data directory) shows the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from .links import Link, LinkStatus
from .service import FarmService


@dataclass(frozen=True)
class TaskRow:
    key: str
    name: str
    stage: str
    progress: float
    frames_done: int
    frames_total: int
    elapsed_s: float | None
    remaining_s: float | None
    agents: tuple[str, ...]
    priority: int
    error: str | None
    waiting_reason: str | None
    output_type: str | None
    has_result: bool
    data_dir_path: str


@dataclass(frozen=True)
class AgentRow:
    key: str
    name: str
    host: str
    port: int
    state: str
    """idle, rendering, offline, unpaired, unreachable, disabled."""
    blenders: tuple[str, ...]
    task: str | None
    frame: int | None
    frame_progress: float
    share: float
    """Share of its current task assigned to it (the seed's per-worker progress)."""
    share_progress: float
    seconds_per_frame: float | None
    detail: str = ""


@dataclass(frozen=True)
class FarmSnapshot:
    tasks: tuple[TaskRow, ...]
    agents: tuple[AgentRow, ...]


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def take_snapshot(service: FarmService, links: list[Link] | None = None) -> FarmSnapshot:
    now = datetime.now(UTC)
    tasks: list[TaskRow] = []
    names = {a.agent_id: a.name for a in service.agents()}
    shares: dict[str, tuple[str, float, float]] = {}
    for task in service.tasks():
        key = task["task_key"]
        progress = service.progress(key)
        started = _parse_time(task.get("started_at"))
        finished = _parse_time(task.get("finished_at"))
        elapsed = ((finished or now) - started).total_seconds() if started else None
        remaining = None
        if elapsed and progress.total_progress > 0.01 and progress.stage.value in ("rendering", "merging"):
            remaining = elapsed * (1 - progress.total_progress) / progress.total_progress
        for worker in progress.workers:
            shares[worker.agent] = (key, worker.share, worker.progress)
        tasks.append(
            TaskRow(
                key=key,
                name=task["original_name"] or key[:8],
                stage=progress.stage.value,
                progress=progress.total_progress,
                frames_done=progress.frames_done,
                frames_total=progress.frames_total,
                elapsed_s=elapsed,
                remaining_s=remaining,
                agents=tuple(names.get(w.agent, w.agent[:8]) for w in progress.workers),
                priority=task["priority"],
                error=progress.error,
                waiting_reason=progress.waiting_reason,
                output_type=task.get("output_type"),
                has_result=bool(task.get("result_path")),
                data_dir_path=str(service.storage.task_dir(key)),
            )
        )
    agents: list[AgentRow] = []
    seen_ids: set[str] = set()
    for a in service.agents():
        seen_ids.add(a.agent_id)
        current = a.current[0] if a.current else None
        share = shares.get(a.agent_id)
        state = "disabled" if not a.enabled else ("rendering" if current else ("idle" if a.online else "offline"))
        agents.append(
            AgentRow(
                key=a.agent_id,
                name=a.name,
                host=a.host,
                port=a.port,
                state=state,
                blenders=tuple(a.blenders),
                task=current[0] if current else None,
                frame=current[1] if current else None,
                frame_progress=current[2] if current else 0.0,
                share=share[1] if share else 0.0,
                share_progress=share[2] if share else 0.0,
                seconds_per_frame=a.seconds_per_frame,
            )
        )
    for link in links or []:
        if link.agent_id in seen_ids or link.status is LinkStatus.ATTACHED:
            continue
        state = "unpaired" if link.status is LinkStatus.UNPAIRED or not link.paired_hint else link.status.value
        agents.append(
            AgentRow(
                key=link.agent_id or f"{link.host}:{link.port}",
                name=link.name,
                host=link.host,
                port=link.port,
                state=state,
                blenders=(),
                task=None,
                frame=None,
                frame_progress=0.0,
                share=0.0,
                share_progress=0.0,
                seconds_per_frame=None,
                detail=link.detail,
            )
        )
    return FarmSnapshot(tuple(tasks), tuple(agents))
