"""Data sources, one function each, returning raw splits of uint8 C×H×W images and integer labels.

Specs: `digits`, `fashion-mnist:DIR`, `mnist:DIR`, `cifar10:DIR`, `folder:DIR`, `csv:FILE`.
IDX and CIFAR files are read as distributed (gzipped or not); torchvision's dataset classes remain the way
to download them (`--download`), and write the same files these readers read.
"""
from __future__ import annotations

import csv
import gzip
import io
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CnnkitError, UnknownNameError
from .images import BadImage, BadImagesError, IMAGE_EXTENSIONS, is_grayscale, list_images, read_images, to_array

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


@dataclass
class RawSplit:
    x: np.ndarray  # uint8 N×C×H×W
    y: np.ndarray  # int64 N
    paths: list[str] | None = None


@dataclass
class RawData:
    name: str
    classes: list[str]
    splits: dict[str, RawSplit]  # 'train', and any of 'val', 'test'
    skipped: list[BadImage] = field(default_factory=list)
    default_val_fraction: float = 0.1
    fixed_split_seed: int | None = None  # digits: the split never changes with --seed
    flips_ok: bool = True  # horizontal flips keep the class (not for digits and letters)


# --- digits ----------------------------------------------------------------------------------------------
def load_digits_source() -> RawData:
    """scikit-learn's 1,797 8×8 handwritten digits (values 0–16, stored as 0–255)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return RawData("digits", [str(i) for i in range(10)], {"train": RawSplit(x, d.target.astype(np.int64))},
                   default_val_fraction=0.2, fixed_split_seed=0, flips_ok=False)


# --- IDX (MNIST, Fashion-MNIST) --------------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format), gzipped or not: magic 0x0000 0x08 ndim, big-endian sizes, uint8 data."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise CnnkitError(f"{path} is not an IDX file of unsigned bytes (magic {raw[:4].hex() or 'empty'}, "
                          "expected 0000080N)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise CnnkitError(f"{path} is truncated: header says {dims} = {int(np.prod(dims))} values, "
                          f"found {data.size}")
    return data.reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for base in (folder, folder / "raw", folder / "FashionMNIST" / "raw", folder / "MNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (base / name).is_file():
                return base / name
    return None


def load_idx_source(kind: str, folder: Path, download: bool = False) -> RawData:
    if download:
        import torchvision.datasets as tvd

        cls = tvd.FashionMNIST if kind == "fashion-mnist" else tvd.MNIST
        for train in (True, False):
            cls(str(folder), train=train, download=True)
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = _find(folder, f"{prefix}-images-idx3-ubyte"), _find(folder, f"{prefix}-labels-idx1-ubyte")
        if images is None or labels is None:
            if split == "test":
                continue
            raise CnnkitError(f"no {prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz] in {folder}; "
                              f"point {kind}:DIR at the folder holding them, or add --download to fetch them")
        x, y = read_idx(images), read_idx(labels).astype(np.int64)
        if len(x) != len(y):
            raise CnnkitError(f"{images} has {len(x)} images but {labels} has {len(y)} labels")
        splits[split] = RawSplit(x[:, None].copy(), y)
    classes = FASHION_CLASSES if kind == "fashion-mnist" else [str(i) for i in range(10)]
    return RawData(kind, classes, splits, flips_ok=kind == "fashion-mnist")


# --- CIFAR-10 (python pickle batches) --------------------------------------------------------------------
class _SafeUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's batches (dicts of bytes, lists and NumPy arrays) and refuses anything else, so a
    crafted batch file cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a CIFAR batch")


def _unpickle(path: Path) -> dict:
    try:
        return _SafeUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise CnnkitError(f"{path} is not a CIFAR-10 batch file ({e})") from None


def load_cifar10_source(folder: Path, download: bool = False) -> RawData:
    if download:
        import torchvision.datasets as tvd

        tvd.CIFAR10(str(folder), train=True, download=True)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    train_files = [folder / f"data_batch_{i}" for i in range(1, 6)]
    missing = [str(p) for p in train_files + [folder / "test_batch"] if not p.is_file()]
    if len(missing) == 6:
        raise CnnkitError(f"no CIFAR-10 batches (data_batch_1..5, test_batch) in {folder}; add --download to fetch them")

    def read(files):
        xs, ys = [], []
        for p in files:
            d = _unpickle(p)
            data, labels = d.get(b"data"), d.get(b"labels")
            if data is None or labels is None:
                raise CnnkitError(f"{p} has no b'data'/b'labels' entries: not a CIFAR-10 batch")
            xs.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(labels, dtype=np.int64))
        return RawSplit(np.concatenate(xs), np.concatenate(ys))

    splits = {"train": read([p for p in train_files if p.is_file()])}
    if (folder / "test_batch").is_file():
        splits["test"] = read([folder / "test_batch"])
    classes = [f"class_{i}" for i in range(10)]
    if (folder / "batches.meta").is_file():
        meta = _unpickle(folder / "batches.meta")
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(b"label_names", classes)]
    return RawData("cifar10", classes, splits)


# --- image files: folder and CSV -------------------------------------------------------------------------
def _decode_files(entries: dict[str, list[tuple[str, int]]], img_size: int | None, on_bad_image: str,
                  max_pixels: int) -> tuple[dict[str, RawSplit], list[BadImage], int]:
    """Decode every file of every split; decide channels (1 if all grayscale) and size; report bad files."""
    images, bad = {}, []
    for split, items in entries.items():
        ims, b = read_images([p for p, _ in items], max_pixels=max_pixels)
        images[split] = ims
        bad += b
    if bad and on_bad_image == "fail":
        raise BadImagesError(bad, " Fix or remove them, or pass --on-bad-image skip to leave them out.")
    if bad:
        print(f"warning: skipping {len(bad)} unreadable image(s): " + "; ".join(map(str, bad[:10])), file=sys.stderr)
    good = [im for ims in images.values() for im in ims if im is not None]
    if not good:
        raise CnnkitError("no readable images found")
    channels = 1 if all(is_grayscale(im) for im in good) else 3
    sizes = {im.size for im in good}
    if img_size:
        size = (img_size, img_size)
    elif len(sizes) == 1 and max(next(iter(sizes))) <= 64:
        w, h = next(iter(sizes))
        size = (h, w)
    else:
        size = (128, 128)  # photos: a CPU-friendly default; --img-size 224 for ImageNet-sized training
    splits = {}
    for split, items in entries.items():
        keep = [(im, lbl, p) for im, (p, lbl) in zip(images[split], items) if im is not None]
        if not keep:
            continue
        x = np.stack([to_array(im, channels, size) for im, _, _ in keep])
        splits[split] = RawSplit(x, np.array([lbl for _, lbl, _ in keep], dtype=np.int64), [p for _, _, p in keep])
    return splits, bad, channels


def load_folder_source(folder: Path, *, img_size: int | None, on_bad_image: str, max_pixels: int) -> RawData:
    """ImageFolder layout: DIR/CLASS/*.png, or DIR/train/CLASS/… with DIR/val/ (or DIR/test/)."""
    if not folder.is_dir():
        raise CnnkitError(f"folder:{folder} is not a directory")
    split_dirs = {s: folder / s for s in ("train", "val", "test") if (folder / s).is_dir()}
    if "train" not in split_dirs:
        split_dirs = {"train": folder}
    class_dirs = sorted(p.name for p in split_dirs["train"].iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise CnnkitError(f"{split_dirs['train']} needs one sub-folder per class (at least 2), found "
                          f"{len(class_dirs)}: expected DIR/CLASS/image.png or DIR/train/CLASS/image.png")
    index = {c: i for i, c in enumerate(class_dirs)}
    entries: dict[str, list[tuple[str, int]]] = {}
    for split, d in split_dirs.items():
        items = []
        for cdir in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if cdir.name not in index:
                raise CnnkitError(f"{cdir} is a class that {split_dirs['train']} does not have "
                                  f"(classes: {', '.join(class_dirs)})")
            items += [(str(p), index[cdir.name]) for p in list_images(cdir)]
        if not items:
            raise CnnkitError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {d}")
        entries[split] = items
    splits, bad, _ = _decode_files(entries, img_size, on_bad_image, max_pixels)
    return RawData(folder.name or "folder", class_dirs, splits, skipped=bad)


def load_csv_source(path: Path, *, img_size: int | None, on_bad_image: str, max_pixels: int) -> RawData:
    """Rows of `path,label` (a header row is allowed); paths relative to the CSV file's folder."""
    if not path.is_file():
        raise CnnkitError(f"csv:{path}: no such file")
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.reader(f)):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < 2:
                raise CnnkitError(f"{path}, line {i + 1}: expected 'path,label', got {','.join(row)!r}")
            if i == 0 and row[0].strip().lower() in ("path", "file", "filename", "image"):
                continue
            rows.append((str((path.parent / row[0].strip()).resolve()), row[1].strip()))
    if not rows:
        raise CnnkitError(f"{path} has no rows of 'path,label'")
    classes = sorted({lbl for _, lbl in rows})
    if len(classes) < 2:
        raise CnnkitError(f"{path} names only {len(classes)} class ({classes[0]}); a classifier needs at least 2")
    index = {c: i for i, c in enumerate(classes)}
    splits, bad, _ = _decode_files({"train": [(p, index[lbl]) for p, lbl in rows]}, img_size, on_bad_image, max_pixels)
    return RawData(path.stem, classes, splits, skipped=bad)


SOURCES = ("digits", "fashion-mnist:DIR", "mnist:DIR", "cifar10:DIR", "folder:DIR", "csv:FILE")


def load_source(spec: str, *, img_size: int | None = None, on_bad_image: str = "fail",
                max_pixels: int | None = None, download: bool = False) -> RawData:
    """Parse a data spec and read its raw splits."""
    from .images import MAX_PIXELS

    max_pixels = max_pixels or MAX_PIXELS
    if on_bad_image not in ("fail", "skip"):
        raise CnnkitError(f"--on-bad-image must be 'fail' or 'skip', got {on_bad_image!r}")
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "digits" and not arg:
        return load_digits_source()
    known = [s.split(":")[0] for s in SOURCES]
    if kind not in known:
        raise UnknownNameError("data source", kind, SOURCES)
    if not arg:
        raise CnnkitError(f"--data {spec!r} needs a path: {kind}:DIR (or csv:FILE)")
    path = Path(arg).expanduser()
    if kind in ("fashion-mnist", "mnist"):
        if not path.is_dir() and not download:
            raise CnnkitError(f"{kind}:{arg}: no such folder; point it at the folder of IDX files, or add --download")
        return load_idx_source(kind, path, download)
    if kind == "cifar10":
        if not path.is_dir() and not download:
            raise CnnkitError(f"cifar10:{arg}: no such folder; point it at the CIFAR-10 batches, or add --download")
        return load_cifar10_source(path, download)
    if kind == "folder":
        return load_folder_source(path, img_size=img_size, on_bad_image=on_bad_image, max_pixels=max_pixels)
    return load_csv_source(path, img_size=img_size, on_bad_image=on_bad_image, max_pixels=max_pixels)
