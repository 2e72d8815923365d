"""The lessons' fully connected baseline: every pixel wired to every one of 1,024 hidden units.

flatten → linear C·H·W → 1,024 → ReLU → linear 1,024 → num_classes. It is the plain network the lessons set
against the CNN (no dropout, no normalisation: the lesson's own SimpleCNN has neither, so the comparison is
like for like). Its first layer grows with the image: 814,090 parameters at 1×28×28 with 10 classes, over
154 million at 3×224×224, where a convolution's weights do not grow at all (`cnnkit lessons`).

It has no convolution, so no spatial stage: `stage_names` is empty, and feature maps, receptive fields,
first-layer filters and Grad-CAM do not apply (`cnnkit explain` says so in one line; report.html leaves those
sections out). `forward_features` gives the 1,024 hidden activations, `forward_head` the classifier on them.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ._base import CnnkitModel
from ._registry import register_model

HIDDEN = 1024  # the lessons' hidden layer


class MLP(CnnkitModel):
    """The lessons' fully connected network: flatten → 1,024 ReLU units → classes.

    >>> m = MLP(in_channels=1, input_size=(28, 28))
    >>> m(torch.zeros(2, 1, 28, 28)).shape, sum(p.numel() for p in m.parameters())
    (torch.Size([2, 10]), 814090)
    """

    stage_names = ()  # no convolutional stage: nothing here is a feature map
    classifier_name = "fc2"
    min_input_size = 1

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, input_size: Sequence[int] = (32, 32)):
        super().__init__()
        self.in_channels = in_channels
        h, w = (int(v) for v in input_size[-2:])
        if min(h, w) < 1:
            raise ValueError(f"mlp needs a positive input size, got input_size={h}x{w}")
        self.input_size = (h, w)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_channels * h * w, HIDDEN)  # one weight per pixel and hidden unit
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(HIDDEN, num_classes)

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        if tuple(x.shape[-2:]) != self.input_size:
            from ..errors import InputSizeError

            h, w = x.shape[-2:]
            raise InputSizeError(
                f"mlp was built for {self.input_size[0]}x{self.input_size[1]} inputs (its first layer has one "
                f"weight per pixel), got {h}x{w}; build it with input_size=({h}, {w})"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden layer's activations, N×1024 (there is no spatial feature map)."""
        return self.relu(self.fc1(self.flatten(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(x)


@register_model
def mlp(*, num_classes: int = 10, in_channels: int = 3, input_size: Sequence[int] | None = None,
        small_input: bool | None = None) -> MLP:
    """The lessons' fully connected baseline: flatten → 1,024 hidden units → classes (814,090 params, 1×28×28)."""
    return MLP(num_classes=num_classes, in_channels=in_channels, input_size=tuple(input_size or (32, 32)))
