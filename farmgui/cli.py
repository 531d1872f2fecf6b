"""``farmgui submit | status | agents``: the farm from scripts (replaces the seed's uploadfile.py)."""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from agent import protocol as p
from agent.pairing import is_pin_refusal, pinned_context

from .core.tls import cert_path, tls_setting
from .manager import default_data_dir

TERMINAL = {"finished", "failed", "cancelled"}


def _token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token)
    if os.environ.get("FARM_TOKEN"):
        return os.environ["FARM_TOKEN"]
    path = Path(args.data_dir) / "token"
    if path.exists():
        return path.read_text().strip()
    sys.exit(f"no farm token: pass --token, set FARM_TOKEN, or run on the manager's PC ({path} is missing)")


def default_url(data_dir: Path) -> str:
    """The manager on this PC: over HTTPS when its data directory says it uses TLS."""
    return f"{'https' if tls_setting(data_dir) else 'http'}://127.0.0.1:{p.DEFAULT_MANAGER_PORT}"


def _verify(args: argparse.Namespace) -> ssl.SSLContext | bool:
    """How to check a TLS manager: the certificate in ``--cafile``, else the one in this PC's data directory (the
    manager's own PC), each trusted alone and only if presented exactly (as agents do: ``agent/pairing.py``); else
    the system's CAs; ``--insecure``: not at all."""
    if not str(args.url).lower().startswith("https://"):
        return True
    if args.insecure:
        print(
            "farmgui: warning: --insecure: the manager's certificate is not checked, so anyone on the way to it can"
            " read the farm token and what you send, or pose as the manager",
            file=sys.stderr,
        )
        return False
    pem = Path(args.cafile) if args.cafile else cert_path(Path(args.data_dir))
    if args.cafile or pem.exists():
        try:
            return pinned_context(pem.read_text())
        except (OSError, ValueError, ssl.SSLError) as exc:
            sys.exit(f"farmgui: cannot use {pem} as the manager's certificate: {exc}")
    return True


def _client(args: argparse.Namespace) -> httpx.Client:
    return httpx.Client(base_url=args.url, headers=p.bearer(_token(args)), timeout=60.0, verify=_verify(args))


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        sys.exit(f"error {response.status_code}: {message}")
    return response.json()


def submit(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if args.pack:
        import tempfile

        from .core.packing import pack_project

        with tempfile.TemporaryDirectory(prefix="frameherd-pack-") as tmp:
            report = pack_project(path, Path(tmp) / f"{path.stem}.zip")
            for problem in report.problems:
                print(f"warning: {problem}", file=sys.stderr)
            for missing in report.missing:
                print(
                    f"warning: missing, not packed: {missing.path} ({missing.kind}, used by {missing.blend})",
                    file=sys.stderr,
                )
            print(f"packed {len(report.packed)} files ({report.total_bytes / 1e6:.1f} MB)", file=sys.stderr)
            args.main_blend = args.main_blend or report.main_blend
            return _submit(args, Path(report.zip_path))
    return _submit(args, path)


def _submit(args: argparse.Namespace, path: Path) -> int:
    form = {
        k: str(v)
        for k, v in {
            "scene": args.scene,
            "frame_start": args.frame_start,
            "frame_end": args.frame_end,
            "frame_step": args.frame_step,
            "priority": args.priority,
            "trusted": "true" if args.trusted else None,
            "tiles": args.tiles,
            "tile_overlap": args.tile_overlap,
            "main_blend": args.main_blend,
        }.items()
        if v is not None
    }
    with _client(args) as client, path.open("rb") as f:
        created = _check(client.post("/api/render-tasks/run_task/", files={"file": (path.name, f)}, data=form))
        key = created["task_key"]
        print(key)
        if not args.wait:
            return 0
        return _wait(client, key, Path(args.output) if args.output else None)


def _wait(client: httpx.Client, key: str, output: Path | None) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"), TimeElapsedColumn()
    ) as bar:
        job = bar.add_task("queued", total=1.0)
        while True:
            prog = _check(client.get(f"/api/render-tasks/{key}/progress/"))
            label = f"{prog['stage']} {prog['frames_done']}/{prog['frames_total']} frames"
            if prog.get("waiting_reason"):
                label += f" ({prog['waiting_reason']})"
            bar.update(job, completed=prog["total_progress"], description=label)
            if prog["stage"] in TERMINAL:
                break
            time.sleep(1.0)
    if prog["stage"] != "finished":
        print(f"task {key} {prog['stage']}: {prog.get('error') or ''}", file=sys.stderr)
        return 1
    if output is not None:
        with client.stream("GET", f"/api/render-tasks/{key}/download/") as response, output.open("wb") as out:
            if response.status_code != 200:
                sys.exit(f"download failed: {response.status_code}")
            for chunk in response.iter_bytes():
                out.write(chunk)
        print(f"saved {output}")
    return 0


def status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.task:
            prog = _check(client.get(f"/api/render-tasks/{args.task}/progress/"))
            for k, v in prog.items():
                print(f"{k}: {v}")
            return 0
        for task in _check(client.get("/api/render-tasks/")):
            print(
                f"{task['task_key']}  {task['stage']:<10} {task['frames_done']:>6}/{task['frames_total']:<6} "
                f"prio {task['priority']:<3} {task['original_name']}"
            )
    return 0


def agents(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for agent in _check(client.get("/api/agents/")):
            state = "online" if agent["online"] else "offline"
            if not agent["enabled"]:
                state += ", disabled"
            doing = ", ".join(f"{c['task'][:8]} frame {c['frame']} {c['progress']:.0%}" for c in agent["current"])
            print(
                f"{agent['name']:<20} {agent['host']:<15} {state:<18} Blender {', '.join(agent['blenders'])}  {doing}"
            )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="farmgui", description="Talk to a Frameherd manager")
    parser.add_argument(
        "--url",
        help=f"the manager's address (default: the manager on this PC, https://127.0.0.1:{p.DEFAULT_MANAGER_PORT} if"
        f" it uses TLS, else http://…)",
    )
    parser.add_argument("--token", help="the farm token (default: FARM_TOKEN, or the local manager's)")
    parser.add_argument("--data-dir", default=str(default_data_dir()), help=argparse.SUPPRESS)
    parser.add_argument(
        "--cafile",
        metavar="PATH",
        help="a TLS manager's certificate (tls/cert.pem in its data directory): trusted alone, and only if the"
        " manager presents exactly it (default: the local manager's, when there is one)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="talk to a TLS manager without checking its certificate: encrypted, but anyone on the way can pose as"
        " the manager and so read the farm token",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit", help="upload a .blend file and render it")
    s.add_argument("file")
    s.add_argument("--wait", action="store_true", help="show progress until the task ends")
    s.add_argument("--output", "-o", help="with --wait: save the result here")
    s.add_argument("--scene")
    s.add_argument("--frame-start", type=int)
    s.add_argument("--frame-end", type=int)
    s.add_argument("--frame-step", type=int)
    s.add_argument("--priority", type=int)
    s.add_argument("--trusted", action="store_true", help="let the file's Python scripts run")
    s.add_argument("--tiles", type=int, help="split a single frame into N tiles rendered on different agents")
    s.add_argument("--tile-overlap", type=int, help="pixels each tile renders beyond its region (denoising)")
    s.add_argument("--main-blend", help="for a .zip project: the .blend inside it to render")
    s.add_argument(
        "--pack", action="store_true", help="send the .blend with every file it uses, packed into a zip project"
    )
    s.set_defaults(func=submit)
    st = sub.add_parser("status", help="list tasks, or one task's progress")
    st.add_argument("task", nargs="?")
    st.set_defaults(func=status)
    a = sub.add_parser("agents", help="list the agents")
    a.set_defaults(func=agents)
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.url is None:
        args.url = default_url(Path(args.data_dir))
    try:
        return int(args.func(args))
    except httpx.HTTPError as exc:
        print(f"farmgui: cannot reach the manager at {args.url}: {exc}", file=sys.stderr)
        if is_pin_refusal(exc):
            print(
                "farmgui: its TLS certificate is not the one trusted here: pass --cafile with the manager's"
                " tls/cert.pem (from its data directory)",
                file=sys.stderr,
            )
        elif isinstance(exc, httpx.RemoteProtocolError) and str(args.url).lower().startswith("http://"):
            print("farmgui: if the manager uses TLS, its address starts with https://", file=sys.stderr)
        return 2
