"""Receptive fields, computed by following the real forward pass (Araujo et al., Distill 2019).

For every tensor the forward pass makes we track, per spatial axis, the input-pixel interval that output
unit 0 sees, [left, right], and the jump (the input-pixel distance between neighbouring units). A layer
with kernel k, stride s, padding p and dilation d maps (left, right, jump) to
    left' = left - p·jump,   right' = right + (d·(k-1) - p)·jump,   jump' = jump·s.
Where paths meet (a residual add, an Inception concat) the interval is the union: the largest receptive
field over all paths. Global pooling, flatten and linear layers see every position of their input.
Size = right - left + 1 (it can exceed the image: padding counts, as in the paper).

It runs as a `TorchFunctionMode`, so it needs no per-model code: any model built from torch functions
is covered, whatever its branches.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten


@dataclass(frozen=True)
class RF:
    """The receptive field of a feature map's units, per axis (H, W)."""

    left: tuple[float, float]
    right: tuple[float, float]
    jump: tuple[float, float]

    @property
    def size(self) -> tuple[int, int]:
        return tuple(int(round(r - l + 1)) for l, r in zip(self.left, self.right))  # type: ignore[return-value]

    @property
    def start(self) -> tuple[float, float]:
        """Centre of unit 0's receptive field, in input pixels."""
        return tuple((l + r) / 2 for l, r in zip(self.left, self.right))  # type: ignore[return-value]

    def box(self, i: int, j: int) -> tuple[float, float, float, float]:
        """(top, left, bottom, right) in input pixels of unit (i, j)'s receptive field."""
        return (self.left[0] + i * self.jump[0], self.left[1] + j * self.jump[1],
                self.right[0] + i * self.jump[0], self.right[1] + j * self.jump[1])

    def window(self, k, s, p, d) -> "RF":
        return RF(
            left=tuple(l - pi * j for l, pi, j in zip(self.left, p, self.jump)),
            right=tuple(r + (di * (ki - 1) - pi) * j for r, ki, pi, di, j in zip(self.right, k, p, d, self.jump)),
            jump=tuple(j * si for j, si in zip(self.jump, s)),
        )

    def union(self, other: "RF") -> "RF":
        return RF(tuple(map(min, self.left, other.left)), tuple(map(max, self.right, other.right)), self.jump)


_SPATIAL_OPS = ("conv2d", "max_pool2d", "avg_pool2d", "_max_pool2d", "max_pool2d_with_indices",
                "adaptive_avg_pool2d", "adaptive_max_pool2d", "_adaptive_max_pool2d",
                "adaptive_max_pool2d_with_indices", "pad")


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


def _arg(args, kwargs, i, name, default=None):
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


class ReceptiveFieldMode(TorchFunctionMode):
    """Tracks the RF of every tensor made while active. `rf_of(t)` reads one back.

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3))
    >>> x = torch.zeros(1, 1, 16, 16)
    >>> with ReceptiveFieldMode(x) as mode:
    ...     y = net(x)
    >>> mode.rf_of(y).size, mode.rf_of(y).jump
    ((8, 8), (2.0, 2.0))
    """

    def __init__(self, x: torch.Tensor):
        super().__init__()
        # per tracked tensor: its RF and its spatial size (H, W), wherever the layout puts them (NCHW, or
        # NHWC inside a ConvNeXt block)
        self._rf: dict[int, tuple[RF, tuple[int, ...]]] = {}
        self._alive: list[torch.Tensor] = []  # keeps ids unique while the pass runs
        self._set(x, RF((0.0, 0.0), (0.0, 0.0), (1.0, 1.0)), tuple(x.shape[-2:]))

    def _set(self, t: torch.Tensor, rf: RF, hw: tuple[int, ...]) -> None:
        self._rf[id(t)] = (rf, hw)
        self._alive.append(t)

    def rf_of(self, t: Any) -> RF | None:
        if isinstance(t, (tuple, list)):
            t = t[0] if t else None
        if not isinstance(t, torch.Tensor):
            return None
        entry = self._rf.get(id(t))
        return entry[0] if entry else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [self._rf[id(t)] for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor) and id(t) in self._rf]
        if not inputs:
            return out
        outs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
        if not outs:
            return out
        # Union of all tracked inputs; the geometry comes from the one with the largest spatial map.
        # A 1×1 map broadcast over a larger one (a squeeze-excitation gate) is a per-channel scale, not a
        # spatial path: it is left out, or every unit after the first SE block would "see" the whole image.
        area = lambda hw: math.prod(hw) if len(hw) == 2 else 0  # noqa: E731
        rf, hw = max(inputs, key=lambda e: area(e[1]))
        for other, other_hw in inputs:
            if area(other_hw) == area(hw):
                rf = rf.union(other)
        o = outs[0]
        spatial_op = getattr(func, "__name__", "") in _SPATIAL_OPS
        if not spatial_op and len(hw) == 2 and o.dim() == 4 and hw in (tuple(o.shape[-2:]), tuple(o.shape[1:3])):
            out_hw = hw  # the same positions, perhaps in another layout (a permute, a channels-last linear)
        else:
            rf = self._apply(func, args, kwargs, rf, hw, o)
            out_hw = tuple(o.shape[-2:]) if o.dim() == 4 else ()
        for t in outs:
            self._set(t, rf, out_hw)
        return out

    @staticmethod
    def _apply(func, args, kwargs, rf: RF, hw, out: torch.Tensor) -> RF:
        """`hw`: the spatial size of the input map (empty when the input has none)."""
        name = getattr(func, "__name__", "")
        if name in ("conv2d",):
            w = _arg(args, kwargs, 1, "weight")
            k = tuple(w.shape[-2:])
            s = _pair(_arg(args, kwargs, 3, "stride", 1))
            d = _pair(_arg(args, kwargs, 5, "dilation", 1))
            p = _arg(args, kwargs, 4, "padding", 0)
            if isinstance(p, str):  # 'valid' or 'same'
                p = (0, 0) if p == "valid" else tuple(di * (ki - 1) // 2 for ki, di in zip(k, d))
            return rf.window(k, s, _pair(p), d)
        if name in ("max_pool2d", "avg_pool2d", "_max_pool2d", "max_pool2d_with_indices"):
            k = _pair(_arg(args, kwargs, 1, "kernel_size"))
            s = _arg(args, kwargs, 2, "stride", None)
            s = k if s is None or s == [] or s == () else _pair(s)
            p = _pair(_arg(args, kwargs, 3, "padding", 0))
            d = _pair(_arg(args, kwargs, 4, "dilation", 1)) if "max" in name else (1, 1)
            return rf.window(k, s, p, d)
        if name in ("adaptive_avg_pool2d", "adaptive_max_pool2d", "_adaptive_max_pool2d",
                    "adaptive_max_pool2d_with_indices") and len(hw) == 2:
            ins, outs = hw, out.shape[-2:]
            k = tuple(math.ceil(i / o) for i, o in zip(ins, outs))
            return rf.window(k, tuple(i / o for i, o in zip(ins, outs)), (0, 0), (1, 1))
        if name == "pad" and len(hw) == 2:
            pad = list(_arg(args, kwargs, 1, "pad")) + [0, 0, 0, 0]
            return RF((rf.left[0] - pad[2] * rf.jump[0], rf.left[1] - pad[0] * rf.jump[1]),
                      (rf.right[0] - pad[2] * rf.jump[0], rf.right[1] - pad[0] * rf.jump[1]), rf.jump)
        if len(hw) == 2 and (out.dim() != 4 or tuple(out.shape[-2:]) != tuple(hw)):
            # flatten, view, global mean...: every position of the input map is seen
            return rf.window(tuple(hw), tuple(hw), (0, 0), (1, 1))
        return rf  # element-wise: ReLU, BatchNorm, add, concat along channels, dropout...


def receptive_field(model: torch.nn.Module, input_shape: tuple[int, ...], layer: str) -> RF:
    """The receptive field of a named layer's output, for an input of shape (C, H, W).

    >>> from cnnkit import create_model
    >>> receptive_field(create_model('vgg16'), (3, 224, 224), 'features.30').size
    (212, 212)
    """
    module = model.get_submodule(layer)
    found: list[RF | None] = []
    x = torch.zeros(1, *input_shape)
    was_training = model.training
    model.eval()
    with torch.no_grad(), ReceptiveFieldMode(x) as mode:
        handle = module.register_forward_hook(lambda _m, _i, o: found.append(mode.rf_of(o)))
        try:
            model(x)
        finally:
            handle.remove()
            model.train(was_training)
    if not found or found[-1] is None:
        raise ValueError(f"layer '{layer}' produced no tracked output for input {input_shape}")
    return found[-1]
