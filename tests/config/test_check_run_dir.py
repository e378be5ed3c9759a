"""Unit tests of :func:`geokt_plugin.config.check_run_dir` beyond the broken-input table: it writes nothing."""

from __future__ import annotations

from geokt_plugin.config import check_run_dir


def test_check_run_dir_writes_nothing(tmp_path):
    fresh = tmp_path / "a" / "b" / "run"
    assert check_run_dir(fresh, resume=False, overwrite=False) == [f"ok: run dir {fresh} is writable"]
    assert not (tmp_path / "a").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("kept\n")
    check_run_dir(existing, resume=False, overwrite=False)
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]


def test_check_run_dir_allows_resume_and_overwrite_of_a_previous_run(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"x")
    assert check_run_dir(tmp_path, resume=True, overwrite=False) == [f"ok: resuming from {tmp_path / 'last.pt'}"]
    notes = check_run_dir(tmp_path, resume=False, overwrite=True)
    assert notes == [f"warning: {tmp_path} holds a previous run (last.pt); --overwrite replaces it"]
    assert (tmp_path / "last.pt").read_bytes() == b"x"
