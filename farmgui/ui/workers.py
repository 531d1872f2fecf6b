"""Run slow work off the GUI thread and deliver its result by signal (never blocks the event loop)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""What slow work calls with (done, total) as it goes (see :meth:`BackgroundRunner.submit_with_progress`)."""
PROGRESS_INTERVAL_S = 0.1
"""Progress reaches the GUI thread at most this often (10 Hz), plus the last step."""


class _Relay(QObject):
    """Lives on the GUI thread; a queued signal carries the worker's result (or its error) back to it."""

    done = Signal(object)
    failed = Signal(object)
    progress = Signal(object, object)  # (done, total): objects, as sizes pass 2**31


class _Throttle:
    """Called from the worker thread: passes on a step at most every ``interval_s``, and always the last."""

    def __init__(
        self, emit: Progress, interval_s: float = PROGRESS_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._emit = emit
        self._interval_s = interval_s
        self._clock = clock
        self._last = -interval_s

    def __call__(self, done: int, total: int) -> None:
        now = self._clock()
        if done < total and now - self._last < self._interval_s:
            return
        self._last = now
        self._emit(done, total)


class _Job(QRunnable):
    def __init__(self, fn: Callable[[], Any], relay: _Relay) -> None:
        super().__init__()
        self._fn = fn
        self._relay = relay

    def run(self) -> None:
        try:
            result = self._fn()
        except Exception as exc:  # delivered to the GUI thread, which logs and shows it: never lost here
            # (No logging in this thread: Qt's pool threads are not Python's, and logging would register
            # a never-ending "dummy" thread with the threading module.)
            self._relay.failed.emit(exc)
        else:
            self._relay.done.emit(result)


def _ignore(_exc: Exception) -> None:
    pass


class BackgroundRunner(QObject):
    """Runs callables on a thread pool; each result reaches ``on_result`` on the GUI thread, each
    exception ``on_error`` (the work's caller decides how to show it)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._relays: set[_Relay] = set()
        self.closed = False

    def submit(
        self,
        fn: Callable[[], Any],
        on_result: Callable[[Any], None],
        on_error: Callable[[Exception], None] = _ignore,
    ) -> bool:
        """Queue ``fn``; False when the runner is closed (the work is not done)."""
        if self.closed:
            return False
        return self._start(lambda _relay: fn(), on_result, on_error, None)

    def submit_with_progress(
        self,
        fn: Callable[[Progress], Any],
        on_result: Callable[[Any], None],
        on_error: Callable[[Exception], None] = _ignore,
        on_progress: Progress | None = None,
    ) -> bool:
        """Like :meth:`submit`; ``fn`` gets a callable to report (done, total) from its thread, which
        reaches ``on_progress`` on the GUI thread at most every :data:`PROGRESS_INTERVAL_S`."""
        if self.closed:
            return False
        return self._start(lambda relay: fn(_Throttle(relay.progress.emit)), on_result, on_error, on_progress)

    def _start(
        self,
        fn: Callable[[_Relay], Any],
        on_result: Callable[[Any], None],
        on_error: Callable[[Exception], None],
        on_progress: Progress | None,
    ) -> bool:
        relay = _Relay()
        self._relays.add(relay)

        def deliver(result: Any) -> None:
            self._relays.discard(relay)
            on_result(result)

        def fail(exc: Exception) -> None:
            self._relays.discard(relay)
            log.error("background work failed", exc_info=exc)
            on_error(exc)

        relay.done.connect(deliver)
        relay.failed.connect(fail)
        if on_progress is not None:
            relay.progress.connect(on_progress)
        self._pool.start(_Job(partial(fn, relay), relay))
        return True

    def wait(self, msecs: int = 5000) -> bool:
        """Wait for running and queued work."""
        return self._pool.waitForDone(msecs)

    def close(self) -> None:
        """Take no more work, drop what has not started, and wait for what has (so no thread outlives
        the window, and nothing reaches a core that is being shut down)."""
        self.closed = True
        self._pool.clear()
        self._pool.waitForDone(-1)
