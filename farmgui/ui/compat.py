"""A guard against a bug of the Qt bindings that would crash the window after a few thousand Qt calls.

PySide6 6.12.0 on Python 3.11 returns ``None`` from every Qt method that returns ``void`` without
taking a reference to it, so each such call (``QLabel.setText``, ``QWidget.update``, every
``QPainter.fillRect``...) drops ``None``'s reference count by one. It starts near 5,000; when it
reaches zero Python aborts ("none_dealloc: deallocating None"). Measured here: one paint of a
10,000-frame grid did it; a window refreshing at 2 Hz would do it within minutes. PySide6 6.11.3 has
no such bug, and from Python 3.12 on ``None`` is immortal, so there it is harmless.

Where the drop is measured, the counts of ``None``, ``True`` and ``False`` are raised by 2**40 once: what
Python 3.12 does for every interpreter (it makes them immortal). They are never freed anyway, so nothing
else changes. (``True``/``False`` too: a benchmark run with this version once ended in "bool_dealloc"
at interpreter exit.)
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QRect

_PROBE_CALLS = 64
_PAD = 1 << 40


def void_calls_leak_none() -> bool:
    """True when calling a ``void`` Qt method takes a reference from ``None`` (measured, not guessed)."""
    rect = QRect()
    before = sys.getrefcount(None)
    for _ in range(_PROBE_CALLS):
        rect.setWidth(1)
    return before - sys.getrefcount(None) >= _PROBE_CALLS * 3 // 4


def guard_none_refcount() -> bool:
    """Pad the singletons' reference counts where the bindings leak them; True when a pad was applied."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython" or not void_calls_leak_none():
        return False
    for singleton in (None, True, False):
        # CPython 3.11's PyObject starts with its Py_ssize_t reference count; id() is the object's address.
        count = ctypes.c_ssize_t.from_address(id(singleton))
        if count.value < _PAD:
            count.value += _PAD
    return True


NONE_GUARD_APPLIED = guard_none_refcount()
"""Whether this process needed (and got) the pad."""
