"""Atomic file writes: a crash (or SIGKILL) mid-write leaves the previous file whole, never a torn one.

A write that fails (disk full, read-only file system, permissions) raises :class:`OutputWriteError`, which names
the file and the ``OSError``; the CLI prints it as one line and exits with code 4.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["OutputWriteError", "atomic_torch_save", "atomic_write_bytes", "atomic_write_text", "torch_bytes"]


class OutputWriteError(OSError):
    """An output of the run could not be written; the previous version of the file is left as it was."""

    def __init__(self, path: Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause), str(path))
        self.path = Path(path)

    def __str__(self) -> str:
        code = errno.errorcode.get(self.errno, "OSError") if self.errno is not None else "OSError"
        return (f"could not write {self.path}: {self.strerror} ({code}); any previous {self.path.name} is intact. "
                f"Free disk space or fix the permissions of {self.path.parent}, then run again (--resume "
                "continues from the last checkpoint).")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, flush + fsync, then ``os.replace``.

    Raises:
        OutputWriteError: the write failed; ``path`` is unchanged and the temp file removed.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OutputWriteError:
        raise
    except OSError as exc:
        raise OutputWriteError(path, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            if tmp.exists():
                tmp.unlink()
    with contextlib.suppress(OSError):  # make the rename durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def torch_bytes(obj: Any) -> bytes:
    """What ``torch.save(obj)`` writes, as bytes."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save(obj)`` into ``path`` atomically."""
    atomic_write_bytes(path, torch_bytes(obj))


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` into ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
