"""Layers, a Sequential container and SGD with momentum, on the NumPy ops: a network with no autograd.

Each layer keeps what its forward pass saw and, in `backward(grad)`, adds its parameters' gradients to
`.grad` and returns the gradient for the layer below: backpropagation is the list of layers walked in
reverse (micrograd's idea, for whole arrays). Names, initialisation and update rules are PyTorch's, and
`state_dict()` uses PyTorch's keys, so the same network built with `torch.nn` loads these weights as they
are (that is how the tests check every gradient).

>>> net = Sequential(Conv2d(1, 2, 3, padding=1, rng=np.random.default_rng(0)), ReLU(), Flatten(), Linear(32, 3))
>>> logits = net(np.zeros((5, 1, 4, 4), dtype=np.float32))
>>> loss = CrossEntropyLoss()
>>> _ = loss(logits, np.zeros(5, dtype=int)); _ = net.backward(loss.backward())
>>> SGD(net.parameters(), lr=0.1, momentum=0.9).step()
>>> logits.shape, [p.grad.shape for p in net.parameters()][0]
((5, 3), (2, 1, 3, 3))
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterable, Iterator

import numpy as np

from ..errors import CnnkitError
from .activations import _check_p, dropout, dropout_backward, dropout_mask, relu, relu_backward
from .conv import conv2d, conv2d_backward
from .linear import flatten, flatten_backward, linear, linear_backward
from .loss import cross_entropy, cross_entropy_backward
from .norm import batch_norm, batch_norm_backward
from .pool import (avg_pool2d, avg_pool2d_backward, global_avg_pool2d, global_avg_pool2d_backward, max_pool2d,
                   max_pool2d_backward)


class Parameter:
    """A learnable array and the gradient accumulated into it."""

    def __init__(self, data: np.ndarray):
        self.data = np.asarray(data)
        self.grad = np.zeros_like(self.data)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


def _data(p: Parameter | None) -> np.ndarray | None:
    return None if p is None else p.data


def _uniform(rng: np.random.Generator, shape, fan_in: int, dtype) -> np.ndarray:
    """PyTorch's default initialisation of conv and linear layers: U(−1/√fan_in, 1/√fan_in)."""
    bound = 1 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class Module(ABC):
    """A layer: `forward(x)` keeps what `backward(grad)` needs; `backward` returns the input's gradient."""

    training = True
    _buffers: tuple[str, ...] = ()  # state that is not learned (BatchNorm's running statistics)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    @abstractmethod
    def forward(self, x: np.ndarray) -> np.ndarray:
        """The layer's output; keeps what backward needs."""

    @abstractmethod
    def backward(self, grad: np.ndarray) -> np.ndarray:
        """The gradient with respect to the input; accumulates the parameters' gradients."""

    def _saved(self):
        if getattr(self, "_x", None) is None:
            raise CnnkitError(f"{type(self).__name__}.backward called before forward")
        return self._x

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad[...] = 0

    def train(self, mode: bool = True) -> "Module":
        self.training = mode
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def state_dict(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Parameters and buffers under PyTorch's names (`weight`, `running_mean`, `0.weight` …)."""
        d = {name: p.data for name, p in self.named_parameters(prefix)}
        d.update({prefix + b: np.asarray(getattr(self, b)) for b in self._buffers})
        return d

    def load_state_dict(self, state: dict) -> None:
        """Copy arrays in (NumPy arrays or torch tensors), in place; every key must match."""
        mine = self.state_dict()
        if set(state) != set(mine):
            raise CnnkitError(f"state dict keys differ: missing {sorted(set(mine) - set(state))}, "
                              f"unexpected {sorted(set(state) - set(mine))}")
        for k, v in state.items():
            v = np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
            if v.shape != mine[k].shape:
                raise CnnkitError(f"state dict '{k}': expected shape {mine[k].shape}, got {v.shape}")
            mine[k][...] = v

    def __repr__(self) -> str:
        return f"{type(self).__name__}({getattr(self, '_args', '')})"


class Conv2d(Module):
    """`torch.nn.Conv2d` on `ops.conv2d` (weight O×C/groups×kh×kw, bias O)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], stride=1,
                 padding=0, dilation=1, groups: int = 1, bias: bool = True, *,
                 rng: np.random.Generator | None = None, dtype=np.float32):
        rng = rng if rng is not None else np.random.default_rng()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        fan_in = in_channels // groups * kh * kw
        self.weight = Parameter(_uniform(rng, (out_channels, in_channels // groups, kh, kw), fan_in, dtype))
        self.bias = Parameter(_uniform(rng, (out_channels,), fan_in, dtype)) if bias else None
        self.kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        self._args = f"{in_channels}, {out_channels}, kernel_size={(kh, kw)}, " + \
            ", ".join(f"{k}={v}" for k, v in self.kw.items())

    def forward(self, x):
        self._x = x
        return conv2d(x, self.weight.data, _data(self.bias), **self.kw)

    def backward(self, grad):
        dx, dw, db = conv2d_backward(grad, self._saved(), self.weight.data, _data(self.bias), **self.kw)
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx


class Linear(Module):
    """`torch.nn.Linear` on `ops.linear` (weight out×in, bias out)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 rng: np.random.Generator | None = None, dtype=np.float32):
        rng = rng if rng is not None else np.random.default_rng()
        self.weight = Parameter(_uniform(rng, (out_features, in_features), in_features, dtype))
        self.bias = Parameter(_uniform(rng, (out_features,), in_features, dtype)) if bias else None
        self._args = f"{in_features}, {out_features}"

    def forward(self, x):
        self._x = x
        return linear(x, self.weight.data, _data(self.bias))

    def backward(self, grad):
        dx, dw, db = linear_backward(grad, self._saved(), self.weight.data, _data(self.bias))
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx


class BatchNorm2d(Module):
    """`torch.nn.BatchNorm2d` on `ops.batch_norm`: batch statistics in training, running ones in eval."""

    _buffers = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, *, dtype=np.float32):
        self.weight = Parameter(np.ones(num_features, dtype=dtype))
        self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        self.running_mean = np.zeros(num_features, dtype=dtype)
        self.running_var = np.ones(num_features, dtype=dtype)
        self.num_batches_tracked = np.zeros((), dtype=np.int64)
        self.eps, self.momentum = eps, momentum
        self._args = f"{num_features}, eps={eps}, momentum={momentum}"

    def _kw(self):
        return dict(running_mean=self.running_mean, running_var=self.running_var, weight=self.weight.data,
                    bias=self.bias.data, training=self.training, momentum=self.momentum, eps=self.eps)

    def forward(self, x):
        self._x, self._training = x, self.training
        if self.training:
            self.num_batches_tracked += 1
        return batch_norm(x, **self._kw())

    def backward(self, grad):
        kw = {**self._kw(), "training": self._training}
        dx, dw, db = batch_norm_backward(grad, self._saved(), **kw)
        self.weight.grad += dw
        self.bias.grad += db
        return dx


class _Stateless(Module):
    """A layer without parameters: a forward op and its backward, with fixed keyword arguments."""

    fwd: staticmethod
    bwd: staticmethod

    def __init__(self, **kw):
        self.kw = kw
        self._args = ", ".join(f"{k}={v}" for k, v in kw.items())

    def forward(self, x):
        self._x = x
        return self.fwd(x, **self.kw)

    def backward(self, grad):
        return self.bwd(grad, self._saved(), **self.kw)


class ReLU(_Stateless):
    fwd, bwd = staticmethod(relu), staticmethod(relu_backward)


class Flatten(_Stateless):
    fwd, bwd = staticmethod(flatten), staticmethod(flatten_backward)

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__(start_dim=start_dim, end_dim=end_dim)


class MaxPool2d(_Stateless):
    fwd, bwd = staticmethod(max_pool2d), staticmethod(max_pool2d_backward)

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size=kernel_size, stride=stride, padding=padding)


class AvgPool2d(_Stateless):
    fwd, bwd = staticmethod(avg_pool2d), staticmethod(avg_pool2d_backward)

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad: bool = True):
        super().__init__(kernel_size=kernel_size, stride=stride, padding=padding,
                         count_include_pad=count_include_pad)


class GlobalAvgPool2d(_Stateless):
    """N×C×H×W → N×C×1×1, as `torch.nn.AdaptiveAvgPool2d(1)`."""

    fwd, bwd = staticmethod(global_avg_pool2d), staticmethod(global_avg_pool2d_backward)


class Dropout(Module):
    """`torch.nn.Dropout`: a fresh mask each training forward pass, the identity in eval."""

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator | None = None):
        self.p, self.rng = _check_p(p), rng if rng is not None else np.random.default_rng()
        self._args = f"p={p}"

    def forward(self, x):
        self._x, self._training = x, self.training
        self._mask = dropout_mask(np.shape(x), self.p, self.rng) if self.training else None
        return dropout(x, self.p, self.training, mask=self._mask)

    def backward(self, grad):
        return dropout_backward(grad, self._saved(), self.p, self._training, mask=self._mask)


class Sequential(Module):
    """Layers applied in order; `backward` walks them in reverse. Names are the indices, as in PyTorch."""

    def __init__(self, *layers: Module):
        self.layers = list(layers)

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, grad):
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for i, layer in enumerate(self.layers):
            yield from layer.named_parameters(f"{prefix}{i}.")

    def state_dict(self, prefix: str = "") -> dict[str, np.ndarray]:
        d: dict[str, np.ndarray] = {}
        for i, layer in enumerate(self.layers):
            d.update(layer.state_dict(f"{prefix}{i}."))
        return d

    def train(self, mode: bool = True) -> "Sequential":
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    def __repr__(self) -> str:
        return "Sequential(\n" + "".join(f"  ({i}): {layer!r}\n" for i, layer in enumerate(self.layers)) + ")"


class CrossEntropyLoss:
    """`torch.nn.CrossEntropyLoss` (mean): call with (logits, targets), then `backward()` for the logits' gradient."""

    def __call__(self, logits: np.ndarray, target: np.ndarray) -> float:
        self._logits, self._target = logits, target
        return float(cross_entropy(logits, target))

    def backward(self) -> np.ndarray:
        return cross_entropy_backward(1.0, self._logits, self._target).astype(self._logits.dtype, copy=False)


class SGD:
    """`torch.optim.SGD`: v ← μ·v + (g + λ·w); w ← w − lr·v (the first step sets v ← g + λ·w)."""

    def __init__(self, params: Iterable[Parameter], lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        if lr <= 0 or momentum < 0 or weight_decay < 0:
            raise CnnkitError(f"SGD needs lr > 0, momentum ≥ 0, weight_decay ≥ 0; got lr={lr}, "
                              f"momentum={momentum}, weight_decay={weight_decay}")
        self.params = list(params)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self._velocity: list[np.ndarray | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad[...] = 0

    def step(self) -> None:
        for i, p in enumerate(self.params):
            d = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            if self.momentum:
                v = self._velocity[i]
                self._velocity[i] = d.copy() if v is None else np.add(self.momentum * v, d, out=v)
                d = self._velocity[i]
            p.data -= (self.lr * d).astype(p.data.dtype, copy=False)
