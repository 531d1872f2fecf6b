"""The Qt (PySide6) shell of the control station: thin views over the Qt-free core."""
