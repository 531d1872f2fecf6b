"""Any bytes: the reader returns or raises a BlendFileError, never anything else, never hangs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blendfile import BlendFileError

from .fuzzing import SEEDS, Seed, load_seed, mutate, read_everything

_SEEDS: dict[str, Seed] = {}


def seed(name: str) -> Seed:
    if name not in _SEEDS:
        _SEEDS[name] = load_seed(name)
    return _SEEDS[name]


@settings(max_examples=400, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(SEEDS), rng_seed=st.integers(0, 2**32 - 1))
def test_mutated_files_only_raise_blendfile_errors(tmp_path: Path, name: str, rng_seed: int) -> None:
    path = tmp_path / "mutant.blend"
    path.write_bytes(mutate(seed(name), random.Random(rng_seed)))
    try:
        read_everything(path)
    except BlendFileError as exc:
        assert str(path) in str(exc), "every error names the file"


@settings(max_examples=200, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(SEEDS), cut=st.floats(0, 1, exclude_max=True))
def test_truncated_files(tmp_path: Path, name: str, cut: float) -> None:
    data = seed(name).data
    size = int(len(data) * cut)
    path = tmp_path / "cut.blend"
    path.write_bytes(data[:size])
    if size >= seed(name).complete_at:
        read_everything(path)  # only the end block's tail is gone, as Blender tolerates
        return
    with pytest.raises(BlendFileError):
        read_everything(path)


@settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from([b"", b"BLENDER", b"BLENDER-v279", b"BLENDER_V260", b"BLENDER17-01v0500"]),
       tail=st.binary(max_size=512))  # fmt: skip
def test_random_bytes(tmp_path: Path, prefix: bytes, tail: bytes) -> None:
    path = tmp_path / "random.blend"
    path.write_bytes(prefix + tail)
    with pytest.raises(BlendFileError):
        read_everything(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(BlendFileError, match="cannot read"):
        read_everything(tmp_path / "nope.blend")
    with pytest.raises(BlendFileError, match="cannot read"):
        read_everything(tmp_path)
