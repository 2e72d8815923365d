import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from idx_files import read_idx_gz, write_idx  # noqa: F401  (tests/ is on sys.path, as for conftest)

# Two pytest-xdist workers on two cores: one torch thread and one BLAS thread each, or they fight over the
# cores (an oversubscribed OpenBLAS can turn a 2 ms NumPy matmul into a second).
if os.environ.get("PYTEST_XDIST_WORKER"):
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium for the browser tests (tests/browser.py), or a skip saying why there is none."""
    from browser import find_chromium

    return find_chromium()


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """A small trained run: simplecnn on the built-in digits, upscaled to 16×16, 4 epochs (~98% val accuracy);
    one per test worker, shared by the explain and the server tests."""
    import cnnkit

    out = tmp_path_factory.mktemp("digits") / "digits-run"
    result = cnnkit.train("digits", epochs=4, img_size=16, out=str(out), quiet=True)
    assert result["val_acc"] > 0.9, result
    return Path(result["run_dir"])


@pytest.fixture(scope="session", autouse=True)
def _private_log_dir(tmp_path_factory):
    """The CLI's internal-error logs (cnnkit/cli/__init__.py) of this session go to its own folder, never to the
    user's ~/.cache/cnnkit/logs."""
    old = os.environ.get("CNNKIT_LOG_DIR")
    os.environ["CNNKIT_LOG_DIR"] = str(tmp_path_factory.mktemp("cnnkit-logs"))
    yield
    if old is None:
        os.environ.pop("CNNKIT_LOG_DIR", None)
    else:
        os.environ["CNNKIT_LOG_DIR"] = old


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


FMNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fashion-mnist"


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    if not FMNIST.is_dir():
        pytest.skip(f"{FMNIST} is not here")
    return FMNIST


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
