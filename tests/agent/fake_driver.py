"""A stand-in for agent/driver.py that needs no Blender: it speaks the same protocol and misbehaves on request.

Run as ``python fake_driver.py --bpy --file FILE`` (what a bpy session runs); ``FAKE_MODE`` says how to behave:

* ``ok``: writes a valid 2x2 PNG per frame, with a Blender-like log line glued in front of a message;
* ``bad-png``: writes a truncated PNG and says the frame is done;
* ``fatal``: reports a fatal GPU error and exits 2;
* ``die``: on a render command prints an out-of-memory error and exits 3;
* ``stubborn``: starts a ``sleep`` grandchild, ignores SIGTERM, stdin closing and its parent dying: only a
  kill of its process group, or the kernel's parent-death signal, ends it.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

PREFIX = "@@FRAMEHERD "
MODE = os.environ.get("FAKE_MODE", "ok")


def emit(event: str, **fields: object) -> None:
    sys.stdout.write("\n" + PREFIX + json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def png(width: int = 2, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + b"\x80\x40\x20" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def main() -> int:
    blend = sys.argv[sys.argv.index("--file") + 1]
    print(f'Read blend: "{blend}"', flush=True)
    if MODE == "fatal":
        emit("fatal", error="GPU error: no CUDA device found")
        return 2
    if MODE == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sleeper = subprocess.Popen(["sleep", "60"])
        print(f"grandchild {sleeper.pid}", flush=True)
    # A Blender status line missing its newline, with the message glued on (what Blender 3.4 does).
    sys.stdout.write("Fra:1 Mem:1.00M (Peak 1.00M) | Time:00:00.00 | Sample 0/2")
    sys.stdout.write(PREFIX + json.dumps({"event": "ready", "blender": "fake", "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    if MODE == "stubborn":
        while True:
            time.sleep(1)
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "quit":
            break
        frame = int(command["frame"])
        final = Path(command["output"].replace("####", f"{frame:04d}") + ".png")
        emit("frame_started", frame=frame, path=str(final))
        if MODE == "die":
            print("Error: System is out of memory", flush=True)
            return 3
        print(f"Fra:{frame} Mem:1.00M (Peak 1.00M) | Time:00:00.00 | Sample 1/2", flush=True)
        emit("stats", frame=frame, text="Mem: 1M | Sample 2/2")
        final.parent.mkdir(parents=True, exist_ok=True)
        data = png()
        final.write_bytes(data[:-8] if MODE == "bad-png" else data)
        emit("frame_done", frame=frame, path=str(final), seconds=0.01)
    emit("bye")
    return 0


if __name__ == "__main__":
    sys.exit(main())
