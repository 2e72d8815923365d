"""`load_data(spec)`: a data set as uint8 tensors in memory, split, with its classes and normalisation.

Small image data sets fit in memory, and keeping them there as one uint8 tensor (no per-sample PIL work
while training) is the fastest way to feed a CPU. Channels, input size and mean/std are resolved here and
saved with the model, so that predicting needs no flags.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CnnkitError
from .images import BadImage
from .sources import RawData, RawSplit, load_source


@dataclass
class Split:
    x: torch.Tensor  # uint8 N×C×H×W
    y: torch.Tensor  # int64 N
    paths: list[str] | None = None  # the file behind each sample, for file sources

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class ImageData:
    name: str
    spec: str
    classes: list[str]
    splits: dict[str, Split]
    mean: list[float]
    std: list[float]
    flips_ok: bool = True
    split_info: dict = field(default_factory=dict)
    skipped: list[BadImage] = field(default_factory=list)

    @property
    def train(self) -> Split:
        return self.splits["train"]

    @property
    def val(self) -> Split:
        return self.splits["val"]

    @property
    def channels(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.train.x.shape[2]), int(self.train.x.shape[3])

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise CnnkitError(f"data {self.spec!r} has no '{name}' split; it has: {', '.join(self.splits)}")
        return self.splits[name]

    def describe(self) -> str:
        parts = ", ".join(f"{k} {len(v):,}" for k, v in self.splits.items())
        return (f"{self.name}: {len(self.classes)} classes, {self.channels}x{self.size[0]}x{self.size[1]}, {parts}")


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val), sorted, with `fraction` of each class in val, chosen at random by `seed`.

    The validation set has ceil(fraction × n) images (scikit-learn's rule), shared out over the classes in
    proportion to their sizes (largest remainders first); a class never gives away its last training image.
    Written here rather than imported from scikit-learn, whose import alone takes 2 s of every training run.

    >>> tr, va = stratified_split(np.array([0] * 8 + [1] * 4), 0.25, seed=0)
    >>> len(tr), len(va), np.bincount(np.array([0] * 8 + [1] * 4)[va]).tolist()
    (9, 3, [2, 1])
    """
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    n_val = min(math.ceil(fraction * len(y)), len(y) - 1)
    quota = counts * n_val / len(y)
    take = np.floor(quota).astype(int)
    by_remainder = np.argsort(-(quota - take), kind="stable")
    take[by_remainder[:n_val - take.sum()]] += 1
    take = np.minimum(take, counts - 1)  # every class keeps at least one training image
    val = np.concatenate([rng.permutation(np.flatnonzero(inverse == c))[:k] for c, k in enumerate(take)])
    mask = np.zeros(len(y), dtype=bool)
    mask[val] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    t = torch.from_numpy(x).float()
    out = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8).numpy()


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units (computed in chunks: no big float copy)."""
    c = x.shape[1]
    s, s2, n = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0
    for i in range(0, len(x), 4096):
        chunk = x[i:i + 4096].to(torch.float64) / 255.0
        s += chunk.sum((0, 2, 3))
        s2 += (chunk ** 2).sum((0, 2, 3))
        n += chunk.numel() // c
    mean = s / n
    std = (s2 / n - mean ** 2).clamp_min(1e-12).sqrt()
    return [round(float(v), 6) for v in mean], [round(max(float(v), 1e-3), 6) for v in std]


def load_data(spec: str, *, img_size: int | None = None, val_fraction: float | None = None, seed: int = 0,
              on_bad_image: str = "fail", max_pixels: int | None = None, mean=None, std=None,
              download: bool = False) -> ImageData:
    """Read a data set into memory.

    `val_fraction` (default 0.1, 0.2 for digits) of the training images, stratified and seeded, become the
    validation split when the source has none. `mean`/`std` default to the training split's.

    >>> data = load_data('digits')
    >>> data.describe()
    'digits: 10 classes, 1x8x8, train 1,437, val 360'
    """
    raw: RawData = load_source(spec, img_size=img_size, on_bad_image=on_bad_image, max_pixels=max_pixels,
                               download=download)
    splits: dict[str, RawSplit] = dict(raw.splits)
    info: dict = {}
    if "val" not in splits:
        fraction = raw.default_val_fraction if val_fraction is None else val_fraction
        if not 0 < fraction < 1:
            raise CnnkitError(f"--val-fraction must be between 0 and 1, got {fraction}")
        split_seed = raw.fixed_split_seed if raw.fixed_split_seed is not None else seed
        tr = splits["train"]
        if len(tr.y) < 4:
            raise CnnkitError(f"{spec}: only {len(tr.y)} training images; a train/validation split needs more")
        ti, vi = stratified_split(tr.y, fraction, split_seed)
        pick = lambda s, i: RawSplit(s.x[i], s.y[i], [s.paths[j] for j in i] if s.paths else None)  # noqa: E731
        splits["train"], splits["val"] = pick(tr, ti), pick(tr, vi)
        info = {"val_fraction": fraction, "split_seed": split_seed}
    if img_size and spec.split(":")[0] in ("digits", "mnist", "fashion-mnist", "cifar10"):
        splits = {k: RawSplit(_resize(v.x, (img_size, img_size)), v.y, v.paths) for k, v in splits.items()}
    order = [k for k in ("train", "val", "test") if k in splits]
    tensors = {k: Split(torch.from_numpy(np.ascontiguousarray(splits[k].x)), torch.from_numpy(splits[k].y),
                        splits[k].paths) for k in order}
    for k, s in tensors.items():
        if int(s.y.max()) >= len(raw.classes) or int(s.y.min()) < 0:
            raise CnnkitError(f"{spec}: {k} labels run from {int(s.y.min())} to {int(s.y.max())}, "
                              f"but there are {len(raw.classes)} classes")
    m, sd = channel_stats(tensors["train"].x)
    return ImageData(raw.name, spec, list(raw.classes), tensors, list(mean) if mean else m, list(std) if std else sd,
                     flips_ok=raw.flips_ok, split_info=info, skipped=raw.skipped)
