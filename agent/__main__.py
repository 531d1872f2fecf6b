"""``farm-agent``: the render agent that runs on each render PC."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import platformdirs

from . import protocol as p
from .advertise import Advertiser
from .blender import find_blenders
from .command import CyclesDevice, RenderSettings
from .gpus import detect_gpus
from .httpserver import ServerThread
from .pairing import Pairing, cert_fingerprint, short_fingerprint
from .server import create_agent_app
from .service import AgentConfig, AgentCore
from .session import install_signal_handlers, kill_all_sessions

log = logging.getLogger("agent")

SETTINGS_KEYS = (
    "name", "port", "token", "blender", "no_bpy", "work_dir", "threads", "device", "gpus", "manager_cert",
)  # fmt: skip
"""``manager_cert``: the TLS manager's certificate (PEM) pinned with the token, at pairing or by ``--manager-cert``."""


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir("frameherd", appauthor=False))


def load_settings(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if k in SETTINGS_KEYS} if isinstance(data, dict) else {}


def save_settings(path: Path, values: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold the farm token
    with os.fdopen(fd, "w") as f:
        json.dump(values, f, indent=2)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="farm-agent", description="Frameherd render agent")
    parser.add_argument("--no-tray", action="store_true", help="run without a tray icon (servers, tests)")
    parser.add_argument("--no-advertise", action="store_true", help="do not announce this agent by zeroconf")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")  # noqa: S104
    parser.add_argument("--port", type=int, help=f"port to listen on (default {p.DEFAULT_AGENT_PORT})")
    parser.add_argument("--name", help="name shown in the control station (default: the host name)")
    parser.add_argument("--token", help="the farm token (default: FARM_TOKEN, or the saved one)")
    parser.add_argument("--blender", action="append", metavar="PATH", help="a Blender to use (repeatable)")
    parser.add_argument("--no-bpy", action="store_true", help="do not use the bpy module")
    parser.add_argument("--work-dir", type=Path, help="where task files and frames are kept")
    parser.add_argument("--threads", type=int, help="render threads (0: all cores)")
    parser.add_argument("--device", choices=[d.value for d in CyclesDevice], help="Cycles device type")
    parser.add_argument("--gpus", help="comma-separated GPU indices of that device type (one agent per GPU)")
    parser.add_argument("--manager", help="attach to this manager URL at once (else the manager attaches us)")
    parser.add_argument(
        "--manager-cert",
        dest="manager_cert_file",
        type=Path,
        metavar="PATH",
        help="pin this TLS manager certificate (its data dir's tls/cert.pem), as pairing does: talk to the manager"
        " only over HTTPS and only if it presents exactly this certificate (saved with a saved token)",
    )
    parser.add_argument("--settings", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--exit-with-parent", action="store_true", help=argparse.SUPPRESS
    )  # the control station's local agent: stop when the station dies, however it dies
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def advertiser_update(advertiser: Advertiser) -> Callable[[AgentCore], None]:
    """Re-announce the zeroconf record when the agent's state changes (idle, rendering, paused)."""

    def update(core: AgentCore) -> None:
        advertiser.update(core.info())

    return update


def _saving(core: AgentCore, settings_path: Path, key: str, announce: bool) -> Callable[[str | None], None]:
    """A store for what pairing hands the agent: kept in its settings file (0600) and its config at once."""

    def store(value: str | None) -> None:
        setattr(core.config, key, value)
        saved = load_settings(settings_path)
        if value is None:
            saved.pop(key, None)
        else:
            saved[key] = value
        save_settings(settings_path, saved)
        if announce and core.on_state_change is not None:
            core.on_state_change(core)  # re-announce: paired=1 in the zeroconf record

    return store


def saving_token(core: AgentCore, settings_path: Path) -> Callable[[str | None], None]:
    """Pairing's store for the farm token."""
    return _saving(core, settings_path, "token", announce=True)


def saving_cert(core: AgentCore, settings_path: Path) -> Callable[[str | None], None]:
    """Pairing's store for a TLS manager's certificate, kept with the token."""
    return _saving(core, settings_path, "manager_cert", announce=False)


def read_pin(path: Path) -> str:
    """The certificate (PEM) in ``path``, for ``--manager-cert``; exits with a message when it is not one."""
    try:
        pem = path.read_text()
        cert_fingerprint(pem)
    except (OSError, ValueError) as exc:
        sys.exit(f"farm-agent: --manager-cert {path}: not a PEM certificate ({exc})")
    return pem


def manager_pin(args: argparse.Namespace, saved: dict[str, Any]) -> tuple[str | None, bool]:
    """(the manager certificate to pin, whether to save it). The pin travels with the token: a ``--token`` comes
    with the ``--manager-cert`` given beside it (or none) and both are saved; a saved token (from pairing) keeps
    its saved pin unless ``--manager-cert`` replaces it; a token from FARM_TOKEN (the control station's own agent)
    takes only ``--manager-cert``, never saved."""
    given = read_pin(args.manager_cert_file) if args.manager_cert_file else None
    if args.token:
        return given, True
    if saved.get("token"):
        pin = given or saved.get("manager_cert")
        return (str(pin) if pin else None), given is not None
    return given, False


def describe_pin(pin: str | None) -> str:
    if pin is None:
        return ""
    try:
        return f", manager certificate pinned (sha256 {short_fingerprint(cert_fingerprint(pin))})"
    except ValueError:
        return ", the saved manager certificate is damaged (pair this agent again)"


def show_pairing_code(manager_id: str, code: str) -> None:
    print(
        f"A control station asks to pair with this agent. Approve it there only if it shows the code {code}.",
        flush=True,
    )


def exit_with_parent() -> None:
    """Ask Linux to send us SIGTERM when the process that started us dies (we then stop our Blender)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.exit_with_parent:
        exit_with_parent()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )
    settings_path = args.settings or config_dir() / "agent.json"
    saved = load_settings(settings_path)
    flags = {k: getattr(args, k) for k in SETTINGS_KEYS if getattr(args, k, None) not in (None, False)}
    merged = {**saved, **flags}
    token = merged.get("token") or os.environ.get("FARM_TOKEN")
    work_dir = Path(merged.get("work_dir") or platformdirs.user_cache_dir("frameherd-agent", appauthor=False))
    name = str(merged.get("name") or socket.gethostname())
    port = int(merged.get("port") or p.DEFAULT_AGENT_PORT)
    pin, save_pin = manager_pin(args, saved)
    if flags or save_pin:
        values = {**saved, **{k: (str(v) if isinstance(v, Path) else v) for k, v in flags.items()}}
        if save_pin:
            values.pop("manager_cert", None)
            values.update({"manager_cert": pin} if pin else {})
        save_settings(settings_path, values)

    installs = find_blenders(
        merged.get("blender") or (), include_bpy=not merged.get("no_bpy"), cache_dir=work_dir / "probe-cache"
    )
    for install in installs:
        log.info("found %s", install.describe())
    if not installs:
        print("farm-agent: no Blender found (install one, pass --blender PATH, or pip install bpy)", file=sys.stderr)
    device = CyclesDevice(merged.get("device") or "CPU")
    gpus = tuple(int(x) for x in str(merged.get("gpus") or "").split(",") if x.strip())
    render = RenderSettings(device=device, gpus=gpus) if gpus else RenderSettings(device=device)
    server: ServerThread | None = None
    advertiser: Advertiser | None = None
    core = AgentCore(
        AgentConfig(
            name=name, host=args.host, port=port, work_dir=work_dir, token=token,
            threads=int(merged.get("threads") or 0), render=render, gpus=detect_gpus(), manager_cert=pin,
        ),
        installs,
    )  # fmt: skip
    install_signal_handlers()  # SIGTERM/SIGINT: kill every Blender we started, then exit
    stop = threading.Event()
    try:
        pairing = Pairing(
            core.agent_id, lambda: core.config.token, saving_token(core, settings_path),
            set_cert=saving_cert(core, settings_path),
        )  # fmt: skip
        pairing.on_code = show_pairing_code
        server = ServerThread(create_agent_app(core, pairing), args.host, port).start()
        core.config.port = server.port
        core.start()
        if args.manager:
            from .protocol import AttachRequest

            core.attach(AttachRequest(manager_url=args.manager, manager_id="command-line"))
        if not args.no_advertise:
            advertiser = Advertiser(core.info())
            advertiser.start()
            core.on_state_change = advertiser_update(advertiser)
        print(
            f"farm-agent {name} ({core.agent_id[:8]}) listening on {args.host}:{server.port}{describe_pin(pin)}",
            flush=True,
        )
        if not args.no_tray and (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform != "linux"
        ):
            from .tray import run_tray

            return run_tray(core)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
        return 0
    finally:
        core.close()
        kill_all_sessions()
        if server is not None:
            server.stop()
        if advertiser is not None:
            advertiser.close()


if __name__ == "__main__":
    sys.exit(main())
