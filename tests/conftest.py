import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# Two pytest-xdist workers on two cores: one torch thread and one BLAS thread each, or they fight over the
# cores (an oversubscribed OpenBLAS can turn a 2 ms NumPy matmul into a second).
if os.environ.get("PYTEST_XDIST_WORKER"):
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


FMNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fashion-mnist"


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    if not FMNIST.is_dir():
        pytest.skip(f"{FMNIST} is not here")
    return FMNIST


def read_idx_gz(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> None:
    """Write an array as an IDX file (the MNIST format), gzipped or not: the inverse of `read_idx_gz`."""
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data, compresslevel=1) if gz else data)


@pytest.fixture(scope="session")
def fmnist_small(fmnist_dir):
    """The first 3,000 training and 600 test images of the real Fashion-MNIST files."""
    xtr = read_idx_gz(fmnist_dir / "train-images-idx3-ubyte.gz")[:3000]
    ytr = read_idx_gz(fmnist_dir / "train-labels-idx1-ubyte.gz")[:3000]
    xte = read_idx_gz(fmnist_dir / "t10k-images-idx3-ubyte.gz")[:600]
    yte = read_idx_gz(fmnist_dir / "t10k-labels-idx1-ubyte.gz")[:600]
    return xtr, ytr, xte, yte


@pytest.fixture()
def png_folder(tmp_path, fmnist_small):
    """An ImageFolder of real Fashion-MNIST PNGs: 3 classes, 60 images each (train/ and val/)."""
    xtr, ytr, _, _ = fmnist_small
    names = {0: "tshirt", 1: "trouser", 7: "sneaker"}
    root = tmp_path / "clothes"
    counts = {}
    for img, label in zip(xtr, ytr):
        if int(label) not in names:
            continue
        k = counts.get(int(label), 0)
        if k >= 60:
            continue
        counts[int(label)] = k + 1
        split = "val" if k % 5 == 0 else "train"
        d = root / split / names[int(label)]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{k:03d}.png")
    return root
