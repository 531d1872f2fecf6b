"""Finding the Blender installations an agent can render with, and picking one for a file.

Two kinds exist: a Blender executable, and the ``bpy`` module importable in some Python (``pip install bpy``
gives a PC with no Blender one). Each candidate is probed once for its exact version, in a subprocess with a
timeout, and the answer is kept in a small JSON cache keyed by the file's path, mtime and size, so an agent
restart does not start every Blender again (``blender --version`` takes ~0.4 s, ``import bpy`` ~0.7 s).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Literal

log = logging.getLogger(__name__)

InstallKind = Literal["executable", "bpy"]
Version = tuple[int, int, int]

PROBE_TIMEOUT_S = 60.0
"""``import bpy`` on a cold disk can take many seconds; a hung probe must not hang the agent."""
CACHE_FILE = "blender-installs.json"
_CACHE_FORMAT = 1
_BPY_MARKER = "FRAMEHERD-BPY"
# "Blender 3.4.1", "Blender 4.2.3 LTS", "Blender 4.3.0 Alpha", "Blender 2.79 (sub 0)"
_VERSION_LINE = re.compile(r"^\s*Blender\s+(\d+)\.(\d+)(?:\.(\d+))?(?:\s*\(sub\s+(\d+)\))?(.*)$")
_BPY_PROBE = (
    "import bpy, sys\n"
    f"print({_BPY_MARKER!r}, '.'.join(map(str, bpy.app.version)), bpy.app.version_string, sep='\\t')\n"
    "sys.stdout.flush()\n"
)


@dataclass(frozen=True, slots=True)
class BlenderInstall:
    """One Blender the agent can run: an executable, or a Python interpreter that can ``import bpy``."""

    kind: InstallKind
    path: Path
    """The executable, or for ``bpy`` the Python interpreter to run the driver with."""
    version: Version
    version_string: str
    """As Blender says it, e.g. ``"3.4.1"`` or ``"4.2.3 LTS"``."""

    @property
    def major_minor(self) -> tuple[int, int]:
        return self.version[0], self.version[1]

    def describe(self) -> str:
        what = "Blender" if self.kind == "executable" else "bpy module in"
        return f"{what} {self.version_string} ({self.path})"


@dataclass(frozen=True, slots=True)
class BlenderChoice:
    """The Blender picked for a file, or ``None`` with the reason none fits."""

    install: BlenderInstall | None
    reason: str


# --- version strings ----------------------------------------------------------------------------------------


def parse_version_output(text: str) -> tuple[Version, str] | None:
    """The version in ``blender --version`` output: its first ``Blender X.Y[.Z]`` line, skipping any noise
    (warnings about the display or colour management can come first)."""
    for line in text.splitlines():
        m = _VERSION_LINE.match(line)
        if m is None:
            continue
        major, minor = int(m.group(1)), int(m.group(2))
        patch = int(m.group(3) or m.group(4) or 0)
        tail = m.group(5).strip()
        # Keep words like "LTS" / "Alpha", not "(hash ...)" build noise some builds print on the same line.
        suffix = tail if tail and not tail.startswith("(") else ""
        shown = f"{major}.{minor}.{patch}" if m.group(3) or not m.group(4) else f"{major}.{minor} (sub {patch})"
        return (major, minor, patch), f"{shown} {suffix}".strip()
    return None


def parse_file_version(file_version: str | int | Sequence[int]) -> tuple[int, int]:
    """A file's Blender version as (major, minor) from ``"5.0"``, ``"4.2.1"``, ``402`` (the header's
    ``major * 100 + minor``) or a tuple."""
    if isinstance(file_version, int):
        return file_version // 100, file_version % 100
    if isinstance(file_version, str):
        parts = file_version.strip().split(".")
        try:
            return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
        except ValueError:
            raise ValueError(f"not a Blender version: {file_version!r}") from None
    if len(file_version) < 2:
        raise ValueError(f"not a Blender version: {file_version!r}")
    return int(file_version[0]), int(file_version[1])


# --- choosing -----------------------------------------------------------------------------------------------


def _preference(install: BlenderInstall) -> tuple[int, int, int, int]:
    # Newest patch first; between equals, an executable over the bpy module (a separate install is what an
    # operator deliberately put there, and it does not share the agent's Python).
    return (-install.version[0], -install.version[1], -install.version[2], 0 if install.kind == "executable" else 1)


def select_blender(installs: Iterable[BlenderInstall], file_version: str | int | Sequence[int]) -> BlenderChoice:
    """Pick the Blender for a file: the same major.minor (newest patch), else the nearest newer version.

    Never an older one: Blender cannot read files from a newer major version at all (3.4 says "not a blend
    file" for a 5.0 file), and within a major version an older minor release silently drops what it does not
    know. A file from an older version is fine in a newer Blender (versioning code upgrades it).
    """
    wanted = parse_file_version(file_version)
    pool = list(installs)
    same = sorted((i for i in pool if i.major_minor == wanted), key=_preference)
    if same:
        return BlenderChoice(same[0], f"same version {wanted[0]}.{wanted[1]} as the file")
    newer = [i for i in pool if i.major_minor > wanted]
    if newer:
        # Nearest newer major.minor, and within it the newest patch.
        nearest = min(i.major_minor for i in newer)
        best = sorted((i for i in newer if i.major_minor == nearest), key=_preference)[0]
        return BlenderChoice(best, f"no Blender {wanted[0]}.{wanted[1]}; {best.version_string} is the nearest newer")
    if not pool:
        return BlenderChoice(None, "no Blender installation found on this agent")
    have = ", ".join(sorted({i.version_string for i in pool}))
    return BlenderChoice(
        None,
        f"the file is from Blender {wanted[0]}.{wanted[1]}, newer than every Blender here ({have}); "
        "an older Blender cannot open it",
    )


def choose_blender(
    installs: Iterable[BlenderInstall], file_version: str | int | Sequence[int]
) -> BlenderInstall | None:
    """:func:`select_blender` without the reason: the install, or ``None`` when none may open the file."""
    return select_blender(installs, file_version).install


# --- where to look ------------------------------------------------------------------------------------------


def default_search_globs(
    platform: str | None = None, home: Path | None = None, env: Mapping[str, str] | None = None
) -> list[str]:
    """The usual install places of Blender on this platform (``sys.platform`` values), as glob patterns."""
    platform = platform or sys.platform
    home = home or Path.home()
    env = os.environ if env is None else env
    if platform.startswith("win"):
        win = PureWindowsPath  # also when asked on another OS (tests), so the patterns read as on Windows
        roots = {env.get("ProgramFiles", r"C:\Program Files"), r"C:\Program Files"}
        patterns = [str(win(root, "Blender Foundation", "Blender*", "blender.exe")) for root in sorted(roots)]
        x86 = env.get("ProgramFiles(x86)", r"C:\Program Files (x86)")
        patterns.append(str(win(x86, "Steam", "steamapps", "common", "Blender", "blender.exe")))
        if "LOCALAPPDATA" in env:
            patterns.append(str(win(env["LOCALAPPDATA"], "Programs", "Blender Foundation", "Blender*", "blender.exe")))
        patterns.append(str(win(home, "blender*", "blender.exe")))
        return patterns
    if platform == "darwin":
        return [
            "/Applications/Blender*.app/Contents/MacOS/Blender",
            str(home / "Applications" / "Blender*.app" / "Contents" / "MacOS" / "Blender"),
        ]
    return [
        "/opt/blender*/blender",
        "/opt/blender/*/blender",
        "/usr/local/blender*/blender",
        "/usr/local/bin/blender",
        "/usr/bin/blender",
        "/snap/bin/blender",
        "/var/lib/flatpak/exports/bin/org.blender.Blender",
        str(home / ".local/share/flatpak/exports/bin/org.blender.Blender"),
        str(home / "blender*" / "blender"),
        str(home / "Applications" / "blender*" / "blender"),
        str(home / ".steam/steam/steamapps/common/Blender/blender"),
    ]


def _path_candidates(env: Mapping[str, str]) -> list[Path]:
    """Every ``blender`` on PATH, not only the first (``shutil.which`` stops at one)."""
    names = ("blender.exe", "blender") if sys.platform.startswith("win") else ("blender",)
    found: list[Path] = []
    for folder in env.get("PATH", "").split(os.pathsep):
        for name in names:
            if folder and (candidate := Path(folder) / name).is_file() and os.access(candidate, os.X_OK):
                found.append(candidate)
    return found


def _executable_in(path: Path) -> Path:
    """``--blender /opt/blender-4.2`` means the executable in that folder (or in that macOS app bundle)."""
    if not path.is_dir():
        return path
    for name in ("blender", "blender.exe", "Contents/MacOS/Blender"):
        if (path / name).is_file():
            return path / name
    return path


def _glob_candidates(patterns: Iterable[str]) -> list[Path]:
    found: list[Path] = []
    for pattern in patterns:
        # Sorted, reversed: "blender-4.2" before "blender-3.6", so the newest come first in listings.
        # glob.glob, not Path.glob: the patterns are absolute and have wildcards in folder names.
        for match in sorted(glob.glob(os.path.expanduser(pattern)), reverse=True):  # noqa: PTH207, PTH111
            path = Path(match)
            if path.is_file() and os.access(path, os.X_OK):
                found.append(path)
    return found


# --- the cache ----------------------------------------------------------------------------------------------


class ProbeCache:
    """``{key: {"mtime_ns", "size", "version", "version_string"}}`` in one JSON file.

    A key is the kind and the resolved path of what was probed (the executable, or the bpy module's file),
    so replacing Blender in place (new mtime or size) probes it again. A damaged cache is ignored, not fatal.
    """

    def __init__(self, cache_dir: Path | None) -> None:
        self.path = cache_dir / CACHE_FILE if cache_dir is not None else None
        self._entries: dict[str, dict[str, object]] = {}
        self._dirty = False
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if isinstance(data, dict) and data.get("format") == _CACHE_FORMAT:
                    entries = data.get("entries")
                    if isinstance(entries, dict):
                        self._entries = entries
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable Blender cache %s: %s", self.path, exc)

    @staticmethod
    def _stat(path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def get(self, kind: InstallKind, path: Path) -> tuple[Version, str] | None:
        entry = self._entries.get(f"{kind}:{path}")
        stat = self._stat(path)
        if entry is None or stat is None or (entry.get("mtime_ns"), entry.get("size")) != stat:
            return None
        version = entry.get("version")
        text = entry.get("version_string")
        if not (isinstance(version, list) and len(version) == 3 and all(isinstance(v, int) for v in version)):
            return None
        if not isinstance(text, str):
            return None
        return (version[0], version[1], version[2]), text

    def put(self, kind: InstallKind, path: Path, version: Version, text: str) -> None:
        stat = self._stat(path)
        if stat is None:
            return
        self._entries[f"{kind}:{path}"] = {
            "mtime_ns": stat[0],
            "size": stat[1],
            "version": list(version),
            "version_string": text,
        }
        self._dirty = True

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"format": _CACHE_FORMAT, "entries": self._entries}, indent=1), "utf-8")
            tmp.replace(self.path)  # atomic: two agents on one PC never read half a file
            self._dirty = False
        except OSError as exc:
            log.warning("could not write the Blender cache %s: %s", self.path, exc)


# --- probing ------------------------------------------------------------------------------------------------


def _run(argv: list[str], timeout: float) -> str | None:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("probe %s failed: %s", argv[0], exc)
        return None
    if done.returncode != 0:
        log.info("probe %s exited with %s: %s", argv[0], done.returncode, done.stderr.strip()[-300:])
        return None
    return done.stdout


def probe_executable(path: Path, timeout: float = PROBE_TIMEOUT_S) -> tuple[Version, str] | None:
    """``blender --version`` of one executable, or ``None`` when it is not a Blender that runs."""
    out = _run([str(path), "--version"], timeout)
    return parse_version_output(out) if out is not None else None


def find_bpy_module(python: Path, timeout: float = PROBE_TIMEOUT_S) -> Path | None:
    """Where ``bpy`` would be imported from in this Python, without importing it (fast: no Blender start)."""
    if _same_file(python, Path(sys.executable)):
        spec = importlib.util.find_spec("bpy")
        return Path(spec.origin) if spec is not None and spec.origin else None
    out = _run(
        [str(python), "-c", "import importlib.util as u; s = u.find_spec('bpy'); print(s.origin if s else '')"],
        timeout,
    )
    text = (out or "").strip().splitlines()
    return Path(text[-1]) if text and text[-1] else None


def probe_bpy(python: Path, timeout: float = PROBE_TIMEOUT_S) -> tuple[Version, str] | None:
    """Import bpy in a fresh ``python`` and read ``bpy.app.version``: never in the agent's own process, where
    loading Blender would cost ~300 MB and could not be undone."""
    out = _run([str(python), "-c", _BPY_PROBE], timeout)
    for line in (out or "").splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0] == _BPY_MARKER:
            numbers = parts[1].split(".")
            if len(numbers) == 3 and all(n.isdigit() for n in numbers):
                return (int(numbers[0]), int(numbers[1]), int(numbers[2])), parts[2].strip()
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def find_blenders(
    explicit: Sequence[str | os.PathLike[str]] = (),
    *,
    env: Mapping[str, str] | None = None,
    search_globs: Sequence[str] | None = None,
    use_path: bool = True,
    include_bpy: bool = True,
    pythons: Sequence[str | os.PathLike[str]] = (),
    cache_dir: Path | None = None,
    timeout: float = PROBE_TIMEOUT_S,
) -> list[BlenderInstall]:
    """Every Blender installation this agent can use, each probed once (or read from the cache).

    Looks, in order, at ``explicit`` paths (``--blender``), the ``BLENDER`` variable, every ``blender`` on
    ``PATH``, ``search_globs`` (default: :func:`default_search_globs`), then with ``include_bpy`` the ``bpy``
    module in the agent's own interpreter and in ``pythons``. The same file found twice (a symlink on PATH to
    /opt/blender-4.2/blender) is listed once, under the path it was first found by. Paths that are not a
    working Blender are left out with a log message (a warning for explicit ones: the user asked for them).
    """
    env = os.environ if env is None else env
    cache = ProbeCache(cache_dir)
    installs: list[BlenderInstall] = []
    seen: set[str] = set()

    candidates: list[tuple[Path, bool]] = [(Path(p), True) for p in explicit]
    if env.get("BLENDER"):
        candidates.append((Path(env["BLENDER"]), True))
    if use_path:
        candidates += [(p, False) for p in _path_candidates(env)]
    globs = default_search_globs(env=env) if search_globs is None else search_globs
    candidates += [(p, False) for p in _glob_candidates(globs)]

    for path, asked in candidates:
        path = _executable_in(path.expanduser())
        try:
            resolved = path.resolve(strict=True)
        except OSError:
            (log.warning if asked else log.debug)("no Blender at %s: the file does not exist", path)
            continue
        if str(resolved) in seen:
            continue
        seen.add(str(resolved))
        found = cache.get("executable", resolved)
        if found is None:
            found = probe_executable(path, timeout)
            if found is not None:
                cache.put("executable", resolved, *found)
        if found is None:
            (log.warning if asked else log.info)("%s is not a Blender that runs (--version failed)", path)
            continue
        installs.append(BlenderInstall("executable", path, found[0], found[1]))

    if include_bpy:
        python_paths = [Path(sys.executable), *(Path(p) for p in pythons)]
        for python in python_paths:
            with contextlib.suppress(OSError):
                key = f"bpy-python:{python.resolve()}"
                if key in seen:
                    continue
                seen.add(key)
            module = find_bpy_module(python, timeout)
            if module is None:
                continue
            found = cache.get("bpy", module)
            if found is None:
                found = probe_bpy(python, timeout)
                if found is not None:
                    cache.put("bpy", module, *found)
            if found is None:
                log.warning("bpy is installed for %s but does not import", python)
                continue
            installs.append(BlenderInstall("bpy", python, found[0], found[1]))
    cache.save()
    return installs


__all__ = [
    "BlenderChoice",
    "BlenderInstall",
    "InstallKind",
    "ProbeCache",
    "Version",
    "choose_blender",
    "default_search_globs",
    "find_blenders",
    "find_bpy_module",
    "parse_file_version",
    "parse_version_output",
    "probe_bpy",
    "probe_executable",
    "select_blender",
]
