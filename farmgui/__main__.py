"""``farmgui``: the control station."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="farmgui", description="Frameherd control station")
    parser.add_argument("files", nargs="*", metavar="FILE", help=".blend files to open")
    args = parser.parse_args(argv)
    from .ui.app import run_gui  # Qt is imported only for the window

    return run_gui(args.files)


if __name__ == "__main__":
    sys.exit(main())
