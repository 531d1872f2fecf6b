from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.gpus import detect_gpus, parse_nvidia_smi


def test_parse_nvidia_smi() -> None:
    out = "GPU 0: NVIDIA H200 (UUID: GPU-1234)\nGPU 1: NVIDIA GeForce RTX 4090 (UUID: GPU-5678)\n"
    assert parse_nvidia_smi(out) == ["CUDA:0 NVIDIA H200", "CUDA:1 NVIDIA GeForce RTX 4090"]
    assert parse_nvidia_smi("No devices were found\n") == []


def test_detect_with_a_fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA A40 (UUID: GPU-abc)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert detect_gpus() == ["CUDA:0 NVIDIA A40"]


def test_no_nvidia_smi_means_none_known(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert detect_gpus() == []


def test_parse_real_h200_output() -> None:
    """``nvidia-smi -L`` as printed on a real H200 machine (driver 580.159), captured for this test."""
    captured = Path(__file__).parents[1] / "data" / "gpus" / "nvidia-smi-L-h200.txt"
    assert parse_nvidia_smi(captured.read_text()) == ["CUDA:0 NVIDIA H200"]
