"""Hand-made 3×3 kernels (filters) from image processing, by name, or a matrix read from text.

Every kernel here is written for cross-correlation, the operation `conv2d` computes (no flip): `sobel_x`
is positive where the image gets brighter from left to right, `sobel_y` where it gets brighter from top
to bottom. (For a true, flipped convolution, as `scipy.signal.convolve2d` computes, their signs swap.)
"""
from __future__ import annotations

import ast
import math

import numpy as np

from ..errors import CnnkitError, UnknownNameError

_HORIZONTAL = [[-1, -1, -1], [0, 0, 0], [1, 1, 1]]   # the lesson's horizontal edge detector
_VERTICAL = [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]

#: name → (matrix, what it responds to)
KERNELS: dict[str, tuple[list[list[float]], str]] = {
    "sobel_x": ([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], "vertical edges: brighter to the right is positive"),
    "sobel_y": ([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], "horizontal edges: brighter below is positive"),
    "horizontal_edge": (_HORIZONTAL, "the lesson's horizontal edge detector (the same matrix as prewitt_y)"),
    "vertical_edge": (_VERTICAL, "its transpose, for vertical edges (the same matrix as prewitt_x)"),
    "prewitt_x": (_VERTICAL, "vertical edges, unweighted rows"),
    "prewitt_y": (_HORIZONTAL, "horizontal edges, unweighted columns"),
    "laplacian": ([[0, 1, 0], [1, -4, 1], [0, 1, 0]], "edges in every direction (second derivative)"),
    "sharpen": ([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], "the image plus its edges"),
    "box": ([[1 / 9] * 3] * 3, "blur: the mean of the 3×3 neighbourhood"),
    "gaussian": ([[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16], [1 / 16, 2 / 16, 1 / 16]],
                 "blur weighted towards the centre (binomial approximation of a Gaussian)"),
    "identity": ([[0, 0, 0], [0, 1, 0], [0, 0, 0]], "the image unchanged"),
}

MATRIX_FORM = "'[[1,0,-1],[2,0,-2],[1,0,-1]]' (or rows split by ';': '1,0,-1; 2,0,-2; 1,0,-1')"


def list_kernels() -> list[str]:
    """The kernel names, sorted.

    >>> 'sobel_x' in list_kernels()
    True
    """
    return sorted(KERNELS)


def get_kernel(name: str) -> np.ndarray:
    """A named kernel as a float64 kh×kw array.

    >>> get_kernel('sobel_x')[0].tolist()
    [-1.0, 0.0, 1.0]
    """
    if name not in KERNELS:
        raise UnknownNameError("kernel", name, KERNELS)
    return np.array(KERNELS[name][0], dtype=np.float64)


def parse_kernel(text: str) -> np.ndarray:
    """A kernel matrix written as text: a nested list, or rows split by ';' with values split by ','.

    >>> parse_kernel('[[1,0,-1],[2,0,-2],[1,0,-1]]')[1].tolist()
    [2.0, 0.0, -2.0]
    >>> parse_kernel('1 2; 3 4').tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    """
    def bad(why: str) -> CnnkitError:
        return CnnkitError(f"cannot read the kernel {text!r}: {why}; expected a matrix like {MATRIX_FORM}, "
                           f"or a name: {', '.join(list_kernels())}")

    s = text.strip()
    try:
        if s.startswith("["):
            rows = ast.literal_eval(s)  # literals only: never evaluates code
        else:
            rows = [[float(v) for v in row.replace(",", " ").split()] for row in s.split(";") if row.strip()]
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise bad("it is not a list of numbers") from None
    if (not isinstance(rows, (list, tuple)) or not rows
            or not all(isinstance(r, (list, tuple)) and r for r in rows)):
        raise bad("it is not a list of rows")
    if len({len(r) for r in rows}) != 1:
        raise bad(f"its rows have different lengths ({', '.join(str(len(r)) for r in rows)})")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for r in rows for v in r):
        raise bad("its entries must be finite numbers")
    return np.array(rows, dtype=np.float64)


def resolve_kernel(spec: str) -> tuple[str, np.ndarray]:
    """A kernel name or matrix text → (name, matrix); a matrix is named by its text.

    >>> resolve_kernel('laplacian')[1][1].tolist()
    [1.0, -4.0, 1.0]
    >>> resolve_kernel('[[0, 1]]')
    ('[[0, 1]]', array([[0., 1.]]))
    """
    spec = spec.strip()
    if spec in KERNELS:
        return spec, get_kernel(spec)
    if spec[:1] in "[-+.0123456789":
        return spec, parse_kernel(spec)
    err = UnknownNameError("kernel", spec, KERNELS)
    err.args = (f"{err.args[0]} Or give a matrix, e.g. {MATRIX_FORM}.",)
    raise err
