"""The decoded-image cache: every image decoded and resized once, to a file made for reading.

As FFCV's .beton and WebDataset's shards do, the slow part (opening, decoding and resizing JPEGs and PNGs) is
done once; later epochs and later runs only read fixed-size uint8 records. A cache is a folder:

    <CNNKIT_CACHE or ~/.cache/cnnkit>/images/<key>/images.u8    N records of C×H×W uint8, back to back
                                                   sums.npy     per image and channel: Σx and Σx² (float64)
                                                   index.json   format, shape, the unreadable rows

The key is a hash of everything the pixels depend on: the cache format, the source's files (path, size and
modification time of each, in order) or array contents, and the preprocessing's pixel half (channels, size,
resize policy). A changed file, another --img-size or a newer cache format gives another key, so a cache is
never misread; it is rebuilt. A build writes into a temporary folder and renames it into place only when
complete, so a kill leaves nothing a later run would trust, and two runs building the same cache at once
both finish (the second rename loses, harmlessly).

Records are read with positioned reads (`os.pread`), not a memory map: the bytes then live in the kernel's
page cache, which the OS can evict, and the process's own memory stays flat however large the cache is.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .._io import atomic_write_json
from ..errors import CnnkitError

FORMAT = "cnnkit-cache/1"
CHUNK = 256  # images decoded per step of a build: bounds the build's memory


def cache_root() -> Path:
    return Path(os.environ.get("CNNKIT_CACHE") or Path.home() / ".cache" / "cnnkit") / "images"


def cache_key(fingerprint: str, pixels: dict) -> str:
    blob = json.dumps({"format": FORMAT, "source": fingerprint, "pixels": pixels}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class ImageCache:
    """A finished cache, opened for reading."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        try:
            index = json.loads((self.folder / "index.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CnnkitError(f"image cache {self.folder} is unreadable ({e}); delete the folder to rebuild it") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise CnnkitError(f"image cache {self.folder} is not a {FORMAT} cache; delete the folder to rebuild it")
        try:
            self.n = int(index["n"])
            self.shape = tuple(int(v) for v in index["shape"])
            self.bad: dict[int, str] = {int(k): str(v) for k, v in index.get("bad", {}).items()}
            digests = index.get("digests")
            self.digests: list[str] | None = [str(d) for d in digests] if digests is not None else None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CnnkitError(f"image cache {self.folder} has a malformed index.json ({type(e).__name__}: {e}); "
                              "delete the folder to rebuild it") from None
        if len(self.shape) != 3 or min(self.shape) < 1 or self.n < 0 or \
                (self.digests is not None and len(self.digests) != self.n):
            raise CnnkitError(f"image cache {self.folder} has a malformed index.json; delete the folder to rebuild it")
        self.record = int(np.prod(self.shape))
        path = self.folder / "images.u8"
        if not path.is_file() or path.stat().st_size != self.n * self.record or not (self.folder / "sums.npy").is_file():
            raise CnnkitError(f"image cache {self.folder} is incomplete; delete the folder to rebuild it")
        self._fd = os.open(path, os.O_RDONLY)

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    @property
    def nbytes(self) -> int:
        return self.n * self.record

    def sums(self) -> np.ndarray:
        """N×C×2: each image's per-channel Σx and Σx² of its 0–255 values, made during the build, so that the
        mean and std of any split cost a sum over its rows instead of a pass over its pixels."""
        try:
            sums = np.load(self.folder / "sums.npy", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CnnkitError(f"image cache {self.folder} has no readable sums.npy ({e}); delete the folder") from None
        if sums.shape != (self.n, self.shape[0], 2):
            raise CnnkitError(f"image cache {self.folder} has a malformed sums.npy; delete the folder to rebuild it")
        return sums

    def read(self, rows: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 len(rows)×C×H×W, in the order given (runs of consecutive rows are read in one call)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), self.record), dtype=np.uint8)
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        i = 0
        while i < len(srt):
            j = i + 1
            while j < len(srt) and srt[j] == srt[j - 1] + 1:
                j += 1
            buf = os.pread(self._fd, (j - i) * self.record, int(srt[i]) * self.record)
            out[order[i:j]] = np.frombuffer(buf, dtype=np.uint8).reshape(j - i, self.record)
            i = j
        return torch.from_numpy(out).view(len(rows), *self.shape)

    def read_all(self) -> torch.Tensor:
        data = np.fromfile(self.folder / "images.u8", dtype=np.uint8)
        return torch.from_numpy(data).view(self.n, *self.shape)


def open_or_build(key: str, n: int, shape: tuple[int, int, int], load: Callable[[int], np.ndarray],
                  *, describe: str, log=None, workers: int | None = None,
                  digest: Callable[[int], str] | None = None) -> tuple[ImageCache, bool]:
    """The cache for `key`, built if missing by calling `load(i)` (uint8 C×H×W, or raising BadImagesError)
    for i in range(n), and `digest(i)` (a content hash of item i's file, kept in index.json) if given.
    Returns (cache, built_now)."""
    root = cache_root()
    final = root / key
    if final.exists():
        try:
            cache = ImageCache(final)
            if cache.n == n and cache.shape == tuple(shape):
                return cache, False
        except CnnkitError:
            pass
        shutil.rmtree(final, ignore_errors=True)  # damaged or not what its key promises: rebuilt below
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(root)
    tmp = root / f".{key}.building-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    try:
        _build(tmp, n, shape, load, describe=describe, log=log, workers=workers, digest=digest)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same cache first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
        return ImageCache(final), True
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno == errno.ENOSPC:
            need = n * int(np.prod(shape)) / 1e6
            raise CnnkitError(f"no space left on the disk of {root} for the image cache ({need:,.0f} MB needed); "
                              "free some space, or set CNNKIT_CACHE to a folder on a larger disk") from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _build(folder: Path, n: int, shape, load, *, describe: str, log, workers: int | None, digest) -> None:
    from .._progress import progress
    from .images import BadImagesError

    record = int(np.prod(shape))
    bad: dict[int, str] = {}
    digests: list[str] = [""] * n
    sums = np.zeros((n, shape[0], 2), dtype=np.float64)

    def one(i: int) -> np.ndarray | None:
        if digest is not None:
            with contextlib.suppress(OSError):  # an unreadable file: load() names it
                digests[i] = digest(i)  # read just before decoding: the decode then reads from the page cache
        try:
            a = load(i)
        except BadImagesError as e:
            bad[i] = e.bad[0].reason
            return None
        if a.shape != tuple(shape):
            bad[i] = f"decoded to shape {a.shape}, expected {tuple(shape)}"
            return None
        flat = a.reshape(shape[0], -1).astype(np.float32)
        sums[i, :, 0] = flat.sum(1, dtype=np.float64)
        sums[i, :, 1] = np.einsum("ij,ij->i", flat, flat, dtype=np.float64)
        return a

    bar = progress(n, f"caching {describe}", unit="img", stream=log or sys.stderr)
    workers = workers or min(8, (os.cpu_count() or 1) * 2)  # PIL decodes and resizes without the GIL
    zeros = np.zeros(shape, np.uint8)
    with open(folder / "images.u8", "wb") as f, ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, n, CHUNK):
            chunk = list(pool.map(one, range(start, min(n, start + CHUNK))))
            f.write(b"".join((zeros if a is None else a).tobytes() for a in chunk))
            bar.update(len(chunk))
        f.flush()
        os.fsync(f.fileno())
    bar.close()
    with open(folder / "sums.npy", "wb") as f:
        np.save(f, sums, allow_pickle=False)
    index = {"format": FORMAT, "n": n, "shape": list(shape), "record_bytes": record,
             "bad": {str(k): v for k, v in sorted(bad.items())}, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if digest is not None:
        index["digests"] = digests
    atomic_write_json(folder / "index.json", index)


def _remove_stale_builds(root: Path, older_than_s: float = 6 * 3600) -> None:
    """Half-built caches of killed runs (their rename never happened)."""
    now = time.time()
    for p in root.glob(".*.building-*"):
        with contextlib.suppress(OSError):  # gone already: another run swept it
            if now - p.stat().st_mtime > older_than_s:
                shutil.rmtree(p, ignore_errors=True)
