"""Atomic file writes: write a temp file in the same folder, flush it to disk, then rename over the target.

A crash or Ctrl-C mid-write leaves the previous file intact, never a half-written one. The file gets the mode
an ordinary `open(path, "w")` would give (0o666 less the umask), not mkstemp's private 0o600.

>>> import tempfile, stat
>>> p = atomic_write_text(tempfile.mkdtemp() + "/a.txt", "hi")
>>> p.read_text(), stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask()
('hi', True)
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def umask() -> int:
    """The process's umask. Read from /proc/self/status where there is one: the portable way, setting it and
    setting it back, is process-wide, so a thread creating a file at that moment would get the wrong mode."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` to produce the file, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())  # after write(), which may have made the file anew; mkstemp's was 0o600
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")
