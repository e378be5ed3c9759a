"""``python -m geokt_plugin.train``: the runner's command line (implemented in :mod:`geokt_plugin.runner`)."""

from __future__ import annotations

import sys

from .runner.cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
