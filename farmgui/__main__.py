"""``farmgui``: the control station (window, or ``--headless``), and its commands for scripts."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from agent import protocol as p

CLIENT_COMMANDS = {"submit", "status", "agents"}


def station_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="farmgui",
        description=(
            "Frameherd control station. Also: farmgui submit FILE [--wait] | status [TASK] | agents"
            " | simulate SPEC.json"
        ),
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help=".blend files to open")
    parser.add_argument("--headless", action="store_true", help="run the manager without a window")
    parser.add_argument("--host", default="0.0.0.0", help="address the API listens on (default: all)")  # noqa: S104
    parser.add_argument("--port", type=int, default=p.DEFAULT_MANAGER_PORT)
    parser.add_argument("--data-dir", type=Path, help="where tasks, frames and the database live")
    parser.add_argument("--db-url", help="any SQLAlchemy URL (default: SQLite in the data directory)")
    parser.add_argument("--token", help="the farm token (default: FARM_TOKEN, else made on first start)")
    parser.add_argument("--no-local-agent", action="store_true", help="do not render on this PC")
    parser.add_argument("--agent", action="append", default=[], metavar="HOST:PORT", help="add an agent by address")
    parser.add_argument("--no-discovery", action="store_true", help="do not look for agents with zeroconf")
    parser.add_argument(
        "--heartbeat-timeout", type=float, default=15.0, metavar="S", help="an agent silent this long is lost (15 s)"
    )
    parser.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve the API over HTTPS only, with a self-signed certificate made at the first start (in the data"
        " directory) and pinned by agents when they are paired; remembered until --no-tls (see docs/security.md)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def _client_command(args: list[str]) -> bool:
    """Whether the first word that is not an option (or an option's value) names a client command."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--url", "--token", "--data-dir", "--cafile"):
            skip = True
        elif not arg.startswith("-"):
            return arg in CLIENT_COMMANDS
    return False


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["simulate"]:  # offline: no manager, no token
        from .core.simulate import main as simulate_main

        return simulate_main(args_list[1:])
    if _client_command(args_list):
        from .cli import main as cli_main

        return cli_main(args_list)
    args = station_parser().parse_args(args_list)
    logging.basicConfig(level=logging.INFO if args.verbose or args.headless else logging.WARNING)
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from .manager import Manager, ManagerConfig, default_data_dir

    config = ManagerConfig(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir or default_data_dir(),
        db_url=args.db_url,
        token=args.token,
        local_agent=not args.no_local_agent,
        agents=args.agent,
        discovery=not args.no_discovery,
        heartbeat_timeout_s=args.heartbeat_timeout,
        tls=args.tls,
    )
    if args.headless:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        from .core.tls import TlsError

        try:
            manager = Manager(config)
        except TlsError as exc:
            print(f"farmgui: {exc}", file=sys.stderr)
            return 2
        with manager:
            print(f"Frameherd manager at {manager.url} (data: {config.data_dir})", flush=True)
            if manager.certificate is not None:
                print(f"TLS certificate sha256 {manager.certificate.sha256}", flush=True)
            stop.wait()
        return 0
    from .ui.app import run_gui  # Qt is imported only for the window

    return run_gui(args.files, config)


if __name__ == "__main__":
    sys.exit(main())
