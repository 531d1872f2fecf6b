"""Run slow work off the GUI thread and deliver its result by signal (never blocks the event loop)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)


class _Relay(QObject):
    """Lives on the GUI thread; a queued signal carries the worker's result (or its error) back to it."""

    done = Signal(object)
    failed = Signal(object)


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
        self._pool.start(_Job(fn, relay))
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
