"""A Blender that crashes: stands between the agent and the real Blender, and SIGSEGVs it mid-frame.

``python crashing_blender.py --real /usr/bin/blender --file-contains SHA [--after 0.3] -- BLENDER-ARGS``.
``--version`` and any file other than the one named go straight to the real Blender (``exec``). For the named
file every frame the agent sends crashes: the command is passed on, Blender is held there, and ``--after`` seconds
later it gets SIGSEGV, prints its own crash report and dies; this wrapper then dies of the same signal, as a
Blender that crashed would.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import time


def main() -> None:
    split = sys.argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("--real", required=True)
    parser.add_argument("--file-contains", required=True)
    parser.add_argument("--after", type=float, default=0.3)
    options = parser.parse_args(sys.argv[1:split])
    args = sys.argv[split + 1 :]
    if "--version" in args or not any(options.file_contains in a for a in args):
        os.execv(options.real, [options.real, *args])  # noqa: S606 - becoming the real Blender, argv as given
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def die_with_parent() -> None:
        prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG, as the agent does for a real Blender

    child = subprocess.Popen([options.real, *args], stdin=subprocess.PIPE, preexec_fn=die_with_parent)
    assert child.stdin is not None
    for line in sys.stdin.buffer:
        child.stdin.write(line)
        child.stdin.flush()
        try:
            command = json.loads(line)
        except ValueError:
            continue
        if isinstance(command, dict) and command.get("cmd") == "render":
            # Held (SIGSTOP) from the moment it has the command, so that it cannot finish a tiny frame within
            # ``--after`` and deliver it (test_scale's 0.1 s frames did, 1 run in 12); then SIGSEGV, delivered when
            # it continues: Blender's own crash handler runs, prints its report and ends the process.
            os.kill(child.pid, signal.SIGSTOP)
            time.sleep(options.after)
            os.kill(child.pid, signal.SIGSEGV)
            os.kill(child.pid, signal.SIGCONT)
            child.wait()
            signal.signal(signal.SIGSEGV, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGSEGV)
    child.stdin.close()
    sys.exit(child.wait())


if __name__ == "__main__":
    main()
