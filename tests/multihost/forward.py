"""Run inside the manager's network namespace: a Unix socket that forwards each connection to the manager's API.

``python forward.py SOCKET HOST PORT``. A filesystem Unix socket is not bound to a network namespace, so the test
process (in the root namespace) reaches the manager through it without any route into the test LAN.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path


async def _pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(1 << 16):
            target.write(data)
            await target.drain()
        if target.can_write_eof():
            target.write_eof()
    except (OSError, RuntimeError):
        target.close()


async def _serve(socket_path: Path, host: str, port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            writer.close()
            upstream_writer.close()

    server = await asyncio.start_unix_server(handle, path=str(socket_path))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"forwarding {socket_path} to {host}:{port}", flush=True)
    async with server:
        await stop.wait()
    with contextlib.suppress(OSError):
        socket_path.unlink()


if __name__ == "__main__":
    asyncio.run(_serve(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
