"""The output parser on real captured Blender output (tests/data/blender-logs/) and on single real lines."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from agent.output import (
    AutoExecSkipped,
    BlenderError,
    BlenderQuit,
    BlenderWarning,
    CrashReport,
    EeveeProgress,
    Event,
    Fault,
    FrameFinished,
    FrameSaved,
    FrameStarted,
    ReadBlend,
    RenderStatus,
    SampleProgress,
    TileProgress,
    VideoFrameAppended,
    classify_fault,
    classify_message,
    parse_line,
    parse_lines,
    parse_time,
    progress_fraction,
    strip_log_prefix,
)

LOGS = Path(__file__).parent.parent / "data" / "blender-logs"


def events_of(name: str) -> list[Event]:
    return list(parse_lines((LOGS / name).read_text().splitlines()))


def fractions_by_frame(events: list[Event]) -> dict[int, list[float]]:
    """Progress per frame, the way the session tracks it: by the latest FrameStarted."""
    by_frame: dict[int, list[float]] = defaultdict(list)
    frame: int | None = None
    for event in events:
        if isinstance(event, FrameStarted):
            frame = event.frame
        fraction = progress_fraction(event)
        if fraction is not None and frame is not None:
            by_frame[frame].append(fraction)
    return dict(by_frame)


def test_every_captured_log_has_a_test() -> None:
    tested = {
        "blender-3.4.1-cycles-cli.txt",
        "blender-3.4.1-cycles-denoise-error.txt",
        "blender-3.4.1-eevee-headless.txt",
        "blender-3.4.1-opening-5.0-file.txt",
        "bpy-5.0.1-cycles-module.txt",
    }
    assert {p.name for p in LOGS.glob("*.txt")} == tested


def test_cycles_34_two_frames_progress_from_zero_to_one() -> None:
    events = events_of("blender-3.4.1-cycles-cli.txt")
    assert events[0] == ReadBlend("/tmp/job/ms34.blend")
    assert [e.frame for e in events if isinstance(e, FrameStarted)] == [1, 2]
    progress = fractions_by_frame(events)
    assert set(progress) == {1, 2}
    for fractions in progress.values():
        assert fractions[0] == 0.0
        assert fractions[-1] == 1.0
        assert fractions == sorted(fractions)
    samples = [e for e in events if isinstance(e, SampleProgress)]
    assert [(e.frame, e.sample, e.samples) for e in samples] == [(1, 0, 8), (1, 1, 8), (1, 8, 8)] * 1 + [
        (2, 0, 8),
        (2, 1, 8),
        (2, 8, 8),
    ]
    assert samples[1].remaining_s == 0.0
    assert [e.path for e in events if isinstance(e, FrameSaved)] == [
        "/tmp/job/log34/f_0001.png",
        "/tmp/job/log34/f_0002.png",
    ]
    assert [e for e in events if isinstance(e, FrameFinished)] == [FrameFinished(0.16, 0.11), FrameFinished(0.0, 0.0)]
    assert events[-1] == BlenderQuit()
    assert not [e for e in events if isinstance(e, BlenderError)]


def test_cycles_34_status_lines_keep_the_status_words_and_memory() -> None:
    events = events_of("blender-3.4.1-cycles-cli.txt")
    statuses = [e for e in events if isinstance(e, RenderStatus)]
    assert statuses[0] == RenderStatus(
        frame=1,
        text="Synchronizing object | Cube",
        elapsed_s=0.0,
        remaining_s=None,
        memory_mb=9.05,
        peak_memory_mb=10.83,
    )
    texts = {s.text for s in statuses}
    assert {"Updating Shaders", "Updating Scene BVH | Building BVH 0%", "Finished"} <= texts


def test_denoise_error_of_debians_34_is_a_classified_error_and_the_frame_never_finishes() -> None:
    events = events_of("blender-3.4.1-cycles-denoise-error.txt")
    errors = [e for e in events if isinstance(e, BlenderError)]
    assert errors == [BlenderError("Build without OpenImageDenoiser", Fault.DENOISER_UNAVAILABLE)]
    assert not [e for e in events if isinstance(e, FrameSaved | FrameFinished)]
    assert fractions_by_frame(events) == {}
    lines = (LOGS / "blender-3.4.1-cycles-denoise-error.txt").read_text().splitlines()
    assert classify_fault(lines, exit_code=1) is Fault.DENOISER_UNAVAILABLE


def test_eevee_headless_samples_and_egl_noise_is_not_an_error() -> None:
    events = events_of("blender-3.4.1-eevee-headless.txt")
    eevee = [e for e in events if isinstance(e, EeveeProgress)]
    assert [(e.sample, e.samples) for e in eevee] == [(1, 64), (26, 64), (51, 64), (64, 64)]
    progress = fractions_by_frame(events)
    assert progress[1][0] == pytest.approx(1 / 64)
    assert progress[1][-1] == 1.0
    assert not [e for e in events if isinstance(e, BlenderError)]
    assert FrameSaved("/tmp/job/logee/f_0001.png") in events
    assert FrameFinished(3.87, 0.11) in events


def test_34_opening_a_50_file_is_not_a_blend_file() -> None:
    events = events_of("blender-3.4.1-opening-5.0-file.txt")
    assert events == [
        ReadBlend("/tmp/job/b50.blend"),
        BlenderError(
            "Failed to read blend file '/tmp/job/b50.blend', not a blend file",
            Fault.NOT_A_BLEND_FILE,
            "/tmp/job/b50.blend",
        ),
        BlenderQuit(),
    ]
    lines = (LOGS / "blender-3.4.1-opening-5.0-file.txt").read_text().splitlines()
    assert classify_fault(lines, exit_code=1) is Fault.NOT_A_BLEND_FILE


def test_bpy_50_clog_lines() -> None:
    events = events_of("bpy-5.0.1-cycles-module.txt")
    assert events == [
        ReadBlend("/tmp/job/ms34.blend"),
        FrameSaved("/tmp/job/log50/f_0001.png"),
        FrameSaved("/tmp/job/log50/f_0002.png"),
    ]


# --- single lines, captured from Blender 3.4.1 and the bpy 5.0.1 module while building the agent -------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # bpy 5.0.1 render_stats handler texts (the driver forwards them)
        ("Mem: 2M | Sample 1/2", SampleProgress(None, 1, 2)),
        ("Remaining: 00:00.00 | Mem: 2M | Sample 1/2", SampleProgress(None, 1, 2, 0.0)),
        ("Mem: 0M | Synchronizing object | Cube", RenderStatus(None, "Synchronizing object | Cube", memory_mb=0.0)),
        ("Time: 00:00.22 (Saving: 00:00.09)", FrameFinished(0.22, 0.09)),
        # bpy 5.0.1 log lines
        (
            "00:00.443  cycles           | ERROR Image file '/tmp/fx/tex.png' does not exist.",
            BlenderError("Image file '/tmp/fx/tex.png' does not exist.", Fault.MISSING_FILE, "/tmp/fx/tex.png"),
        ),
        ('00:00.502  blend            | Read blend: "/tmp/fx/c50.blend"', ReadBlend("/tmp/fx/c50.blend")),
        (
            'Error: File format is not supported in file "/tmp/fx/notblend.blend"',
            BlenderError(
                'File format is not supported in file "/tmp/fx/notblend.blend"',
                Fault.NOT_A_BLEND_FILE,
                "/tmp/fx/notblend.blend",
            ),
        ),
        (
            'Error: Cannot read file "/tmp/fx/missing.blend": No such file or directory',
            BlenderError(
                'Cannot read file "/tmp/fx/missing.blend": No such file or directory',
                Fault.CANNOT_READ_FILE,
                "/tmp/fx/missing.blend",
            ),
        ),
        # Blender 3.4.1 lines
        (
            "Error: Cannot read file '/tmp/fx/nonexist.blend': No such file or directory",
            BlenderError(
                "Cannot read file '/tmp/fx/nonexist.blend': No such file or directory",
                Fault.CANNOT_READ_FILE,
                "/tmp/fx/nonexist.blend",
            ),
        ),
        (
            "scripts disabled for \"/tmp/fx/ae34.blend\", skipping 'autorun.py'",
            AutoExecSkipped("/tmp/fx/ae34.blend", "autorun.py"),
        ),
        # lines from the Blender sources (section 9.1 of the format notes)
        (
            "Fra:3 Mem:142.83M (Peak 150.02M) | Time:00:03.21 | Remaining:00:12.44 | Mem:35.41M, Peak:35.41M "
            "| Scene, ViewLayer | Rendered 2/4 Tiles, Sample 4/8",
            TileProgress(3, 2, 4, 4, 8, 12.44),
        ),
        ("Fra:1 Mem:1M (Peak 2M) | Time:01:02:03.50 | Rendering 3 / 16 samples", EeveeProgress(1, 3, 16)),
        ("Append frame 12", VideoFrameAppended(12)),
        ("00:01.000  render           | Video append frame 13", VideoFrameAppended(13)),
        ("00:01.000  render           | Rendering single frame (frame 7)", FrameStarted(7)),
        ("Writing: /tmp/scene.crash.txt", CrashReport("/tmp/scene.crash.txt")),
        ("00:01.000  blend            | WARNING Lib not found", BlenderWarning("Lib not found")),
        ("Warning: Path '/x/y.png' not found", BlenderWarning("Path '/x/y.png' not found")),
        ("Blender quit", BlenderQuit()),
        ("", None),
        ("EGL Error (0x3001): EGL_NOT_INITIALIZED", None),
        ("Managed to successfully fallback to surfaceless EGL rendering!", None),
    ],
)
def test_parse_line(line: str, expected: Event | None) -> None:
    assert parse_line(line) == expected


def test_tile_progress_without_samples_counts_finished_tiles() -> None:
    assert TileProgress(None, 3, 4).fraction == 0.75
    assert TileProgress(None, 1, 4, 8, 8).fraction == 0.25
    assert TileProgress(None, 4, 4, 8, 8).fraction == 1.0
    assert TileProgress(None, 0, 0).fraction == 0.0


def test_fractions_are_clipped() -> None:
    assert SampleProgress(None, 9, 8).fraction == 1.0
    assert SampleProgress(None, 1, 0).fraction == 0.0
    assert EeveeProgress(None, 0, 0).fraction == 0.0


@pytest.mark.parametrize(("text", "seconds"), [("00:00.16", 0.16), ("01:02.50", 62.5), ("1:00:00.00", 3600.0)])
def test_parse_time(text: str, seconds: float) -> None:
    assert parse_time(text) == pytest.approx(seconds)


def test_strip_log_prefix() -> None:
    assert strip_log_prefix("00:00.334  render           | Saved: 'x'") == ("Saved: 'x'", None)
    assert strip_log_prefix("01:00:00.334  cycles | ERROR boom") == ("boom", "ERROR")
    assert strip_log_prefix("Fra:1 Mem:1M (Peak 1M) | Time:00:00.00 | x") == (
        "Fra:1 Mem:1M (Peak 1M) | Time:00:00.00 | x",
        None,
    )


@pytest.mark.parametrize(
    ("message", "fault"),
    [
        ("CUDA error: Out of memory in cuMemAlloc", Fault.OUT_OF_MEMORY),
        ("System is out of GPU memory", Fault.OUT_OF_MEMORY),
        ("OptiX error: failed to create context", Fault.GPU_ERROR),
        ("No CUDA devices found", Fault.GPU_ERROR),
        ("Add-on not loaded: 'flip_fluids', cause: No module named 'flip_fluids'", Fault.MISSING_ADDON),
        ("Something else went wrong", Fault.RENDER_ERROR),
    ],
)
def test_classify_message(message: str, fault: Fault) -> None:
    assert classify_message(message) is fault


def test_classify_fault_from_exit_status_and_raw_lines() -> None:
    assert classify_fault([], exit_code=-11) is Fault.CRASH
    assert classify_fault([], exit_code=-9) is Fault.OUT_OF_MEMORY
    assert classify_fault([], exit_code=1) is Fault.CRASH
    assert classify_fault(["Error: weird"], exit_code=1) is Fault.RENDER_ERROR
    assert classify_fault(["CUDA error: Launch failed in cuCtxSynchronize"], exit_code=1) is Fault.GPU_ERROR
    assert classify_fault(["Writing: /tmp/x.crash.txt"], exit_code=-11) is Fault.CRASH


def test_a_full_disk_is_its_own_fault() -> None:
    from agent.output import Fault, classify_message

    text = (
        "Blender wrote no file for frame 3 (expected /w/f.png): the disk is full (No space left on device; 4 KiB free)"
    )
    assert classify_message(text) is Fault.DISK_FULL
    assert classify_message("write error: No space left on device") is Fault.DISK_FULL
