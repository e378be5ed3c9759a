"""Console entry points: ``geokt-train`` (the Accelerate runner) and ``geokt-compare`` (tables of finished runs)."""

from __future__ import annotations

import sys

__all__ = ["compare_main", "train_main"]


def train_main(argv: list[str] | None = None) -> int:
    """``geokt-train``: see ``geokt-train --help`` and :mod:`geokt_plugin.runner`."""
    from .runner.cli import main

    code = main(argv)
    if argv is None:  # called as a console script
        sys.exit(code)
    return code


def compare_main(argv: list[str] | None = None) -> int:
    """``geokt-compare``: compare run directories (implemented in :mod:`geokt_plugin.reporting`)."""
    from .reporting import main

    code = main(argv)
    if argv is None:
        sys.exit(code)
    return int(code or 0)
