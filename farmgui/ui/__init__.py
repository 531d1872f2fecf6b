"""The Qt (PySide6) shell of the control station: thin views over the Qt-free core."""

from .compat import NONE_GUARD_APPLIED

__all__ = ["NONE_GUARD_APPLIED"]
