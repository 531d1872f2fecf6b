"""The window's icons: SVG files in the repository's ``resources/icons/`` (made for light and dark palettes)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PySide6.QtGui import QIcon

_HERE = Path(__file__).resolve().parent
_PACKAGED = _HERE.parent / "resources" / "icons"
"""Where an installed wheel has them (``farmgui.resources`` maps to ``resources/``)."""
_CHECKOUT = _HERE.parents[1] / "resources" / "icons"
"""Where a checkout (and an editable install) has them."""

APP_ICON = "frameherd"
AGENT_ICON = "agent"
"""The agent's own icon (its tray) when no state is known."""

_AGENT_STATE_ICONS = {
    "idle": "agent-idle",
    "rendering": "agent-rendering",
    "paused": "agent-paused",
    "offline": "agent-offline",
    "pending": "agent-offline",
    "unreachable": "agent-offline",
    "disabled": "agent-disabled",
    "unpaired": "agent-unpaired",
    "identity-mismatch": "agent-problem",
    "incompatible": "agent-problem",
}


def icons_dir() -> Path:
    return _PACKAGED if _PACKAGED.is_dir() else _CHECKOUT


def icon_path(name: str) -> Path:
    return icons_dir() / f"{name}.svg"


@cache
def icon(name: str) -> QIcon:
    """The named icon (an empty icon when the file is missing: a broken install loses pictures, not the window)."""
    path = icon_path(name)
    return QIcon(str(path)) if path.is_file() else QIcon()


def app_icon() -> QIcon:
    return icon(APP_ICON)


def agent_state_icon(state: str) -> QIcon:
    """The icon of an agent row's state (see :class:`farmgui.core.snapshots.AgentRow`)."""
    return icon(_AGENT_STATE_ICONS.get(state, AGENT_ICON))
