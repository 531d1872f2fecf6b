"""Random-access readers over a blend file's *decompressed* bytes.

The reader asks for ``read_at(offset, size)`` and never holds the whole file:

* :class:`PlainSource` reads an uncompressed file through a small window, so walking thousands of
  block headers costs a few large reads instead of one system call each;
* :class:`SeekableZstdSource` uses zstd's seek table to decompress only the frames that hold the
  bytes asked for, keeping a few in an LRU;
* :class:`StreamSource` is the fallback for gzip and for zstd without a seek table: it decompresses
  forward and restarts from the beginning when asked to go back (never a temporary copy).
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import BinaryIO, Protocol

from .compression import SEEK_TABLE_FOOTER, SeekTable, parse_seek_table, seek_table_length
from .errors import CorruptCompressedStreamError, MissingDependencyError, TruncatedFileError

_WINDOW = 64 * 1024
_STREAM_CHUNK = 1 << 20


class Source(Protocol):
    """Decompressed bytes of a blend file, read at any offset."""

    @property
    def random_access(self) -> bool:
        """True when reading backwards is cheap (plain and seekable zstd files)."""
        ...

    @property
    def index_window(self) -> int:
        """How many bytes the block-index walk reads at a time."""
        ...

    @property
    def size(self) -> int | None:
        """Decompressed size when known without reading it all, else None."""
        ...

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset``; fewer only at the end of the data."""
        ...

    def close(self) -> None: ...


class PlainSource:
    """An uncompressed file, read through a 64 KiB window."""

    random_access = True
    index_window = 256 * 1024

    def __init__(self, fileobj: BinaryIO) -> None:
        self._f = fileobj
        self._size = os.fstat(fileobj.fileno()).st_size
        self._win_start = 0
        self._win = b""

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, size: int) -> bytes:
        if offset >= self._size or size <= 0:
            return b""
        end = offset + size
        win_end = self._win_start + len(self._win)
        if self._win_start <= offset and end <= win_end:
            return self._win[offset - self._win_start : end - self._win_start]
        self._f.seek(offset)
        if size >= _WINDOW:
            return self._f.read(size)
        self._win_start = offset
        self._win = self._f.read(_WINDOW)
        return self._win[:size]

    def close(self) -> None:
        self._f.close()


def _zstandard() -> object:
    try:
        import zstandard
    except ImportError as exc:  # pragma: no cover - zstandard is a hard dependency
        raise MissingDependencyError("the file is zstd-compressed and the 'zstandard' package is missing") from exc
    return zstandard


class SeekableZstdSource:
    """A zstd file with a seek table: only the frames that hold what is read are decompressed."""

    random_access = True
    # Small: frames stay in the LRU, so a small read costs a slice, and a large one would
    # decompress frames past a big block that the index walk is about to skip.
    index_window = 4096

    def __init__(self, fileobj: BinaryIO, table: SeekTable, cache_frames: int = 8) -> None:
        import zstandard

        self._f = fileobj
        self._table = table
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_frames = cache_frames
        self._dctx = zstandard.ZstdDecompressor()
        self._error = zstandard.ZstdError
        self.frames_decompressed = 0
        """How many frames were decompressed so far (the cost model of this source, for tests)."""

    @classmethod
    def open(cls, fileobj: BinaryIO) -> SeekableZstdSource | None:
        """A seekable source for ``fileobj``, or None when the file has no seek table."""
        _zstandard()
        file_size = os.fstat(fileobj.fileno()).st_size
        if file_size < SEEK_TABLE_FOOTER.size:
            return None
        fileobj.seek(file_size - SEEK_TABLE_FOOTER.size)
        length = seek_table_length(fileobj.read(SEEK_TABLE_FOOTER.size))
        if length is None:
            return None
        if length > file_size:
            raise CorruptCompressedStreamError("the zstd seek table claims to be larger than the file")
        fileobj.seek(file_size - length)
        table = parse_seek_table(fileobj.read(length), file_size)
        return cls(fileobj, table)

    @property
    def table(self) -> SeekTable:
        return self._table

    @property
    def size(self) -> int:
        return self._table.decompressed_size

    def _frame(self, index: int) -> bytes:
        data = self._cache.get(index)
        if data is not None:
            self._cache.move_to_end(index)
            return data
        table = self._table
        self._f.seek(table.compressed_offsets[index])
        raw = self._f.read(table.compressed_sizes[index])
        expected = table.decompressed_sizes[index]
        if len(raw) != table.compressed_sizes[index]:
            raise TruncatedFileError(f"zstd frame {index} is cut short")
        try:
            data = self._dctx.decompress(raw, max_output_size=expected) if expected else b""
        except self._error as exc:
            raise CorruptCompressedStreamError(f"zstd frame {index} does not decompress: {exc}") from exc
        if len(data) != expected:
            raise CorruptCompressedStreamError(
                f"zstd frame {index} decompresses to {len(data)} bytes, the seek table says {expected}"
            )
        self.frames_decompressed += 1
        self._cache[index] = data
        if len(self._cache) > self._cache_frames:
            self._cache.popitem(last=False)
        return data

    def read_at(self, offset: int, size: int) -> bytes:
        total = self._table.decompressed_size
        if offset >= total or size <= 0:
            return b""
        end = min(offset + size, total)
        index = self._table.frame_at(offset)
        parts: list[bytes] = []
        pos = offset
        while pos < end:
            start = self._table.decompressed_offsets[index]
            frame = self._frame(index)
            parts.append(frame[pos - start : end - start])
            pos = start + len(frame)
            index += 1
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        self._cache.clear()
        self._f.close()


class StreamSource:
    """Forward-only decompression, restarted from the start for a backward read.

    Used for gzip files and zstd files without a seek table. Reads close to each other are served
    from a window of the most recent decompressed bytes.
    """

    random_access = False
    index_window = 256 * 1024

    def __init__(self, opener: Callable[[], BinaryIO], errors: tuple[type[BaseException], ...]) -> None:
        self._opener = opener
        self._errors = errors
        self._stream = opener()
        self._pos = 0  # decompressed offset of the stream's read position
        self._win_start = 0
        self._win = b""
        self.restarts = 0

    @property
    def size(self) -> int | None:
        return None

    def _read(self, size: int) -> bytes:
        try:
            data = self._stream.read(size)
        except EOFError as exc:
            raise TruncatedFileError("the compressed stream ends before its end marker") from exc
        except self._errors as exc:
            raise CorruptCompressedStreamError(f"the compressed stream is damaged: {exc}") from exc
        self._pos += len(data)
        return data

    def _read_up_to(self, want: int) -> bytes:
        chunks: list[bytes] = []
        got = 0
        while got < want:
            chunk = self._read(want - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def read_at(self, offset: int, size: int) -> bytes:
        if size <= 0:
            return b""
        end = offset + size
        win_end = self._win_start + len(self._win)
        if self._win_start <= offset and end <= win_end:
            return self._win[offset - self._win_start : end - self._win_start]
        if self._win_start <= offset <= win_end and self._pos == win_end:
            # The read starts inside the window and runs past it: keep going forward, no restart.
            head = self._win[offset - self._win_start :]
            need = max(size, _WINDOW) - len(head)
            tail = self._read_up_to(need)
            data = head + tail
            self._win_start, self._win = offset, data
            return data[:size]
        if offset < self._pos:
            self._stream.close()
            self._stream = self._opener()
            self._pos = 0
            self.restarts += 1
        while self._pos < offset:
            if not self._read(min(_STREAM_CHUNK, offset - self._pos)):
                return b""
        data = self._read_up_to(max(size, _WINDOW))
        self._win_start = offset
        self._win = data
        return data[:size]

    def close(self) -> None:
        self._stream.close()


def open_gzip(path: str | os.PathLike[str]) -> StreamSource:
    def opener() -> BinaryIO:
        return gzip.GzipFile(path, "rb")  # type: ignore[return-value]  # a BinaryIO in all but name

    return StreamSource(opener, (gzip.BadGzipFile, zlib.error, OSError))


def open_zstd_stream(path: str | os.PathLike[str]) -> StreamSource:
    import zstandard

    def opener() -> BinaryIO:
        raw = open(path, "rb")  # noqa: SIM115 - owned by the reader, closed with it
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=True)
        return io.BufferedReader(reader, buffer_size=_STREAM_CHUNK)

    return StreamSource(opener, (zstandard.ZstdError, OSError))


__all__ = ["PlainSource", "SeekableZstdSource", "Source", "StreamSource", "open_gzip", "open_zstd_stream"]
