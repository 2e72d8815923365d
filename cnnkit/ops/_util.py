"""Plumbing shared by the ops: argument checking, window geometry, padding, strided window slices."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CnnkitError, InputSizeError

IntPair = int | tuple[int, int]


def pair(value: IntPair, name: str, *, minimum: int = 1) -> tuple[int, int]:
    """3 → (3, 3); (2, 1) stays; anything else fails naming the argument.

    >>> pair(3, 'stride')
    (3, 3)
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)):
        raise CnnkitError(f"{name} must be an int or a pair of ints, got {value!r}")
    a, b = int(value[0]), int(value[1])
    if a < minimum or b < minimum:
        raise CnnkitError(f"{name} must be at least {minimum}, got {value!r}")
    return a, b


def as_batch(x: np.ndarray, op: str) -> tuple[np.ndarray, bool]:
    """Accept N×C×H×W, or one C×H×W image as PyTorch does; returns (batch, was_unbatched)."""
    x = np.asarray(x)
    if x.ndim == 3:
        return x[None], True
    if x.ndim != 4:
        raise InputSizeError(f"{op} expects an N×C×H×W batch (or one C×H×W image), got shape {x.shape}")
    return x, False


@dataclass(frozen=True)
class Window:
    """Where a kh×kw window (dilated by dh, dw) lands when it slides with stride (sh, sw) over a padded map.

    `pads` is (top, bottom, left, right); `out` is the output (Ho, Wo).
    """

    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    pads: tuple[int, int, int, int]
    out: tuple[int, int]

    @classmethod
    def make(cls, hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
             pads: tuple[int, int, int, int], dilation: tuple[int, int] = (1, 1), *, op: str) -> "Window":
        (h, w), (kh, kw), (dh, dw) = hw, kernel, dilation
        t, b, l, r = pads
        span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1  # the window's reach, dilation included
        if h + t + b < span_h or w + l + r < span_w:
            raise InputSizeError(
                f"{op}: the {kh}×{kw} kernel (dilation {dh}×{dw}, so {span_h}×{span_w}) is larger than the "
                f"padded input {h + t + b}×{w + l + r} (input {h}×{w}); use a smaller kernel or more padding")
        out = ((h + t + b - span_h) // stride[0] + 1, (w + l + r - span_w) // stride[1] + 1)
        return cls(kh, kw, stride[0], stride[1], dh, dw, pads, out)

    def pad(self, x: np.ndarray, value: float = 0.0) -> np.ndarray:
        """x (…, H, W) with the padding added (a copy only when there is padding)."""
        t, b, l, r = self.pads
        if not any(self.pads):
            return x
        xp = np.full((*x.shape[:-2], x.shape[-2] + t + b, x.shape[-1] + l + r), value, dtype=x.dtype)
        xp[..., t:t + x.shape[-2], l:l + x.shape[-1]] = x
        return xp

    def unpad(self, xp: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        t, _, l, _ = self.pads
        return xp[..., t:t + hw[0], l:l + hw[1]]

    def offsets(self):
        """The kernel positions (i, j), row by row, with the strided slice of the padded map each one sees:
        `xp[..., rows, cols]` is the Ho×Wo grid of values that kernel element (i, j) multiplies."""
        ho, wo = self.out
        for i in range(self.kh):
            for j in range(self.kw):
                r0, c0 = i * self.dh, j * self.dw
                yield i, j, (slice(r0, r0 + self.sh * (ho - 1) + 1, self.sh),
                             slice(c0, c0 + self.sw * (wo - 1) + 1, self.sw))

    def window_at(self, oh: int, ow: int) -> tuple[slice, slice]:
        """The slices of the padded map under the window that produces output (oh, ow)."""
        r0, c0 = oh * self.sh, ow * self.sw
        return (slice(r0, r0 + self.dh * (self.kh - 1) + 1, self.dh),
                slice(c0, c0 + self.dw * (self.kw - 1) + 1, self.dw))


def symmetric_pads(padding: IntPair) -> tuple[int, int, int, int]:
    ph, pw = pair(padding, "padding", minimum=0)
    return ph, ph, pw, pw


def float_dtype(*arrays) -> np.dtype:
    """The floating dtype the op computes in: float32 stays float32, integers become float64."""
    dt = np.result_type(*[a for a in arrays if a is not None])
    return dt if np.issubdtype(dt, np.floating) else np.dtype(np.float64)
