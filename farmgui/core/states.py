"""The one place a task's stage changes. Every other module asks :func:`transition`.

::

    uploaded --run_task--> queued --first frame--> rendering --all frames--> merging --> finished
        |                    |  ^                    |    ^                    |
        |                    v  |                    v    |                    v
        +-----------------> paused <-----------------+    |                  failed --retry--> queued
    any unfinished stage --cancel--> cancelled            +-- resume
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    UPLOADED = "uploaded"
    QUEUED = "queued"
    RENDERING = "rendering"
    PAUSED = "paused"
    MERGING = "merging"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


ALLOWED: dict[Stage, frozenset[Stage]] = {
    Stage.UPLOADED: frozenset({Stage.QUEUED, Stage.FAILED, Stage.CANCELLED}),
    Stage.QUEUED: frozenset({Stage.RENDERING, Stage.MERGING, Stage.PAUSED, Stage.FAILED, Stage.CANCELLED}),
    Stage.RENDERING: frozenset({Stage.MERGING, Stage.PAUSED, Stage.FAILED, Stage.CANCELLED, Stage.QUEUED}),
    Stage.PAUSED: frozenset({Stage.QUEUED, Stage.RENDERING, Stage.CANCELLED}),
    Stage.MERGING: frozenset({Stage.FINISHED, Stage.FAILED, Stage.CANCELLED}),
    Stage.FAILED: frozenset({Stage.QUEUED}),
    Stage.FINISHED: frozenset(),
    Stage.CANCELLED: frozenset(),
}
"""Which stage may follow which. ``rendering -> queued`` happens when every agent working on the task
is lost; ``queued -> merging`` when a restarted manager finds every frame already done."""

ACTIVE = frozenset({Stage.QUEUED, Stage.RENDERING})
"""Stages in which the scheduler hands out the task's frames."""
TERMINAL = frozenset({Stage.FINISHED, Stage.CANCELLED})


class IllegalTransition(ValueError):
    """A stage change the state machine does not allow (a bug, or a request that came too late)."""

    def __init__(self, current: Stage, target: Stage) -> None:
        super().__init__(f"a task cannot go from {current.value} to {target.value}")
        self.current = current
        self.target = target


def can_transition(current: Stage, target: Stage) -> bool:
    return target in ALLOWED[current]


def transition(current: Stage, target: Stage) -> Stage:
    """Check a stage change; returns the new stage or raises :class:`IllegalTransition`."""
    if target not in ALLOWED[current]:
        raise IllegalTransition(current, target)
    return target
