"""FastCNN: the network of `--preset fast`, chosen for the shortest time to a good accuracy on a CPU.

Three blocks [conv 3×3 → BatchNorm → max-pool 2 → ReLU] of 32, 64 and 128 channels, then a linear layer on
the flattened 3×3 map. BatchNorm lets it train at a high learning rate and converge in a few epochs; the
max-pool comes before the ReLU (they commute, max(relu(a), relu(b)) = relu(max(a, b))) so the ReLU touches
4× fewer values; the classifier keeps the spatial layout instead of averaging it away, which matters on
28×28 clothing where position carries information. bench/train_speed.py measures it against the usual
alternatives.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ._base import CnnkitModel
from ._registry import register_model


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """conv 3×3 → BN → (max-pool 2, or the conv itself at stride 2) → ReLU: halves the resolution."""
    pool = [nn.MaxPool2d(2)] if stride == 1 else []
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         *pool, nn.ReLU(inplace=True))


class FastCNN(CnnkitModel):
    """>>> FastCNN(in_channels=1, input_size=(28, 28))(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    stage_names = ("block1", "block2", "block3")
    classifier_name = "fc"
    min_input_size = 8

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, input_size: Sequence[int] = (28, 28),
                 width: int = 32, dropout: float = 0.1, stem_stride: int = 1):
        super().__init__()
        self.in_channels = in_channels
        h, w = input_size[-2:]
        self.input_size = (h, w)
        self.block1 = _block(in_channels, width, stride=stem_stride)
        self.block2 = _block(width, 2 * width)
        self.block3 = _block(2 * width, 4 * width)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(4 * width * (h // 8) * (w // 8), num_classes)

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        if tuple(x.shape[-2:]) != self.input_size:
            from ..errors import InputSizeError

            raise InputSizeError(f"fastcnn was built for {self.input_size[0]}x{self.input_size[1]} inputs, got "
                                 f"{x.shape[-2]}x{x.shape[-1]}; build it with input_size=({x.shape[-2]}, {x.shape[-1]})")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.block3(self.block2(self.block1(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.flatten(x)))


@register_model
def fastcnn(*, num_classes: int = 10, in_channels: int = 3, input_size: Sequence[int] | None = None,
            small_input: bool | None = None, width: int = 32, dropout: float = 0.1, stem_stride: int = 1) -> FastCNN:
    """FastCNN: three conv-BN-pool blocks and a linear layer; the network of `--preset fast`."""
    return FastCNN(num_classes=num_classes, in_channels=in_channels, input_size=tuple(input_size or (28, 28)),
                   width=width, dropout=dropout, stem_stride=stem_stride)
