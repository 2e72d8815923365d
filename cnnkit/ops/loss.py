"""Softmax cross-entropy, forward and backward, as `torch.nn.functional.cross_entropy`.

The softmax turns a row of logits into probabilities; the loss is −log of the probability given to the
true class. Computed through log-softmax with the row maximum subtracted first, so large logits do not
overflow `exp`. Its gradient w.r.t. the logits is famously simple: softmax − one-hot (divided by N for
the mean).
"""
from __future__ import annotations

import numpy as np

from ..errors import CnnkitError, InputSizeError
from ._util import float_dtype

REDUCTIONS = ("mean", "sum", "none")


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """log(softmax(x)), computed stably (the maximum is subtracted before exp).

    >>> np.exp(log_softmax(np.array([[1000., 1000.]]))).tolist()
    [[0.5, 0.5]]
    """
    x = np.asarray(x, dtype=float_dtype(x))
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(x) / Σ exp(x) along `axis`: probabilities that sum to 1.

    >>> softmax(np.array([0., np.log(3)])).round(2).tolist()
    [0.25, 0.75]
    """
    return np.exp(log_softmax(x, axis))


def _check(logits, target, reduction: str, op: str) -> tuple[np.ndarray, np.ndarray]:
    logits, target = np.asarray(logits), np.asarray(target)
    if logits.ndim != 2:
        raise InputSizeError(f"{op} expects logits of shape N×classes, got {logits.shape}")
    if target.shape != (logits.shape[0],) or not np.issubdtype(target.dtype, np.integer):
        raise InputSizeError(f"{op} expects integer class targets of shape ({logits.shape[0]},), "
                             f"got {target.dtype} {target.shape}")
    if target.size and (target.min() < 0 or target.max() >= logits.shape[1]):
        raise CnnkitError(f"{op}: targets must be class indices in 0…{logits.shape[1] - 1}, "
                          f"got values {target.min()}…{target.max()}")
    if reduction not in REDUCTIONS:
        raise CnnkitError(f"{op}: reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    return logits.astype(float_dtype(logits), copy=False), target


def cross_entropy(logits: np.ndarray, target: np.ndarray, reduction: str = "mean") -> np.ndarray:
    """Softmax cross-entropy of N×classes logits against integer targets: −log softmax(logits)[target].

    >>> float(cross_entropy(np.array([[0., 0.]]), np.array([1])))  # log 2: a coin toss
    0.6931471805599453
    """
    logits, target = _check(logits, target, reduction, "cross_entropy")
    losses = -log_softmax(logits)[np.arange(len(target)), target]
    if reduction == "none":
        return losses
    return np.asarray(losses.sum() if reduction == "sum" else losses.mean())


def cross_entropy_backward(grad_out: np.ndarray | float, logits: np.ndarray, target: np.ndarray,
                           reduction: str = "mean") -> np.ndarray:
    """Gradient of `cross_entropy` w.r.t. the logits: (softmax − one-hot) · grad_out (÷ N for the mean).

    >>> cross_entropy_backward(1.0, np.array([[0., 0.]]), np.array([1])).tolist()
    [[0.5, -0.5]]
    """
    logits, target = _check(logits, target, reduction, "cross_entropy_backward")
    d = softmax(logits)
    d[np.arange(len(target)), target] -= 1
    g = np.asarray(grad_out, dtype=logits.dtype)
    if reduction == "none":
        if g.shape != target.shape:
            raise InputSizeError(f"cross_entropy_backward: grad_out must have shape {target.shape}, got {g.shape}")
        return d * g[:, None]
    if g.size != 1:
        raise InputSizeError(f"cross_entropy_backward: grad_out of a reduced loss must be a scalar, got {g.shape}")
    return d * (g.reshape(()) / (len(target) if reduction == "mean" else 1))
