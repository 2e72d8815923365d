"""Atomic file writes: write a temp file in the same folder, flush it to disk, then rename over the target.

A crash or Ctrl-C mid-write leaves the previous file intact, never a half-written one. The file gets the mode
an ordinary `open(path, "w")` would give (0o666 less the umask), not mkstemp's private 0o600.

A full disk is `NoSpaceError` (an OSError with errno ENOSPC and the file's name, and a CnnkitError whose message
says what to do), whatever the writer made of it: torch.save reports it as "unexpected pos …", safetensors as a
SafetensorError. A temp file is named `.NAME.PID-XXXXXXXX.tmp`, so one left by a killed writer is recognised
as ours and as stale (`remove_stale_temps`) when its folder is next written.

>>> import tempfile, stat
>>> p = atomic_write_text(tempfile.mkdtemp() + "/a.txt", "hi")
>>> p.read_text(), stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask()
('hi', True)
"""
from __future__ import annotations

import errno
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import CnnkitError

FULL = (errno.ENOSPC, errno.EDQUOT)
# what writers that wrap the OSError in their own exception say (safetensors: "... (os error 28)")
_FULL_WORDS = ("no space left", "disk quota exceeded", "os error 28", "os error 122")
LOW_SPACE = 1 << 20  # free bytes under which a failed write is taken for a full disk (torch.save names no cause)
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d{1,10})-)?[a-z0-9_]{8}\.tmp$")


class NoSpaceError(CnnkitError, OSError):
    """No space left on the device (ENOSPC or a quota) while writing `filename`; nothing was replaced."""

    def __init__(self, head: str, path: str | os.PathLike, code: int = errno.ENOSPC, advice: str | None = None):
        self.head = head
        self.message = f"{head}; " + (advice or f"{path} is as it was before; free some space and run the "
                                                 "command again")
        OSError.__init__(self, code, self.message, str(path))

    def __str__(self) -> str:
        return self.message

    def add(self, more: str) -> "NoSpaceError":
        """The same error, with what the caller knows (what is saved, how to go on) in place of the generic end."""
        return NoSpaceError(self.head, self.filename, self.errno, more)


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


def free_bytes(folder: str | os.PathLike) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def _full_code(exc: BaseException, folder: Path) -> int | None:
    """ENOSPC/EDQUOT when `exc` (or an exception it was raised from) is a full disk, else None."""
    if isinstance(exc, CnnkitError) and not isinstance(exc, NoSpaceError):
        return None  # our own refusal (an export that did not verify), raised inside write()
    seen, e = set(), exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in FULL:
            return e.errno
        if any(w in str(e).lower() for w in _FULL_WORDS):
            return errno.EDQUOT if "quota" in str(e).lower() or "122" in str(e) else errno.ENOSPC
        e = e.__cause__ or e.__context__
    if isinstance(exc, OSError) and exc.errno not in (None, errno.EIO):
        return None  # another cause with its own name (a missing folder, no permission)
    if isinstance(exc, (OSError, RuntimeError)) or "Safetensor" in type(exc).__name__:
        free = free_bytes(folder)  # checked before the temp file is removed: what the write found
        if free is not None and free < LOW_SPACE:
            return errno.ENOSPC
    return None


def no_space(path: str | os.PathLike, code: int = errno.ENOSPC) -> NoSpaceError:
    path = Path(path)
    what = "no space left" if code == errno.ENOSPC else "the disk quota is used up"
    return NoSpaceError(f"{what} on the device holding {path.parent} (writing {path.name})", path, code)


def temp_pid(name: str) -> int | None:
    """The writer's process id in a temp file name of ours, or None (another name, or one from before pids)."""
    m = _TEMP.match(name)
    return int(m["pid"]) if m and m["pid"] else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (another user's), or cannot tell: keep its file
    return True


def remove_stale_temps(folder: str | os.PathLike, *, old: float = 60.0, very_old: float = 3600.0) -> list[str]:
    """Remove temp files of ours that no writer will finish: the writer's process is gone, or (a name from
    before pids were written into it) it is older than `old` seconds, or (the pid reused by another process)
    older than `very_old`. Returns the names removed. Other files are never touched."""
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if not m or not entry.is_file(follow_symlinks=False):
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        pid = int(m["pid"]) if m["pid"] else None
        if (pid is None and age > old) or (pid is not None and (not _alive(pid) or age > very_old)):
            try:
                os.unlink(entry.path)
                removed.append(entry.name)
            except OSError:
                pass
    return removed


def _temp(path: Path) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return tmp


def _finish(tmp: str) -> None:
    os.chmod(tmp, 0o666 & ~umask())  # after write(), which may have made the file anew; mkstemp's was 0o600
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` to produce the file, then rename it onto `path`. On any failure the temp file is
    removed and `path` is left as it was; a full disk raises `NoSpaceError`."""
    return atomic_write_all([(path, write)])[0]


def atomic_write_all(items: Iterable[tuple[str | os.PathLike, Callable[[str], None]]]) -> list[Path]:
    """Several files that belong together (weights and their model.json): every temp file is written first, and
    only when all are complete are they renamed into place, so a failure (a full disk) replaces none of them."""
    items = [(Path(p), w) for p, w in items]
    temps: list[str] = []
    current = items[0][0] if items else None
    try:
        for path, write in items:
            current = path
            path.parent.mkdir(parents=True, exist_ok=True)
            temps.append(_temp(path))
            write(temps[-1])
            _finish(temps[-1])
        for (path, _), tmp in zip(items, temps):
            current = path
            os.replace(tmp, path)
    except BaseException as e:
        code = _full_code(e, current.parent) if isinstance(e, Exception) and current is not None else None
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if code is not None:
            raise no_space(current, code) from e
        raise
    return [p for p, _ in items]


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")
