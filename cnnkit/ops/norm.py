"""Batch normalisation (Ioffe & Szegedy 2015), forward and backward, as `torch.nn.functional.batch_norm`.

In training, each channel is normalised with the mean and variance of the current batch (over N, H, W),
then scaled and shifted by the learned weight (γ) and bias (β); the running statistics, used at
inference instead, move towards the batch's by `momentum` (the running variance uses the unbiased
estimate, as PyTorch does). Works on N×C×H×W (BatchNorm2d) and N×C (BatchNorm1d) alike.
"""
from __future__ import annotations

import numpy as np

from ..errors import CnnkitError, InputSizeError
from ._util import float_dtype


def _check(x: np.ndarray, running_mean, running_var, weight, bias, training: bool, op: str):
    x = np.asarray(x)
    if x.ndim < 2:
        raise InputSizeError(f"{op} expects N×C or N×C×H×W, got shape {x.shape}")
    c = x.shape[1]
    for name, a in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if a is not None and np.shape(a) != (c,):
            raise InputSizeError(f"{op}: {name} must have shape ({c},) for {c} channels, got {np.shape(a)}")
    if not training and (running_mean is None or running_var is None):
        raise CnnkitError(f"{op} at inference (training=False) needs running_mean and running_var")
    axes = (0, *range(2, x.ndim))
    count = x.size // c
    if training and count < 2:
        raise InputSizeError(f"{op}: training needs more than one value per channel, got input shape {x.shape}")
    return x.astype(float_dtype(x), copy=False), axes, count


def _shape(a, x: np.ndarray) -> np.ndarray:
    """A per-channel vector, shaped to broadcast against x."""
    return np.asarray(a, dtype=x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))


def batch_norm(x: np.ndarray, running_mean: np.ndarray | None, running_var: np.ndarray | None,
               weight: np.ndarray | None = None, bias: np.ndarray | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> np.ndarray:
    """`torch.nn.functional.batch_norm`. In training, updates `running_mean` and `running_var` in place.

    >>> x = np.array([[1.], [3.]])
    >>> rm, rv = np.zeros(1), np.ones(1)
    >>> batch_norm(x, rm, rv, training=True, eps=0).ravel().tolist(), rm.tolist(), rv.tolist()
    ([-1.0, 1.0], [0.2], [1.1])
    """
    x, axes, count = _check(x, running_mean, running_var, weight, bias, training, "batch_norm")
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += momentum * var * count / (count - 1)  # unbiased, as PyTorch
    else:
        mean, var = np.asarray(running_mean), np.asarray(running_var)
    out = (x - _shape(mean, x)) / np.sqrt(_shape(var, x) + eps)
    if weight is not None:
        out *= _shape(weight, x)
    if bias is not None:
        out += _shape(bias, x)
    return out


def batch_norm_backward(grad_out: np.ndarray, x: np.ndarray, running_mean: np.ndarray | None,
                        running_var: np.ndarray | None, weight: np.ndarray | None = None,
                        bias: np.ndarray | None = None, training: bool = False, momentum: float = 0.1,
                        eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients of `batch_norm` w.r.t. x, weight and bias (None where those are None).

    In training the batch statistics depend on every x, so each gradient also moves through the mean and
    the variance: dx = γ/σ · (g − mean(g) − x̂ · mean(g · x̂)), with x̂ the normalised input. At inference
    the statistics are constants and dx = γ/σ · g. The running statistics are not touched.

    >>> dx, dw, db = batch_norm_backward(np.array([[1.], [1.]]), np.array([[1.], [3.]]), None, None,
    ...                                  np.ones(1), np.zeros(1), training=True)
    >>> dx.ravel().tolist(), db.tolist()
    ([0.0, 0.0], [2.0])
    """
    x, axes, count = _check(x, running_mean, running_var, weight, bias, training, "batch_norm_backward")
    g = np.asarray(grad_out, dtype=x.dtype)
    if g.shape != x.shape:
        raise InputSizeError(f"batch_norm_backward: grad_out must have the input's shape {x.shape}, got {g.shape}")
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    else:
        mean, var = np.asarray(running_mean), np.asarray(running_var)
    inv_std = 1 / np.sqrt(_shape(var, x) + eps)
    x_hat = (x - _shape(mean, x)) * inv_std
    gamma = _shape(weight, x) if weight is not None else 1
    dw = (g * x_hat).sum(axis=axes) if weight is not None else None
    db = g.sum(axis=axes) if bias is not None else None
    g_hat = g * gamma                                     # the gradient w.r.t. x̂
    if training:
        dx = inv_std * (g_hat - g_hat.mean(axis=axes, keepdims=True)
                        - x_hat * (g_hat * x_hat).mean(axis=axes, keepdims=True))
    else:
        dx = inv_std * g_hat
    return dx, dw, db
