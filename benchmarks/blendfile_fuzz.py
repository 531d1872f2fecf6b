"""The long run of the ``blendfile`` fuzz test: only ``BlendFileError``, no input slower than 1 s.

Each input is one of ``tests/blendfile/fuzzing.py``'s seed files put through its ``mutate()``
(1-4 bit flips, interesting integers, negative lengths, cuts and insertions aimed at block
headers, the SDNA and the scene blocks). The reader then does what the farm does with a dropped
file: the ``info`` summary (every scene and the current one), then, on a fresh open, the text
blocks registered to run and the scripted drivers. Anything other than a ``BlendFileError``
(or an error that does not name the file) is a failure, and so is an input that takes longer
than ``--limit`` seconds (an input still running after ``--hang`` seconds is interrupted).

Input ``i`` of a run is fully described by its seed file and a 64-bit mutation seed, both printed
for every failure and every slow input; ``--replay NAME:SEED`` reads that one input again (and
``--save PATH`` keeps its bytes).

    python benchmarks/blendfile_fuzz.py [--count N] [--seed S] [--limit 1.0] [--top 10]
    python benchmarks/blendfile_fuzz.py --replay bat/basic_file.blend:1234567 [--save mutant.blend]

Exit status 1 when anything failed or was slow.
"""

from __future__ import annotations

import argparse
import collections
import heapq
import os
import pathlib
import platform
import random
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from blendfile import BlendFile, BlendFileError, autorun_scripts, python_drivers  # noqa: E402
from tests.blendfile.fuzzing import SEEDS, Seed, load_seed, mutate, read_everything  # noqa: E402


class Hang(Exception):
    """Raised by the alarm in an input that runs past ``--hang`` seconds."""


@dataclass(frozen=True)
class Outcome:
    name: str
    mutation_seed: int
    size: int
    seconds: float
    error: str
    """The exception class (``"ok"`` when nothing was raised)."""
    failure: str | None
    """Why this input fails the run (a non-BlendFileError, an error without the path, a hang)."""


def run_one(seeds: dict[str, Seed], name: str, mutation_seed: int, path: pathlib.Path, hang_s: float) -> Outcome:
    data = mutate(seeds[name], random.Random(mutation_seed))
    path.write_bytes(data)
    error, failure = "ok", None
    signal.setitimer(signal.ITIMER_REAL, hang_s)
    start = time.perf_counter()
    try:
        # The file_info pass may stop at the first error; the scripts pass then still gets its
        # own chance on a file whose scenes are fine but whose text or driver blocks are not.
        try:
            read_everything(path)
        except BlendFileError as exc:
            error = type(exc).__name__
            if str(path) not in str(exc):
                failure = f"{error} does not name the file: {exc}"
        with BlendFile.open(path) as bfile:
            autorun_scripts(bfile)
            python_drivers(bfile)
    except BlendFileError as exc:
        if error == "ok":
            error = type(exc).__name__
        if failure is None and str(path) not in str(exc):
            failure = f"{type(exc).__name__} does not name the file: {exc}"
    except Hang:
        error, failure = "Hang", f"still running after {hang_s:g} s"
    except Exception as exc:  # the point of the run: anything else is a bug, recorded with its trace
        error = type(exc).__name__
        failure = "".join(traceback.format_exception(exc)[-6:]).rstrip()
    finally:
        seconds = time.perf_counter() - start
        signal.setitimer(signal.ITIMER_REAL, 0)
    return Outcome(name, mutation_seed, len(data), seconds, error, failure)


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise Hang


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=100_000, help="mutated inputs (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="master seed of the run (default 0)")
    parser.add_argument("--limit", type=float, default=1.0, help="an input slower than this fails (s)")
    parser.add_argument("--hang", type=float, default=30.0, help="interrupt an input after this long (s)")
    parser.add_argument("--top", type=int, default=10, help="how many of the slowest inputs to list")
    parser.add_argument("--progress", type=float, default=30.0, help="print progress every N seconds")
    parser.add_argument("--replay", metavar="NAME:SEED", help="read one input again and show what it raises")
    parser.add_argument("--save", type=pathlib.Path, help="with --replay: keep the mutated bytes here")
    return parser.parse_args(argv)


def replay(spec: str, save: pathlib.Path | None, hang_s: float) -> int:
    name, _, seed_text = spec.rpartition(":")
    seeds = {name: load_seed(name)}
    with tempfile.TemporaryDirectory(prefix="blendfuzz-") as tmp:
        path = save or pathlib.Path(tmp) / "mutant.blend"
        signal.signal(signal.SIGALRM, _alarm)
        outcome = run_one(seeds, name, int(seed_text), path, hang_s)
        print(f"{name} mutated with seed {seed_text}: {outcome.size} bytes -> {path}")
        print(f"{outcome.error} after {outcome.seconds:.3f} s")
        if outcome.failure is not None:
            print(outcome.failure)
            return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replay:
        return replay(args.replay, args.save, args.hang)
    seeds = {name: load_seed(name) for name in SEEDS}
    master = random.Random(args.seed)
    counts: collections.Counter[str] = collections.Counter()
    per_seed: dict[str, collections.Counter[str]] = {name: collections.Counter() for name in SEEDS}
    slowest: list[tuple[float, int, Outcome]] = []
    failures: list[Outcome] = []
    slow: list[Outcome] = []
    signal.signal(signal.SIGALRM, _alarm)
    print(
        f"blendfile fuzz: {args.count} inputs, seed {args.seed}, limit {args.limit:g} s, "
        f"{len(SEEDS)} seed files, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
        flush=True,
    )
    started = last_report = time.perf_counter()
    # tmpfs when there is one: the run measures the reader, not the disk.
    shm = pathlib.Path("/dev/shm")  # noqa: S108 - a private directory is made inside it
    tmp_root = str(shm) if shm.is_dir() else None
    with tempfile.TemporaryDirectory(prefix="blendfuzz-", dir=tmp_root) as tmp:
        path = pathlib.Path(tmp) / "mutant.blend"
        for i in range(args.count):
            name = master.choice(SEEDS)
            mutation_seed = master.getrandbits(64)
            outcome = run_one(seeds, name, mutation_seed, path, args.hang)
            counts[outcome.error] += 1
            per_seed[name][outcome.error] += 1
            item = (outcome.seconds, i, outcome)
            if len(slowest) < args.top:
                heapq.heappush(slowest, item)
            else:
                heapq.heappushpop(slowest, item)
            if outcome.failure is not None:
                failures.append(outcome)
                print(f"FAIL {name}:{mutation_seed} {outcome.error}\n{outcome.failure}", flush=True)
            elif outcome.seconds > args.limit:
                slow.append(outcome)
                print(f"SLOW {name}:{mutation_seed} {outcome.seconds:.3f} s ({outcome.error})", flush=True)
            now = time.perf_counter()
            if now - last_report >= args.progress:
                last_report = now
                rate = (i + 1) / (now - started)
                print(f"  {i + 1}/{args.count} inputs, {rate:.0f}/s, {len(failures)} failures", flush=True)
    elapsed = time.perf_counter() - started
    print(f"\n{args.count} inputs in {elapsed:.1f} s ({args.count / elapsed:.0f} inputs/s)")
    print("\noutcomes by exception class:")
    for error, n in counts.most_common():
        print(f"  {error:32} {n:8d}  {100 * n / args.count:5.1f} %")
    print("\noutcomes by seed file (ok / errors):")
    for name, by_error in per_seed.items():
        total = sum(by_error.values())
        print(f"  {name:56} {by_error['ok']:6d} / {total - by_error['ok']:6d}")
    print(f"\nslowest {len(slowest)} inputs (replay with --replay NAME:SEED):")
    for seconds, _, outcome in sorted(slowest, reverse=True):
        where = f"{outcome.name}:{outcome.mutation_seed}"
        print(f"  {seconds * 1000:8.1f} ms  {outcome.size:8d} bytes  {outcome.error:28} {where}")
    print(f"\nnon-BlendFileError (or unnamed file) failures: {len(failures)}")
    for outcome in failures[:20]:
        print(f"  {outcome.name}:{outcome.mutation_seed} {outcome.error}")
    print(f"inputs slower than {args.limit:g} s: {len(slow)}")
    for outcome in slow[:20]:
        print(f"  {outcome.name}:{outcome.mutation_seed} {outcome.seconds:.3f} s")
    return 1 if failures or slow else 0


if __name__ == "__main__":
    sys.exit(main())
