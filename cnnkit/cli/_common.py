"""Helpers shared by the commands: shape parsing, JSON printing, argparse types that refuse a bad value while
parsing (one line naming the flag, exit 2), a memory guard, and `printable` for anything printed that came
from a file or a name (so a file called 'a\\ncnnkit: fake line.png' cannot forge a second line)."""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys

from ..errors import CnnkitError

SEED_MAX = 2**32 - 1  # numpy's RandomState and torch.manual_seed both take 0 … 2**32-1
IMG_SIZE_MIN = 4  # simplecnn (the default for small images) needs 4x4; a smaller image leaves a convolution nothing
DEVICES = "auto, cpu, cuda, cuda:N, mps"


# --- printing what came from outside ----------------------------------------------------------------------
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
# C0 and C1 controls, DEL, the line and paragraph separators, the bidirectional overrides (a reordered line can
# read as another), and lone surrogates (an undecodable file name: printing it would raise UnicodeEncodeError)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match) -> str:
    c = m.group()
    if c in _NAMED:
        return _NAMED[c]
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def printable(s) -> str:
    """`s` as one printable line: control characters written as repr writes them (without quotes).

    >>> printable('evil\\ncnnkit: fake line.png')
    'evil\\\\ncnnkit: fake line.png'
    >>> printable('\\x1b[31mred\\x1b[0m'), printable('plain/path.png')
    ('\\\\x1b[31mred\\\\x1b[0m', 'plain/path.png')
    """
    return _CONTROL.sub(_escape, str(s))


def one_line(message) -> str:
    """A message for the terminal: terminal colour codes dropped (PyTorch's errors carry some), the rest
    `printable`, so it is one line however it was made.

    >>> one_line('\\x1b[1mdo this\\x1b[0m\\nthen that')
    'do this\\\\nthen that'
    """
    return printable(_ANSI.sub("", str(message)))


# --- argparse types -----------------------------------------------------------------------------------------
def _number(text: str, kind):
    try:
        return kind(str(text).strip())
    except (ValueError, TypeError, OverflowError):
        raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {printable(text)!r}") from None


def integer(text: str) -> int:
    """Any whole number (its range checked elsewhere)."""
    return _number(text, int)


def positive_int(text: str) -> int:
    """A whole number, at least 1 (epochs, a batch size, K of top-K)."""
    v = _number(text, int)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def nonneg_int(text: str) -> int:
    """A whole number, at least 0."""
    v = _number(text, int)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {v}")
    return v


def finite_float(text: str) -> float:
    """A finite number: nan and inf are refused (a NaN compares false to every bound, so it slips past them)."""
    v = _number(text, float)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {str(text).strip()}")
    return v


def positive_float(text: str) -> float:
    """A finite number above 0 (a learning rate, a timeout)."""
    v = finite_float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {v}")
    return v


def nonneg_float(text: str) -> float:
    """A finite number, 0 or more (momentum, weight decay)."""
    v = finite_float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {v}")
    return v


def seed(text: str) -> int:
    """A random seed: 0 … 2**32-1, what NumPy accepts."""
    v = _number(text, int)
    if not 0 <= v <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be 0 to {SEED_MAX} (2**32-1, what NumPy takes), got {v}")
    return v


def img_size(text: str) -> int:
    """An image side in pixels: at least IMG_SIZE_MIN. The upper bound depends on memory: `check_img_size`."""
    v = _number(text, int)
    if v < IMG_SIZE_MIN:
        raise argparse.ArgumentTypeError(
            f"must be at least {IMG_SIZE_MIN} pixels, got {v}: smaller images leave a convolution nothing to "
            f"see (simplecnn, the default for small images, needs {IMG_SIZE_MIN}x{IMG_SIZE_MIN})")
    return v


def device(text: str) -> str:
    """auto, cpu, cuda, cuda:N or mps, and usable on this machine; anything else is refused with the list."""
    t = str(text).strip().lower()
    m = re.fullmatch(r"(cpu|auto|cuda|mps)(?::(\d+))?", t)
    if not m or (m.group(2) is not None and m.group(1) != "cuda"):
        raise argparse.ArgumentTypeError(f"{printable(text)!r} is not a device cnnkit can use; valid: {DEVICES}")
    kind = m.group(1)
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{t}: no CUDA GPU is available here; use cpu (or auto)")
        n = torch.cuda.device_count()
        if m.group(2) is not None and int(m.group(2)) >= n:
            raise argparse.ArgumentTypeError(f"{t}: this machine has {n} CUDA device(s), cuda:0 to cuda:{n - 1}")
    elif kind == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError("mps: Apple's Metal GPU is not available here; use cpu (or auto)")
    return t


_VIRTUAL = ("/proc", "/sys", "/dev")  # file systems of the kernel's, not for files of ours


def _check_place(text: str, what: str) -> str:
    from pathlib import Path

    text = str(text)
    if not text.strip():
        raise argparse.ArgumentTypeError(f"an empty path; give {what}")
    if "\x00" in text:
        raise argparse.ArgumentTypeError(f"{printable(text)!r}: a path cannot hold a NUL character")
    p = Path(text).expanduser()
    try:
        real = os.path.realpath(p)
    except (OSError, ValueError) as e:
        raise argparse.ArgumentTypeError(f"{printable(text)}: {e}") from None
    for v in _VIRTUAL:
        if real == v or real.startswith(v + os.sep):
            raise argparse.ArgumentTypeError(f"{printable(text)} is in {v}, a virtual file system of the kernel's; "
                                             f"give {what} on a disk")
    return real


def _writable_ancestor(path: str) -> str | None:
    """The nearest existing folder above `path`, if files can be made there; None if it is not writable."""
    folder = os.path.dirname(path)
    while folder and not os.path.exists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    folder = folder or "."
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"{printable(folder)} is a file, so nothing can be made under it")
    return folder if os.access(folder, os.W_OK | os.X_OK) else None


def out_dir(text: str) -> str:
    """--out naming a folder to make (or an existing folder): not an existing file, not under /proc, /sys, /dev,
    and somewhere files can be made. Whether a folder already holds a run is the command's to decide."""
    real = _check_place(text, "a folder for the output")
    if os.path.exists(real) and not os.path.isdir(real):
        raise argparse.ArgumentTypeError(f"{printable(text)} is an existing file, not a folder; give a new folder "
                                         "name (cnnkit makes it)")
    if _writable_ancestor(os.path.join(real, "x")) is None:
        raise argparse.ArgumentTypeError(f"{printable(text)}: not writable here (permission denied); pick another "
                                         "place")
    return str(text)


def out_file(text: str) -> str:
    """--out naming a file to write: not an existing folder, not under /proc, /sys, /dev, somewhere files can be
    made (missing folders are made when it is written)."""
    real = _check_place(text, "a file name")
    if os.path.isdir(real):
        raise argparse.ArgumentTypeError(f"{printable(text)} is an existing folder; give the name of a file "
                                         "(in it, or elsewhere)")
    if _writable_ancestor(real) is None or (os.path.exists(real) and not os.access(real, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{printable(text)}: not writable here (permission denied); pick another "
                                         "place")
    if os.path.exists(real) and os.path.isfile(os.path.join(os.path.dirname(real), "model.json")):
        raise argparse.ArgumentTypeError(f"{printable(text)} would overwrite a file of the run in "
                                         f"{printable(os.path.dirname(real))}; pick another place (a run's files "
                                         "are cnnkit's to replace)")
    return str(text)


def out_dir_not_run(text: str) -> str:
    """`out_dir`, and not a run directory: for commands that write files of their own into the folder."""
    text = out_dir(text)
    if os.path.isfile(os.path.join(os.path.realpath(text), "model.json")):
        raise argparse.ArgumentTypeError(f"{printable(text)} is a run directory; give another folder (its files "
                                         "are the run's)")
    return text


# --- memory -------------------------------------------------------------------------------------------------
def memory_limit() -> int:
    """The most bytes one tensor of a command may take: half of this machine's RAM (or $CNNKIT_MAX_BYTES)."""
    env = os.environ.get("CNNKIT_MAX_BYTES")
    if env:
        try:
            return max(1, int(float(env)))
        except ValueError:
            pass
    total = None
    try:
        import psutil  # type: ignore[import-not-found]

        total = psutil.virtual_memory().total
    except Exception:  # noqa: BLE001 - not installed, or no answer: the next way
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemTotal:"):
                        total = int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            pass
        if total is None:
            try:
                total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (AttributeError, OSError, ValueError):
                total = 8 * 2**30
    return max(1, total // 2)


def gib(n: int | float) -> str:
    """Bytes, for a person: '298 GiB', '1.5 GiB', '12 MiB'."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            v = n / size
            return f"{v:.3g} {unit}" if v < 100 else f"{v:,.0f} {unit}"
    return f"{int(n)} bytes"


def check_memory(nbytes: int | float, what: str, fix: str) -> None:
    """Refuse, before allocating, work whose tensor would take more than `memory_limit()`: one line naming
    `what` (the flag and its value) and the size, and `fix`."""
    limit = memory_limit()
    if nbytes > limit:
        raise CnnkitError(f"{what} needs {gib(nbytes)} of memory, more than the {gib(limit)} cnnkit allows itself "
                          f"here (half of this machine's RAM); {fix}")


def check_img_size(side: int, *, batch: int | None = None, channels: int = 3, flag: str = "--img-size") -> None:
    """--img-size PX: one batch of PX×PX float32 images (and the first layers' maps, a few times as large) must
    fit in memory. Checked before any image is resized."""
    batch = batch or 1
    # input, its gradient-free copy and ~4x as many values in the first activation maps: a floor, not a ceiling
    nbytes = batch * channels * side * side * 4 * 6
    check_memory(nbytes, f"{flag} {side} (a batch of {batch} {side}x{side} images)",
                 f"give a smaller {flag}" + (" or --batch-size" if batch > 1 else ""))


# --- misc ---------------------------------------------------------------------------------------------------
def parse_shape(text: str, *, flag: str = "--input") -> tuple[int, int, int]:
    """'3x224x224' (or '3,224,224') → (3, 224, 224).

    >>> parse_shape('1x28x28')
    (1, 28, 28)
    """
    parts = [p for p in re.split(r"[x×,*\s]+", text.strip().lower()) if p]
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise CnnkitError(f"{flag} '{printable(text)}' is not a shape: expected CxHxW with positive integers, "
                          "e.g. 3x224x224")
    c, h, w = (int(p) for p in parts)
    return c, h, w


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=None, default=str)
    sys.stdout.write("\n")


def add_weight_flags(p) -> None:
    """--pretrained / --weights / --download for commands that take a model name (predict, explain)."""
    p.add_argument("--pretrained", action="store_true",
                   help="with a model name: its ImageNet weights (torchvision's, found on this machine), with their "
                        "preprocessing and 1000 class names")
    p.add_argument("--weights", default=None, metavar="FILE|TAG",
                   help="with a model name: load this weight file (.pth state dict or .safetensors), or pick "
                        "torchvision's weights by name (e.g. IMAGENET1K_V1)")
    p.add_argument("--download", action="store_true",
                   help="let torchvision download the weights when they are not on this machine")
