"""``--overwrite`` without losing the previous run too early: its outputs are moved into
``<run-dir>/.previous-<timestamp>/`` just before the new run writes its first file, put back if the new run fails
before its first checkpoint, and deleted once that checkpoint is written. After a SIGKILL in between they stay in
that folder, to be moved back or deleted by hand."""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import shutil
from pathlib import Path

from .. import rundir
from .atomic import OutputWriteError

__all__ = ["PreviousOutputs"]

logger = logging.getLogger("geokt_plugin.runner")


def _outputs(run_dir: Path) -> list[Path]:
    """The runner's own files and folders in ``run_dir`` (never the lock, nor anything else)."""
    names = [*rundir.RUN_FILES, *rundir.RUN_DIRS]
    found = [run_dir / name for name in names if (run_dir / name).exists()]
    return found + sorted(run_dir.glob(rundir.RESUMED_CONFIG_GLOB))


class PreviousOutputs:
    """The previous run's outputs, moved aside by :meth:`move_aside`."""

    def __init__(self, run_dir: Path, folder: Path, names: list[str]) -> None:
        self.run_dir = run_dir
        self.folder = folder
        self.names = names

    @classmethod
    def move_aside(cls, run_dir: Path) -> PreviousOutputs | None:
        """Move the runner's outputs of ``run_dir`` into a new ``.previous-<timestamp>`` folder; ``None`` if none."""
        found = _outputs(run_dir)
        if not found:
            return None
        stamp = _dt.datetime.now().strftime("%Y%m%dT%H%M%S")
        folder = run_dir / f"{rundir.PREVIOUS_PREFIX}{stamp}-{os.getpid()}"
        try:
            folder.mkdir()
            for path in found:
                os.replace(path, folder / path.name)
        except OSError as exc:
            raise OutputWriteError(folder, exc) from exc
        logger.info("--overwrite: the previous outputs are in %s until the first checkpoint of this run", folder)
        return cls(run_dir, folder, [p.name for p in found])

    def restore(self) -> None:
        """Put the previous outputs back (the new run failed before its first checkpoint)."""
        for path in _outputs(self.run_dir):
            _remove(path)
        for name in self.names:
            with contextlib.suppress(OSError):
                os.replace(self.folder / name, self.run_dir / name)
        with contextlib.suppress(OSError):
            self.folder.rmdir()
        logger.info("the new run failed before its first checkpoint; the previous outputs are back in %s",
                    self.run_dir)

    def drop(self) -> None:
        """Delete the previous outputs (the new run wrote its first checkpoint)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
