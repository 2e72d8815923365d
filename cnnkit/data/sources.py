"""Data sources, one function each: the classes and the items of each split, nothing decoded yet.

Specs: `digits`, `fashion-mnist:DIR`, `mnist:DIR`, `cifar10:DIR`, `folder:DIR` (or a plain DIR),
`csv:FILE` (or a path ending in .csv). Array sources (digits, IDX, CIFAR batches) give uint8 arrays;
file sources (folders, CSV) give paths, which `dataset.py` decodes once into the image cache.
IDX and CIFAR files are read as distributed (gzipped or not); torchvision's dataset classes remain the way
to download them (`--download`), and write the same files these readers read.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CnnkitError, UnknownNameError
from .images import IMAGE_EXTENSIONS, list_images

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
#: folder names taken as a validation split, and as a test split (fastai's, Roboflow's, Keras' names)
VAL_DIRS, TEST_DIRS = ("val", "valid", "validation"), ("test",)


@dataclass
class Items:
    """One split of a source: labels and either uint8 images (`x`) or files (`paths`, with `keys` relative
    to the source's root, which identify them in a run's split.json)."""

    y: np.ndarray  # int64 N
    x: np.ndarray | None = None  # uint8 N×C×H×W (array sources)
    paths: list[str] | None = None  # absolute paths (file sources)
    keys: list[str] | None = None
    columns: dict[str, list[str]] | None = None  # a CSV's other columns, by header name (for --group-by)

    def __len__(self) -> int:
        return len(self.y)

    def key(self, i: int) -> str | int:
        return self.keys[i] if self.keys is not None else i

    def fingerprint(self) -> str:
        """Changes when any image or label changes: file (key, size, mtime) triples, or the array bytes."""
        h = hashlib.sha256(self.y.tobytes())
        if self.x is not None:
            h.update(str(self.x.shape).encode())
            h.update(np.ascontiguousarray(self.x).tobytes())
        else:
            for k, st in zip(self.keys, self.stats()):
                h.update(f"{k}\0{st[0]}\0{st[1]}\n".encode())
        return h.hexdigest()

    def stats(self) -> list[tuple[int, int]]:
        """(size, mtime_ns) of each file; (-1, -1) for a file that is gone."""
        out = []
        for p in self.paths or []:
            try:
                st = os.stat(p)
                out.append((st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((-1, -1))
        return out


@dataclass
class Source:
    name: str
    kind: str  # digits | fashion-mnist | mnist | cifar10 | folder | csv
    spec: str
    classes: list[str]
    splits: dict[str, Items]  # 'train' (or 'all'), and any of 'val', 'test'
    root: str | None = None  # file sources: the folder keys are relative to
    default_val_fraction: float = 0.1
    fixed_split_seed: int | None = None  # digits: the split never changes with --seed
    flips: bool | None = None  # do horizontal flips keep the class? None: not known
    flips_reason: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def is_files(self) -> bool:
        return next(iter(self.splits.values())).paths is not None


# --- digits ----------------------------------------------------------------------------------------------
def load_digits_source() -> Source:
    """scikit-learn's 1,797 8×8 handwritten digits (values 0–16, stored as 0–255)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return Source("digits", "digits", "digits", [str(i) for i in range(10)],
                  {"train": Items(d.target.astype(np.int64), x=x)}, default_val_fraction=0.2, fixed_split_seed=0,
                  flips=False, flips_reason="digits: a mirrored digit is not the same digit")


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


def load_idx_source(kind: str, folder: Path, spec: str, download: bool = False) -> Source:
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
        splits[split] = Items(y, x=x[:, None].copy())
    if kind == "fashion-mnist":
        return Source(kind, kind, spec, FASHION_CLASSES, splits, flips=True,
                      flips_reason="Fashion-MNIST: photos of clothing, the same class when mirrored")
    return Source(kind, kind, spec, [str(i) for i in range(10)], splits, flips=False,
                  flips_reason="MNIST: a mirrored digit is not the same digit")


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


def load_cifar10_source(folder: Path, spec: str, download: bool = False) -> Source:
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
        return Items(np.concatenate(ys), x=np.concatenate(xs))

    splits = {"train": read([p for p in train_files if p.is_file()])}
    if (folder / "test_batch").is_file():
        splits["test"] = read([folder / "test_batch"])
    classes = [f"class_{i}" for i in range(10)]
    if (folder / "batches.meta").is_file():
        meta = _unpickle(folder / "batches.meta")
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(b"label_names", classes)]
    return Source("cifar10", "cifar10", spec, classes, splits, flips=True,
                  flips_reason="CIFAR-10: photos of objects, the same class when mirrored")


# --- image files: folder and CSV -------------------------------------------------------------------------
_UNKNOWN_FLIPS = "unknown content: a mirrored image may change class (text, digits, left/right anatomy)"


def _file_items(paths: list[str], labels: list[int], root: Path) -> Items:
    keys = [Path(os.path.relpath(p, root)).as_posix() for p in paths]
    return Items(np.asarray(labels, dtype=np.int64), paths=paths, keys=keys)


def load_folder_source(folder: Path, spec: str) -> Source:
    """ImageFolder layout: DIR/CLASS/*.png, or DIR/train/CLASS/… with DIR/val|valid|validation/ and DIR/test/."""
    if not folder.is_dir():
        raise CnnkitError(f"{spec}: {folder} is not a directory")
    subdirs = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
    split_dirs: dict[str, Path] = {}
    if "train" in subdirs:
        split_dirs["train"] = subdirs["train"]
        for split, names in (("val", VAL_DIRS), ("test", TEST_DIRS)):
            found = [subdirs[n] for n in names if n in subdirs]
            if len(found) > 1:
                raise CnnkitError(f"{folder} has both {found[0].name}/ and {found[1].name}/; keep one validation folder")
            if found:
                split_dirs[split] = found[0]
    else:
        split_dirs["train"] = folder
    class_dirs = sorted(p.name for p in split_dirs["train"].iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise CnnkitError(f"{split_dirs['train']} needs one sub-folder per class (at least 2), found "
                          f"{len(class_dirs)}: expected DIR/CLASS/image.png or DIR/train/CLASS/image.png "
                          f"(with DIR/val/ or DIR/valid/ and DIR/test/ if you have them)")
    index = {c: i for i, c in enumerate(class_dirs)}
    splits: dict[str, Items] = {}
    for split, d in split_dirs.items():
        paths, labels = [], []
        for cdir in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if cdir.name not in index:
                raise CnnkitError(f"{cdir} is a class that {split_dirs['train']} does not have "
                                  f"(classes: {', '.join(class_dirs)})")
            found = [str(p) for p in list_images(cdir)]
            paths += found
            labels += [index[cdir.name]] * len(found)
        if not paths:
            raise CnnkitError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {d}")
        splits[split] = _file_items(paths, labels, folder)
    notes = [f"{split} split: {d.name}/" for split, d in split_dirs.items() if d != folder]
    return Source(folder.resolve().name or "folder", "folder", spec, class_dirs, splits, root=str(folder.resolve()),
                  flips=None, flips_reason=_UNKNOWN_FLIPS, notes=notes)


def load_csv_source(path: Path, spec: str) -> Source:
    """Rows of `path,label` (a header row is allowed); paths relative to the CSV file's folder."""
    if not path.is_file():
        raise CnnkitError(f"{spec}: no such file")
    rows, extra, header = [], [], None
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for i, row in enumerate(csv.reader(f)):
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) < 2:
                    raise CnnkitError(f"{path}, line {i + 1}: expected 'path,label', got {','.join(row)!r}")
                if i == 0 and row[0].strip().lower() in ("path", "file", "filename", "image"):
                    header = [c.strip() for c in row]
                    continue
                rows.append((str((path.parent / row[0].strip()).resolve()), row[1].strip()))
                extra.append([c.strip() for c in row[2:]])
    except UnicodeDecodeError:
        raise CnnkitError(f"{path} is not a UTF-8 text file of 'path,label' rows") from None
    if not rows:
        raise CnnkitError(f"{path} has no rows of 'path,label'")
    seen: dict[str, str] = {}
    for p, lbl in rows:  # one file listed twice could land in train and val at once
        if p in seen:
            raise CnnkitError(f"{path} lists {p} twice (labels {seen[p]!r} and {lbl!r}); keep one row per image")
        seen[p] = lbl
    classes = sorted({lbl for _, lbl in rows})
    if len(classes) < 2:
        raise CnnkitError(f"{path} names only {len(classes)} class ({classes[0]}); a classifier needs at least 2")
    index = {c: i for i, c in enumerate(classes)}
    items = _file_items([p for p, _ in rows], [index[lbl] for _, lbl in rows], path.parent.resolve())
    if header and len(header) > 2:  # named extra columns (a patient ID for --group-by, …)
        items.columns = {name: [r[j] if j < len(r) else "" for r in extra] for j, name in enumerate(header[2:])}
    return Source(path.stem, "csv", spec, classes, {"train": items}, root=str(path.parent.resolve()),
                  flips=None, flips_reason=_UNKNOWN_FLIPS)


SOURCES = ("digits", "fashion-mnist:DIR", "mnist:DIR", "cifar10:DIR", "folder:DIR", "csv:FILE")  # or a plain DIR / FILE.csv


def parse_spec(spec: str) -> tuple[str, Path | None]:
    """(kind, absolute path or None) of a data spec, without reading anything. A plain folder path is
    folder:DIR, and a path ending in .csv is csv:FILE."""
    spec = str(spec)
    kind, sep, arg = spec.partition(":")
    kind = kind.strip().lower()
    known = [s.split(":")[0] for s in SOURCES]
    if kind == "digits" and not arg:
        return "digits", None
    plain = Path(spec).expanduser()
    if plain.is_dir():
        return "folder", plain.resolve()
    if plain.suffix.lower() == ".csv" and not (sep and kind in known):
        return "csv", plain.resolve()
    if kind not in known:
        if "/" in spec or "\\" in spec or plain.suffix:
            raise CnnkitError(f"--data {spec!r}: no such folder or file; give a folder of class sub-folders, a .csv "
                              f"of 'path,label' rows, or one of {', '.join(SOURCES)}")
        raise UnknownNameError("data source (or folder)", kind, SOURCES)
    if not arg:
        raise CnnkitError(f"--data {spec!r} needs a path: {kind}:DIR (or csv:FILE)")
    return kind, Path(arg).expanduser().resolve()


def canonical_spec(spec: str) -> str:
    """The spec with an absolute path: what a run saves, and how two specs are found to name the same data.

    >>> canonical_spec('digits')
    'digits'
    """
    kind, path = parse_spec(spec)
    return kind if path is None else f"{kind}:{path}"


def load_source(spec: str, *, download: bool = False) -> Source:
    """Parse a data spec and list (or, for array sources, read) its splits (`parse_spec` says how)."""
    kind, path = parse_spec(spec)
    if kind == "digits":
        return load_digits_source()
    canonical = f"{kind}:{path}"
    if kind in ("fashion-mnist", "mnist"):
        if not path.is_dir() and not download:
            raise CnnkitError(f"{spec}: no such folder; point it at the folder of IDX files, or add --download")
        return load_idx_source(kind, path, canonical, download)
    if kind == "cifar10":
        if not path.is_dir() and not download:
            raise CnnkitError(f"{spec}: no such folder; point it at the CIFAR-10 batches, or add --download")
        return load_cifar10_source(path, canonical, download)
    if kind == "folder":
        return load_folder_source(path, canonical)
    return load_csv_source(path, canonical)
