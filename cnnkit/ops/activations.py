"""Element-wise layers, forward and backward: ReLU and dropout."""
from __future__ import annotations

import numpy as np

from ..errors import CnnkitError, InputSizeError
from ._util import float_dtype


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0), element-wise: the non-linearity between convolutions.

    >>> relu(np.array([-2., 0., 3.])).tolist()
    [0.0, 0.0, 3.0]
    """
    x = np.asarray(x)
    return np.maximum(x, 0, dtype=float_dtype(x))


def relu_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of `relu`: passes where x > 0, blocked elsewhere (0 at x = 0, as PyTorch).

    >>> relu_backward(np.ones(3), np.array([-2., 0., 3.])).tolist()
    [0.0, 0.0, 1.0]
    """
    g = np.asarray(grad_out, dtype=float_dtype(x, grad_out))
    return np.where(np.asarray(x) > 0, g, 0).astype(g.dtype, copy=False)


def _check_p(p: float) -> float:
    if not 0 <= p <= 1:
        raise CnnkitError(f"dropout probability must be between 0 and 1, got {p}")
    return float(p)


def dropout_mask(shape: tuple[int, ...], p: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """A boolean keep-mask: each value is kept with probability 1 − p.

    >>> dropout_mask((2, 3), 0.0).all()
    np.True_
    """
    rng = rng if rng is not None else np.random.default_rng()
    return rng.random(shape) >= _check_p(p)


def _mask(x: np.ndarray, mask: np.ndarray | None, p: float, rng, op: str) -> np.ndarray:
    if mask is None:
        return dropout_mask(x.shape, p, rng)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != x.shape:
        raise InputSizeError(f"{op}: mask must have the input's shape {x.shape}, got {mask.shape}")
    return mask


def dropout(x: np.ndarray, p: float = 0.5, training: bool = True, *, mask: np.ndarray | None = None,
            rng: np.random.Generator | None = None) -> np.ndarray:
    """`torch.nn.functional.dropout`: in training, zero each value with probability p and scale the rest by
    1/(1 − p), so the expected output equals the input; at inference, the identity.

    The mask is drawn from `rng` unless given; give the same mask to `dropout_backward`.

    >>> dropout(np.ones(4), 0.5, mask=np.array([True, False, True, False])).tolist()
    [2.0, 0.0, 2.0, 0.0]
    """
    x = np.asarray(x)
    p = _check_p(p)
    x = x.astype(float_dtype(x), copy=False)
    if not training or p == 0:
        return x.copy()
    if p == 1:
        return np.zeros_like(x)
    return np.where(_mask(x, mask, p, rng, "dropout"), x / (1 - p), 0).astype(x.dtype, copy=False)


def dropout_backward(grad_out: np.ndarray, x: np.ndarray, p: float = 0.5, training: bool = True, *,
                     mask: np.ndarray | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """Gradient of `dropout` with the same mask: the kept values' gradients, scaled by 1/(1 − p).

    >>> dropout_backward(np.ones(2), np.ones(2), 0.5, mask=np.array([True, False])).tolist()
    [2.0, 0.0]
    """
    x = np.asarray(x)
    p = _check_p(p)
    g = np.asarray(grad_out, dtype=float_dtype(x, grad_out))
    if not training or p == 0:
        return g.copy()
    if p == 1:
        return np.zeros_like(g)
    if mask is None:
        raise CnnkitError("dropout_backward in training needs the mask the forward pass used (mask=...)")
    return np.where(_mask(x, mask, p, rng, "dropout_backward"), g / (1 - p), 0).astype(g.dtype, copy=False)
