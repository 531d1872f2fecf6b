"""The window's background runner: progress from a worker thread reaches the GUI thread, throttled."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from pytestqt.qtbot import QtBot

from farmgui.ui import workers
from farmgui.ui.workers import BackgroundRunner, Progress


@pytest.fixture
def runner(qtbot: QtBot) -> Iterator[BackgroundRunner]:
    pool = BackgroundRunner()
    yield pool
    pool.close()


def test_progress_is_throttled_but_the_last_step_always_passes() -> None:
    now = [100.0]
    seen: list[tuple[int, int]] = []
    throttle = workers._Throttle(lambda done, total: seen.append((done, total)), 0.1, clock=lambda: now[0])
    for done in range(10):
        throttle(done, 10)  # ten steps in the same instant
    throttle(10, 10)
    assert seen == [(0, 10), (10, 10)]
    now[0] += 0.2
    throttle(3, 20)
    assert seen[-1] == (3, 20)


def test_progress_and_result_arrive_on_the_gui_thread_in_order(qtbot: QtBot, runner: BackgroundRunner) -> None:
    gui = threading.get_ident()
    events: list[tuple[str, object, bool]] = []

    def work(progress: Progress) -> str:
        progress(0, 3 << 40)  # sizes beyond 32 bits pass
        progress(3 << 40, 3 << 40)
        return "packed"

    assert runner.submit_with_progress(
        work,
        lambda result: events.append(("done", result, threading.get_ident() == gui)),
        on_progress=lambda done, total: events.append(("progress", (done, total), threading.get_ident() == gui)),
    )
    qtbot.waitUntil(lambda: len(events) == 3)
    assert events == [
        ("progress", (0, 3 << 40), True),
        ("progress", (3 << 40, 3 << 40), True),
        ("done", "packed", True),
    ]


def test_a_closed_runner_takes_no_work(runner: BackgroundRunner) -> None:
    runner.close()
    assert not runner.submit_with_progress(lambda _progress: None, lambda _result: None)
