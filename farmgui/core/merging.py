"""The merge stage of a task: frames -> the deliverable (video, or a zip of the frames + a preview)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from blendfile import RenderOutputType

from .merge import MergeError, PreviewUnavailableError, merge_video, preview_mp4, resolve_format, zip_frames

if TYPE_CHECKING:
    from pathlib import Path

    from .models import RenderTask
    from .service import FarmService

log = logging.getLogger(__name__)

# Blender's AVI outputs are gone in 5.x; the farm delivers them as FFmpeg writes them.
_AVI = {RenderOutputType.AVI_JPEG: ("AVI", "MPEG4"), RenderOutputType.AVI_RAW: ("AVI", "FFV1")}


def merge_task(service: FarmService, task_id: str, cancel: threading.Event) -> Path:
    """Build the task's result from its frames; returns the file the download endpoint serves."""
    task, frames = service.merge_inputs(task_id)
    if not frames:
        raise MergeError("no finished frames to merge")
    out_dir = service.storage.task_dir(task_id)
    fps = task.fps_numerator or 24
    fps_base = task.fps_base or 1.0

    def report(low: float, high: float) -> Callable[[float], None]:
        return lambda value: service.set_merge_progress(task_id, low + (high - low) * value)

    if task.tiles:
        return _stitch(task, frames, out_dir)

    if task.output_type is RenderOutputType.FFMPEG or task.output_type in _AVI:
        container, codec = _AVI.get(task.output_type, (task.container or "MKV", task.codec or "H264"))
        extension = resolve_format(container, codec).container.extension
        result = merge_video(
            frames,
            out_dir / f"result{extension}",
            fps,
            container,
            codec,
            fps_base=fps_base,
            progress=report(0.0, 1.0),
            cancel=cancel,
        )
        for note in result.notes:
            log.info("task %s: %s", task_id, note)
        return result.output
    archive = zip_frames(frames, out_dir / "frames.zip", progress=report(0.0, 0.5), cancel=cancel)
    try:
        preview_mp4(frames, out_dir / "preview.mp4", fps, fps_base=fps_base, progress=report(0.5, 1.0), cancel=cancel)
    except PreviewUnavailableError as exc:
        log.info("task %s: %s", task_id, exc)  # the frames are the result; a preview is a courtesy
    return archive


def _stitch(task: RenderTask, tile_files: list[Path], out_dir: Path) -> Path:
    """A tiled still: its tiles (every one done, in tile order) pasted into the one image delivered."""
    from .tiles import plan_tiles, stitch_tiles, stitched_extension

    width, height = task.resolution_x or 0, task.resolution_y or 0
    plan = plan_tiles(width, height, task.tiles or 1, task.tile_overlap)
    if len(tile_files) != len(plan):
        raise MergeError(f"{len(tile_files)} of {len(plan)} tiles were rendered")
    output_type = (task.output_type or RenderOutputType.PNG).value
    out = out_dir / f"result{stitched_extension(output_type)}"
    return stitch_tiles(plan, dict(enumerate(tile_files)), width, height, out, output_type)
