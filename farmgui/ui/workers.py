"""Run slow work off the GUI thread and deliver its result by signal (never blocks the event loop)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class _Relay(QObject):
    """Lives on the GUI thread; a queued signal carries the worker's result back to it."""

    done = Signal(object)


class _Job(QRunnable):
    def __init__(self, fn: Callable[[], Any], relay: _Relay) -> None:
        super().__init__()
        self._fn = fn
        self._relay = relay

    def run(self) -> None:
        self._relay.done.emit(self._fn())


class BackgroundRunner(QObject):
    """Runs callables on a thread pool; each result reaches ``on_result`` on the GUI thread."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._relays: set[_Relay] = set()

    def submit(self, fn: Callable[[], Any], on_result: Callable[[Any], None]) -> None:
        relay = _Relay()
        self._relays.add(relay)

        def deliver(result: Any) -> None:
            self._relays.discard(relay)
            on_result(result)

        relay.done.connect(deliver)
        self._pool.start(_Job(fn, relay))

    def wait(self, msecs: int = 5000) -> bool:
        """Wait for running work (used when closing, so no thread outlives the window)."""
        return self._pool.waitForDone(msecs)
