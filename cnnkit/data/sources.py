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
import math
import os
import pickle
import unicodedata
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CnnkitError, UnknownNameError
from .images import IMAGE_EXTENSIONS, control_character, list_images, shown

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


def available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable), or 4 GB where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


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
IDX_TYPE_UBYTE = 0x08
IDX_MAX_DIMS = 4  # MNIST's files have 1 (labels) or 3 (images); more is not an image file


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format), gzipped or not: magic 0x0000 0x08 ndim, big-endian sizes, uint8 data.

    The header is checked before anything is allocated from it: its sizes must match the file's length (a
    plain file) or fit in the memory available (a gzipped one, which is then read in chunks, so a header
    claiming 2^31 images costs only the bytes that are really there)."""
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != IDX_TYPE_UBYTE:
                raise CnnkitError(f"{path} is not an IDX file of unsigned bytes (magic {head.hex() or 'empty'}, "
                                  "expected 0000080N: 0x08 for unsigned bytes, N dimensions)")
            ndim = head[3]
            if not 1 <= ndim <= IDX_MAX_DIMS:
                raise CnnkitError(f"{path}: its IDX header says {ndim} dimensions; expected 1 (labels) or 3 (images)")
            sizes = f.read(4 * ndim)
            if len(sizes) < 4 * ndim:
                raise CnnkitError(f"{path} is truncated inside its header ({4 + len(sizes)} bytes); "
                                  "download the file again")
            dims = [int.from_bytes(sizes[4 * i: 4 * i + 4], "big") for i in range(ndim)]
            n = math.prod(dims)  # Python ints: no overflow, whatever the header says
            if n == 0:
                raise CnnkitError(f"{path}: its IDX header says {dims}: no values; expected at least one image")
            if gz:

                if n > available_memory():
                    raise CnnkitError(f"{path}: its IDX header says {dims} = {n:,} bytes, more than the "
                                      f"{available_memory():,} bytes of memory available; a damaged or crafted file?")
            else:
                have = os.fstat(f.fileno()).st_size - 4 - 4 * ndim
                if have != n:
                    raise CnnkitError(f"{path} is {'truncated' if have < n else 'longer than its header says'}: "
                                      f"header says {dims} = {n:,} values, found {have:,}")
            chunks, got = [], 0
            while got < n:  # in chunks: the memory used is what the file holds, not what its header claims
                chunk = f.read(min(n - got, 64 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
            extra = f.read(1)
    except (OSError, EOFError, zlib.error) as e:
        raise CnnkitError(f"{path} cannot be read as an IDX file ({shown(str(e)[:200])}); download it again") from None
    if got != n or extra:
        raise CnnkitError(f"{path} is {'truncated' if got < n else 'longer than its header says'}: header says "
                          f"{dims} = {n:,} values, found {got if got < n else f'more than {n:,}'}")
    return np.frombuffer(b"".join(chunks), dtype=np.uint8).reshape(dims)


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
        x, y = read_idx(images), read_idx(labels)
        if x.ndim != 3 or y.ndim != 1:
            bad, shape = (images, x.shape) if x.ndim != 3 else (labels, y.shape)
            raise CnnkitError(f"{bad} holds an array of shape {list(shape)}; expected N×H×W images and N labels")
        if len(x) != len(y):
            raise CnnkitError(f"{images} has {len(x)} images but {labels} has {len(y)} labels; the counts must match")
        if int(y.max()) >= 10:
            raise CnnkitError(f"{labels} holds label {int(y.max())} (at item {int(np.argmax(y >= 10))}); "
                              f"{kind} has 10 classes, 0-9")
        y = y.astype(np.int64)
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


_UNPICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
                    IndexError, KeyError, RecursionError, MemoryError, OverflowError, UnicodeDecodeError)


def _unpickle(path: Path):
    try:
        return _SafeUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except _UNPICKLE_ERRORS as e:  # whatever a damaged or crafted pickle makes the unpickler raise
        raise CnnkitError(f"{path} is not a CIFAR-10 batch file ({type(e).__name__}: {shown(str(e)[:200])})") from None


def _entry(d: dict, name: str):
    """d[b'name'] (CIFAR's own files, pickled by Python 2) or d['name'] (a batch pickled by Python 3)."""
    return d[name.encode()] if name.encode() in d else d.get(name)


CIFAR_PIXELS = 3 * 32 * 32


def _cifar_batch(path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file → (uint8 N×3×32×32, int64 N labels), every part checked: a dict with b'data', a uint8
    N×3072 array, and b'labels', N integers from 0 to n_classes - 1."""
    d = _unpickle(path)
    if not isinstance(d, dict):
        raise CnnkitError(f"{path} holds a {type(d).__name__}, not a CIFAR-10 batch (a dict with b'data' and "
                          "b'labels')")
    data, labels = _entry(d, "data"), _entry(d, "labels")
    if data is None or labels is None:
        raise CnnkitError(f"{path} has no b'data'/b'labels' entries: not a CIFAR-10 batch")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_PIXELS \
            or len(data) == 0:
        got = f"a {data.dtype} array of shape {list(data.shape)}" if isinstance(data, np.ndarray) else \
            f"a {type(data).__name__}"
        raise CnnkitError(f"{path}: b'data' is {got}; a CIFAR-10 batch holds a uint8 array of N×3072 "
                          "(N images of 3×32×32)")
    if isinstance(labels, np.ndarray):
        ok = labels.ndim == 1 and labels.dtype.kind in "iu"
        labels = labels.tolist() if ok else labels
    else:
        ok = isinstance(labels, list) and all(type(v) is int for v in labels)
    if not ok:
        what = type(labels).__name__ if not isinstance(labels, list) else \
            f"a list holding {type(next(v for v in labels if type(v) is not int)).__name__}"
        raise CnnkitError(f"{path}: b'labels' must be a list of integers (one per image), got {what}")
    if len(labels) != len(data):
        raise CnnkitError(f"{path} has {len(data)} images but {len(labels)} labels; the counts must match")
    y = np.asarray(labels, dtype=np.int64)
    bad = np.flatnonzero((y < 0) | (y >= n_classes))
    if len(bad):
        raise CnnkitError(f"{path}: image {int(bad[0])} has label {int(y[bad[0]])}; labels must run from 0 to "
                          f"{n_classes - 1} ({n_classes} classes)")
    return data.reshape(-1, 3, 32, 32), y


def _cifar_classes(path: Path) -> list[str]:
    """batches.meta's b'label_names': a list of (at least 2) distinct names, bytes or str."""
    meta = _unpickle(path)
    names = _entry(meta, "label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, (bytes, str)) for n in names):
        raise CnnkitError(f"{path}: b'label_names' must be a list of at least 2 class names, got "
                          f"{type(names).__name__ if not isinstance(names, list) else f'a list of {len(names)}'}")
    try:
        classes = [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]
    except UnicodeDecodeError:
        raise CnnkitError(f"{path}: a class name in b'label_names' is not UTF-8 text") from None
    for c in classes:
        check_class_name(c, f"in {path}'s b'label_names'")
    if len(set(classes)) != len(classes):
        raise CnnkitError(f"{path}: b'label_names' names a class twice ({classes})")
    return classes


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
    classes = [f"class_{i}" for i in range(10)]
    if (folder / "batches.meta").is_file():
        classes = _cifar_classes(folder / "batches.meta")

    def read(files):
        xs, ys = zip(*(_cifar_batch(p, len(classes)) for p in files))
        return Items(np.concatenate(ys), x=np.concatenate(xs))

    present = [p for p in train_files if p.is_file()]
    if not present:
        raise CnnkitError(f"{folder} has test_batch but no data_batch_1..5 to train on")
    splits = {"train": read(present)}
    if (folder / "test_batch").is_file():
        splits["test"] = read([folder / "test_batch"])
    return Source("cifar10", "cifar10", spec, classes, splits, flips=True,
                  flips_reason="CIFAR-10: photos of objects, the same class when mirrored")


# --- image files: folder and CSV -------------------------------------------------------------------------
_UNKNOWN_FLIPS = "unknown content: a mirrored image may change class (text, digits, left/right anatomy)"
def check_class_name(name: str, where: str) -> None:
    """Refuse a class name holding a control character: it would split predict's output lines and model.json's
    class list (a newline), or hide in them (a NUL, an escape sequence)."""
    ch = control_character(name)
    if ch is not None and unicodedata.category(ch) == "Cs":  # os.listdir's stand-in for a byte that is not UTF-8
        raise CnnkitError(f"class name {name!r} ({shown(where)}) is not UTF-8 text; rename it")
    if ch is not None:
        raise CnnkitError(f"class name {name!r} ({shown(where)}) contains a control character ({ch!r}); rename it")


def _file_items(paths: list[str], labels: list[int], root: Path) -> Items:
    keys = [Path(os.path.relpath(p, root)).as_posix() for p in paths]
    return Items(np.asarray(labels, dtype=np.int64), paths=paths, keys=keys)


def load_folder_source(folder: Path, spec: str) -> Source:
    """ImageFolder layout: DIR/CLASS/*.png, or DIR/train/CLASS/… with DIR/val|valid|validation/ and DIR/test/.
    A class folder of the training split with no image is refused (it would be a class the model can never
    learn, scored 0 in every macro average), as torchvision's ImageFolder refuses it."""
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
    for name in class_dirs:
        check_class_name(name, f"folder {split_dirs['train'] / name}")
    if len(class_dirs) < 2:
        raise CnnkitError(f"{split_dirs['train']} needs one sub-folder per class (at least 2), found "
                          f"{len(class_dirs)}: expected DIR/CLASS/image.png or DIR/train/CLASS/image.png "
                          f"(with DIR/val/ or DIR/valid/ and DIR/test/ if you have them)")
    index = {c: i for i, c in enumerate(class_dirs)}
    splits: dict[str, Items] = {}
    for split, d in split_dirs.items():
        paths, labels, empty = [], [], []
        for cdir in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if cdir.name not in index:
                raise CnnkitError(f"{cdir} is a class that {split_dirs['train']} does not have "
                                  f"(classes: {', '.join(class_dirs)})")
            found = [str(p) for p in list_images(cdir)]
            if not found:
                empty.append(cdir.name)
            paths += found
            labels += [index[cdir.name]] * len(found)
        if split == "train" and empty and len(empty) < len(class_dirs):
            raise CnnkitError(f"{d}: class folder(s) with no images ({', '.join(IMAGE_EXTENSIONS)}): "
                              f"{', '.join(n + '/' for n in empty)}; remove them or add images")
        if not paths:
            raise CnnkitError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {d}")
        splits[split] = _file_items(paths, labels, folder)
    notes = [f"{split} split: {d.name}/" for split, d in split_dirs.items() if d != folder]
    return Source(folder.resolve().name or "folder", "folder", spec, class_dirs, splits, root=str(folder.resolve()),
                  flips=None, flips_reason=_UNKNOWN_FLIPS, notes=notes)


CSV_HEADER_NAMES = ("path", "file", "filename", "image")


def _csv_text(path: Path) -> str:
    """The CSV's text: UTF-8, with or without a byte-order mark. Anything else is refused, not guessed: Latin-1
    decodes any bytes at all, so a fallback would turn a CSV in another encoding (cp1252, Shift-JIS) into
    class names that silently differ from the ones the user wrote."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CnnkitError(f"{path} cannot be read ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise CnnkitError(f"{path} is not UTF-8 (byte 0x{raw[e.start]:02x} at line {line}); save it as UTF-8 "
                          "(e.g. iconv -f latin1 -t utf-8)") from None


def load_csv_source(path: Path, spec: str) -> Source:
    """Rows of `path,label` (a header row is allowed); paths relative to the CSV file's folder.

    UTF-8 only (a byte-order mark is fine). Refused, naming the line(s): a row without a label, an empty label or
    one holding a control character, and an image listed twice, with the same label or not (a duplicated row is
    a sign of a concatenation or a join gone wrong; it is cheaper to fix once than to find later, and each row
    then stands for one image in split.json)."""
    if not path.is_file():
        raise CnnkitError(f"{spec}: no such file")
    rows, extra, header, lines = [], [], None, []
    reader = csv.reader(io.StringIO(_csv_text(path), newline=""))
    start = 1  # the line a row starts on (a quoted field may hold line breaks)
    try:
        for row in reader:
            line, start = start, reader.line_num + 1
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < 2:
                raise CnnkitError(f"{path}, line {line}: expected 'path,label', got {','.join(row)!r}")
            first = row[0].strip()
            if not rows and header is None and (first.lower() in CSV_HEADER_NAMES or (
                    Path(first).suffix.lower() not in IMAGE_EXTENSIONS and not (path.parent / first).is_file())):
                header = [c.strip() for c in row]  # the first row names its columns, not an image
                continue
            label = row[1].strip()
            if not first:
                raise CnnkitError(f"{path}, line {line}: no image path before the label {label!r}")
            if not label:
                raise CnnkitError(f"{path}, line {line}: {shown(first)} has an empty label; give every image its class")
            check_class_name(label, f"{path}, line {line}")
            if "\x00" in first:  # no file system has such a name; Path.resolve would raise ValueError
                raise CnnkitError(f"{path}, line {line}: the image path {shown(first)} holds a NUL byte; "
                                  "fix that row")
            rows.append((str((path.parent / first).resolve()), label))
            extra.append([c.strip() for c in row[2:]])
            lines.append((line, first))
    except csv.Error as e:
        raise CnnkitError(f"{path}, line {start}: not a CSV row ({e})") from None
    if not rows:
        raise CnnkitError(f"{path} has no rows of 'path,label'")
    seen: dict[str, int] = {}
    for k, (p, lbl) in enumerate(rows):  # one file listed twice could land in train and val at once
        if p in seen:
            j = seen[p]
            (la, _), (lb, fb) = lines[j], lines[k]
            if rows[j][1] != lbl:
                raise CnnkitError(f"{path} lists {shown(fb)} twice with two labels: {rows[j][1]!r} (line {la}) and "
                                  f"{lbl!r} (line {lb}); keep the right one")
            raise CnnkitError(f"{path} lists {shown(fb)} twice, lines {la} and {lb} (label {lbl!r}); remove the "
                              "duplicate row")
        seen[p] = k
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
    if kind == "digits":
        if arg:  # a path after digits was being ignored without a word
            raise CnnkitError(f"--data {spec!r}: digits is built in and takes no path; give --data digits")
        return "digits", None
    plain = Path(spec).expanduser()
    if plain.is_dir():
        return "folder", plain.resolve()
    if plain.suffix.lower() == ".csv" and not (sep and kind in known):
        return "csv", plain.resolve()
    if kind not in known:
        if plain.exists():
            raise CnnkitError(f"--data {spec!r} is a file, not a folder of class sub-folders or a .csv of "
                              f"'path,label' rows; give the folder that holds the class folders")
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
