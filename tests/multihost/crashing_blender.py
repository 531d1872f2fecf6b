"""A Blender that crashes: stands between the agent and the real Blender, and SIGSEGVs it mid-frame.

``python crashing_blender.py --real /usr/bin/blender --file-contains SHA [--after 0.3] -- BLENDER-ARGS``.
``--version`` and any file other than the one named go straight to the real Blender (``exec``). For the named
file every frame the agent sends crashes: the command is passed on, and ``--after`` seconds later (mid-render)
Blender gets SIGSEGV, prints its own crash report and dies; this wrapper then dies of the same signal, as a
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
            time.sleep(options.after)
            os.kill(child.pid, signal.SIGSEGV)
            child.wait()
            signal.signal(signal.SIGSEGV, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGSEGV)
    child.stdin.close()
    sys.exit(child.wait())


if __name__ == "__main__":
    main()
