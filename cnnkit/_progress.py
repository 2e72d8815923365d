"""Progress for long work, the same in every command.

On a terminal: a tqdm bar (rate, ETA). Anywhere else (a pipe, a log file, CI): a plain line every `interval`
seconds, never a '\\r', so a piped run is not silent for a minute and a log file holds no bar fragments.
The interval is 10 s unless the environment variable CNNKIT_PROGRESS_INTERVAL says otherwise (tests use 0).

>>> import io
>>> out = io.StringIO()  # not a terminal: plain lines
>>> p = progress(4, "epoch 1/2", "batches", stream=out, interval=0)
>>> for _ in range(4):
...     p.update(loss=0.41234, images_per_s=1234.5)
>>> p.close()
>>> print(out.getvalue().splitlines()[0])  # doctest: +ELLIPSIS
epoch 1/2: 1/4 batches (25%), loss 0.4123, images/s 1234, ... batches/s, ETA ...
"""
from __future__ import annotations

import abc

import os
import sys
import time

from .errors import CnnkitError

DEFAULT_INTERVAL = 10.0  # seconds between plain lines: often enough to see a run is alive, few enough to read
ENV = "CNNKIT_PROGRESS_INTERVAL"


def progress(total: int | None, desc: str, unit: str, stream=None, *, interval: float | None = None,
             tty: bool | None = None) -> "Progress":
    """A progress display over `total` steps of `unit` (None: unknown) on `stream` (default: stderr).

    `update(n=1, **postfix)` advances it, showing each postfix value (floats rounded; '_per_' in a name
    shown as '/'); `close()` ends it. `tty` forces the bar on or off (default: whether `stream` is a terminal);
    `interval` is the seconds between plain lines (default: $CNNKIT_PROGRESS_INTERVAL, else 10)."""
    stream = stream or sys.stderr
    if tty is None:
        tty = bool(getattr(stream, "isatty", lambda: False)())
    if tty:
        return _Bar(total, desc, unit, stream)
    return _Lines(total, desc, unit, stream, _interval() if interval is None else interval)


def write(line: str, stream=None) -> None:
    """Print a line (default: to stdout) without breaking a bar that is showing on the terminal."""
    from tqdm.auto import tqdm

    tqdm.write(line, file=stream or sys.stdout)


def _interval() -> float:
    raw = os.environ.get(ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise CnnkitError(f"{ENV}={raw!r} is not a number of seconds; set it to e.g. 10, or unset it")
    return value


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _name(key: str) -> str:
    return key.replace("_per_", "/")


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Progress(abc.ABC):
    """The interface: `update(n=1, **postfix)` and `close()`; also a context manager."""

    @abc.abstractmethod
    def update(self, n: int = 1, **postfix) -> None:
        """Advance by `n` steps, showing `postfix` values."""

    def close(self) -> None:
        pass

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Bar(Progress):
    def __init__(self, total, desc, unit, stream):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit=f" {unit}", file=stream, dynamic_ncols=True, leave=False)

    def update(self, n: int = 1, **postfix) -> None:
        if postfix:
            self.bar.set_postfix({_name(k): _fmt(v) for k, v in postfix.items()}, refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


class _Lines(Progress):
    def __init__(self, total, desc, unit, stream, interval: float):
        self.total, self.desc, self.unit, self.stream, self.interval = total, desc, unit, stream, interval
        self.done, self.start = 0, time.perf_counter()
        self.last = self.start

    def update(self, n: int = 1, **postfix) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last < self.interval:
            return
        self.last = now
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        count = f"{self.done}/{self.total} {self.unit} ({100 * self.done // self.total}%)" if self.total \
            else f"{self.done} {self.unit}"
        parts = [f"{self.desc}: {count}", *(f"{_name(k)} {_fmt(v)}" for k, v in postfix.items())]
        parts.append(f"{rate:.1f} {self.unit}/s")
        if self.total and rate > 0:
            parts.append(f"ETA {_duration(max(self.total - self.done, 0) / rate)}")
        print(", ".join(parts), file=self.stream, flush=True)
