"""`explain(source, image, out)`: every picture of what a network sees, for one image, written to a folder.

`source` is a run directory (the trained model, with its classes and preprocessing) or a registered model
name (an untrained network: random weights, ImageNet normalisation, 1000 classes unless told); `image` is a
file or a scikit-image sample photo. Written: a feature-map grid per layer, the first layer's filters beside
the hand-made kernels, Grad-CAM, receptive-field boxes, and with `data`, the top-activating patches per layer.

>>> info = explain('simplecnn', 'camera', '/tmp/cnnkit-explain-doctest', img_size=32)
>>> info['trained'], info['prediction']['index'] in range(1000), len(info['files'])
(False, True, 5)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import CnnkitError, UnknownNameError

from ..data.samples import SAMPLES, load_sample
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
DEFAULT_IMG_SIZE = 224  # an untrained registry model sees the image at this size unless told


@dataclass
class Subject:
    """A model with what it takes to feed it: classes, input channels and size, normalisation."""

    model: torch.nn.Module
    name: str
    classes: list[str]
    channels: int
    size: tuple[int, int]
    mean: list[float]
    std: list[float]
    trained: bool
    source: str
    meta: dict = field(default_factory=dict)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N×C×H×W at this model's channels and size → the normalised batch."""
        from ..data.transforms import normalize

        return normalize(images, self.mean, self.std)


def load_subject(source: str | Path, *, img_size: int | None = None, num_classes: int | None = None) -> Subject:
    """A run directory → its trained model; a registry name → a fresh, untrained one (3 channels, ImageNet
    normalisation, `img_size`² input, `num_classes` default 1000)."""
    from ..models import create_model, list_models

    src = str(source)
    path = Path(src)
    if path.is_dir():
        from ..api import load_model

        tm = load_model(path)
        if img_size is not None and (img_size, img_size) != tuple(tm.size):
            raise CnnkitError(f"--img-size {img_size}: {src} is a trained run whose model takes "
                              f"{tm.size[0]}x{tm.size[1]} images; leave --img-size out")
        return Subject(tm.model, tm.meta["model"]["name"], list(tm.classes), tm.channels, tuple(tm.size),
                       list(tm.mean), list(tm.std), True, src, tm.meta)
    if src in list_models():
        side = int(img_size or DEFAULT_IMG_SIZE)
        if side < 1:
            raise CnnkitError(f"--img-size must be positive, got {side}")
        n = int(num_classes or 1000)
        try:
            model = create_model(src, num_classes=n, in_channels=3, input_size=(side, side)).eval()
        except ValueError as e:
            raise CnnkitError(f"cannot build {src} for {side}x{side} images: {e}") from None
        return Subject(model, src, [str(i) for i in range(n)], 3, (side, side), IMAGENET_MEAN, IMAGENET_STD,
                       False, src)
    if "/" in src or path.suffix or path.exists():
        raise CnnkitError(f"{src} is not a run directory (no such folder) nor a registered model; give the folder "
                          "`cnnkit train` wrote, or a model name from `cnnkit models`")
    raise UnknownNameError("model (or run directory)", src, list_models())


def load_image(spec: str | Path):
    """An image file (checked and decoded safely) or a scikit-image sample name → a PIL image."""
    from PIL import Image

    from ..data.images import open_image

    s = str(spec)
    if Path(s).is_file():
        return open_image(s)
    if s in SAMPLES:
        return Image.fromarray(load_sample(s))
    if Path(s).exists() or "/" in s or Path(s).suffix:
        return open_image(s)  # a missing or unreadable file: one line naming it
    raise UnknownNameError("sample image (or image file)", s, SAMPLES)


def conform(x: torch.Tensor, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """uint8 N×C×H×W → `channels` (gray ↔ RGB by luminance / repetition) and `size` (bilinear, antialiased)."""
    import torch.nn.functional as F

    if x.shape[1] != channels:
        if channels == 1:
            w = torch.tensor([0.299, 0.587, 0.114])[: x.shape[1]]
            x = (x.float() * (w / w.sum()).view(1, -1, 1, 1)).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        elif x.shape[1] == 1:
            x = x.repeat(1, channels, 1, 1)
        else:
            raise CnnkitError(f"cannot turn {x.shape[1]}-channel images into the model's {channels} channels")
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x.float(), size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
        x = x.round().clamp(0, 255).to(torch.uint8)
    return x


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def _check_layers(model: torch.nn.Module, layers: Sequence[str] | None) -> list[str]:
    if not layers:
        return list(model.stage_names)
    names = [n for n, _ in model.named_modules() if n]
    for layer in layers:
        if layer not in names:
            raise UnknownNameError("layer", layer, names)
    return list(layers)


def _load_patch_data(subject: Subject, spec: str, max_images: int) -> tuple[torch.Tensor, str]:
    """The data set's validation images (else training), at most `max_images` (a seeded sample), conformed."""
    from ..data import load_data

    train = subject.meta.get("train", {}) if subject.trained else {}
    # a run: its data at its size, as in training; an untrained model: the data's own size, and only the
    # sample is resized (upscaling all of Fashion-MNIST to 224×224 would take gigabytes)
    side = subject.size[0] if subject.trained and subject.size[0] == subject.size[1] else None
    ds = load_data(spec, img_size=side, val_fraction=subject.meta.get("data", {}).get("val_fraction"),
                   seed=int(train.get("seed", 0)), on_bad_image=train.get("on_bad_image", "skip"))
    split = "val" if "val" in ds.splits else "train"
    x = ds.split(split).x
    if len(x) > max_images:
        x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:max_images]]
    return conform(x, subject.channels, subject.size), f"{ds.name} {split}"


def explain(source: str | Path, image: str | Path, out: str | Path, *, layers: Sequence[str] | None = None,
            target: str | int | None = None, data: str | None = None, img_size: int | None = None,
            num_classes: int | None = None, channels: int = 4, per_channel: int = 6,
            max_images: int = 2000) -> dict:
    """Write the explanation images for one image to `out`; return what was found and the files written."""
    from ..data.images import to_array
    from . import features as feat
    from . import plots
    from .gradcam import gradcam, resolve_target

    sub = load_subject(source, img_size=img_size, num_classes=num_classes)
    layers = _check_layers(sub.model, layers)
    target_idx = resolve_target(target, sub.classes)
    img = np.array(to_array(load_image(image), sub.channels, sub.size))  # C×H×W uint8: what the model sees
    x = sub.prepare(torch.from_numpy(img)[None])
    shape = (sub.channels, *sub.size)
    out = Path(out)
    files: list[str] = []
    label = f"{sub.name}" + ("" if sub.trained else " (untrained: random weights)")

    def save(fig, name: str) -> None:
        files.append(str(plots.save_png(fig, out / name)))

    # Grad-CAM first: it also gives the prediction
    g = gradcam(sub.model, x, target_idx)
    probs = g.probs[0]
    pred = int(probs.argmax())
    tgt = g.target[0]
    top = probs.topk(min(5, len(probs)))
    cam_title = (f"{label}: Grad-CAM at {g.layer} for class '{sub.classes[tgt]}' (p = {float(probs[tgt]):.3f})"
                 + ("" if tgt == pred else f"; predicted '{sub.classes[pred]}' (p = {float(probs[pred]):.3f})"))
    save(plots.gradcam_figure(img, g.cam[0].numpy(), title=cam_title), "gradcam.png")

    # feature maps, one grid per layer, and the receptive field of each layer's most active unit
    maps = feat.stage_maps(sub.model, x, layers)
    fm_info = {}
    for layer, act in maps.items():
        order = feat.rank_channels(act[0])
        save(plots.feature_map_grid(act[0].numpy(), order, img, layer=layer), f"feature_maps_{_safe(layer)}.png")
        fm_info[layer] = {"shape": list(act.shape[1:]), "top_channels": order[:8],
                          "mean_activation": [round(float(act[0, c].mean()), 4) for c in order[:8]]}
    units = feat.most_active_units(sub.model, maps, shape)
    save(plots.receptive_field_figure(img, units, title=f"{label}: the input pixels seen by each layer's most "
                                                         "active unit (its receptive field)"), "receptive_fields.png")

    # the first layer's filters beside the lesson's kernels
    conv = feat.first_conv(sub.model)
    conv_name = next(n for n, m in sub.model.named_modules() if m is conv)
    w = feat.learned_filters(sub.model)
    kernels = feat.handmade_kernels()
    matches = feat.match_kernels(w, kernels)
    save(plots.filters_figure(w, kernels, matches, layer=f"{label}, {conv_name}"), "filters.png")

    result = {
        "model": sub.name, "trained": sub.trained, "source": sub.source, "image": str(image),
        "input": list(shape),
        "prediction": {"class": sub.classes[pred], "index": pred, "probability": round(float(probs[pred]), 6)},
        "top5": [{"class": sub.classes[i], "probability": round(float(p), 6)}
                 for p, i in zip(top.values.tolist(), top.indices.tolist())],
        "gradcam": {"layer": g.layer, "class": sub.classes[tgt], "index": tgt,
                    "probability": round(float(probs[tgt]), 6)},
        "feature_maps": fm_info,
        "receptive_fields": [u.to_dict() for u in units],
        "filters": {"layer": conv_name, "shape": list(w.shape), "matches": [m.to_dict() for m in matches]},
    }
    if not sub.trained:
        result["note"] = "untrained: random weights, ImageNet normalisation; the prediction means nothing"

    if data:
        images, where = _load_patch_data(sub, data, max_images)
        found = feat.top_patches(sub.model, images, sub.mean, sub.std, layers, channels=channels,
                                 per_channel=per_channel)
        result["patches"] = {"data": where, "images": len(images), "layers": {}}
        for layer, rows in found.items():
            rf = feat.receptive_field(sub.model, shape, layer)
            save(plots.patches_figure(rows, layer=layer, rf_size=rf.size, n_images=len(images)),
                 f"patches_{_safe(layer)}.png")
            result["patches"]["layers"][layer] = [
                {"channel": r.channel, "mean_activation": round(r.mean_activation, 4),
                 "activations": [round(a, 4) for a in r.activations], "images": r.images} for r in rows]
    result["files"] = files
    return result
