"""Run an ASGI app (an agent's or the manager's API) with uvicorn on a thread we can stop.

It lives in the agent package because both sides use it and the agent must not import the control station."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn


class ServerThread:
    """uvicorn in a background thread: ``start()`` returns once it listens, ``stop()`` joins it.

    With ``tls=(certificate file, key file)`` it serves HTTPS only (the manager's ``--tls``)."""

    def __init__(
        self, app: Any, host: str, port: int, log_level: str = "warning", tls: tuple[Path, Path] | None = None
    ) -> None:
        # Bind the socket ourselves: port 0 then gives a free port we can read back (tests, many agents).
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the listening socket says
        # TCP; without it uvicorn's separate header and body writes wait for the client's delayed ACK, 40 ms on
        # every response (benchmarks/manager_scale.py: a keep-alive GET took 44 ms, 0.84 ms with this).
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level=log_level,
            access_log=False,
            lifespan="off",
            # No proxy stands between agents and the manager: X-Forwarded-For from a local process must not
            # change the address a request is taken to come from (uvicorn trusts it from 127.0.0.1 by default).
            proxy_headers=False,
            timeout_graceful_shutdown=2,
            ssl_certfile=str(tls[0]) if tls else None,
            ssl_keyfile=str(tls[1]) if tls else None,
        )
        self.scheme = "https" if tls else "http"
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"http-{self.port}", daemon=True)

    def _run(self) -> None:
        self._server.run(sockets=[self._sock])

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP server on {self.host}:{self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
