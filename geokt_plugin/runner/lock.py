"""``run.lock``: one run per run directory, held from the run-dir check to the end of the run.

The lock file is created with ``O_EXCL`` and holds the owner's pid, host and start time. A lock left by a dead
process on this host (a SIGKILL) is taken over with a warning; a live one, or one from another host, refuses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from ..config import ConfigError
from ..rundir import RunDir
from .records import utc_now

__all__ = ["RunLock"]

logger = logging.getLogger("geokt_plugin.runner")


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux ``/proc``), or ``None`` where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int, start: str | None) -> bool:
    """Whether ``pid`` runs and, where both are known, is the process that started at ``start`` (not a reuse)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _process_start(pid)
    return start is None or now is None or now == start


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


class RunLock:
    """Context manager holding ``<run_dir>/run.lock``; creates the folder (and removes it again, if still empty)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = RunDir(self.run_dir).lock
        self._created: list[Path] = []
        self._held = False

    def __enter__(self) -> RunLock:
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise ConfigError(f"run dir {str(self.run_dir)!r}: exists but is not a directory. Choose another "
                              "--run-dir or move the file.")
        missing = [p for p in (self.run_dir, *self.run_dir.parents) if not p.exists()]
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"run dir {str(self.run_dir)!r} cannot be created ({type(exc).__name__}: "
                              f"{exc.strerror or exc}). Choose another --run-dir.") from exc
        self._created = missing
        for _ in range(2):
            if self._try_create():
                self._held = True
                return self
            self._take_over_if_stale()
        raise ConfigError(f"run dir {str(self.run_dir)!r}: could not take {self.path.name}; try again.")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def release(self) -> None:
        """Remove the lock (and the folders this lock created, when they are still empty)."""
        if self._held:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self._held = False
        for folder in self._created:  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._created = []

    def _try_create(self) -> bool:
        pid = os.getpid()
        owner = {"pid": pid, "host": socket.gethostname(), "started": utc_now("seconds"),
                 "process_start": _process_start(pid)}
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise ConfigError(f"run dir {str(self.run_dir)!r}: cannot create {self.path.name} "
                              f"({type(exc).__name__}: {exc.strerror or exc}). Choose a writable --run-dir.") from exc
        with os.fdopen(fd, "w") as fh:
            json.dump(owner, fh)
        return True

    def _take_over_if_stale(self) -> None:
        try:
            owner = json.loads(self.path.read_text())
            pid, host = int(owner["pid"]), str(owner["host"])
        except FileNotFoundError:
            return  # released meanwhile: try again
        except (OSError, ValueError, KeyError, TypeError):
            owner, pid, host = {}, -1, socket.gethostname()  # unreadable: its writer died, or is writing it now
        where = f"run dir {str(self.run_dir)!r}"
        if pid < 0 and _age_s(self.path) < 5.0:
            raise ConfigError(f"{where}: {self.path.name} is being created by another geokt-train run. Wait for "
                              "it to finish, or choose another --run-dir.")
        if host == socket.gethostname() and pid > 0 and _alive(pid, owner.get("process_start")):
            raise ConfigError(f"{where} is in use by another geokt-train run (pid {pid} on {host}, started "
                              f"{owner.get('started')}). Wait for it to finish, or stop it, or choose another "
                              "--run-dir.")
        if host != socket.gethostname():
            raise ConfigError(f"{where} is locked by pid {pid} on host {host} (started {owner.get('started')}); "
                              f"this host cannot tell whether it still runs. If it does not, delete {self.path} "
                              "and run again.")
        logger.warning("%s: taking over %s left by pid %s, which no longer runs (it was killed?)", where,
                       self.path.name, pid if pid > 0 else "unknown")
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
