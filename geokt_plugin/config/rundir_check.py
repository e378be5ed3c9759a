"""Whether a run directory can take a run: writable, and no previous run replaced without ``--overwrite``."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..rundir import DONE, LAST, PREVIOUS_RUN_FILES
from .errors import ConfigError

__all__ = ["check_run_dir"]


def check_run_dir(run_dir: str | os.PathLike, *, resume: bool, overwrite: bool) -> list[str]:
    """Check that ``run_dir`` can take this run without losing a previous one.

    Rules: the folder (or its nearest existing ancestor) must be a writable directory; a folder holding a previous
    run (any of ``rundir.PREVIOUS_RUN_FILES``) needs ``resume`` (runs with a ``last.pt``) or ``overwrite``;
    ``resume`` needs a ``last.pt``; ``resume`` and ``overwrite`` exclude each other. Writes nothing but a probe
    file that it removes at once.

    Returns:
        Notes, as :func:`~geokt_plugin.config.check_config`.

    Raises:
        ConfigError: naming the folder, what is there, and the flag that fixes it.
    """
    source = f"run dir {str(run_dir)!r}"
    folder = Path(os.path.expanduser(str(run_dir)))
    if resume and overwrite:
        raise ConfigError(f"{source}: --resume and --overwrite exclude each other (continue the run, or replace it). "
                          "Pass only one.")
    _check_writable(source, folder)
    present = [name for name in PREVIOUS_RUN_FILES if (folder / name).exists()] if folder.is_dir() else []
    finished = DONE in present
    if resume:
        if not (folder / LAST).is_file():
            raise ConfigError(f"{source}: --resume given but there is no {LAST} to resume from (found: "
                              f"{present or 'nothing'}). Drop --resume to start a new run.")
        return [f"ok: resuming from {folder / LAST}" + (" (the run had finished)" if finished else "")]
    if present and not overwrite:
        if finished:
            state, fix = "a finished run", "pass --overwrite to replace it"
        elif (folder / LAST).is_file():
            state, fix = "an unfinished run", "pass --resume to continue it, or --overwrite to replace it"
        else:
            state, fix = "a run that never finished an epoch", "pass --overwrite to start it again"
        raise ConfigError(f"{source}: already holds {state} ({', '.join(present)}); refusing to overwrite it. "
                          f"{fix[0].upper()}{fix[1:]}, or choose another --run-dir.")
    if present:
        return [f"warning: {folder} holds a previous run ({', '.join(present)}); --overwrite replaces it"]
    return [f"ok: run dir {folder} is writable"]


def _check_writable(source: str, folder: Path) -> None:
    """``folder``, or the nearest ancestor that exists when it does not, is a directory we can write to."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{source}: exists but is not a directory. Choose another --run-dir or move the file.")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{source}: cannot be created because {str(existing)!r} is a file, not a directory. Choose "
                          "another --run-dir.")
    try:
        with _probe(existing):
            pass
    except OSError as exc:
        what = "is not writable" if existing == folder else f"cannot be created: {str(existing)!r} is not writable"
        raise ConfigError(f"{source}: {what} ({type(exc).__name__}: {exc.strerror or exc}). Choose a writable "
                          "--run-dir or fix the permissions.") from exc


@contextmanager
def _probe(folder: Path) -> Iterator[None]:
    fd, name = tempfile.mkstemp(prefix=".geokt-write-probe-", dir=folder)
    try:
        os.close(fd)
        yield
    finally:
        os.unlink(name)
