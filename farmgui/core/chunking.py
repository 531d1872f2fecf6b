"""Pure rules for how many frames to hand an agent, and in which order frames are rendered.

Agents keep one Blender per task alive across chunks, so start-up is paid once per task per agent
whatever the chunk size. What chunk size still trades is request overhead against how evenly the
agents finish: an agent can at worst finish one chunk after the others. So chunks are a fraction of
the time the farm still needs for the task (never above ``max_chunk_s``), shrinking to one frame
at the end, and the first chunk on an agent is one frame, to measure it before trusting it with more.
An agent asking ahead is topped up to a chunk. (Who gets the very last frames, and end-of-task
duplicates, are the scheduler's: they need every agent's queue, not just the asking one's.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChunkPolicy:
    """Knobs of the adaptive strategy (defaults measured with ``benchmarks/scheduler.py``)."""

    min_chunk_s: float = 2.0
    """Below this much work a round trip to the manager would start to show."""
    max_chunk_s: float = 120.0
    """Above this an agent that dies or slows down holds too much of the shot."""
    share_of_remaining: float = 0.25
    """Chunk work as a share of the farm's remaining time for the task: the end-of-task imbalance."""
    fixed_frames: int | None = None
    """``fixed:N``: always N frames (Flamenco/Deadline style), no adaptation."""
    split_evenly: bool = False
    """``static``: the range split evenly over the agents there at the start, one share each (a baseline
    for the benchmark, not a strategy to use: see ``even_share_frames``)."""


def adaptive_chunk_frames(
    policy: ChunkPolicy,
    seconds_per_frame: float | None,
    remaining_frames: int,
    farm_frames_per_second: float,
    queued_frames: int = 0,
) -> int:
    """How many frames to give one agent now (0: it has enough queued).

    ``seconds_per_frame`` is this agent's measured time on this task (None before its first frame);
    ``farm_frames_per_second`` is the whole farm's measured throughput on the task; ``queued_frames``
    what the agent still holds: it is topped up to a chunk, not given one more, so that at the end of
    a task the last frames are not queued behind slow agents' frames.
    """
    if remaining_frames <= 0:
        return 0
    if policy.fixed_frames is not None:
        return min(policy.fixed_frames, remaining_frames)
    if seconds_per_frame is None or seconds_per_frame <= 0 or farm_frames_per_second <= 0:
        return 1
    farm_time_left = remaining_frames / farm_frames_per_second
    target = min(policy.max_chunk_s, max(policy.min_chunk_s, policy.share_of_remaining * farm_time_left))
    frames = max(1, math.floor(target / seconds_per_frame))
    # Never more than this agent's fair share of what is left, so the others are not starved.
    fair = max(1, math.ceil(remaining_frames * (1 / seconds_per_frame) / farm_frames_per_second))
    return max(0, min(frames, fair, remaining_frames) - max(0, queued_frames))


def even_share_frames(remaining_frames: int, agents_without_work: int) -> int:
    """``static``: an even share of what is left for each agent that holds none of it yet.

    The agents there at the start each get one contiguous share; a later agent gets nothing unless
    frames come back (a lost agent's), which are then shared out the same way.
    """
    if remaining_frames <= 0:
        return 0
    return math.ceil(remaining_frames / max(1, agents_without_work))


def preview_first_order(frames: Sequence[int]) -> list[int]:
    """First, last, middle, then halving the gaps: a whole shot can be reviewed early."""
    if len(frames) <= 2:
        return list(frames)
    order = [0, len(frames) - 1]
    seen = {0, len(frames) - 1}
    gaps = [(0, len(frames) - 1)]
    while gaps:
        next_gaps = []
        for lo, hi in gaps:
            if hi - lo < 2:
                continue
            mid = (lo + hi) // 2
            if mid not in seen:
                seen.add(mid)
                order.append(mid)
            next_gaps += [(lo, mid), (mid, hi)]
        gaps = next_gaps
    return [frames[i] for i in order]
