"""Where the manager keeps files: uploads, the content-addressed store of task files, frames, results.

::

    DATA_DIR/
      farm.sqlite3        the database (by default)
      token               the farm token (0600)
      uploads/TASK.part   an upload being received
      files/SHA256        each submitted file once, named by its sha256 (agents download by it)
      tasks/TASK/frames/  frame_000001.png ... (exactly one file per finished frame)
      tasks/TASK/result   the merged video, or frames.zip (+ preview.mp4) for image outputs
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1 << 20
_SAFE_EXT = re.compile(r"^[a-z0-9]{1,8}$")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def copy_stream(source: BinaryIO, target: Path, limit: int | None = None) -> tuple[int, str]:
    """Stream ``source`` into ``target`` (never all in memory); returns (size, sha256).

    Raises ValueError once more than ``limit`` bytes arrive; the partial file is removed.
    """
    digest = hashlib.sha256()
    size = 0
    try:
        with target.open("wb") as out:
            while chunk := source.read(_CHUNK):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise ValueError(f"larger than the limit of {limit} bytes")
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return size, digest.hexdigest()


def safe_extension(ext: str) -> str:
    """A frame's file extension from an agent, reduced to what cannot name another path."""
    ext = ext.lower().lstrip(".")
    if not _SAFE_EXT.match(ext):
        raise ValueError(f"bad file extension {ext!r}")
    return ext


class Storage:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir
        for sub in ("uploads", "files", "tasks"):
            (data_dir / sub).mkdir(parents=True, exist_ok=True)

    def upload_path(self, task_id: str) -> Path:
        return self.root / "uploads" / f"{task_id}.part"

    def file_path(self, sha256: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError("not a sha256")
        return self.root / "files" / sha256

    def store_file(self, source: Path) -> tuple[str, int]:
        """Move a received file into the content-addressed store; returns (sha256, size)."""
        sha = sha256_of(source)
        size = source.stat().st_size
        target = self.file_path(sha)
        if target.exists():
            source.unlink()
        else:
            source.replace(target)
        return sha, size

    def task_dir(self, task_id: str) -> Path:
        path = self.root / "tasks" / task_id
        (path / "frames").mkdir(parents=True, exist_ok=True)
        return path

    def frame_path(self, task_id: str, frame: int, ext: str) -> Path:
        sign = "-" if frame < 0 else ""
        return self.task_dir(task_id) / "frames" / f"frame_{sign}{abs(frame):06d}.{safe_extension(ext)}"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def absolute(self, relative: str) -> Path:
        return self.root / relative
