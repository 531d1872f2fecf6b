"""Python a file would run when Blender opens it: text blocks registered to run, scripted drivers.

Blender runs a text block on load when its ``use_module`` ("Register") is on, which is the bit
``TXT_ISSCRIPT`` of ``Text.flags`` (``1 << 4`` in ``DNA_text_types.h``, the same value since 2.4x;
checked against files saved by Blender 3.4 and bpy 5.0.1, see ``tests/blendfile/test_scripts.py``).
It does so only with Python auto-exec on, which the farm turns off unless a task is trusted: these
functions let the control station say so before the file is sent.

Only the file's own text blocks are seen: a text linked from a library is stored as a placeholder
and its flags live in the library file.

Drivers of type "Scripted Expression" (``ChannelDriver.type == DRIVER_TYPE_PYTHON``) also need
auto-exec, unless the expression is simple enough for Blender's own evaluator (``frame / 10``);
which ones are is decided by Blender at run time, so every scripted expression is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import CorruptFileError

if TYPE_CHECKING:
    from .file import BlendFile

TXT_ISSCRIPT = 1 << 4
"""``Text.flags`` bit behind ``Text.use_module``: run this text block when the file is loaded."""
DRIVER_TYPE_PYTHON = 1
"""``ChannelDriver.type`` of a "Scripted Expression" driver (``eDriver_Types`` in DNA_anim_types.h)."""


@dataclass(frozen=True, slots=True)
class TextBlock:
    """A text datablock (code ``TX``) of the file."""

    name: str
    registered: bool
    """``use_module``: Blender runs it on load when Python auto-exec is on."""


def _text_blocks(bfile: BlendFile) -> list[TextBlock]:
    result = []
    for view in bfile.iter_structs(b"TX"):
        if view.dna.name != "Text":
            raise CorruptFileError(f"a TX block holds a {view.dna.name}, not a Text", bfile.path)
        result.append(TextBlock(view.id_name, bool(view.get_int("flags") & TXT_ISSCRIPT)))
    return result


def _python_drivers(bfile: BlendFile) -> list[str]:
    index = bfile.sdna.struct_index("ChannelDriver")
    if index is None:  # files before 2.50 keep drivers in IPO curves, which this reader does not decode
        return []
    expressions = []
    for block in bfile.blocks:
        if block.sdna_index == index and block.code == b"DATA":
            view = bfile.struct_view(block)
            if view.get_int("type") == DRIVER_TYPE_PYTHON:
                expressions.append(view.get_str("expression"))
    return expressions


def text_blocks(bfile: BlendFile) -> list[TextBlock]:
    """Every local text block in file order (Blender's: by name), with whether it runs on load."""
    return bfile.guarded(lambda: _text_blocks(bfile))


def autorun_scripts(bfile: BlendFile) -> list[str]:
    """Names of the text blocks registered to run when the file is opened (empty: none)."""
    return [t.name for t in text_blocks(bfile) if t.registered]


def python_drivers(bfile: BlendFile) -> list[str]:
    """The expressions of the file's "Scripted Expression" drivers, in file order."""
    return bfile.guarded(lambda: _python_drivers(bfile))


__all__ = ["DRIVER_TYPE_PYTHON", "TXT_ISSCRIPT", "TextBlock", "autorun_scripts", "python_drivers", "text_blocks"]
