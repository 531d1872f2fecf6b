"""Colours that read on light and dark palettes: derived from the palette, or mid-tones that work on both."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette

FRAME_STATES = ("queued", "assigned", "rendering", "done", "failed")
"""The frame grid's states, in the order of their indexes in :func:`state_colours`."""

# Mid-luminance hues: >= 3:1 contrast (WCAG's for graphics) against a white base and a dark one (#232323)
# alike, so one set serves both palettes; tests/farmgui/test_window.py checks it.
_STATE_HUES = {
    "assigned": "#b8860b",
    "rendering": "#2f7fe0",
    "done": "#1f9d63",
    "failed": "#e5534b",
}


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightnessF() < 0.5


def mix(a: QColor, b: QColor, t: float) -> QColor:
    """``a`` moved ``t`` (0..1) of the way to ``b``."""
    return QColor.fromRgbF(
        a.redF() + (b.redF() - a.redF()) * t,
        a.greenF() + (b.greenF() - a.greenF()) * t,
        a.blueF() + (b.blueF() - a.blueF()) * t,
        1.0,
    )


def state_colours(palette: QPalette) -> list[QColor]:
    """One colour per entry of :data:`FRAME_STATES`, then one for a state this version does not know.

    Queued frames are a faint step from the background towards the text (light grey on light, dark grey
    on dark): the work still to do recedes, what is happening stands out.
    """
    base = palette.color(QPalette.ColorRole.Base)
    text = palette.color(QPalette.ColorRole.Text)
    queued = mix(base, text, 0.28)
    unknown = mix(base, text, 0.6)
    return [queued if s == "queued" else QColor(_STATE_HUES[s]) for s in FRAME_STATES] + [unknown]


def error_colour(palette: QPalette) -> QColor:
    """Red text that stays readable: darker on a light window, lighter on a dark one."""
    return QColor("#ff8a80") if is_dark(palette) else QColor("#c62828")
