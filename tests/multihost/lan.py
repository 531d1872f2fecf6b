"""A small LAN on one machine, made of Linux network namespaces, with a real farm on it.

::

    namespace PREFIX-br:    bridge "lan" (multicast snooping off, so mDNS floods to every port)
                            ports: p-manager, p-a1, p-a2, ...   (the "switch" side of each cable)
    namespace PREFIX-manager: lo + "eth0" 10.213.0.1/24   <- manager (zeroconf browser on its own interfaces)
    namespace PREFIX-a1:      lo + "eth0" 10.213.0.11/24  <- agent a1 (advertises 10.213.0.11 by zeroconf)
    ...

Every link is created from inside the bridge's namespace, so nothing is ever added to the root namespace: no
interface, no route, no address. The test process reaches the manager's API through a Unix socket that a small
forwarder (``forward.py``) in the manager's namespace serves; filesystem sockets are not tied to a network
namespace. Traffic therefore never leaves the namespaces (and loopback).

Names carry the test process's pid (``fhmh-<pid>-<n>-...``), so :func:`clean_stale` can remove what a crashed
earlier run left (its pid is gone) without touching a run still going.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from agent import protocol as p
from agent.session import check_png
from tests.integration.farm import TOKEN, Process, ffprobe, processes_mentioning, wait_for

HERE = Path(__file__).resolve().parent
PREFIX = "fhmh"
SUBNET = "10.213.0"
MANAGER_IP = f"{SUBNET}.1"
MANAGER_PORT = p.DEFAULT_MANAGER_PORT
AGENT_PORT = p.DEFAULT_AGENT_PORT
BLENDER = os.environ.get("BLENDER") or shutil.which("blender") or "/usr/bin/blender"
"""The Blender the agents run (as ``tests/conftest.py``'s ``blender_exe`` finds it)."""
IFACE = "eth0"
"""The host's side of its cable, inside its namespace (each namespace has its own interface names)."""
_counter = iter(range(1, 1_000_000))


def run(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


# --- cleaning up ----------------------------------------------------------------------------------------------


def _namespaces() -> list[str]:
    return [line.split()[0] for line in run("ip", "netns", "list").splitlines() if line.strip()]


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def kill_namespace(name: str) -> None:
    """SIGKILL every process in one of our namespaces, then delete it (its links go with it)."""
    for _ in range(50):
        pids = [int(x) for x in run("ip", "netns", "pids", name, check=False).split()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)  # a stopped process (the slow-agent tool) dies as well
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    run("ip", "netns", "delete", name, check=False)


def _our_mounts() -> list[str]:
    points = []
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "tmpfs" and re.search(rf"/{PREFIX}-\d+-\d+-disk-", parts[1]):
            points.append(parts[1].replace("\\040", " "))
    return points


def clean_stale() -> list[str]:
    """Remove the namespaces and tmpfs mounts of earlier runs whose test process is gone; returns them."""
    removed = []
    for name in _namespaces():
        m = re.match(rf"^{PREFIX}-(\d+)-", name)
        if m and not _alive(int(m.group(1))):
            kill_namespace(name)
            removed.append(name)
    for point in _our_mounts():
        m = re.search(rf"/{PREFIX}-(\d+)-\d+-disk-", point)
        if m and not _alive(int(m.group(1))):
            run("umount", "-l", point, check=False)
            removed.append(point)
    for folder in Path("/tmp").glob(f"{PREFIX}-*"):  # the API sockets' folders (Farm.socket_dir)
        m = re.match(rf"^{PREFIX}-(\d+)-\d+$", folder.name)
        if m and not _alive(int(m.group(1))) and folder.is_dir():
            (folder / "api.sock").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()
                removed.append(str(folder))
    return removed


# --- the network ----------------------------------------------------------------------------------------------


@dataclass
class Host:
    name: str
    netns: str
    address: str
    port: str
    """The bridge's side of this host's cable (in the bridge's namespace): what :meth:`Lan.cut` takes down."""

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns]


@dataclass
class Lan:
    """A bridge and hosts; :meth:`build` makes them, :meth:`destroy` removes them (idempotent)."""

    agent_names: list[str]
    tag: str = field(default_factory=lambda: f"{PREFIX}-{os.getpid()}-{next(_counter)}")
    manager: Host = field(init=False)
    agents: dict[str, Host] = field(init=False)
    bridge_ns: str = field(init=False)
    mounts: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bridge_ns = f"{self.tag}-br"
        self.manager = Host("manager", f"{self.tag}-manager", MANAGER_IP, "p-manager")
        self.agents = {
            name: Host(name, f"{self.tag}-{name}", f"{SUBNET}.{11 + i}", f"p-{name}")
            for i, name in enumerate(self.agent_names)
        }

    @property
    def hosts(self) -> list[Host]:
        return [self.manager, *self.agents.values()]

    def build(self) -> Lan:
        br = self.bridge_ns
        run("ip", "netns", "add", br)
        run("ip", "-n", br, "link", "set", "lo", "up")
        run("ip", "-n", br, "link", "add", "lan", "type", "bridge")
        # Without snooping the bridge floods multicast (mDNS) to every port, as a cheap switch does.
        run("ip", "-n", br, "link", "set", "lan", "type", "bridge", "mcast_snooping", "0")
        run("ip", "-n", br, "link", "set", "lan", "up")
        for host in self.hosts:
            run("ip", "netns", "add", host.netns)
            run("ip", "-n", br, "link", "add", host.port, "type", "veth", "peer", "name", IFACE, "netns", host.netns)
            run("ip", "-n", br, "link", "set", host.port, "master", "lan")
            run("ip", "-n", br, "link", "set", host.port, "up")
            run("ip", "-n", host.netns, "link", "set", "lo", "up")
            run("ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", IFACE)
            run("ip", "-n", host.netns, "link", "set", IFACE, "up")
        return self

    def destroy(self) -> None:
        for host in self.hosts:
            kill_namespace(host.netns)
        kill_namespace(self.bridge_ns)
        for point in self.mounts:
            run("umount", "-l", str(point), check=False)
        self.mounts.clear()

    # -- faults ---------------------------------------------------------------------------------------------
    def cut(self, host: Host) -> None:
        """Pull the host's cable out of the switch: its interface stays up but nothing gets through."""
        run("ip", "-n", self.bridge_ns, "link", "set", host.port, "down")

    def restore(self, host: Host) -> None:
        run("ip", "-n", self.bridge_ns, "link", "set", host.port, "up")

    def small_disk(self, folder: Path, size: str) -> Path:
        """Mount a tmpfs of ``size`` (``"2m"``) at a new folder named so a stale one can be found and unmounted."""
        point = folder.parent / f"{self.tag}-disk-{folder.name}"
        point.mkdir(parents=True)
        run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point))
        self.mounts.append(point)
        return point


def crashing_blender(folder: Path, blend: Path) -> Path:
    """An executable that is Blender, except that it crashes (SIGSEGV, mid-frame) on every frame of ``blend``."""
    sha = hashlib.sha256(blend.read_bytes()).hexdigest()
    script = folder / "crashing-blender"
    folder.mkdir(parents=True, exist_ok=True)
    script.write_text(
        f"#!/bin/sh\nexec {sys.executable} {HERE / 'crashing_blender.py'} --real {BLENDER} "
        f'--file-contains {sha} --after 0.3 -- "$@"\n'
    )
    script.chmod(0o755)
    return script


def fill(folder: Path) -> Path:
    """Write a file into ``folder`` until its file system is full (unbuffered: to the last byte)."""
    filler = folder / "filler"
    chunk = bytes(64 << 10)
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)  # a short write at the end, then ENOSPC
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler


# --- the farm's processes -------------------------------------------------------------------------------------


class Api:
    """The manager's REST API, through the forwarder's Unix socket."""

    def __init__(self, socket_path: Path) -> None:
        self.client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket_path)),
            base_url=f"http://{MANAGER_IP}:{MANAGER_PORT}",
            headers=p.bearer(TOKEN),
            timeout=30,
        )

    def close(self) -> None:
        self.client.close()

    def get(self, path: str) -> Any:
        r = self.client.get(path)
        r.raise_for_status()
        return r.json()

    def post(self, path: str) -> Any:
        r = self.client.post(path)
        r.raise_for_status()
        return r.json()

    def submit(self, path: Path, **form: Any) -> str:
        with path.open("rb") as f:
            r = self.client.post(
                "/api/render-tasks/run_task/", files={"file": (path.name, f)}, data={k: str(v) for k, v in form.items()}
            )
        assert r.status_code == 201, r.text
        return str(r.json()["task_key"])

    def task(self, key: str) -> dict[str, Any]:
        return dict(self.get(f"/api/render-tasks/{key}/"))

    def progress(self, key: str) -> dict[str, Any]:
        return dict(self.get(f"/api/render-tasks/{key}/progress/"))

    def frames(self, key: str) -> list[dict[str, Any]]:
        return list(self.get(f"/api/render-tasks/{key}/frames/"))

    def events(self, key: str) -> list[dict[str, Any]]:
        return list(self.get(f"/api/render-tasks/{key}/events/"))

    def agents(self) -> list[dict[str, Any]]:
        return list(self.get("/api/agents/"))

    def agent_id(self, name: str) -> str:
        return str(next(a["agent"] for a in self.agents() if a["name"] == name))

    def online(self) -> set[str]:
        return {a["name"] for a in self.agents() if a["online"]}

    def done(self, key: str) -> set[int]:
        return {f["frame"] for f in self.frames(key) if f["state"] == "done"}

    def wait_stage(self, key: str, stages: set[str], timeout: float) -> dict[str, Any]:
        return dict(
            wait_for(
                f"task {key[:8]} to reach {stages}",
                lambda: (pr := self.progress(key))["stage"] in stages and pr,
                timeout,
                0.3,
            )
        )


class Manager(Process):
    """``farmgui --headless`` in the manager's namespace: no --agent, no --no-discovery (zeroconf finds them)."""

    def __init__(self, lan: Lan, data_dir: Path, api: Api, heartbeat_timeout: float, *, wait: bool = True) -> None:
        self.data_dir = data_dir
        self.api = api
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            *lan.manager.exec_prefix(), sys.executable, "-m", "farmgui", "--headless", "--no-local-agent",
            "--host", MANAGER_IP, "--port", str(MANAGER_PORT), "--data-dir", str(data_dir), "--token", TOKEN,
            "--heartbeat-timeout", str(heartbeat_timeout),
        ]  # fmt: skip
        super().__init__(argv, data_dir.parent / "manager.log")
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        wait_for("the manager to answer", self.ready, 60)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"manager exited:\n{self.log()[-3000:]}")
        return bool(self.api.client.get("/api/").status_code == 200)


def parse_time(text: str) -> datetime:
    """The time at the start of an agent's log line (``logging``'s asctime)."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f")


_ASSIGNED = re.compile(r"^(\S+ \S+) \S+ assigned frames \[([\d, -]*)\] of task (\w+)", re.MULTILINE)


class Agent(Process):
    """``farm-agent`` in its host's namespace, advertising itself by zeroconf (no --no-advertise)."""

    def __init__(self, host: Host, folder: Path, *, blender: str = BLENDER, work_dir: Path | None = None) -> None:
        self.host = host
        self.name = host.name
        self.folder = folder
        self.work_dir = work_dir or folder / "work"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            *host.exec_prefix(), sys.executable, "-m", "agent", "--no-tray", "--host", host.address,
            "--port", str(AGENT_PORT), "--name", host.name, "--token", TOKEN, "--work-dir", str(self.work_dir),
            "--settings", str(folder / "settings.json"), "--threads", "1", "--blender", blender, "--no-bpy", "-v",
        ]  # fmt: skip
        self.started_at = time.monotonic()
        super().__init__(argv, folder / "agent.log")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def assignments(self, task: str) -> list[tuple[datetime, list[int]]]:
        """Every "assigned frames [..] of task KEY" line of the agent's log: (when, frames)."""
        found = []
        for m in _ASSIGNED.finditer(self.log()):
            if task.startswith(m.group(3)):
                when = parse_time(m.group(1))
                found.append((when, [int(x) for x in m.group(2).split(",") if x.strip()]))
        return found

    def assigned_frames(self, task: str) -> list[int]:
        return [n for _, frames in self.assignments(task) for n in frames]

    def logged_since(self, when: datetime, text: str) -> bool:
        """Whether a line of the agent's log written after ``when`` contains ``text``."""
        pattern = re.compile(rf"^(\S+ \S+) .*{re.escape(text)}", re.MULTILINE)
        return any(parse_time(m.group(1)) > when for m in pattern.finditer(self.log()))

    def outbox(self) -> list[Path]:
        """Frames rendered and not delivered yet (the agent removes each once the manager has it)."""
        return sorted((self.work_dir / "outbox").glob("*"))

    def blender_pids(self) -> list[int]:
        """Blender processes rendering for this agent (their command line names its work directory)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if argv and b"blender" in argv[0] and any(str(self.work_dir).encode() in a for a in argv):
                    pids.append(int(entry.name))
        return pids


class Slowdown:
    """Makes an agent's Blender ``factor`` times slower: SIGCONT for a slice, SIGSTOP for the rest, repeated.

    A thread in the test process; :meth:`stop` leaves every process running. ``factor=math.inf`` never lets
    Blender run (see :class:`Freeze`).
    """

    def __init__(self, agent: Agent, factor: float, period_s: float = 0.2) -> None:
        self.agent = agent
        self.run_s = period_s / factor
        self.stop_s = period_s - self.run_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"slow-{agent.name}", daemon=True)
        self._thread.start()

    def _signal(self, pids: list[int], signum: int) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _loop(self) -> None:
        pids: list[int] = []
        try:
            while not self._stop.is_set():
                pids = self.agent.blender_pids()
                self._signal(pids, signal.SIGSTOP)
                if self._stop.wait(self.stop_s):
                    break
                if self.run_s > 0:
                    self._signal(pids, signal.SIGCONT)
                    self._stop.wait(self.run_s)
        finally:
            self._signal(pids, signal.SIGCONT)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._signal(self.agent.blender_pids(), signal.SIGCONT)


class Freeze(Slowdown):
    """Holds an agent's Blender stopped (SIGSTOP) until :meth:`stop`; one it starts meanwhile is stopped within
    ``poll_s``. The agent itself runs on: it heartbeats, takes work and uploads, but renders nothing. A test
    orders events with it, where waiting for another agent to be quick enough would be a race."""

    def __init__(self, agent: Agent, poll_s: float = 0.05) -> None:
        super().__init__(agent, math.inf, poll_s)


@contextlib.contextmanager
def frozen(*agents: Agent) -> Iterator[None]:
    """:class:`Freeze` these agents' Blenders for the block."""
    holds = [Freeze(agent) for agent in agents]
    try:
        yield
    finally:
        for hold in holds:
            hold.stop()


class Farm:
    """A LAN, a manager and its agents, with the checks every scenario ends with."""

    def __init__(self, root: Path, agent_names: list[str], heartbeat_timeout: float = 4.0) -> None:
        self.root = root
        self.heartbeat_timeout = heartbeat_timeout
        self.lan = Lan(agent_names)
        self.data_dir = root / "manager" / "data"
        self.agents: dict[str, Agent] = {}
        self.manager: Manager | None = None
        self.forwarder: Process | None = None
        self._old_agents: list[Agent] = []
        self.slowdowns: list[Slowdown] = []
        # A Unix socket path must fit in 108 bytes; pytest's folders can be long.
        self.socket_dir = Path(f"/tmp/{self.lan.tag}")
        self.socket_dir.mkdir(exist_ok=True)
        self.api = Api(self.socket_dir / "api.sock")

    # -- lifetime ---------------------------------------------------------------------------------------------
    def start(self, agents: list[str] | None = None, options: dict[str, dict[str, Any]] | None = None) -> Farm:
        """Build the LAN, start the manager, then the agents (all of them by default) and wait until the
        manager has found and attached each one by zeroconf. ``options``: :class:`Agent` keywords by name."""
        self.lan.build()
        socket_path = self.socket_dir / "api.sock"
        self.forwarder = Process(
            [*self.lan.manager.exec_prefix(), sys.executable, str(HERE / "forward.py"), str(socket_path),
             MANAGER_IP, str(MANAGER_PORT)],
            self.root / "forward.log",
        )  # fmt: skip
        wait_for("the API socket", socket_path.exists, 20, 0.05)
        # All at once: agents advertise whether or not the manager is up yet; it finds them when it is.
        self.manager = Manager(self.lan, self.data_dir, self.api, self.heartbeat_timeout, wait=False)
        for name in self.lan.agents if agents is None else agents:
            self.start_agent(name, **(options or {}).get(name, {}))
        self.manager.wait_ready()
        self.wait_online(set(self.agents))
        self.check_discovered()
        return self

    def check_discovered(self) -> None:
        """Every running agent was attached at its own LAN address, which only zeroconf told the manager."""
        found = self.discovered()
        for name, agent in self.agents.items():
            if agent.alive():
                assert found.get(name) == agent.host.address, (name, found)

    def start_manager(self) -> Manager:
        self.manager = Manager(self.lan, self.data_dir, self.api, self.heartbeat_timeout)
        return self.manager

    def start_agent(self, name: str, **options: Any) -> Agent:
        old = self.agents.get(name)
        if old is not None:
            self._old_agents.append(old)
        agent = Agent(self.lan.agents[name], self.root / "agents" / name, **options)
        self.agents[name] = agent
        return agent

    def wait_online(self, names: set[str], timeout: float = 60) -> None:
        def check() -> bool:
            for agent in self.agents.values():
                if agent.name in names and not agent.alive():
                    raise AssertionError(f"agent {agent.name} exited:\n{agent.log()[-3000:]}")
            return names <= self.api.online()

        wait_for(f"agents {sorted(names)} to be found and attached", check, timeout, 0.3)

    def kill_manager(self) -> None:
        assert self.manager is not None
        self.manager.kill()
        self.manager._log.close()

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL), remove the network and the mounts; never raises."""
        for slow in self.slowdowns:
            slow.stop()
        procs: list[Process] = [*self.agents.values(), *self._old_agents]
        if self.manager is not None:
            procs.append(self.manager)
        if self.forwarder is not None:
            procs.append(self.forwarder)
        for proc in procs:
            with contextlib.suppress(Exception):
                if proc.proc.poll() is None:
                    proc.proc.send_signal(signal.SIGTERM)
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.stop(timeout=15)
        self.api.close()
        self.lan.destroy()
        with contextlib.suppress(OSError):
            (self.socket_dir / "api.sock").unlink(missing_ok=True)
            self.socket_dir.rmdir()

    # -- checks -----------------------------------------------------------------------------------------------
    def discovered(self) -> dict[str, str]:
        """Agent name -> the address the manager attached it at, from the manager's log (links.py's line)."""
        assert self.manager is not None
        text = self.manager.log()
        return {m.group(1): m.group(2) for m in re.finditer(r"attached agent (\S+) \(\w+\) at http://([\d.]+):", text)}

    def frames_dir(self, key: str) -> Path:
        return self.data_dir / "tasks" / key / "frames"

    def check_result(self, key: str, frames: range, *, video: bool) -> dict[str, Any]:
        """The task finished, each frame is there exactly once and decodes, the result holds every frame."""
        task = self.api.task(key)
        assert task["stage"] == "finished", (task["stage"], task.get("error"))
        names = sorted(f.name for f in self.frames_dir(key).iterdir())
        assert names == [f"frame_{n:06d}.png" for n in frames], "each frame exactly once, nothing else"
        for name in names:
            problem = check_png((self.frames_dir(key) / name).read_bytes())
            assert problem is None, f"{name}: {problem}"
        api_frames = self.api.frames(key)
        assert [f["frame"] for f in api_frames] == list(frames)
        assert all(f["state"] == "done" for f in api_frames)
        result = self.data_dir / task["result_path"]
        if video:
            probe = ffprobe(result)
            assert probe["nb_read_frames"] == str(len(frames)), probe
        else:
            import zipfile

            with zipfile.ZipFile(result) as zf:
                assert sorted(zf.namelist()) == names
                assert all(check_png(zf.read(n)) is None for n in zf.namelist())
        return task


@contextlib.contextmanager
def farm_on_a_lan(root: Path, agent_names: list[str], heartbeat_timeout: float = 4.0) -> Iterator[Farm]:
    """A :class:`Farm`, stopped and removed however the test ends; then no process may mention ``root``."""
    farm = Farm(root, agent_names, heartbeat_timeout)
    try:
        yield farm
    finally:
        farm.stop()
    wait_for(f"no process using {root}", lambda: not processes_mentioning(str(root)), 15)
    wait_for("no process using the API socket", lambda: not processes_mentioning(str(farm.socket_dir)), 5)
