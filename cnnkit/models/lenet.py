"""LeNet-5 (LeCun, Bottou, Bengio, Haffner 1998, "Gradient-based learning applied to document recognition").

Kept from the paper: the layer plan and sizes (C1 6@5×5 → S2 2×2 subsampling → C3 16@5×5 → S4 →
C5 120@5×5 → F6 84 → output), 32×32 input (28×28 MNIST-style images are zero-padded by 2 to 32×32, as
the paper did), average-pool subsampling, 61,706 parameters for 1×32×32 and 10 classes.

Modernised: ReLU instead of the scaled tanh; S2/S4 are plain average pools (the paper's had a trainable
coefficient and bias per map); C3 connects to all six S2 maps (the paper's sparse connection table was a
1998 compute saving); the output is a linear layer trained with softmax cross-entropy instead of
Euclidean RBF units.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._base import CnnkitModel
from ._registry import register_model


class LeNet5(CnnkitModel):
    """LeNet-5 for 1×32×32 (or 28×28, padded) images.

    >>> LeNet5()(torch.zeros(1, 1, 28, 28)).shape
    torch.Size([1, 10])
    """

    stage_names = ("s2", "s4", "c5")
    classifier_name = "output"
    min_input_size = 1

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1, input_size: Sequence[int] = (32, 32)):
        super().__init__()
        self.in_channels = in_channels
        h, w = (max(32, s) for s in input_size[-2:])  # smaller inputs are padded to 32
        self.c1 = nn.Conv2d(in_channels, 6, kernel_size=5)
        self.relu1 = nn.ReLU(inplace=True)
        self.s2 = nn.AvgPool2d(2)
        self.c3 = nn.Conv2d(6, 16, kernel_size=5)
        self.relu3 = nn.ReLU(inplace=True)
        self.s4 = nn.AvgPool2d(2)
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)
        self.relu5 = nn.ReLU(inplace=True)
        self.flatten = nn.Flatten()
        side = lambda s: ((s - 4) // 2 - 4) // 2 - 4  # noqa: E731  C5's output side for an input side s
        self.f6 = nn.Linear(120 * side(h) * side(w), 84)
        self.relu6 = nn.ReLU(inplace=True)
        self.output = nn.Linear(84, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h < 32 or w < 32:  # the paper's 28→32 padding: digits stay centred, C1 sees the strokes whole
            ph, pw = max(0, 32 - h), max(0, 32 - w)
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        x = self.s2(self.relu1(self.c1(x)))
        x = self.s4(self.relu3(self.c3(x)))
        return self.relu5(self.c5(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.relu6(self.f6(self.flatten(x))))


@register_model
def lenet5(*, num_classes: int = 10, in_channels: int = 1, input_size: Sequence[int] | None = None,
           small_input: bool | None = None) -> LeNet5:
    """LeNet-5 (LeCun et al. 1998), modernised with ReLU; 61,706 parameters at 1×32×32, 10 classes."""
    return LeNet5(num_classes=num_classes, in_channels=in_channels, input_size=tuple(input_size or (32, 32)))
