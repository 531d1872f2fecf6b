"""Where the manager keeps files: uploads, the content-addressed store of task files, frames, results.

::

    DATA_DIR/
      farm.sqlite3        the database (by default)
      token               the farm token (0600)
      uploads/.incoming-* an upload still arriving (before its task exists; removed if it fails)
      uploads/TASK.part   an upload received, being checked
      files/SHA256        each submitted file once, named by its sha256 (agents download by it)
      tasks/TASK/frames/  frame_000001.png ... (exactly one file per finished frame)
      tasks/TASK/result   the merged video, or frames.zip (+ preview.mp4) for image outputs

A file is hashed while it is received (:class:`IncomingFile`, :meth:`Storage.receive`), in the same
pass that writes it; :meth:`Storage.store_file` then reuses that digest instead of reading the file
again, as long as the file is still the one that was received (same size, inode and mtime).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1 << 20
_SAFE_EXT = re.compile(r"^[a-z0-9]{1,8}$")
_INCOMING_PREFIX = ".incoming-"


class UploadTooLarge(ValueError):
    """More bytes arrived than the limit allows (a ValueError, as :func:`copy_stream` always raised)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than the limit of {limit} bytes")
        self.limit = limit


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def copy_stream(source: BinaryIO, target: Path, limit: int | None = None) -> tuple[int, str]:
    """Stream ``source`` into ``target`` (never all in memory); returns (size, sha256).

    Raises :class:`UploadTooLarge` (a ValueError) once more than ``limit`` bytes arrive; the partial
    file is removed.
    """
    digest = hashlib.sha256()
    size = 0
    try:
        with target.open("wb") as out:
            while chunk := source.read(_CHUNK):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise UploadTooLarge(limit)
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


def _identity(path: Path) -> tuple[int, int, int, int]:
    """What changes if the file is replaced or written to (for trusting a digest taken earlier)."""
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class IncomingFile:
    """Bytes being received into a file under ``uploads/``: written, hashed and counted in one pass.

    Made by :meth:`Storage.incoming`. :meth:`write` raises :class:`UploadTooLarge` past the limit,
    having removed the file already. :meth:`keep` moves the finished file where it belongs and lets
    :meth:`Storage.store_file` reuse its digest; :meth:`discard` removes it (a no-op once kept, and
    safe to call twice). Not thread-safe: one writer at a time.
    """

    def __init__(self, storage: Storage, path: Path, file: BinaryIO, limit: int | None) -> None:
        self.path = path
        self.file = file
        """Open for reading and writing; after :meth:`finish`, positioned at the start."""
        self.size = 0
        self.limit = limit
        self._storage = storage
        self._digest = hashlib.sha256()
        self._kept = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            self.discard()
            raise UploadTooLarge(self.limit)
        self._digest.update(data)
        self.file.write(data)

    def finish(self) -> None:
        """Every byte is in: flush, and rewind for anyone who reads it."""
        self.file.flush()
        self.file.seek(0)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def keep(self, target: Path) -> None:
        """Move the file to ``target`` (same file system: a rename) and remember its digest there."""
        self.file.close()
        self.path.replace(target)
        self._kept = True
        self.path = target
        self._storage.remember_digest(target, self.sha256)

    def discard(self) -> None:
        if self._kept:
            return
        self.file.close()
        self.path.unlink(missing_ok=True)


class Storage:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir
        for sub in ("uploads", "files", "tasks"):
            (data_dir / sub).mkdir(parents=True, exist_ok=True)
        # Uploads cut off by a crash or a kill (an orderly failure removes its own); no task refers to them.
        for stale in (data_dir / "uploads").glob(f"{_INCOMING_PREFIX}*"):
            stale.unlink(missing_ok=True)
        self._digests: dict[Path, tuple[tuple[int, int, int, int], str]] = {}
        self._digests_lock = threading.Lock()
        self._task_dirs: set[str] = set()
        """Tasks whose ``frames`` folder exists: every frame upload asks for it, twice (tasks are never removed)."""

    def upload_path(self, task_id: str) -> Path:
        return self.root / "uploads" / f"{task_id}.part"

    def incoming(self, limit: int | None = None) -> IncomingFile:
        """A new, empty file under ``uploads/`` to receive an upload into (see :class:`IncomingFile`)."""
        fd, name = tempfile.mkstemp(dir=self.root / "uploads", prefix=_INCOMING_PREFIX, suffix=".part")
        return IncomingFile(self, Path(name), os.fdopen(fd, "w+b"), limit)

    def receive(self, source: BinaryIO, target: Path, limit: int | None = None) -> tuple[int, str]:
        """:func:`copy_stream`, remembering the digest for :meth:`store_file`; returns (size, sha256)."""
        size, sha = copy_stream(source, target, limit)
        self.remember_digest(target, sha)
        return size, sha

    def remember_digest(self, path: Path, sha256: str) -> None:
        """``path`` holds bytes whose sha256 is ``sha256`` (computed by whoever wrote them, as they were
        written). :meth:`store_file` uses it while the file stays unchanged."""
        with self._digests_lock:
            self._digests[path] = (_identity(path), sha256)

    def forget_digest(self, path: Path) -> None:
        with self._digests_lock:
            self._digests.pop(path, None)

    def _recall_digest(self, path: Path) -> str | None:
        with self._digests_lock:
            known = self._digests.pop(path, None)
        if known is None:
            return None
        identity, sha = known
        with contextlib.suppress(OSError):
            if _identity(path) == identity:
                return sha
        return None

    def file_path(self, sha256: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError("not a sha256")
        return self.root / "files" / sha256

    def store_file(self, source: Path) -> tuple[str, int]:
        """Move a received file into the content-addressed store; returns (sha256, size).

        The digest taken while the file was received is used when there is one (see
        :meth:`remember_digest`); otherwise the file is read and hashed here.
        """
        sha = self._recall_digest(source) or sha256_of(source)
        size = source.stat().st_size
        target = self.file_path(sha)
        if target.exists():
            source.unlink()
        else:
            source.replace(target)
        return sha, size

    def task_dir(self, task_id: str) -> Path:
        path = self.root / "tasks" / task_id
        if task_id not in self._task_dirs:
            (path / "frames").mkdir(parents=True, exist_ok=True)
            self._task_dirs.add(task_id)
        return path

    def frame_path(self, task_id: str, frame: int, ext: str) -> Path:
        sign = "-" if frame < 0 else ""
        return self.task_dir(task_id) / "frames" / f"frame_{sign}{abs(frame):06d}.{safe_extension(ext)}"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def absolute(self, relative: str) -> Path:
        return self.root / relative
