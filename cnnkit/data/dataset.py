"""`load_data(spec)`: a data set, split, with its classes and preprocessing; in memory or streamed from disk.

One interface, two paths behind it (only this module knows which):
- **memory**: every split is one uint8 N×C×H×W tensor; a batch is an index into it. The fastest way to feed
  a CPU, for data that fits;
- **stream**: images stay in the on-disk cache (`cache.py`) and each batch is read from it, so memory does not
  grow with the number of images.
`--data-mode auto` picks memory when the decoded data set takes under a quarter of the available RAM.
Files (folders, CSV) are always decoded once into the cache, in bounded memory, so a second run starts at once;
array sources (digits, IDX, CIFAR) at their own size need no decoding and stay in memory.

The split is a manifest (`manifest()`, see splits.py), saved with every run as split.json.
`load_data(..., manifest=…)` rebuilds exactly that split, or stops and says what changed in the source (files
missing, new or modified), never re-splitting silently.
"""
from __future__ import annotations

import contextlib
import hashlib
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from ..errors import CnnkitError
from ..preprocess import GRAY_MODES, Preprocess
from .cache import ImageCache, cache_key, cache_root, open_or_build
from .images import MAX_PIXELS, BadImage, BadImagesError, read_headers
from .sources import Source, available_memory, load_source
from .splits import MANIFEST_FORMAT, assign, build_manifest, from_manifest, stratified_split  # noqa: F401

DATA_MODES = ("auto", "memory", "stream")
MEMORY_SHARE = 0.25  # auto: in memory when the decoded images take less than this share of the available RAM
STATS_SAMPLE = 20_000  # mean/std of a streamed training split from this many images (seeded sample)


class Split:
    """The images and labels of one split. `get(idx)` gives uint8 N×C×H×W, wherever the images live."""

    def __init__(self, y: torch.Tensor, keys: list, *, x: torch.Tensor | None = None, cache: ImageCache | None = None,
                 rows: np.ndarray | None = None, paths: list[str] | None = None, origin: list[str] | None = None):
        self.y, self.keys, self.paths = y, keys, paths
        self.origin = origin  # the source split of each item ('train', 'val', 'test')
        self._x, self._cache, self._rows = x, cache, rows

    def __len__(self) -> int:
        return len(self.y)

    @property
    def in_memory(self) -> bool:
        return self._x is not None

    @property
    def x(self) -> torch.Tensor:
        """All the images as one tensor (the in-memory path; a streamed split reads them all)."""
        return self._x if self._x is not None else self.get(torch.arange(len(self)))

    def get(self, idx) -> torch.Tensor:
        idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)  # an int too: always N×C×H×W
        if self._x is not None:
            return self._x[idx]
        idx = idx.numpy()
        return self._cache.read(self._rows[idx])

    def batches(self, batch_size: int = 256, order: torch.Tensor | list[torch.Tensor] | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 images, labels) batches in `order` (default: as stored), or one batch per index tensor when
        `order` is a list of them (a rank's parts of the global batches). Only the indices given are read: a
        streamed split reads the next batch in a background thread while the current one is used."""
        order = torch.arange(len(self)) if order is None else order
        chunks = list(order) if isinstance(order, list) else \
            [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        if self.in_memory:
            for idx in chunks:
                yield self._x[idx], self.y[idx]
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self.get, chunks[0]) if chunks else None
            for k, idx in enumerate(chunks):
                x = pending.result()
                if k + 1 < len(chunks):
                    pending = pool.submit(self.get, chunks[k + 1])
                yield x, self.y[idx]

    def subset(self, idx) -> "Split":
        idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
        pick = lambda seq: [seq[i] for i in idx.tolist()] if seq is not None else None  # noqa: E731
        if self._x is not None:
            return Split(self.y[idx], pick(self.keys), x=self._x[idx], paths=pick(self.paths), origin=pick(self.origin))
        return Split(self.y[idx], pick(self.keys), cache=self._cache, rows=self._rows[idx.numpy()],
                     paths=pick(self.paths), origin=pick(self.origin))


@dataclass
class ImageData:
    name: str
    spec: str
    classes: list[str]
    splits: dict[str, Split]
    preprocess: Preprocess
    mode: str = "memory"  # memory | stream
    flips: bool = False  # the default for augmentation: do horizontal flips keep the class?
    flips_reason: str = ""
    source_kind: str = ""
    source_root: str | None = None
    split_info: dict = field(default_factory=dict)
    skipped: list[BadImage] = field(default_factory=list)
    fingerprints: dict = field(default_factory=dict)  # source split -> fingerprint
    file_stats: dict = field(default_factory=dict)  # file key -> [size, mtime_ns], for the manifest
    notes: list[str] = field(default_factory=list)

    @property
    def train(self) -> Split:
        return self.splits["train"]

    @property
    def val(self) -> Split:
        return self.splits["val"]

    @property
    def channels(self) -> int:
        return self.preprocess.channels

    @property
    def size(self) -> tuple[int, int]:
        return self.preprocess.size

    @property
    def mean(self) -> list[float]:
        return list(self.preprocess.mean)

    @property
    def std(self) -> list[float]:
        return list(self.preprocess.std)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise CnnkitError(f"data {self.spec!r} has no '{name}' split; it has: {', '.join(self.splits)}")
        return self.splits[name]

    def describe(self) -> str:
        parts = ", ".join(f"{k} {len(v):,}" for k, v in self.splits.items())
        return f"{self.name}: {len(self.classes)} classes, {self.channels}x{self.size[0]}x{self.size[1]}, {parts}"

    def manifest(self) -> dict:
        """Exactly which items are in which split, and the source's fingerprint: the run's split.json."""
        return build_manifest(self)


def channel_stats(split: Split, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of a split's uint8 images, in [0, 1] units; read in batches of ~8 MB and
    summed without a float copy of the batch; a streamed split uses a seeded sample of STATS_SAMPLE images."""
    idx = torch.arange(len(split))
    if not split.in_memory and len(split) > STATS_SAMPLE:
        idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:STATS_SAMPLE].sort().values
    c, h, w = split.get(idx[:1]).shape[1:]
    per_batch = max(1, (8 << 20) // (c * h * w))
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for x, _ in split.batches(per_batch, idx):
        for i in range(0, len(x), 64):  # the squares in float32, 64 images at a time
            part = x[i:i + 64].transpose(0, 1).reshape(c, -1)
            s += part.sum(1, dtype=torch.float64)
            f = part.float()
            s2 += (f * f).sum(1, dtype=torch.float64)
    n = len(idx) * h * w
    mean = s / n / 255.0
    std = (s2 / n / 255.0 ** 2 - mean ** 2).clamp_min(1e-12).sqrt()
    return [round(float(v), 6) for v in mean], [round(max(float(v), 1e-3), 6) for v in std]


def stats_from_sums(sums: np.ndarray, size: tuple[int, int]) -> tuple[list[float], list[float]]:
    """Mean and std in [0, 1] units from images' per-channel Σx and Σx² (the cache's sums.npy rows)."""
    n = len(sums) * size[0] * size[1]
    mean = sums[:, :, 0].sum(0) / n / 255.0
    std = np.sqrt(np.clip(sums[:, :, 1].sum(0) / n / 255.0 ** 2 - mean ** 2, 1e-12, None))
    return [round(float(v), 6) for v in mean], [round(max(float(v), 1e-3), 6) for v in std]


# --- building the data ------------------------------------------------------------------------------------
def _pixels(source: Source, img_size: int | None, max_pixels: int,
            fingerprint: str) -> tuple[int, tuple, list, int | None]:
    """Channels and size of the images the model will see; for files, the unreadable ones found from
    their headers (nothing decoded yet), and the bit depth of its 16-bit PNG/TIFF images (`_depth`). For files
    the answer is kept beside the image cache, under the files' fingerprint: a second run on the same files
    reads no header."""
    first = next(iter(source.splits.values()))
    if not source.is_files:
        c, h, w = first.x.shape[1:]
        return int(c), ((img_size, img_size) if img_size else (int(h), int(w))), [], None
    import json

    from .._io import atomic_write_json

    key = cache_key(fingerprint, {"headers": True, "img_size": img_size, "max_pixels": max_pixels})
    saved = cache_root().parent / "headers" / f"{key}.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # not there yet, or damaged: scanned below
        d = json.loads(saved.read_text(encoding="utf-8"))
        bits = d["bits"]
        return int(d["channels"]), tuple(d["size"]), [BadImage(p, r) for p, r in d["bad"]], \
            (int(bits) if bits is not None else None)
    channels, size, bad, bits = _scan_headers(source, img_size, max_pixels)
    with contextlib.suppress(OSError):  # a read-only or full cache folder only costs the next run this scan
        atomic_write_json(saved, {"channels": channels, "size": list(size), "bad": [[b.path, b.reason] for b in bad],
                                  "bits": bits})
    return channels, size, bad, bits


def _depth(paths: list[str], max_pixels: int) -> int | None:
    """The bit depth of a data set's 16-bit PNG/TIFF images (DICOM has its own): the smallest of 8, 10, 12, 14
    and 16 bits that holds their largest value, so that 12-bit data in 16-bit files spans black to white
    (0..4095, not 0..15) and 16-bit copies of 8-bit images (0..65535) give those images back. One depth for the
    whole data set, saved in the run's preprocessing: brightness means the same in every image, at predict too.
    None: no such images."""
    from ..preprocess import HIGH_BIT_DEPTHS
    from .images import open_image

    def peak(p: str) -> int:
        try:
            return int(np.asarray(open_image(p, max_pixels=max_pixels)).max())
        except BadImagesError:
            return 0  # reported when the images are decoded
    if not paths:
        return None
    with ThreadPoolExecutor(max_workers=2) as pool:
        top = max(pool.map(peak, paths))
    return next((b for b in HIGH_BIT_DEPTHS if top < 2 ** b), 16)


def _scan_headers(source: Source, img_size: int | None, max_pixels: int) -> tuple[int, tuple, list, int | None]:
    from ..preprocess import INT_HIGH_BIT_MODES
    from . import dicom

    paths = [p for it in source.splits.values() for p in it.paths]
    headers = read_headers(paths, max_pixels)
    bad = [h for h in headers if isinstance(h, BadImage)]  # reported with the ones decoding finds
    good = [h for h in headers if not isinstance(h, BadImage)]
    if not good:
        raise CnnkitError(f"{source.spec}: no readable images")
    channels = 1 if all(mode in GRAY_MODES for mode, _ in good) else 3
    sizes = {size for _, size in good}
    if img_size:
        size = (img_size, img_size)
    elif len(sizes) == 1 and max(next(iter(sizes))) <= 64:
        w, h = next(iter(sizes))
        size = (h, w)
    else:
        size = (128, 128)  # photos: a CPU-friendly default; --img-size 224 for ImageNet-sized training
    deep = [p for p, h in zip(paths, headers) if not isinstance(h, BadImage) and h[0] in INT_HIGH_BIT_MODES
            and not dicom.is_dicom(p)]
    return channels, size, bad, _depth(deep, max_pixels)


def _store(source: Source, pixels: Preprocess, mode: str, max_pixels: int, log, fingerprint: str) -> tuple:
    """All items of the source, every split one after the other, as a tensor (memory) or a cache (stream).
    Returns (mode, store, {row: reason} of unreadable images, each file's content digest or None, the cache
    or None)."""
    order = list(source.splits)
    items = [source.splits[k] for k in order]
    n = sum(len(it) for it in items)
    c, (h, w) = pixels.channels, pixels.size
    need = n * c * h * w
    if mode == "auto":
        mode = "memory" if need < MEMORY_SHARE * available_memory() else "stream"
    native = not source.is_files and all(it.x.shape[1:] == (c, h, w) for it in items)
    if native and mode != "stream":  # array source at its own size: nothing to decode
        x = torch.from_numpy(np.concatenate([it.x for it in items]))
        return "memory", x, {}, None, None
    digest = None
    if source.is_files:
        paths = [p for it in items for p in it.paths]
        load = lambda i: pixels.load(paths[i], max_pixels=max_pixels)  # noqa: E731
        digest = lambda i: file_digest(paths[i])  # noqa: E731  (split.json tells an edited file from a copied one)
    else:
        arrays = np.concatenate([it.x for it in items])
        load = lambda i: pixels.image(arrays[i])  # noqa: E731
    import PIL

    from .._version import __version__

    # the decoder and the resizing are part of the pixels: another Pillow or cnnkit gives another cache
    key = cache_key(fingerprint, {"channels": c, "size": [h, w], "resize": pixels.resize, **({"crop": pixels.crop} if pixels.crop < 1 else {}),
                                  **({"window": list(pixels.window)} if pixels.window else {}),
                                  **({"bits": pixels.bits} if pixels.bits else {}),
                                  "max_pixels": max_pixels,
                                  "jpeg_draft": True, "pillow": PIL.__version__, "cnnkit": __version__})
    cache, _ = open_or_build(key, n, (c, h, w), load, describe=f"{source.name} at {c}x{h}x{w}", log=log,
                             digest=digest)
    return mode, cache, cache.bad, cache.digests, cache


def _grouper(source: Source, group_by: str):
    """(items, i) → the group of item i: a column of a CSV source, else a regular expression searched in the
    item's path relative to the data folder (its first group, or the whole match). A file it does not match is
    one line naming it."""
    import re

    if not source.is_files:
        raise CnnkitError(f"--group-by {group_by}: groups come from file paths or a CSV column; {source.spec} is "
                          "an array data set (no files)")
    columns = next(iter(source.splits.values())).columns or {}
    if group_by in columns:
        return lambda it, i: it.columns[group_by][i]
    try:
        pattern = re.compile(group_by)
    except re.error as e:
        cols = f" (the CSV's columns: {', '.join(columns)})" if columns else ""
        raise CnnkitError(f"--group-by {group_by!r} is neither a column{cols} nor a regular expression ({e})") from None

    def group(it, i) -> str:
        m = pattern.search(it.keys[i])
        if m is None:
            raise CnnkitError(f"--group-by {group_by!r} does not match {it.keys[i]}; every file's path must name "
                              "its group (e.g. 'patient_(\\d+)' for .../patient_017/image.png)")
        return m.group(1) if m.groups() else m.group(0)

    return group


def file_digest(path: str) -> str:
    """A content hash of a file (BLAKE2b, 128 bits)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


def load_data(spec: str, *, img_size: int | None = None, val_fraction: float | None = None, seed: int = 0,
              on_bad_image: str = "fail", max_pixels: int | None = None, mean=None, std=None,
              download: bool = False, mode: str = "auto", manifest: dict | None = None,
              preprocess: Preprocess | None = None, min_size: int | None = None, window=None,
              group_by: str | None = None, log=None,
              bad_image_hint: str = " Fix or remove them, or pass --on-bad-image skip to leave them out.") -> ImageData:
    """Read a data set: in memory or streamed (`mode`), split, with its preprocessing.

    `val_fraction` (default 0.1, 0.2 for digits) of the training images, stratified and seeded, become the
    validation split when the source has none. `mean`/`std` default to the training split's. `manifest`
    (a run's split.json) gives the split instead, and `preprocess` (a run's) the channels, size and stats.
    RGB `mean`/`std` (a pretrained network's) for a grayscale data set are averaged, as the RGB-summed first
    filters expect. `min_size`: with no `img_size`, images smaller than this are upsampled to it (square).
    `window` ((center, width), or "C,W"): how DICOM and 16-bit images are mapped to 8 bits (data/dicom.py).
    `group_by` (a CSV column, or a regular expression on the file's path): the validation split cut from train
    keeps each group (a patient) whole (`splits.group_split`).

    >>> data = load_data('digits')
    >>> data.describe()
    'digits: 10 classes, 1x8x8, train 1,437, val 360'
    """
    if on_bad_image not in ("fail", "skip"):
        raise CnnkitError(f"--on-bad-image must be 'fail' or 'skip', got {on_bad_image!r}")
    if mode not in DATA_MODES:
        raise CnnkitError(f"--data-mode must be one of {', '.join(DATA_MODES)}, got {mode!r}")
    if img_size is not None and img_size < 1:
        raise CnnkitError(f"--img-size must be at least 1, got {img_size}")
    max_pixels = max_pixels or MAX_PIXELS
    log = log or sys.stderr
    source = load_source(spec, download=download)
    split_fps = {name: it.fingerprint() for name, it in source.splits.items()}
    fingerprint = "/".join(split_fps.values())  # the identity of the files (or arrays): keys the caches
    if preprocess is not None:
        channels, size, header_bad, bits = preprocess.channels, preprocess.size, [], preprocess.bits
    else:
        channels, size, header_bad, bits = _pixels(source, img_size, max_pixels, fingerprint)
        if img_size is None and min_size and min(size) < min_size:
            channels, size, header_bad, bits = _pixels(source, min_size, max_pixels, fingerprint)
        if mean is not None and std is not None and channels == 1 and len(mean) == 3:
            mean, std = [round(sum(mean) / 3, 6)], [round(sum(std) / 3, 6)]
    if preprocess is not None:
        window = preprocess.window
    elif window is not None:
        from .dicom import parse_window

        window = parse_window(window)
    pixels = Preprocess(channels, size, (0.0,) * channels, (1.0,) * channels,
                        crop=preprocess.crop if preprocess is not None else 1.0, window=window, bits=bits)
    mode, store, bad_rows, digests, cache = _store(source, pixels, mode, max_pixels, log, fingerprint)

    # every item: its source split, key, label, row in the store; the unreadable ones set aside
    origin, keys, labels, paths, rows, skipped, groups = [], [], [], [], [], [], []
    group_of = _grouper(source, group_by) if group_by and manifest is None else None
    row = 0
    for name, it in source.splits.items():
        for i in range(len(it)):
            if row in bad_rows:
                skipped.append(BadImage(it.paths[i] if it.paths else f"{name}:{i}", bad_rows[row]))
            else:
                if group_of is not None:
                    groups.append(group_of(it, i))
                origin.append(name)
                keys.append(it.key(i))
                labels.append(int(it.y[i]))
                paths.append(it.paths[i] if it.paths else None)
                rows.append(row)
            row += 1
    header_paths = {b.path for b in header_bad}
    skipped = header_bad + [b for b in skipped if b.path not in header_paths]
    if skipped and on_bad_image == "fail" and manifest is None:
        raise BadImagesError(skipped, bad_image_hint)
    if skipped and manifest is None:
        print(f"warning: skipping {len(skipped)} unreadable image(s): " + "; ".join(map(str, skipped[:10])),
              file=log)
    origin_a, labels_a, rows_a = np.array(origin), np.array(labels, dtype=np.int64), np.array(rows, dtype=np.int64)
    if int(labels_a.max()) >= len(source.classes) or int(labels_a.min()) < 0:
        raise CnnkitError(f"{spec}: labels run from {int(labels_a.min())} to {int(labels_a.max())}, "
                          f"but there are {len(source.classes)} classes")

    fingerprints = split_fps if not source.is_files else {}
    file_stats = {}
    if source.is_files:
        row = 0
        for it in source.splits.values():
            for k, st in zip(it.keys, it.stats()):
                file_stats[k] = [*st, digests[row]] if digests else list(st)
                row += 1
    if manifest is not None:
        assignment, info = from_manifest(manifest, source, origin, keys, fingerprints, file_stats)
    else:
        groups_a = np.array(groups, dtype=object) if group_of is not None else None
        assignment, info = assign(source, origin_a, labels_a, val_fraction, seed, spec, groups=groups_a)
        if groups_a is not None:
            info["group_by"] = group_by
            info["groups"] = {k: int(len(set(groups_a[v]))) for k, v in assignment.items()}
            shared = set(groups_a[assignment["train"]]) & set().union(
                *(set(groups_a[v]) for k, v in assignment.items() if k != "train"))
            if shared:  # the source's own val/ or test/ folder: its split, kept, but said
                print(f"warning: --group-by {group_by}: {len(shared)} group(s) have images in train and in the "
                      f"data's own val/test folders; move them so that each group is on one side", file=log)

    def make(sel: np.ndarray) -> Split:
        y = torch.from_numpy(labels_a[sel])
        ks = [keys[i] for i in sel]
        ps = [paths[i] for i in sel] if source.is_files else None
        org = [str(origin_a[i]) for i in sel]
        if mode == "memory":  # each split read straight from the cache: the decoded data set is held once
            x = store.read(rows_a[sel]) if isinstance(store, ImageCache) else store[torch.from_numpy(rows_a[sel])]
            return Split(y, ks, x=x, paths=ps, origin=org)
        return Split(y, ks, cache=store, rows=rows_a[sel], paths=ps, origin=org)

    splits = {name: make(sel) for name, sel in assignment.items()}
    if preprocess is not None:
        prep = preprocess
    else:
        if mean is not None and std is not None:
            m, sd = None, None
        elif cache is not None:  # from the per-image sums the cache build made: no pass over the pixels
            m, sd = stats_from_sums(cache.sums()[rows_a[assignment["train"]]], size)
        else:
            m, sd = channel_stats(splits["train"], seed)
        prep = Preprocess(channels, size, tuple(mean if mean is not None else m), tuple(std if std is not None else sd),
                          window=window, bits=bits)
    return ImageData(source.name, source.spec, list(source.classes), splits, prep, mode=mode,
                     flips=bool(source.flips), flips_reason=source.flips_reason, source_kind=source.kind,
                     source_root=source.root, split_info=info, skipped=skipped, fingerprints=fingerprints,
                     file_stats=file_stats, notes=list(source.notes))


