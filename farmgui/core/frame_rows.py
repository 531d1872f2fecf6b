"""Finished frames' database rows, written in groups (group commit).

A frame upload used to commit its own transaction: at 170 frames a second that was ~1.5 ms of manager CPU per
frame spent on SQLAlchemy's statement set-up, ``BEGIN`` and ``COMMIT`` (benchmarks/manager_scale.py's profile,
BENCHMARKS.md "The manager at scale"). Here every frame that arrives while one transaction commits joins the
next one, written as a single ``executemany``. Nothing is lost for it: the upload is answered only once its row
is committed (the caller waits on the future ``submit`` returns), so an agent keeps a frame in its outbox until
the manager has it on disk and in the database, exactly as before. When the farm is quiet a group is one frame
and the wait is the one commit it always was.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from concurrent.futures import Future
from typing import Any

import sqlalchemy as sa

from .models import Frame

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.02
"""At most one transaction per 20 ms: at 200 frames a second a transaction per frame (groups formed only while the
last one committed) held 1-2 rows and the writer was 18 % of the manager's busy time (py-spy, manager_scale.py);
waiting for the rest of the 20 ms makes groups of ~4 for at most 20 ms more on an upload's answer."""

_UPDATE = (
    sa.update(Frame)
    .where(Frame.task_id == sa.bindparam("b_task"), Frame.number == sa.bindparam("b_number"))
    .values(
        state=sa.bindparam("state"),
        agent_id=sa.bindparam("agent_id"),
        render_seconds=sa.bindparam("render_seconds"),
        sha256=sa.bindparam("sha256"),
        path=sa.bindparam("path"),
        renders=sa.bindparam("renders"),
        updated_at=sa.bindparam("updated_at"),
    )
)
"""One statement for every group: ``b_task`` and ``b_number`` select the row, the rest are its new values."""


class FrameRowWriter:
    """A thread that commits finished frames' rows, as many per transaction as are waiting."""

    def __init__(self, engine: sa.Engine, *, name: str = "frame-rows", min_interval_s: float = MIN_INTERVAL_S) -> None:
        self._engine = engine
        self._lock = threading.Condition()
        self._pending: list[tuple[dict[str, Any], Future[None]]] = []
        self._writing = 0
        """Rows taken from ``_pending`` whose transaction has not ended yet."""
        self._unwritten: Counter[str] = Counter()
        """Task id -> its rows submitted and not yet committed or failed."""
        self._closed = False
        self.min_interval_s = min_interval_s
        self.groups = 0
        """Transactions written (for tests and benchmarks: frames / groups is the batching achieved)."""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, task_id: str, number: int, values: dict[str, Any]) -> Future[None]:
        """Queue one frame's new column values; the future completes when they are committed."""
        done: Future[None] = Future()
        row = dict(values, b_task=task_id, b_number=number)
        with self._lock:
            if self._closed:
                raise RuntimeError("the frame row writer is closed")
            self._pending.append((row, done))
            self._unwritten[task_id] += 1
            self._lock.notify_all()
        return done

    def has_unwritten(self, task_id: str) -> bool:
        """Whether rows of this task are still on their way (a merge must wait for them)."""
        with self._lock:
            return self._unwritten[task_id] > 0

    @property
    def writing(self) -> int:
        """Rows in the transaction being written now."""
        return self._writing

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every row submitted so far is committed (or failed). False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending and not self._writing, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        last_commit = -math.inf
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._pending or self._closed)
                # A busy farm: let the group fill until MIN_INTERVAL_S after the last commit (a quiet one, whose
                # frames come further apart than that, waits for nothing).
                self._lock.wait_for(lambda: self._closed, last_commit + self.min_interval_s - time.monotonic())
                if not self._pending:  # closed and drained
                    return
                group, self._pending = self._pending, []
                self._writing = len(group)
            self._write(group)
            last_commit = time.monotonic()
            with self._lock:
                self._writing = 0
                self._lock.notify_all()

    def _write(self, group: list[tuple[dict[str, Any], Future[None]]]) -> None:
        error: Exception | None = None
        try:
            with self._engine.begin() as conn:
                conn.execute(_UPDATE, [row for row, _ in group])
            self.groups += 1
        except Exception as exc:  # reported to every waiting upload, which answers 500: the agent sends it again
            log.exception("writing %d frame row(s) failed", len(group))
            error = exc
        with self._lock:  # before the futures' callbacks run: they ask ``has_unwritten``
            self._unwritten.subtract(row["b_task"] for row, _ in group)
            self._unwritten += Counter()  # drops the tasks at zero
        for _, done in group:
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)
