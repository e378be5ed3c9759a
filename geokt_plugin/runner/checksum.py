"""SHA-256 sidecars of the checkpoints (``last.pt.sha256``, in ``sha256sum`` format): written with every save,
checked on every load, so a flipped byte is an error instead of a silently different run.

A save writes the sidecar listing the old and the new digest, then the checkpoint, then the sidecar with the new
digest alone: a kill at any point leaves a checkpoint whose digest the sidecar lists.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..config import ConfigError
from ..rundir import checksum_path
from .atomic import atomic_write_bytes, atomic_write_text

__all__ = ["read_verified", "sha256_hex", "write_with_checksum"]


def sha256_hex(data: bytes) -> str:
    """The SHA-256 digest of ``data`` in hex."""
    return hashlib.sha256(data).hexdigest()


def _listed(sidecar: Path) -> list[str]:
    """The digests a sidecar lists (first word of each line); empty when it is missing or unreadable."""
    try:
        lines = sidecar.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    return [line.split()[0].lower() for line in lines if line.split()]


def write_with_checksum(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, together with its digest in ``<path>.sha256``."""
    sidecar = checksum_path(path)
    digest = sha256_hex(data)
    old = _listed(sidecar) if path.exists() else []
    if old:
        atomic_write_text(sidecar, "".join(f"{d}  {path.name}\n" for d in (digest, old[0])))
    atomic_write_bytes(path, data)
    atomic_write_text(sidecar, f"{digest}  {path.name}\n")


def read_verified(path: Path, *, where: str, fix: str) -> tuple[bytes, bool]:
    """The bytes of the checkpoint ``path``, checked against its sidecar; ``(data, verified)``.

    ``verified`` is False when there is no sidecar (a file geokt-train did not write, or an older one).

    Raises:
        ConfigError: ``path`` is a directory, empty, unreadable, or does not match its digest; ``fix`` says what to do.
    """
    if path.is_dir():
        raise ConfigError(f"{where}: {path} is a directory, not a checkpoint file. {fix}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: {path} cannot be read ({type(exc).__name__}: {exc.strerror or exc}). "
                          f"{fix}") from exc
    if not data:
        raise ConfigError(f"{where}: {path} is empty (0 bytes): it was never written completely. {fix}")
    listed = _listed(checksum_path(path))
    if not listed:
        return data, False
    actual = sha256_hex(data)
    if actual not in listed:
        raise ConfigError(f"{where}: {path} does not match its checksum in {checksum_path(path).name} (sha256 "
                          f"{actual[:16]}..., expected {listed[0][:16]}...): the file is corrupt or was changed "
                          f"after it was written. {fix}")
    return data, True
