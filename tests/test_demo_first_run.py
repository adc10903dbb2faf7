"""The demo says, on a first run (empty numba cache), what it compiles and that it happens once
(issue #20); nothing when the cache holds the compiled kernels."""

from __future__ import annotations

from cartkinetics.commands.demo import first_run_note


def test_first_run_note_follows_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    note = first_run_note()
    assert note is not None and "once" in note and str(tmp_path) in note
    # numba's index file of the outcome kernel, as a first run leaves it
    sub = tmp_path / "cartkinetics_0123"
    sub.mkdir()
    (sub / "outcomes._outcomes_one-121.py311.nbi").write_bytes(b"")
    assert first_run_note() is None
