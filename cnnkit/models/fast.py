"""FastCNN: the network of `--preset fast`, chosen for the shortest time to a good accuracy on a CPU.

Three blocks of 24, 32 and 128 channels, each conv 3×3 → BatchNorm → ReLU at half the resolution of the last
(the first by a stride-2 convolution, the others by a max-pool), then a linear layer on the flattened 3×3
map: 3.2 M multiply-adds and 55,890 parameters at 1×28×28.

Why this shape (measured on 2 AVX2 cores, Fashion-MNIST, t10k accuracy at the end of a one-cycle run):
- BatchNorm lets it train at a high learning rate and converge in a few epochs;
- the stride-2 first convolution skips the full-resolution feature maps, whose BatchNorm, pooling and ReLU
  passes are memory-bound: 1.55x the images/s of a stride-1 stem plus max-pool, for 0.3-0.5 points less
  accuracy at the same epoch count;
- the max-pool comes before the ReLU (they commute: max(relu(a), relu(b)) = relu(max(a, b))), so the ReLU
  touches 4x fewer values;
- the classifier keeps the spatial layout instead of averaging it away: on 28×28 clothing, position carries
  information;
- the widths: the convolutions are ~2/3 of a training step and run near the CPU's peak, so time per epoch
  follows the multiply-adds, most of which sit in the 14×14 block. A thin 14×14 block and a wide 7×7 one
  (24, 32, 128: 3.2 M MACs, ~1.25x the images/s of 24, 48, 96 at 4.1 M) reached the same accuracy per epoch:
  5 epochs at batch 128 gave 92.30 / 92.15 / 92.27% (seeds 0-2) against 92.13 / 92.28% for 24, 48, 96, in
  ~20% less time. 16, 32, 96 (2.3 M) is 1.6x faster per epoch but levels off lower (91.9-92.0% after 5
  epochs, 92.1-92.2% after 6). Dropout 0.25 instead of 0.1 cost 0.5 point at 5 epochs.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ..errors import InputSizeError
from ._base import CnnkitModel
from ._registry import ModelArgumentError, register_model


WIDTHS = (24, 32, 128)  # channels of the three blocks (see the module docstring for why these)


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """conv 3×3 → BN → (max-pool 2, or the conv itself at stride 2) → ReLU: halves the resolution."""
    pool = [nn.MaxPool2d(2)] if stride == 1 else []
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         *pool, nn.ReLU(inplace=True))


class FastCNN(CnnkitModel):
    """The network of `--preset fast` (see the module docstring).

    >>> FastCNN(in_channels=1, input_size=(28, 28))(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    >>> sum(p.numel() for p in FastCNN(in_channels=1).parameters())
    55890
    """

    stage_names = ("block1", "block2", "block3")
    classifier_name = "fc"
    min_input_size = 8

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, input_size: Sequence[int] = (28, 28),
                 widths: Sequence[int] = WIDTHS, dropout: float = 0.1, stem_stride: int = 2):
        super().__init__()
        self.in_channels = in_channels
        h, w = input_size[-2:]
        self.input_size = (h, w)
        # checked before anything is built or trained: a run's model.json accepts no other widths, so a value
        # let through here would train to the end and then fail to be saved
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not 1 <= len(widths) <= 4 or \
                not all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 4096 for c in widths):
            raise ModelArgumentError(f"fastcnn widths must be 1 to 4 whole channel counts from 1 to 4096, "
                                     f"got {' '.join(repr(widths).split())[:60]}")
        widths = [int(c) for c in widths]
        depth = len(widths)
        if min(h, w) // 2 ** depth < 1:
            raise InputSizeError(f"fastcnn with {depth} blocks halves {h}x{w} inputs to nothing; use fewer widths")
        self.stage_names = tuple(f"block{i + 1}" for i in range(depth))
        chans = [in_channels] + widths
        for i in range(depth):
            self.add_module(f"block{i + 1}", _block(chans[i], chans[i + 1], stride=stem_stride if i == 0 else 1))
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(chans[-1] * (h // 2 ** depth) * (w // 2 ** depth), num_classes)

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        if tuple(x.shape[-2:]) != self.input_size:
            from ..errors import InputSizeError

            raise InputSizeError(f"fastcnn was built for {self.input_size[0]}x{self.input_size[1]} inputs, got "
                                 f"{x.shape[-2]}x{x.shape[-1]}; build it with input_size=({x.shape[-2]}, {x.shape[-1]})")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.flatten(x)))


@register_model
def fastcnn(*, num_classes: int = 10, in_channels: int = 3, input_size: Sequence[int] | None = None,
            small_input: bool | None = None, widths: Sequence[int] = WIDTHS, dropout: float = 0.1,
            stem_stride: int = 2) -> FastCNN:
    """FastCNN: three conv-BN-ReLU blocks at halving resolutions and a linear layer; `--preset fast`'s network."""
    return FastCNN(num_classes=num_classes, in_channels=in_channels, input_size=tuple(input_size or (28, 28)),
                   widths=widths, dropout=dropout, stem_stride=stem_stride)
