"""What the manager's API tests share: the farm token, a clock the tests move, a service and a client over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agent import protocol as p
from farmgui.core.api import create_app
from farmgui.core.service import FarmService

TOKEN = "test-token-0123456789"
AUTH = p.bearer(TOKEN)


class Clock:
    """The service's clock, moved by the test (heartbeat timeouts, stalls)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(tmp_path: Path, clock: Clock) -> Iterator[FarmService]:
    svc = FarmService(tmp_path / "data", clock=clock)
    yield svc
    svc.close()


@pytest.fixture
def client(service: FarmService) -> Iterator[TestClient]:
    with TestClient(create_app(service, TOKEN)) as c:
        yield c
