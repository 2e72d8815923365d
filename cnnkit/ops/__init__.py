"""The operations of a CNN written out in NumPy, forward and backward, equal to PyTorch's.

Everywhere else cnnkit uses PyTorch, and should: its kernels are faster and better tested than anything
written here. This package exists for the lessons' point: a convolution is a few lines of arithmetic
(slide a window, multiply, sum), and backpropagation through a network is each layer's own gradient
rule, applied in reverse. So the math is written out where it can be read, stepped through and changed,
and it is held to PyTorch's numbers: the tests run each op next to its `torch.nn.functional` twin on
random inputs and compare outputs and gradients in float64.

- `conv2d` / `conv2d_loop`: the convolution, vectorised (im2col + matmul) and literal (four loops);
- `max_pool2d`, `avg_pool2d`, `global_avg_pool2d`, `relu`, `batch_norm`, `linear`, `flatten`, `dropout`,
  `cross_entropy` (softmax cross-entropy);
- every op `f` has `f_backward(grad_out, *same arguments)`, returning the gradient of each array argument
  (a tuple when there are several, None for an absent bias);
- `kernels`: named filters (sobel_x, laplacian, …); `nn`: layers, Sequential and SGD built on these ops;
  `scratch`: a LeNet-5-shaped network trained on scikit-learn's digits with them.

>>> import numpy as np
>>> from cnnkit import ops
>>> image = np.arange(1, 26, dtype=float).reshape(1, 1, 5, 5)
>>> ops.conv2d(image, ops.get_kernel('sobel_x')[None, None], padding='same').shape
(1, 1, 5, 5)
"""
from .activations import dropout, dropout_backward, dropout_mask, relu, relu_backward
from .conv import conv2d, conv2d_backward, conv2d_loop, conv2d_loop_backward
from .kernels import KERNELS, get_kernel, list_kernels, parse_kernel, resolve_kernel
from .linear import flatten, flatten_backward, linear, linear_backward
from .loss import cross_entropy, cross_entropy_backward, log_softmax, softmax
from .norm import batch_norm, batch_norm_backward
from .pool import (avg_pool2d, avg_pool2d_backward, global_avg_pool2d, global_avg_pool2d_backward, max_pool2d,
                   max_pool2d_backward)

__all__ = [
    "conv2d", "conv2d_backward", "conv2d_loop", "conv2d_loop_backward",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "global_avg_pool2d", "global_avg_pool2d_backward",
    "relu", "relu_backward", "dropout", "dropout_backward", "dropout_mask",
    "batch_norm", "batch_norm_backward",
    "linear", "linear_backward", "flatten", "flatten_backward",
    "cross_entropy", "cross_entropy_backward", "log_softmax", "softmax",
    "KERNELS", "get_kernel", "list_kernels", "parse_kernel", "resolve_kernel",
]
