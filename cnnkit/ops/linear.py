"""The fully connected layer and the flatten before it, forward and backward."""
from __future__ import annotations

import numpy as np

from ..errors import InputSizeError
from ._util import float_dtype


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """`torch.nn.functional.linear`: x @ weightᵀ + bias, with x (…, in) and weight (out, in).

    >>> linear(np.array([[1., 2.]]), np.array([[1., 1.], [0., 1.]]), np.array([0., 10.])).tolist()
    [[3.0, 12.0]]
    """
    x, weight = np.asarray(x), np.asarray(weight)
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise InputSizeError(f"linear: weight {weight.shape} (out×in) expects inputs of shape "
                             f"(…, {weight.shape[-1]}), got {x.shape}; flatten the feature maps first")
    if bias is not None and np.shape(bias) != (weight.shape[0],):
        raise InputSizeError(f"linear: bias must have shape ({weight.shape[0]},), got {np.shape(bias)}")
    dtype = float_dtype(x, weight, bias)
    out = x.astype(dtype, copy=False) @ weight.astype(dtype, copy=False).T
    if bias is not None:
        out += np.asarray(bias, dtype=dtype)
    return out


def linear_backward(grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of `linear` w.r.t. x (g @ weight), weight (gᵀ @ x) and bias (Σ g; None without a bias).

    >>> dx, dw, db = linear_backward(np.array([[1., 0.]]), np.array([[1., 2.]]), np.eye(2), np.zeros(2))
    >>> dx.tolist(), dw.tolist(), db.tolist()
    ([[1.0, 0.0]], [[1.0, 2.0], [0.0, 0.0]], [1.0, 0.0])
    """
    x, weight = np.asarray(x), np.asarray(weight)
    dtype = float_dtype(x, weight, bias, grad_out)
    g = np.asarray(grad_out, dtype=dtype)
    if g.shape != (*x.shape[:-1], weight.shape[0]):
        raise InputSizeError(f"linear_backward: grad_out must have shape {(*x.shape[:-1], weight.shape[0])}, "
                             f"got {g.shape}")
    g2, x2 = g.reshape(-1, weight.shape[0]), x.reshape(-1, weight.shape[1]).astype(dtype, copy=False)
    dx = g @ weight.astype(dtype, copy=False)
    dw = g2.T @ x2
    db = g2.sum(axis=0) if bias is not None else None
    return dx, dw, db


def flatten(x: np.ndarray, start_dim: int = 1, end_dim: int = -1) -> np.ndarray:
    """`torch.flatten`: merge the dimensions start_dim…end_dim, e.g. N×C×H×W → N×(C·H·W).

    >>> flatten(np.zeros((2, 16, 2, 2))).shape
    (2, 64)
    """
    x = np.asarray(x)
    s, e = start_dim % x.ndim, end_dim % x.ndim
    if s > e:
        raise InputSizeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {x.shape}")
    return x.reshape(*x.shape[:s], -1, *x.shape[e + 1:])


def flatten_backward(grad_out: np.ndarray, x: np.ndarray, start_dim: int = 1, end_dim: int = -1) -> np.ndarray:
    """Gradient of `flatten`: the output gradient, reshaped back to x's shape.

    >>> flatten_backward(np.zeros((2, 64)), np.zeros((2, 16, 2, 2))).shape
    (2, 16, 2, 2)
    """
    return np.asarray(grad_out).reshape(np.shape(x))
