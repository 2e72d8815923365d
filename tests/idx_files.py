"""IDX files (the MNIST format) for the tests: reading the shared gzipped files, writing new ones."""
import gzip
from pathlib import Path

import numpy as np


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
