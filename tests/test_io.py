"""Atomic writes: the previous file survives a failed write, and a new file gets the user's umask, not 0600."""
import os
import stat
import threading

import pytest

from cnnkit._io import atomic_write, atomic_write_json, atomic_write_text, umask


@pytest.fixture
def set_umask():
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_of_the_umask(tmp_path, set_umask, mask, mode):
    set_umask(mask)
    assert umask() == mask
    for path in (atomic_write_text(tmp_path / "a.txt", "x"), atomic_write_json(tmp_path / "b.json", {"a": 1}),
                 atomic_write(tmp_path / "c.bin", lambda tmp: open(tmp, "wb").write(b"\0"))):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    # The mode is the one open() gives, whatever it is.
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert stat.S_IMODE(plain.stat().st_mode) == mode


def test_reading_the_umask_does_not_change_it_under_threads(set_umask):
    """Reading it by setting and restoring would, for a moment, change it for every thread."""
    set_umask(0o027)
    seen = []
    threads = [threading.Thread(target=lambda: seen.extend(umask() for _ in range(200))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(seen) == {0o027} and os.umask(0o027) == 0o027


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = atomic_write_text(tmp_path / "m.json", "old")

    def fail(tmp):
        open(tmp, "w").write("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["m.json"]
