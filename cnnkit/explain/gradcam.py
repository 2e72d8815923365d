"""Grad-CAM (Selvaraju et al. 2017) through Captum's `LayerGradCam`.

Why Captum: it is maintained by the PyTorch team and depends only on PyTorch (plus numpy/matplotlib, which
cnnkit has anyway), where pytorch-grad-cam pulls in OpenCV. Its layer hooks give the same maps as a
hand-written Grad-CAM on every registered model, in-place ReLUs included (tests/explain/test_gradcam.py
checks that against an oracle written out with autograd).

The map: the target class's score is differentiated with respect to a convolutional layer's output A
(C×h×w); each channel is weighted by its mean gradient, the weighted channels are summed and passed through
a ReLU (only what raises the score), then upsampled (bilinear) to the input size. The layer is the last stage
(`stage_names[-1]`), or the last stage with more than one position when the last one is 1×1 (LeNet-5's C5),
where a map could only be flat.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from ..errors import CnnkitError, UnknownNameError


@dataclass
class GradCam:
    cam: torch.Tensor  # N×H×W at the input size, each map scaled to [0, 1] (all zero where nothing raised the score)
    raw: torch.Tensor  # N×h×w at the layer's resolution, unscaled
    target: list[int]  # the class each map explains
    probs: torch.Tensor  # N×classes, softmax of the model's output
    layer: str


def cam_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The last stage whose output on `x` has more than one spatial position (else the last stage)."""
    from .features import require_feature_maps, stage_maps

    require_feature_maps(model, "Grad-CAM")  # the fully connected mlp: one clear line
    stages = list(model.stage_names)
    maps = stage_maps(model, x[:1], stages)
    for name in reversed(stages):
        if name in maps and maps[name].shape[-1] * maps[name].shape[-2] > 1:
            return name
    return stages[-1]


def resolve_target(target: int | str | None, classes: Sequence[str]) -> int | None:
    """A class name, or an index (int or digits), → the class index; None stays None (the predicted class).

    >>> resolve_target('Coat', ['T-shirt', 'Coat']), resolve_target('1', ['a', 'b']), resolve_target(None, [])
    (1, 1, None)
    """
    if target is None:
        return None
    name = str(target)
    if name in classes:
        return list(classes).index(name)
    if name.lstrip("-").isdigit():
        i = int(name)
        if not 0 <= i < len(classes):
            raise CnnkitError(f"--target {i} is out of range: the model has {len(classes)} classes "
                              f"(0 to {len(classes) - 1})")
        return i
    raise UnknownNameError("class", name, classes)


def gradcam(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | None = None, *,
            layer: str | None = None, relu: bool = True) -> GradCam:
    """Grad-CAM maps for a normalised batch `x` (N×C×H×W): for `target` (one class for all, one per image,
    or None for each image's predicted class), at `layer` (default: see `cam_layer`).

    >>> from cnnkit import create_model
    >>> g = gradcam(create_model('simplecnn'), torch.randn(2, 3, 32, 32), target=3)
    >>> tuple(g.cam.shape), g.layer, g.target
    ((2, 32, 32), 'pool2', [3, 3])
    """
    from captum.attr import LayerAttribution, LayerGradCam

    was_training = model.training
    model.eval()
    try:
        layer = layer or cam_layer(model, x)
        module = dict(model.named_modules()).get(layer)
        if module is None or not layer:
            raise UnknownNameError("layer", layer, [n for n, _ in model.named_modules() if n])
        with torch.no_grad():
            probs = torch.softmax(model(x).float(), 1)
        if target is None:
            targets = probs.argmax(1).tolist()
        elif isinstance(target, int):
            targets = [int(target)] * len(x)
        else:
            targets = [int(t) for t in target]
        if len(targets) != len(x) or not all(0 <= t < probs.shape[1] for t in targets):
            raise CnnkitError(f"targets {targets} do not fit {len(x)} image(s) and {probs.shape[1]} classes")
        # the input needs a gradient only so that a model with frozen weights still builds a graph
        xin = x.detach().clone().requires_grad_(True)
        attr = LayerGradCam(model, module).attribute(xin, target=torch.tensor(targets, device=x.device),
                                                     relu_attributions=relu)
    finally:
        model.train(was_training)
    attr = attr.detach().float()
    if attr.dim() != 4:
        raise CnnkitError(f"layer '{layer}' gives a {attr.dim()}-d output; Grad-CAM needs a convolutional layer")
    up = LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), interpolate_mode="bilinear")[:, 0]
    peak = up.flatten(1).amax(1).view(-1, 1, 1)
    cam = torch.where(peak > 0, up / peak.clamp_min(torch.finfo(up.dtype).tiny), torch.zeros_like(up))
    return GradCam(cam.clamp(0, 1).cpu() if relu else cam.cpu(), attr[:, 0].cpu(), targets, probs.cpu(), layer)
