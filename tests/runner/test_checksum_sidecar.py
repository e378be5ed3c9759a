"""Checkpoint checksums: the sidecar is written with every save, checked on every load, and a kill at any point of
a save leaves a checkpoint whose digest the sidecar lists."""

from __future__ import annotations

import pytest

from geokt_plugin import rundir
from geokt_plugin.config import ConfigError
from geokt_plugin.runner import atomic
from geokt_plugin.runner.checksum import read_verified, sha256_hex, write_with_checksum


def test_checksum_sidecar_is_sha256sum_format_and_verifies(tmp_path):
    path = tmp_path / "last.pt"
    write_with_checksum(path, b"epoch 1")
    assert rundir.checksum_path(path).read_text() == f"{sha256_hex(b'epoch 1')}  last.pt\n"
    assert read_verified(path, where="w", fix="F.") == (b"epoch 1", True)
    path.write_bytes(b"epoch 2")
    with pytest.raises(ConfigError, match=r"^w: .*last.pt does not match its checksum in last.pt.sha256 .* F\.$"):
        read_verified(path, where="w", fix="F.")


def test_checksum_kill_between_the_writes_keeps_a_listed_digest(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    write_with_checksum(path, b"old")
    real = atomic.os.replace

    def crash_on_checkpoint(src, dst, *args, **kwargs):
        if str(dst).endswith("last.pt"):
            raise KeyboardInterrupt("killed between the sidecar and the checkpoint")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "replace", crash_on_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        write_with_checksum(path, b"new")
    monkeypatch.undo()
    assert read_verified(path, where="w", fix="F.") == (b"old", True)  # the sidecar lists both digests meanwhile
    write_with_checksum(path, b"new")
    assert len(rundir.checksum_path(path).read_text().splitlines()) == 1


def test_checksum_missing_sidecar_empty_and_directory(tmp_path):
    plain = tmp_path / "plain.pt"
    plain.write_bytes(b"data")
    assert read_verified(plain, where="w", fix="F.") == (b"data", False)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"empty.pt is empty \(0 bytes\)"):
        read_verified(tmp_path / "empty.pt", where="w", fix="F.")
    (tmp_path / "dir.pt").mkdir()
    with pytest.raises(ConfigError, match=r"dir.pt is a directory, not a checkpoint file"):
        read_verified(tmp_path / "dir.pt", where="w", fix="F.")
