"""The lessons' two SimpleCNNs, written out layer by layer as the lessons draw them."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ..errors import InputSizeError
from ._base import CnnkitModel
from ._registry import register_model


class SimpleCNN(CnnkitModel):
    """Lesson 1's CIFAR-10 network: two conv-ReLU-pool blocks, then two linear layers.

    conv 3→32 (3×3, pad 1) → ReLU → maxpool 2 → conv 32→64 → ReLU → maxpool 2 → flatten → linear 128
    → ReLU → linear num_classes. At 3×32×32 the flatten is 64·8·8 = 4096 and the model has 545,098
    parameters (10 classes); on another input size the flatten size follows `input_size`.

    >>> SimpleCNN()(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    stage_names = ("pool1", "pool2")
    classifier_name = "fc2"
    min_input_size = 4

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, input_size: Sequence[int] = (32, 32)):
        super().__init__()
        self.in_channels = in_channels
        h, w = input_size[-2:]
        if min(h, w) < self.min_input_size:
            raise InputSizeError(f"simplecnn needs inputs of at least 4x4, got input_size={h}x{w}")
        self.input_size = (h, w)
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * (h // 4) * (w // 4), 128)  # the flatten size follows the input
        self.relu3 = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(128, num_classes)

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        if tuple(x.shape[-2:]) != self.input_size:
            from ..errors import InputSizeError

            h, w = x.shape[-2:]
            raise InputSizeError(
                f"simplecnn was built for {self.input_size[0]}x{self.input_size[1]} inputs (its flatten size "
                f"depends on it), got {h}x{w}; build it with input_size=({h}, {w})"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        return self.pool2(self.relu2(self.conv2(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu3(self.fc1(self.flatten(x))))


class SimpleCNNBN(CnnkitModel):
    """Lesson 2's network for binary 224×224 medical images: BatchNorm blocks and global average pooling.

    Three blocks [conv 3×3 pad 1 → BatchNorm → ReLU → maxpool 2] of 32, 64, 128 channels → global average
    pooling → flatten → linear 64 → ReLU → dropout 0.3 → linear num_classes (default 2). 102,082
    parameters with 2 classes (the lesson says "~200K"; this is the true count). Global average pooling
    makes it work at any input size of at least 8×8.

    >>> SimpleCNNBN().eval()(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 2])
    """

    stage_names = ("block1", "block2", "block3")
    classifier_name = "fc2"
    min_input_size = 8

    def __init__(self, *, num_classes: int = 2, in_channels: int = 3, dropout: float = 0.3):
        super().__init__()
        self.in_channels = in_channels
        chans = [in_channels, 32, 64, 128]
        for i in range(3):
            block = nn.Sequential(
                nn.Conv2d(chans[i], chans[i + 1], kernel_size=3, padding=1),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )
            self.add_module(f"block{i + 1}", block)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(128, 64)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(64, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.block3(self.block2(self.block1(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.relu(self.fc1(self.flatten(self.gap(x))))))


@register_model
def simplecnn(*, num_classes: int = 10, in_channels: int = 3, input_size: Sequence[int] | None = None,
              small_input: bool | None = None) -> SimpleCNN:
    """Lesson 1's CIFAR-10 SimpleCNN (545,098 parameters at 3×32×32, 10 classes)."""
    return SimpleCNN(num_classes=num_classes, in_channels=in_channels, input_size=tuple(input_size or (32, 32)))


@register_model
def simplecnn_bn(*, num_classes: int = 2, in_channels: int = 3, dropout: float = 0.3,
                 input_size: Sequence[int] | None = None, small_input: bool | None = None) -> SimpleCNNBN:
    """Lesson 2's BatchNorm SimpleCNN for binary 224×224 medical images (102,082 parameters, 2 classes)."""
    return SimpleCNNBN(num_classes=num_classes, in_channels=in_channels, dropout=dropout)
