"""The GPU render devices of this PC, for the zeroconf record and the manager's agent list.

"When it can tell": NVIDIA's ``nvidia-smi -L`` names every CUDA/OptiX device. Other vendors are not
listed yet; Cycles still uses them when ``--device`` says so.
"""

from __future__ import annotations

import re
import shutil
import subprocess

_NVIDIA_LINE = re.compile(r"^GPU (\d+): (.+?)(?: \(UUID: [^)]*\))?$")


def parse_nvidia_smi(output: str) -> list[str]:
    """``GPU 0: NVIDIA H200 (UUID: GPU-...)`` lines -> ``["CUDA:0 NVIDIA H200", ...]``."""
    devices = []
    for line in output.splitlines():
        match = _NVIDIA_LINE.match(line.strip())
        if match:
            devices.append(f"CUDA:{match.group(1)} {match.group(2).strip()}")
    return devices


def detect_gpus(timeout: float = 5.0) -> list[str]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        result = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(result.stdout) if result.returncode == 0 else []
