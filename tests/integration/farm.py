"""Real farm processes for tests: a manager and agents on loopback, each its own process."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from agent import protocol as p

TOKEN = "integration-test-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last_error = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})")


class Process:
    """A child in its own session (process group), with its output in a log file."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv = argv
        self.log_path = log
        self._log = log.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole process group: the program gets no chance to clean up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return int(self.proc.returncode)


class Agent(Process):
    def __init__(
        self,
        root: Path,
        name: str,
        *,
        bpy: bool = True,
        blender: str | None = "/usr/bin/blender",
        token: str | None = TOKEN,
    ) -> None:
        self.token = token
        self.name = name
        self.port = free_port()
        self.work_dir = root / f"agent-{name}"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, "-m", "agent", "--no-tray", "--no-advertise", "--host", "127.0.0.1",
            "--port", str(self.port), "--name", name, "--work-dir", str(self.work_dir),
            "--settings", str(self.work_dir / "settings.json"), "--threads", "1", "-v",
        ]  # fmt: skip
        if token is not None:
            argv += ["--token", token]
        if not bpy:
            argv.append("--no-bpy")
        if blender:
            argv += ["--blender", blender]
        super().__init__(argv, self.work_dir / "agent.log")
        wait_for(f"agent {name} to listen", self.ready, 60)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"agent {self.name} exited:\n{self.log()[-3000:]}")
        r = httpx.get(f"http://127.0.0.1:{self.port}{p.AGENT_INFO}", headers=p.bearer(TOKEN), timeout=2)
        return r.status_code == (200 if self.token == TOKEN else 401)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def assigned_frames(self, task: str) -> list[int]:
        """Every frame the manager assigned this agent for ``task``, from the agent's own log."""
        frames: list[int] = []
        for match in re.finditer(r"assigned frames \[([\d, -]*)\] of task (\w+)", self.log()):
            if task.startswith(match.group(2)):
                frames += [int(x) for x in match.group(1).split(",") if x.strip()]
        return frames


class Manager(Process):
    def __init__(
        self, data_dir: Path, agents: list[Agent], port: int | None = None, heartbeat_timeout: float = 6
    ) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        argv = [
            sys.executable, "-m", "farmgui", "--headless", "--no-local-agent", "--no-discovery",
            "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(data_dir), "--token", TOKEN,
            "--heartbeat-timeout", str(heartbeat_timeout),
        ]  # fmt: skip
        for agent in agents:
            argv += ["--agent", agent.address]
        data_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(argv, data_dir / "manager.log")
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", headers=p.bearer(TOKEN), timeout=30)
        wait_for("the manager to answer", self.ready, 60)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"manager exited:\n{self.log()[-3000:]}")
        return self.client.get("/api/").status_code == 200

    def submit(self, path: Path, **form: Any) -> str:
        with path.open("rb") as f:
            r = self.client.post(
                "/api/render-tasks/run_task/", files={"file": (path.name, f)}, data={k: str(v) for k, v in form.items()}
            )
        assert r.status_code == 201, r.text
        return str(r.json()["task_key"])

    def progress(self, key: str) -> dict[str, Any]:
        r = self.client.get(f"/api/render-tasks/{key}/progress/")
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def wait_stage(self, key: str, stages: set[str], timeout: float) -> dict[str, Any]:
        return dict(
            wait_for(
                f"task {key[:8]} to reach {stages}",
                lambda: (pr := self.progress(key))["stage"] in stages and pr,
                timeout,
                0.5,
            )
        )

    def frames(self, key: str) -> list[dict[str, Any]]:
        r = self.client.get(f"/api/render-tasks/{key}/frames/")
        r.raise_for_status()
        return list(r.json())

    def download(self, key: str, target: Path) -> Path:
        with self.client.stream("GET", f"/api/render-tasks/{key}/download/") as r, target.open("wb") as out:
            assert r.status_code == 200
            for chunk in r.iter_bytes():
                out.write(chunk)
        return target

    def stop(self, timeout: float = 20) -> int:
        self.client.close()
        return super().stop(timeout)


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that mention ``text`` (a test's own temporary folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if text in cmdline and str(os.getpid()) != entry.name:
                found.append(cmdline)
    return found


@contextlib.contextmanager
def no_processes_left(root: Path) -> Iterator[None]:
    yield
    wait_for(f"no process using {root}", lambda: not processes_mentioning(str(root)), 15)


def ffprobe(path: Path) -> dict[str, str]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,nb_read_frames:format=format_name", "-of", "default=noprint_wrappers=1", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
