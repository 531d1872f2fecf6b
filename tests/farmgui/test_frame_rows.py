"""Finished frames' rows are committed in groups, and an upload is answered only once its row is in the database."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
import sqlalchemy as sa

from farmgui.core import db
from farmgui.core.frame_rows import FrameRowWriter
from farmgui.core.models import Frame, RenderTask, utcnow
from farmgui.core.scheduler import FrameState


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine, sessions = db.open_database(db.sqlite_url(tmp_path))
    with sessions.begin() as s:
        s.add(RenderTask(id="t1", original_name="a.blend"))
        s.flush()
        s.add_all(Frame(task_id="t1", number=n) for n in range(1, 101))
    yield engine
    engine.dispose()


def _done(agent: str) -> dict[str, object]:
    return {
        "state": FrameState.DONE,
        "agent_id": agent,
        "render_seconds": 1.25,
        "sha256": "ab" * 32,
        "path": "tasks/t1/frames/x.png",
        "renders": 1,
        "updated_at": utcnow(),
    }


def _rows(engine: sa.Engine) -> dict[int, tuple[FrameState, str | None]]:
    with engine.connect() as conn:
        result = conn.execute(sa.select(Frame.number, Frame.state, Frame.agent_id).where(Frame.task_id == "t1"))
        return {number: (state, agent) for number, state, agent in result}


def test_a_row_is_committed_when_its_future_completes(engine: sa.Engine) -> None:
    writer = FrameRowWriter(engine)
    try:
        writer.submit("t1", 7, _done("a1")).result(timeout=10)
        assert _rows(engine)[7] == (FrameState.DONE, "a1")  # read on another connection: committed
        assert _rows(engine)[8] == (FrameState.QUEUED, None)
    finally:
        writer.close()


def test_rows_arriving_during_a_commit_share_the_next_one(engine: sa.Engine, tmp_path: Path) -> None:
    """Another connection holds the write lock: the first row waits in its transaction, the next 60 (from 3
    threads) queue up meanwhile and are written together once the lock is released: 2 transactions, not 61."""
    writer = FrameRowWriter(engine)
    blocker = sqlite3.connect(tmp_path / "farm.sqlite3", timeout=10, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        first = writer.submit("t1", 1, _done("a0"))
        deadline = time.monotonic() + 10
        while writer.writing != 1:  # the writer took it and waits for the lock in its transaction
            assert time.monotonic() < deadline
            time.sleep(0.005)
        futures: list[Future[None]] = []

        def send(agent: str, numbers: range) -> None:
            futures.extend(writer.submit("t1", n, _done(agent)) for n in numbers)

        threads = [threading.Thread(target=send, args=(f"a{i}", range(2 + 20 * i, 22 + 20 * i))) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not first.done(), "the first row waits for the lock"
        blocker.execute("ROLLBACK")
        for future in [first, *futures]:
            future.result(timeout=15)
        assert writer.groups == 2
        rows = _rows(engine)
        assert all(rows[n][0] is FrameState.DONE for n in range(1, 62))
        assert rows[62] == (FrameState.QUEUED, None)
    finally:
        blocker.close()
        writer.close()


def test_close_writes_what_is_queued_and_refuses_more(engine: sa.Engine) -> None:
    writer = FrameRowWriter(engine)
    futures = [writer.submit("t1", n, _done("a1")) for n in range(1, 31)]
    writer.close()
    assert all(f.done() and f.exception() is None for f in futures)
    assert all(_rows(engine)[n][0] is FrameState.DONE for n in range(1, 31))
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit("t1", 40, _done("a1"))


def test_flush_waits_for_every_row_submitted_so_far(engine: sa.Engine) -> None:
    writer = FrameRowWriter(engine)
    try:
        futures = [writer.submit("t1", n, _done("a2")) for n in range(1, 51)]
        assert writer.flush(timeout=15)
        assert all(f.done() for f in futures)
        assert all(_rows(engine)[n] == (FrameState.DONE, "a2") for n in range(1, 51))
    finally:
        writer.close()


def test_a_failed_write_reaches_every_waiting_upload(tmp_path: Path) -> None:
    """A database that cannot take the rows: each future carries the error (the upload answers 500 and the agent
    keeps the frame to send again), and the writer goes on with later rows."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables
    writer = FrameRowWriter(engine)
    try:
        futures = [writer.submit("t1", n, _done("a1")) for n in range(1, 4)]
        for future in futures:
            with pytest.raises(sa.exc.OperationalError, match="no such table"):
                future.result(timeout=10)
        assert writer.flush(timeout=10)
    finally:
        writer.close()
        engine.dispose()
