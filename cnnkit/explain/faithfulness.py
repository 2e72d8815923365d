"""How faithful a saliency map is, measured: the deletion and insertion scores of Petsiuk et al. 2018
("RISE: Randomized Input Sampling for Explanation of Black-box Models", section 4.1).

Pixels are ranked by the map, most important first (ties broken at random, seeded), and taken in `steps`
equal steps of the image's pixels (all channels of a pixel together):

- deletion: the top-ranked pixels are replaced by the deletion baseline, zeros in normalised space (the
  training data's mean pixel, since normalisation subtracts it), and the target class's probability is
  recorded after each step; the score is the area under that curve over the fraction removed, 0 to 1
  (trapezoid). Lower is better: a faithful map removes the evidence first, and the probability drops fast.
- insertion: the top-ranked pixels are put into a blurred copy of the image (RISE's insertion baseline:
  a Gaussian blur, sigma = `blur_sigma` px, of the normalised image), and the area under the probability
  curve is recorded. Higher is better.

Each score is set beside a random order's (the same protocol, a seeded random ranking): a map that does not
beat random says nothing about the model. The ranking is by the signed map (`Attribution.signed`), which
orders the positive evidence as the shown map does, and orders the rest too (a blank map is still ranked).
All step images of a batch go through the model together (`batch` images per forward).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DELETION_BASELINE = "zeros in normalised space (the data's mean pixel)"
INSERTION_BASELINE = "a Gaussian blur of the image (RISE)"


@dataclass
class Scores:
    deletion: np.ndarray  # N: AUC of p(target) as pixels are removed (lower is better)
    insertion: np.ndarray  # N: AUC as pixels are added to the blurred image (higher is better)
    deletion_curve: np.ndarray  # N×(steps+1)
    insertion_curve: np.ndarray

    def summary(self) -> dict:
        return {"deletion": round(float(self.deletion.mean()), 4), "insertion": round(float(self.insertion.mean()), 4),
                "n": int(len(self.deletion))}


def blurred(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The normalised batch blurred by a Gaussian of `sigma` pixels (kernel ~4 sigma + 1, odd, at most the side)."""
    side = min(x.shape[-2:])
    k = int(min(2 * round(2 * sigma) + 1, side if side % 2 else side - 1))
    return gaussian_blur(x, k, sigma) if k >= 3 else x.clone()


def gaussian_blur(x: torch.Tensor, k: int, sigma: float) -> torch.Tensor:
    """torchvision's `gaussian_blur(x, [k, k], [sigma, sigma])` for a float N×C×H×W batch, in torch alone (importing
    torchvision costs seconds in every report): the same sampled kernel, exp(-t²/2σ²) at t = -(k-1)/2 … (k-1)/2,
    normalised; reflect padding of k // 2; applied as two 1-d passes (the 2-d kernel is their outer product), in
    float64 so that splitting the kernel adds no rounding of its own."""
    t = torch.linspace(-(k - 1) * 0.5, (k - 1) * 0.5, steps=k, dtype=x.dtype, device=x.device)
    g = torch.exp(-0.5 * (t / sigma).pow(2))
    g = (g / g.sum()).double()  # the kernel as torchvision rounds it
    dtype, x = x.dtype, x.double()
    c = x.shape[1]
    y = F.pad(x, [k // 2] * 4, mode="reflect")
    y = F.conv2d(y, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)  # along the width
    return F.conv2d(y, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c).to(dtype)  # along the height


def ranking(saliency: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """N×H×W saliency → N×HW pixel indices, most salient first; equal values in a random (seeded) order."""
    flat = saliency.flatten(1).float()
    jitter = torch.rand(flat.shape, generator=generator)  # only decides ties: the map's own order comes first
    order = torch.argsort(jitter, dim=1)
    vals = torch.gather(flat, 1, order)
    return torch.gather(order, 1, torch.argsort(vals, dim=1, descending=True, stable=True))


def random_ranking(n: int, hw: int, generator: torch.Generator) -> torch.Tensor:
    return torch.argsort(torch.rand(n, hw, generator=generator), dim=1)


@torch.no_grad()
def _curves(model: nn.Module, x: torch.Tensor, start: torch.Tensor, fill: torch.Tensor, order: torch.Tensor,
            targets: torch.Tensor, steps: int, batch: int) -> np.ndarray:
    """p(target) after 0..steps steps of putting `fill`'s pixels, in `order`, into `start`: N×(steps+1)."""
    n, c, h, w = x.shape
    hw = h * w
    counts = [round(hw * k / steps) for k in range(steps + 1)]
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(hw).expand(n, hw).contiguous())  # each pixel's place in the order
    out = np.zeros((n, steps + 1))
    per = max(1, batch // (steps + 1))  # images per forward
    dev = next(model.parameters(), torch.zeros(0)).device
    for s in range(0, n, per):
        r = rank[s:s + per]
        thresholds = torch.tensor(counts).view(1, -1, 1)
        masks = (r[:, None, :] < thresholds).view(len(r), steps + 1, 1, h, w)  # pixels changed at each step
        imgs = torch.where(masks, fill[s:s + per, None], start[s:s + per, None]).view(-1, c, h, w)
        p = torch.softmax(model(imgs.to(dev)).float(), 1).cpu().view(len(r), steps + 1, -1)
        out[s:s + per] = p[torch.arange(len(r)), :, targets[s:s + per]].numpy()
    return out


def auc(curve: np.ndarray) -> np.ndarray:
    """Area under curves sampled at equal steps over [0, 1] (trapezoid): N×(steps+1) → N."""
    return (curve[:, 1:] + curve[:, :-1]).sum(1) / (2 * (curve.shape[1] - 1))


def deletion_insertion(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor | None, targets, *,
                       steps: int = 16, blur_sigma: float = 5.0, batch: int = 512, seed: int = 0) -> Scores:
    """Deletion and insertion scores of each map (N×H×W, at the input size) for a normalised batch `x`
    (N×C×H×W) and its `targets` (the class each map explains). `saliency=None`: a random order (the
    baseline every method must beat). Eval mode throughout; the model's training flag is given back.

    >>> import torch.nn as nn
    >>> m = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    >>> s = deletion_insertion(m, torch.randn(3, 1, 4, 4), None, [0, 1, 0], steps=4)
    >>> s.deletion.shape, s.deletion_curve.shape
    ((3,), (3, 5))
    """
    g = torch.Generator().manual_seed(seed)
    x = x.detach().cpu().float()
    n, _, h, w = x.shape
    targets = torch.as_tensor(list(targets) if not isinstance(targets, int) else [targets] * n)
    order = random_ranking(n, h * w, g) if saliency is None else ranking(saliency.detach().cpu(), g)
    was = model.training
    model.eval()
    try:
        dele = _curves(model, x, x, torch.zeros_like(x), order, targets, steps, batch)
        ins = _curves(model, x, blurred(x, blur_sigma), x, order, targets, steps, batch)
    finally:
        model.train(was)
    return Scores(auc(dele), auc(ins), dele, ins)


def verdict(method: dict, random: dict) -> str:
    """A sentence: does the map beat a random order on both scores?"""
    d, i = method["deletion"] < random["deletion"], method["insertion"] > random["insertion"]
    if d and i:
        return "beats a random order on both"
    if not d and not i:
        return "no better than a random order: do not trust this map"
    return "beats a random order on " + ("deletion" if d else "insertion") + " only"
