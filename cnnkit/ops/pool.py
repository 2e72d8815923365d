"""Pooling, forward and backward: max, average, and global average.

A pooling window slides like a convolution's, but with no weights: it keeps the largest value (max) or
the mean (average) of each channel's window. The arguments are `torch.nn.functional`'s (`stride` defaults
to the kernel size, so windows do not overlap; `ceil_mode` is not supported). Each op is written as
kh·kw strided slices of the padded map, combined element-wise, so no window is ever copied.
"""
from __future__ import annotations

import numpy as np

from ..errors import CnnkitError, InputSizeError
from ._util import IntPair, Window, as_batch, float_dtype, pair, symmetric_pads


def _window(x: np.ndarray, kernel_size: IntPair, stride: IntPair | None, padding: IntPair, op: str) -> Window:
    k = pair(kernel_size, "kernel_size")
    s = pair(stride if stride is not None else k, "stride")
    p = pair(padding, "padding", minimum=0)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise CnnkitError(f"{op}: padding {p} must be at most half the kernel size {k} (as in PyTorch)")
    return Window.make(x.shape[2:], k, s, symmetric_pads(p), op=op)


def _grad(grad_out, x, unbatched: bool, win: Window, op: str) -> np.ndarray:
    g = np.asarray(grad_out, dtype=float_dtype(x, grad_out))
    g = g[None] if unbatched else g
    if g.shape != (*x.shape[:2], *win.out):
        raise InputSizeError(f"{op}: grad_out must have the output's shape {(*x.shape[:2], *win.out)}, got {g.shape}")
    return g


def max_pool2d(x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None,
               padding: IntPair = 0) -> np.ndarray:
    """`torch.nn.functional.max_pool2d`: the largest value in each window (padding counts as −∞).

    >>> max_pool2d(np.arange(16.).reshape(1, 1, 4, 4), 2)[0, 0].tolist()
    [[5.0, 7.0], [13.0, 15.0]]
    """
    x, unbatched = as_batch(x, "max_pool2d")
    win = _window(x, kernel_size, stride, padding, "max_pool2d")
    xp = win.pad(x.astype(float_dtype(x), copy=False), value=-np.inf)
    out = None
    for _, _, (rows, columns) in win.offsets():
        out = xp[..., rows, columns].copy() if out is None else np.maximum(out, xp[..., rows, columns], out=out)
    return out[0] if unbatched else out


def max_pool2d_backward(grad_out: np.ndarray, x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None,
                        padding: IntPair = 0) -> np.ndarray:
    """Gradient of `max_pool2d` w.r.t. x: each window's gradient goes to its maximum (the first one, in
    row-major order, on a tie, as PyTorch does); a value that is the maximum of several windows collects all.

    >>> max_pool2d_backward(np.ones((1, 1, 1, 1)), np.array([[[[1., 3.], [2., 0.]]]]), 2)[0, 0].tolist()
    [[0.0, 1.0], [0.0, 0.0]]
    """
    x, unbatched = as_batch(x, "max_pool2d_backward")
    win = _window(x, kernel_size, stride, padding, "max_pool2d_backward")
    g = _grad(grad_out, x, unbatched, win, "max_pool2d_backward")
    xp = win.pad(x.astype(g.dtype, copy=False), value=-np.inf)
    best = np.full((*x.shape[:2], *win.out), -np.inf, dtype=g.dtype)
    where = np.zeros(best.shape, dtype=np.intp)            # which kernel offset holds each window's max
    for k, (_, _, (rows, columns)) in enumerate(win.offsets()):
        v = xp[..., rows, columns]
        better = v > best                                   # strictly: the first maximum wins a tie
        np.copyto(best, v, where=better)
        np.copyto(where, k, where=better)
    dxp = np.zeros(xp.shape, dtype=g.dtype)
    for k, (_, _, (rows, columns)) in enumerate(win.offsets()):
        dxp[..., rows, columns] += np.where(where == k, g, 0)
    dx = win.unpad(dxp, x.shape[2:])
    return dx[0] if unbatched else dx


def _avg_divisor(x: np.ndarray, win: Window, count_include_pad: bool) -> np.ndarray | float:
    if count_include_pad or not any(win.pads):
        return float(win.kh * win.kw)
    ones = win.pad(np.ones(x.shape[2:], dtype=x.dtype))  # how many real (unpadded) values each window holds
    return sum(ones[rows, columns] for _, _, (rows, columns) in win.offsets())


def avg_pool2d(x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
               count_include_pad: bool = True) -> np.ndarray:
    """`torch.nn.functional.avg_pool2d`: the mean of each window (padding counts as zeros in the mean,
    unless `count_include_pad=False`).

    >>> avg_pool2d(np.arange(16.).reshape(1, 1, 4, 4), 2)[0, 0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """
    x, unbatched = as_batch(x, "avg_pool2d")
    win = _window(x, kernel_size, stride, padding, "avg_pool2d")
    xp = win.pad(x.astype(float_dtype(x), copy=False))
    out = np.zeros((*x.shape[:2], *win.out), dtype=xp.dtype)
    for _, _, (rows, columns) in win.offsets():
        out += xp[..., rows, columns]
    out /= _avg_divisor(x, win, count_include_pad)
    return out[0] if unbatched else out


def avg_pool2d_backward(grad_out: np.ndarray, x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None,
                        padding: IntPair = 0, count_include_pad: bool = True) -> np.ndarray:
    """Gradient of `avg_pool2d` w.r.t. x: each window shares its gradient equally among its values.

    >>> avg_pool2d_backward(np.ones((1, 1, 1, 1)), np.zeros((1, 1, 2, 2)), 2)[0, 0].tolist()
    [[0.25, 0.25], [0.25, 0.25]]
    """
    x, unbatched = as_batch(x, "avg_pool2d_backward")
    win = _window(x, kernel_size, stride, padding, "avg_pool2d_backward")
    g = _grad(grad_out, x, unbatched, win, "avg_pool2d_backward")
    share = g / _avg_divisor(x, win, count_include_pad)
    t, b, l, r = win.pads
    dxp = np.zeros((*x.shape[:2], x.shape[2] + t + b, x.shape[3] + l + r), dtype=g.dtype)
    for _, _, (rows, columns) in win.offsets():
        dxp[..., rows, columns] += share
    dx = win.unpad(dxp, x.shape[2:])
    return dx[0] if unbatched else dx


def global_avg_pool2d(x: np.ndarray) -> np.ndarray:
    """The mean of each channel over all positions, N×C×H×W → N×C×1×1 (`F.adaptive_avg_pool2d(x, 1)`).

    >>> global_avg_pool2d(np.arange(8.).reshape(1, 2, 2, 2)).ravel().tolist()
    [1.5, 5.5]
    """
    x, unbatched = as_batch(x, "global_avg_pool2d")
    out = x.astype(float_dtype(x), copy=False).mean(axis=(2, 3), keepdims=True)
    return out[0] if unbatched else out


def global_avg_pool2d_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of `global_avg_pool2d`: every position gets 1/(H·W) of its channel's gradient.

    >>> global_avg_pool2d_backward(np.ones((1, 1, 1, 1)), np.zeros((1, 1, 2, 2))).ravel().tolist()
    [0.25, 0.25, 0.25, 0.25]
    """
    x, unbatched = as_batch(x, "global_avg_pool2d_backward")
    g = np.asarray(grad_out, dtype=float_dtype(x, grad_out))
    g = g[None] if unbatched else g
    if g.shape != (*x.shape[:2], 1, 1):
        raise InputSizeError(f"global_avg_pool2d_backward: grad_out must have shape {(*x.shape[:2], 1, 1)}, "
                             f"got {g.shape}")
    dx = np.broadcast_to(g / (x.shape[2] * x.shape[3]), x.shape).copy()
    return dx[0] if unbatched else dx
