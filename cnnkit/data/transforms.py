"""Batch augmentation on uint8 tensors: a whole batch at once (normalisation is `cnnkit.preprocess`).

Augmenting a batch in a few tensor ops costs far less than PIL transforms image by image, which matters on a
CPU where the network itself is small.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENTS = ("none", "light", "standard")


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to `pad` pixels (the random crop after zero padding of CIFAR training)."""
    if pad <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).to(x.device)  # n×h
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).to(x.device)  # n×w
    idx_r = rows.view(n, 1, h, 1).expand(n, x.shape[1], h, w + 2 * pad)
    out = padded.gather(2, idx_r)
    idx_c = cols.view(n, 1, 1, w).expand(n, x.shape[1], h, w)
    return out.gather(3, idx_c)


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def augment(x: torch.Tensor, level: str, *, flips: bool, generator: torch.Generator) -> torch.Tensor:
    """'light': shifts of 1/16 of the side; 'standard': 1/8 of the side; with `flips` (the trainer's resolved
    choice: from the data, or --flips), random horizontal flips too. Works on the uint8 batch, before
    normalisation."""
    if level == "none":
        return x
    side = min(x.shape[-2:])
    pad = max(1, side // (16 if level == "light" else 8))
    x = random_shift(x, pad, generator)
    if flips:
        x = random_flip(x, generator)
    return x


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The batch moved by (dy, dx) pixels, zeros coming in (the same padding as training's random shifts)."""
    n, c, h, w = x.shape
    p = max(abs(dy), abs(dx))
    if p == 0:
        return x
    padded = F.pad(x, (p, p, p, p))
    return padded[:, :, p - dy:p - dy + h, p - dx:p - dx + w]


def tta_views(x: torch.Tensor, *, flips: bool) -> list[torch.Tensor]:
    """Test-time augmentation's views of a uint8 batch: itself, shifted by 1/16 of the side up, down, left and
    right (training's 'light' shift; at least 1 pixel), and, where flips keep the class, mirrored.

    >>> x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
    >>> [tuple(v.shape) for v in tta_views(x, flips=True)] == [(1, 1, 4, 4)] * 6
    True
    >>> tta_views(x, flips=False)[1][0, 0, 0].tolist()  # moved down one row: zeros come in at the top
    [0, 0, 0, 0]
    """
    s = max(1, min(x.shape[-2:]) // 16)
    views = [x] + [shift(x, dy, dx) for dy, dx in ((s, 0), (-s, 0), (0, s), (0, -s))]
    if flips:
        views.append(x.flip(-1))
    return views
