"""2-D convolution as PyTorch computes it, forward and backward, written twice.

What deep learning calls a convolution is a **cross-correlation**: the kernel slides over the image as it
is, and each output value is the sum of the element-wise product of the kernel and the window under it,

    out[n, o, i, j] = bias[o] + Σ_c Σ_u Σ_v  x[n, c, i·s + u·d, j·s + v·d] · w[o, c, u, v].

The mathematical convolution flips the kernel first (w[o, c, kh-1-u, kw-1-v]). For a learned kernel the
difference does not matter (the network learns the flipped weights), which is why every framework skips
the flip; for a hand-made kernel it flips the sign of an edge detector. `scipy.signal.correlate2d` is the
same operation on one channel; `scipy.signal.convolve2d` is the flipped one.

- `conv2d_loop` is the lesson's algorithm, literally: slide the window, multiply, sum. Read this one.
- `conv2d` computes the same numbers with im2col: every window is copied into a column of one matrix
  (kh·kw strided copies), and the whole layer becomes one matrix product (BLAS), as in Caffe and early
  cuDNN. It is hundreds of times faster than the loop (see bench/conv_speed.py).

Both take the arguments of `torch.nn.functional.conv2d`. Each has a backward with the same arguments plus
the output gradient first, returning (grad_x, grad_weight, grad_bias): the backward of a cross-correlation
is a correlation of the output gradient with the input (grad_weight) and a "full" convolution of the
output gradient with the kernel (grad_x), here a scatter-add of the columns back onto the image (col2im).
"""
from __future__ import annotations

import numpy as np

from ..errors import CnnkitError, InputSizeError
from ._util import IntPair, Window, as_batch, float_dtype, pair, symmetric_pads

Padding = int | tuple[int, int] | str


def conv_pads(padding: Padding, kernel: tuple[int, int], dilation: tuple[int, int],
              stride: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) for an int, a pair, 'valid' (none) or 'same' (as PyTorch: output size =
    input size, stride 1 only; an odd total padding puts the extra row/column at the bottom/right).

    >>> conv_pads('same', (4, 4), (1, 1), (1, 1))
    (1, 2, 1, 2)
    """
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            if stride != (1, 1):
                raise CnnkitError(f"padding='same' needs stride 1 (as in PyTorch), got stride {stride}; "
                                  "give the padding as a number instead")
            th, tw = dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)
            return th // 2, th - th // 2, tw // 2, tw - tw // 2
        raise CnnkitError(f"padding must be an int, a pair of ints, 'valid' or 'same', got {padding!r}")
    return symmetric_pads(padding)


def _setup(x, weight, bias, stride, padding, dilation, groups, op: str):
    """Check the arguments like PyTorch does and work out the window geometry."""
    x, unbatched = as_batch(x, op)
    weight = np.asarray(weight)
    if weight.ndim != 4:
        raise InputSizeError(f"{op}: weight must be out_channels×in_channels/groups×kh×kw, got shape {weight.shape}")
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise CnnkitError(f"{op}: groups must be a positive int, got {groups!r}")
    o, cg, kh, kw = weight.shape
    if x.shape[1] != cg * groups:
        raise InputSizeError(f"{op}: weight of shape {weight.shape} with groups={groups} expects "
                             f"{cg * groups} input channels, got input of shape {x.shape}")
    if o % groups:
        raise CnnkitError(f"{op}: out_channels ({o}) must be divisible by groups ({groups})")
    if bias is not None and np.shape(bias) != (o,):
        raise InputSizeError(f"{op}: bias must have shape ({o},), got {np.shape(bias)}")
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    win = Window.make(x.shape[2:], (kh, kw), stride, conv_pads(padding, (kh, kw), dilation, stride),
                      dilation, op=op)
    return x, weight, unbatched, win


def _im2col(x: np.ndarray, win: Window, groups: int, ones: bool = False) -> np.ndarray:
    """N×C×H×W → groups×(C/groups·kh·kw [+1])×(N·Ho·Wo): one column per output position, holding its window.

    The columns of the whole batch sit side by side, so a layer is one matrix product per group: one BLAS
    call, not one per image (many small calls are slower, and much slower when the cores are shared). The
    matrix is filled with one strided copy per kernel element (kh·kw of them); a `sliding_window_view`
    reshaped to columns is the same matrix, a little slower to copy. With `ones`, each group gets a last
    row of ones: the bias is then one more weight, on a constant input of 1, and the product adds it.
    """
    xp = win.pad(x)
    n, c = x.shape[:2]
    cg, (ho, wo) = c // groups, win.out
    k = cg * win.kh * win.kw
    cols = np.empty((groups, k + ones, n * ho * wo), dtype=x.dtype)
    body = cols[:, :k].reshape(groups, cg, win.kh, win.kw, n, ho, wo)   # a view: it only splits axes
    xp = xp.reshape(n, groups, cg, *xp.shape[2:]).transpose(1, 2, 0, 3, 4)  # G×C/G×N×Hp×Wp, a view
    for i, j, (rows, columns) in win.offsets():
        body[:, :, i, j] = xp[..., rows, columns]
    if ones:
        cols[:, k] = 1
    return cols


def _col2im(cols: np.ndarray, win: Window, shape: tuple[int, ...], groups: int) -> np.ndarray:
    """The adjoint of `_im2col`: add each column's values back where they came from (overlaps add up)."""
    n, c, h, w = shape
    t, b, l, r = win.pads
    cols = cols.reshape(groups, c // groups, win.kh, win.kw, n, *win.out)
    xp = np.zeros((n, c, h + t + b, w + l + r), dtype=cols.dtype)
    xpt = xp.reshape(n, groups, c // groups, *xp.shape[2:]).transpose(1, 2, 0, 3, 4)
    for i, j, (rows, columns) in win.offsets():
        xpt[..., rows, columns] += cols[:, :, i, j]
    return np.ascontiguousarray(win.unpad(xp, (h, w))) if any(win.pads) else xp


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntPair = 1,
           padding: Padding = 0, dilation: IntPair = 1, groups: int = 1) -> np.ndarray:
    """`torch.nn.functional.conv2d` in NumPy (im2col + matmul): a cross-correlation, not a flipped convolution.

    x: N×C×H×W (or C×H×W); weight: O×(C/groups)×kh×kw; bias: (O,). padding: int, (ph, pw), 'valid' or 'same'.
    Returns N×O×Ho×Wo, Ho = (H + 2·ph − dh·(kh−1) − 1) // sh + 1, in the inputs' float dtype (float32 stays);
    its memory is in O×N×Ho×Wo order (`np.ascontiguousarray` gives C order, if something needs it).

    >>> x = np.arange(1, 26, dtype=float).reshape(1, 1, 5, 5)
    >>> conv2d(x, np.array([[[[1, 0, -1], [2, 0, -2], [1, 0, -1]]]]))[0, 0, 0, 0]
    np.float64(-8.0)
    """
    x, weight, unbatched, win = _setup(x, weight, bias, stride, padding, dilation, groups, "conv2d")
    dtype = float_dtype(x, weight, bias)
    x, weight = x.astype(dtype, copy=False), weight.astype(dtype, copy=False)
    n, o = x.shape[0], weight.shape[0]
    w = weight.reshape(groups, o // groups, -1)                   # G×O/G×K, K = C/G·kh·kw
    if bias is not None:                                          # the bias as a last weight column
        w = np.concatenate([w, np.asarray(bias, dtype=dtype).reshape(groups, o // groups, 1)], axis=2)
    cols = _im2col(x, win, groups, ones=bias is not None)         # G×K×(N·L), L = Ho·Wo
    out = np.matmul(w, cols)                                      # G×O/G×(N·L): all of the work, in BLAS
    # N×O×Ho×Wo as a view of the O×N×Ho×Wo result: copying it to C order would cost as much as the matmul.
    # NumPy ops accept any layout (element-wise ones keep it), as PyTorch's do with channels-last tensors.
    out = out.reshape(o, n, *win.out).transpose(1, 0, 2, 3)
    return out[0] if unbatched else out


def conv2d_backward(grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
                    stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1, groups: int = 1
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of `conv2d` with respect to x, weight and bias (None when bias is None).

    Takes the output gradient, then the forward's own arguments (the windows are rebuilt from x).

    >>> x, w = np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3))
    >>> dx, dw, db = conv2d_backward(np.ones((1, 1, 2, 2)), x, w, np.zeros(1))
    >>> dx[0, 0].tolist()[0], dw[0, 0, 0, 0], db
    ([1.0, 2.0, 2.0, 1.0], np.float64(4.0), array([4.]))
    """
    x, weight, unbatched, win = _setup(x, weight, bias, stride, padding, dilation, groups, "conv2d_backward")
    dtype = float_dtype(x, weight, bias, grad_out)
    x, weight = x.astype(dtype, copy=False), weight.astype(dtype, copy=False)
    g = np.asarray(grad_out, dtype=dtype)
    g = g[None] if unbatched else g
    n, o = x.shape[0], weight.shape[0]
    if g.shape != (n, o, *win.out):
        raise InputSizeError(f"conv2d_backward: grad_out must have the output's shape {(n, o, *win.out)}, "
                             f"got {g.shape}")
    g = g.transpose(1, 0, 2, 3).reshape(groups, o // groups, -1)    # G×O/G×(N·L), the layout of the columns
    w = weight.reshape(groups, o // groups, -1)                    # G×O/G×K
    cols = _im2col(x, win, groups, ones=bias is not None)          # G×K×(N·L), plus the row of ones
    dwb = np.matmul(g, cols.swapaxes(1, 2))                        # Σ over positions of g·window (and g·1)
    dw = np.ascontiguousarray(dwb[..., :w.shape[2]]).reshape(weight.shape)
    db = dwb[..., -1].reshape(o) if bias is not None else None     # the weight on the ones: Σ g
    dx = _col2im(np.matmul(w.swapaxes(1, 2), g), win, x.shape, groups)  # G×K×(N·L), back onto the image
    return (dx[0] if unbatched else dx), dw, db


def conv2d_loop(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntPair = 1,
                padding: Padding = 0, dilation: IntPair = 1, groups: int = 1) -> np.ndarray:
    """The lesson's convolution, literally: for every output position, multiply the window by the kernel
    element-wise and sum. Same arguments and results as `conv2d` (so a cross-correlation); slow.

    >>> x = np.arange(1, 26, dtype=float).reshape(1, 1, 5, 5)
    >>> conv2d_loop(x, np.array([[[[1, 0, -1], [2, 0, -2], [1, 0, -1]]]]))[0, 0].tolist()
    [[-8.0, -8.0, -8.0], [-8.0, -8.0, -8.0], [-8.0, -8.0, -8.0]]
    """
    x, weight, unbatched, win = _setup(x, weight, bias, stride, padding, dilation, groups, "conv2d_loop")
    dtype = float_dtype(x, weight, bias)
    xp = win.pad(x.astype(dtype, copy=False))                      # zeros around the image
    n, o, cg = x.shape[0], weight.shape[0], weight.shape[1]
    per_group = o // groups
    out = np.zeros((n, o, *win.out), dtype=dtype)
    for b in range(n):                                             # every image,
        for f in range(o):                                         # every filter,
            first = (f // per_group) * cg                          # (the input channels its group sees)
            kernel = weight[f]
            for i in range(win.out[0]):                            # every output row
                for j in range(win.out[1]):                        # and column:
                    rows, columns = win.window_at(i, j)            # the window under the kernel,
                    window = xp[b, first:first + cg, rows, columns]
                    out[b, f, i, j] = np.sum(window * kernel)      # multiplied element-wise and summed
            if bias is not None:
                out[b, f] += bias[f]
    return out[0] if unbatched else out


def conv2d_loop_backward(grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
                         stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1, groups: int = 1
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """`conv2d_backward`, literally: each output value was Σ window·kernel, so its gradient g sends g·kernel
    back to the window and g·window to the kernel.

    >>> x, w = np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3))
    >>> conv2d_loop_backward(np.ones((1, 1, 2, 2)), x, w)[0][0, 0, 0].tolist()
    [1.0, 2.0, 2.0, 1.0]
    """
    x, weight, unbatched, win = _setup(x, weight, bias, stride, padding, dilation, groups, "conv2d_loop_backward")
    dtype = float_dtype(x, weight, bias, grad_out)
    g = np.asarray(grad_out, dtype=dtype)
    g = g[None] if unbatched else g
    xp = win.pad(x.astype(dtype, copy=False))
    dxp, dw = np.zeros_like(xp), np.zeros(weight.shape, dtype=dtype)
    n, o, cg = x.shape[0], weight.shape[0], weight.shape[1]
    per_group = o // groups
    for b in range(n):
        for f in range(o):
            first = (f // per_group) * cg
            for i in range(win.out[0]):
                for j in range(win.out[1]):
                    rows, columns = win.window_at(i, j)
                    dxp[b, first:first + cg, rows, columns] += g[b, f, i, j] * weight[f]
                    dw[f] += g[b, f, i, j] * xp[b, first:first + cg, rows, columns]
    dx = win.unpad(dxp, x.shape[2:])
    db = g.sum(axis=(0, 2, 3)) if bias is not None else None
    return (dx[0] if unbatched else dx), dw, db
