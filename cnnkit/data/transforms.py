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
