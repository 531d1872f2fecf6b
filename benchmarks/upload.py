"""Uploading a large .blend to the manager: before and after streaming, against ``cp`` and ``sha256sum``.

Issue 8. The file is a real .blend (the tests' camera file) followed by pseudo-random padding up to
``--size-mib`` (Blender's reader stops at ENDB, so the manager accepts it as it would a real one).
Measures, in rotating order each round, on the same file:

* ``cp``: ``cp FILE DEST`` (one read, one write), the baseline; ``sha256sum FILE`` (one hashing pass);
* ``before``: the manager's app with run_task as it was (Starlette's ``UploadFile``: the body spooled to a
  temporary file, then ``copy_stream`` into ``uploads/``, then ``store_file`` hashing it again);
* ``after``: the manager's app as it is (the body streamed into ``uploads/`` and hashed in one pass);
* ``receive``: the floor for any server-side handling: the same server, a route that reads the body from
  uvicorn and throws it away (no parsing, no disk, no hash).

Each server is the real app (``create_app`` over a ``FarmService`` on a fresh data directory) under
uvicorn in its own process. The client streams the multipart body from disk over loopback (1 MiB pieces,
never all in memory) and times from the first byte to the 201. From the server's ``/proc``, over the
upload only: CPU time, bytes read and written by system calls (``rchar``/``wchar``: the socket plus every
file pass), and the peak resident memory above what it held before (``VmHWM`` after resetting it). A
second client polls ``GET /api/agents/`` every 20 ms during the upload: its slowest answer is how long
the upload held up everything else (agents' heartbeats go through the same server). ``rchar`` does not
count the socket (``recv``), so "read / file" is how many times the server read the file back from disk.

Printed, never asserted: medians, and ratios to ``cp`` measured in the same round.

    python benchmarks/upload.py [--size-mib 1024] [--repeat 3] [--keep]
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import File, Request, UploadFile  # module-level: FastAPI resolves the old run_task's annotations here

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BLEND = ROOT / "tests/data/blendfiles/gltf-blender-io/36_viewport_material_export.blend"
TOKEN = "benchmark-token-0123456789"  # noqa: S105 - a throwaway farm on loopback
URL = "/api/render-tasks/run_task/"
BOUNDARY = "frameherd-benchmark-boundary"
CHUNK = 1 << 20
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- the server process ------------------------------------------------------------------------------
def serve(variant: str, data: Path, port_file: Path) -> None:
    from agent.httpserver import ServerThread
    from farmgui.core.api import create_app
    from farmgui.core.service import FarmService
    from farmgui.core.storage import copy_stream

    service = FarmService(data)
    app = create_app(service, TOKEN)
    if variant == "before":
        # run_task as it was: FastAPI's UploadFile (Starlette spools the part to a temporary file), copied
        # into uploads/ with copy_stream; the service then hashes it again (store_file has no digest).
        @app.post(URL, status_code=201)
        def run_task(file: Annotated[UploadFile, File()]) -> dict[str, str]:
            upload, task_id = service.init_new_task(Path(file.filename or "").name)
            copy_stream(file.file, upload, service.max_upload_bytes)
            service.run_task(task_id)
            return {"task_key": task_id}

        app.router.routes.insert(0, app.router.routes.pop())  # matched before the app's own run_task
    elif variant == "receive":
        # The floor for any handling: uvicorn receives the body, the route throws it away.
        @app.post(URL, status_code=201)
        async def receive_only(request: Request) -> dict[str, str]:
            async for _chunk in request.stream():
                pass
            return {"task_key": ""}

        app.router.routes.insert(0, app.router.routes.pop())

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ServerThread(app, "127.0.0.1", 0) as server:
        port_file.write_text(str(server.port))
        stop.wait()
    service.close()


class Server:
    def __init__(self, variant: str, work: Path) -> None:
        self.data = work / f"data-{variant}"
        port_file = work / f"port-{variant}"
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", variant, str(self.data), str(port_file)])
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {variant} server did not start")
            time.sleep(0.05)
        self.port = int(port_file.read_text())

    def proc_stats(self) -> dict[str, int]:
        pid = self.proc.pid
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        return {
            "cpu_ticks": int(stat[11]) + int(stat[12]),
            "rchar": int(io["rchar"]),
            "wchar": int(io["wchar"]),
            "rss_kib": int(status["VmRSS"].split()[0]),
            "hwm_kib": int(status["VmHWM"].split()[0]),
        }

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS

    def clear_store(self) -> None:
        for sub in ("files", "uploads"):
            for f in (self.data / sub).iterdir():
                f.unlink()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


# -- the client ----------------------------------------------------------------------------------------
def post_file(port: int, path: Path) -> None:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    conn.putrequest("POST", URL)
    conn.putheader("Authorization", f"Bearer {TOKEN}")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    conn.putheader("Content-Length", str(len(head) + path.stat().st_size + len(tail)))
    conn.endheaders()
    conn.send(head)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            conn.send(chunk)
    conn.send(tail)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    if response.status != 201:
        raise RuntimeError(f"upload answered {response.status}: {body[:300]!r}")


def poll_latencies(port: int, stop: threading.Event, out: list[float]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    while not stop.is_set():
        start = time.perf_counter()
        conn.request("GET", "/api/agents/", headers={"Authorization": f"Bearer {TOKEN}"})
        conn.getresponse().read()
        out.append(time.perf_counter() - start)
        stop.wait(0.02)
    conn.close()


@dataclass
class Sample:
    wall_s: float
    cpu_s: float = 0.0
    read: int = 0
    written: int = 0
    peak_mib: float = 0.0
    max_latency_s: float = 0.0


def measure_server(server: Server, path: Path) -> Sample:
    server.clear_store()
    os.sync()
    server.reset_peak()
    before = server.proc_stats()
    latencies: list[float] = []
    stop = threading.Event()
    poller = threading.Thread(target=poll_latencies, args=(server.port, stop, latencies))
    start = time.perf_counter()
    poller.start()
    try:
        post_file(server.port, path)
    finally:
        wall = time.perf_counter() - start
        stop.set()
        poller.join()
    after = server.proc_stats()
    return Sample(
        wall,
        (after["cpu_ticks"] - before["cpu_ticks"]) / CLOCK_TICKS,
        after["rchar"] - before["rchar"],
        after["wchar"] - before["wchar"],
        (after["hwm_kib"] - before["rss_kib"]) / 1024,
        max(latencies, default=0.0),
    )


def measure_command(argv: list[str], work: Path) -> Sample:
    """Wall time, CPU and peak RSS of a command. Through GNU time where there is one: a child forked from
    this (large) Python process would otherwise report this process's memory as its own peak."""
    os.sync()
    timer = shutil.which("time", path="/usr/bin:/bin")
    report = work / "time.out"
    start = time.perf_counter()
    if timer:
        subprocess.run([timer, "-f", "%M %U %S", "-o", str(report), *argv], check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        peak_kib, user, system = report.read_text().split()[-3:]
        return Sample(wall, float(user) + float(system), peak_mib=int(peak_kib) / 1024)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{argv} failed ({proc.returncode})")
    return Sample(wall, usage.ru_utime + usage.ru_stime, peak_mib=usage.ru_maxrss / 1024)


def make_file(path: Path, size: int) -> None:
    block = random.Random(8).randbytes(CHUNK)
    with path.open("wb") as f:
        f.write(BLEND.read_bytes())
        while f.tell() + CHUNK <= size:
            f.write(block)
        f.write(block[: max(0, size - f.tell())])


@dataclass
class Results:
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--serve", nargs=3, metavar=("VARIANT", "DATA", "PORT_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], Path(args.serve[1]), Path(args.serve[2]))
        return

    work = Path(tempfile.mkdtemp(prefix="frameherd-upload-bench-"))
    size = args.size_mib << 20
    source = work / "big.blend"
    make_file(source, size)
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}; "
        f"file {size / 2**20:.0f} MiB in {work}"
    )
    servers = {variant: Server(variant, work) for variant in ("receive", "before", "after")}
    results = Results()
    measures = ["cp", "sha256sum", "receive", "before", "after"]
    try:
        for round_ in range(args.repeat):
            order = measures[round_ % len(measures) :] + measures[: round_ % len(measures)]
            this: dict[str, Sample] = {}
            for name in order:
                if name == "cp":
                    this[name] = measure_command(["cp", str(source), str(work / "copy")], work)
                    (work / "copy").unlink()
                elif name == "sha256sum":
                    this[name] = measure_command(["sha256sum", str(source)], work)
                else:
                    this[name] = measure_server(servers[name], source)
            for name, sample in this.items():
                results.samples.setdefault(name, []).append(sample)
                results.ratios.setdefault(name, []).append(sample.wall_s / this["cp"].wall_s)
            line = ", ".join(f"{n} {this[n].wall_s:.2f} s" for n in measures)
            print(f"round {round_ + 1}: {line}", flush=True)
    finally:
        for server in servers.values():
            server.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(results, size)


def report(results: Results, size: int, servers: tuple[str, ...] = ("receive", "before", "after")) -> None:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    print()
    print(
        "| measure | wall median s | min | max | wall / cp | CPU s | read / file | written / file "
        "| peak RSS above idle MiB | slowest other request ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, samples in results.samples.items():
        walls = [s.wall_s for s in samples]
        server = name in servers
        print(
            f"| {name} | {med(walls):.2f} | {min(walls):.2f} | {max(walls):.2f} | {med(results.ratios[name]):.2f} "
            f"| {med([s.cpu_s for s in samples]):.2f} "
            + (f"| {med([s.read / size for s in samples]):.2f} " if server else "| - ")
            + (f"| {med([s.written / size for s in samples]):.2f} " if server else "| - ")
            + f"| {med([s.peak_mib for s in samples]):.1f} "
            + (f"| {med([s.max_latency_s for s in samples]) * 1000:.0f} |" if server else "| - |")
        )
    print()
    print(
        "(cp, sha256sum: peak RSS is the whole process's. read / written: bytes the server passed to read() and "
        "write(), over the size of the file; receiving from the socket (recv) is not counted.)"
    )


if __name__ == "__main__":
    main()
