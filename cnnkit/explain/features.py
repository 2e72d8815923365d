"""What the layers detect: feature maps, first-layer filters, receptive-field boxes, top-activating patches.

Everything goes through the model interface (`feature_maps`, `stage_names`) and `receptive_field`, so it
works for every registered model without per-model code.

- Feature maps: a stage's channels ranked by their mean activation on the image (most active first).
- Filters: the weights of the first `nn.Conv2d` in `model.modules()`, compared with the lessons' hand-made
  kernels by cosine similarity. A learned filter is reduced to one kh×kw matrix by averaging over its input
  channels: on a gray image repeated over the channels, that mean (times C) is exactly the filter the
  convolution applies, so the comparison asks "does this filter respond to gray edges like Sobel does".
  When the learned filters are not 3×3 (LeNet's 5×5, AlexNet's 11×11, ResNet's 7×7) the hand-made kernel
  is resized to their size (bilinear, corners aligned: the sign pattern and its zero line stay where they
  were), rather than centre-cropping the learned filter, which would throw away most of its weights.
- Receptive fields: for each stage, the most active unit (argmax over channels and positions) and the input
  pixels it sees, `RF.box(i, j)` clipped to the image.
- Top patches: across a data set, the units that fire hardest for a few channels of a layer, cut out of their
  images by the unit's receptive field: the feature hierarchy, from edges to parts.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CnnkitError
from .receptive_field import RF, receptive_field

#: the lessons' hand-made kernels (names in `cnnkit.ops.kernels`), in the order they are shown
LESSON_KERNELS = ("sobel_x", "sobel_y", "horizontal_edge", "laplacian")


# --- feature maps -----------------------------------------------------------------------------------------
def _first_tensor(o) -> torch.Tensor:
    return o[0] if isinstance(o, (tuple, list)) else o


@torch.no_grad()
def stage_maps(model: nn.Module, x: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Outputs (N×C×h×w) of `layers` (default: every stage) for the normalised batch `x`, in eval mode.

    >>> from cnnkit import create_model
    >>> {k: tuple(v.shape) for k, v in stage_maps(create_model('simplecnn'), torch.zeros(1, 3, 32, 32)).items()}
    {'pool1': (1, 32, 16, 16), 'pool2': (1, 64, 8, 8)}
    """
    was_training = model.training
    model.eval()
    try:
        maps = model.feature_maps(x, layers)
    finally:
        model.train(was_training)
    missing = [n for n in (layers or model.stage_names) if n not in maps]
    if missing:
        raise CnnkitError(f"layer '{missing[0]}' never runs in the forward pass, so it has no output to show; "
                          "pick another (default: the model's stages)")
    out = {}
    for name, t in maps.items():
        t = _first_tensor(t).detach().float()
        if t.dim() != 4:
            raise CnnkitError(f"layer '{name}' gives a {t.dim()}-d output {tuple(t.shape)}, not a feature map "
                              "N×C×H×W; pick a convolutional layer (default: the model's stages)")
        out[name] = t
    return out


def rank_channels(act: torch.Tensor) -> list[int]:
    """Channel indices of one image's C×h×w map, the most active (highest mean activation) first.

    >>> rank_channels(torch.stack([torch.zeros(2, 2), torch.ones(2, 2), -torch.ones(2, 2)]))
    [1, 0, 2]
    """
    score = act.float().flatten(1).mean(1)
    return torch.argsort(score, descending=True, stable=True).tolist()


def has_feature_maps(model: nn.Module) -> bool:
    """Whether `model` has convolutional stages to show (the fully connected `mlp` has none).

    >>> from cnnkit import create_model
    >>> has_feature_maps(create_model('mlp')), has_feature_maps(create_model('simplecnn'))
    (False, True)
    """
    return bool(getattr(model, "stage_names", ()))


def require_feature_maps(model: nn.Module, what: str) -> None:
    """One clear line, instead of a traceback further on, where `what` needs feature maps that `model` lacks."""
    if has_feature_maps(model):
        return
    name = getattr(model, "model_name", type(model).__name__)
    if not any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()):
        raise CnnkitError(f"{name} has no convolution, so no feature maps: {what} applies only to a convolutional "
                          "model (simplecnn, lenet5, resnet18, ...)")
    raise CnnkitError(f"{name} has no stage_names: not a cnnkit model")


# --- first-layer filters and the hand-made kernels --------------------------------------------------------
def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first `nn.Conv2d` in `model.modules()`: the layer that sees the pixels."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise CnnkitError(f"{getattr(model, 'model_name', type(model).__name__)} has no Conv2d layer")
    return conv


def learned_filters(model: nn.Module) -> np.ndarray:
    """The first convolution's weights, out×in×kh×kw (float64)."""
    return first_conv(model).weight.detach().cpu().double().numpy()


def handmade_kernels(names: Sequence[str] = LESSON_KERNELS) -> dict[str, np.ndarray]:
    """The lesson's kernels by name, from `cnnkit.ops.kernels` (cross-correlation orientation, as conv2d)."""
    from ..ops.kernels import get_kernel

    return {n: get_kernel(n) for n in names}


def resize_kernel(k: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with corners aligned: [-1, 0, 1] → [-1, -.5, 0, .5, 1] at width 5.

    >>> resize_kernel(np.array([[-1., 0., 1.]] * 3), (5, 5))[0].tolist()
    [-1.0, -0.5, 0.0, 0.5, 1.0]
    """
    if tuple(k.shape) == tuple(size):
        return k.astype(np.float64)
    t = torch.from_numpy(np.asarray(k, dtype=np.float64))[None, None]
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=True)[0, 0].numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def chance_cosine(n_filters: int, size: int, trials: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The best cosine similarity to a fixed kernel that `n_filters` random filters of `size` weights reach
    by chance: (median, 95th percentile) over `trials` draws. With isotropic Gaussian filters it depends on
    the dimension only, not on the kernel. 32 random 3×3 filters: 0.65 typical, 0.83 at the 95th percentile,
    so a learned filter at 0.8 is only mild evidence; at 5×5 and above chance falls fast.

    >>> chance_cosine(32, 9)
    (0.65, 0.83)
    """
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(trials, n_filters, size))
    k = np.zeros(size)
    k[0] = 1.0  # any unit vector: the Gaussian is isotropic
    best = (g @ k / np.linalg.norm(g, axis=-1)).max(1)
    return round(float(np.median(best)), 2), round(float(np.percentile(best, 95)), 2)


@dataclass
class KernelMatch:
    kernel: str  # the hand-made kernel's name
    filter: int  # index of the most similar learned filter (output channel of the first conv)
    cosine: float  # cosine similarity in [-1, 1]: 1 the same pattern, -1 the same edge with opposite sign
    compared_at: list[int]  # kh, kw of the comparison (the learned filters' size)
    chance: list[float]  # what as many random filters reach: median, 95th percentile (see chance_cosine)
    beats_chance: bool = False  # cosine above the 95th percentile: a match; otherwise no better than chance

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def verdict(self) -> str:
        return "a match (beats chance)" if self.beats_chance else "no better than chance"


def match_kernels(filters: np.ndarray, kernels: dict[str, np.ndarray] | None = None) -> list[KernelMatch]:
    """For each hand-made kernel, the learned filter (out×in×kh×kw) with the highest cosine similarity, and
    whether that cosine beats chance: the 95th percentile of the best cosine that as many random filters of
    the same shape reach (`chance_cosine`, simulated, seeded).

    Filters are averaged over their input channels; a kernel of another size is resized to kh×kw.

    >>> f = np.zeros((2, 1, 3, 3)); f[1, 0] = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]; f[0, 0, 1, 1] = 1
    >>> m = match_kernels(f, handmade_kernels(['sobel_x']))[0]
    >>> m.filter, round(m.cosine, 6), m.beats_chance
    (1, 1.0, True)
    """
    kernels = handmade_kernels() if kernels is None else kernels
    gray = filters.mean(axis=1)  # out×kh×kw
    size = tuple(gray.shape[-2:])
    chance = list(chance_cosine(len(gray), size[0] * size[1]))
    out = []
    for name, k in kernels.items():
        kk = resize_kernel(k, size)
        sims = [cosine(g, kk) for g in gray]
        best = int(np.argmax(sims))
        out.append(KernelMatch(name, best, round(sims[best], 4), list(size), chance, bool(sims[best] > chance[1])))
    return out


def _neighbour_cosine(gray: np.ndarray) -> np.ndarray:
    """Per stack of filters (...×out×kh×kw): the cosine between each filter and itself moved one tap right,
    and one tap down, pooled over the filters. 0 on average for independent weights; learned filters are
    smooth (> 0) or alternate (< 0)."""
    a = np.concatenate([gray[..., :, :-1].reshape(*gray.shape[:-3], -1), gray[..., :-1, :].reshape(*gray.shape[:-3], -1)], -1)
    b = np.concatenate([gray[..., :, 1:].reshape(*gray.shape[:-3], -1), gray[..., 1:, :].reshape(*gray.shape[:-3], -1)], -1)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    return np.where(den > 0, (a * b).sum(-1) / np.where(den > 0, den, 1), 0.0)


def filter_structure(filters: np.ndarray, trials: int = 2000, seed: int = 0) -> dict:
    """Whether first-layer filters (out×in×kh×kw) hold spatial structure beyond what random weights show:
    |neighbour cosine| (`_neighbour_cosine`, of the filters averaged over input channels) against its 99th
    percentile for as many independent Gaussian filters of the same shape (simulated, seeded).
    `random_like` is True when the filters are indistinguishable from random weights by this measure.

    >>> rng = np.random.default_rng(1)
    >>> filter_structure(rng.normal(size=(32, 1, 3, 3)))['random_like']
    True
    >>> smooth = np.ones((32, 1, 3, 3)) + 0.1 * rng.normal(size=(32, 1, 3, 3))
    >>> filter_structure(smooth)['random_like']
    False
    """
    gray = filters.mean(axis=1)
    if gray.shape[-1] * gray.shape[-2] < 2:
        return {"statistic": 0.0, "chance99": 1.0, "random_like": True}
    stat = abs(float(_neighbour_cosine(gray)))
    rng = np.random.default_rng(seed)
    sims = np.abs(_neighbour_cosine(rng.normal(size=(trials, *gray.shape))))
    c99 = float(np.percentile(sims, 99))  # 99%, not 95%: calling learned filters random needs a strict bar
    return {"statistic": round(stat, 4), "chance99": round(c99, 4), "random_like": bool(stat <= c99)}


def filters_verdict(matches: Sequence[KernelMatch], structure: dict, trained: bool | None = None) -> str:
    """One line: random weights called random; matches only where they beat chance."""
    hits = [m for m in matches if m.beats_chance]
    if trained is False:
        head = "random weights (untrained model): these filters were drawn at initialisation, not learned"
    elif structure["random_like"] and not hits:
        head = ("indistinguishable from random weights: no spatial structure beyond chance "
                f"(neighbour cosine {structure['statistic']:.2f}, random 99%: {structure['chance99']:.2f}) "
                "and no kernel match beats chance")
    else:
        head = (f"learned: spatial structure {structure['statistic']:.2f} (neighbour cosine; random filters reach "
                f"{structure['chance99']:.2f} at the 99th percentile)")
    if hits:
        tail = "; matches beating chance: " + ", ".join(f"{m.kernel} ~ filter {m.filter} (cos {m.cosine:+.2f})"
                                                       for m in hits)
    else:
        tail = "; no hand-made kernel is matched better than chance"
    return head + tail


# --- receptive-field boxes --------------------------------------------------------------------------------
@dataclass
class UnitBox:
    layer: str
    channel: int
    i: int  # row of the unit in the layer's map
    j: int  # column
    activation: float
    rf_size: list[int]  # the receptive field's size (H, W), before clipping to the image
    box: list[int]  # top, left, bottom, right (inclusive) in input pixels, clipped to the image

    def to_dict(self) -> dict:
        return asdict(self)


def clip_box(box: tuple[float, float, float, float], size: tuple[int, int]) -> list[int]:
    """(top, left, bottom, right), inclusive pixel indices, clipped to an H×W image."""
    h, w = size
    top, left, bottom, right = box
    return [int(max(0, round(top))), int(max(0, round(left))), int(min(h - 1, round(bottom))),
            int(min(w - 1, round(right)))]


def _rf(model: nn.Module, shape: tuple[int, int, int], layer: str, cache: dict | None) -> RF:
    key = (id(model), tuple(shape), layer)
    if cache is not None and key in cache:
        return cache[key]
    rf = receptive_field(model, tuple(shape), layer)
    if cache is not None:
        cache[key] = rf
    return rf


def most_active_units(model: nn.Module, maps: dict[str, torch.Tensor], input_shape: tuple[int, int, int],
                      rf_cache: dict | None = None) -> list[UnitBox]:
    """For each layer's map (1×C×h×w), the unit with the largest activation and its receptive-field box."""
    out = []
    for layer, act in maps.items():
        a = act[0]
        flat = int(torch.argmax(a))
        c, rem = divmod(flat, a.shape[1] * a.shape[2])
        i, j = divmod(rem, a.shape[2])
        rf = _rf(model, input_shape, layer, rf_cache)
        out.append(UnitBox(layer, c, i, j, float(a[c, i, j]), list(rf.size), clip_box(rf.box(i, j), input_shape[1:])))
    return out


# --- top-activating patches across a data set -------------------------------------------------------------
@dataclass
class ChannelPatches:
    layer: str
    channel: int
    mean_activation: float  # over the data set
    patches: list[np.ndarray]  # uint8 C×ph×pw: the unit's receptive field, clipped to the image
    activations: list[float]
    images: list[int]  # index of each patch's image in the data passed in
    boxes: list[list[int]]  # unclipped (top, left, bottom, right) in input pixels


def _cut(img: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
    """The part of `img` (C×H×W uint8) inside a receptive-field box (the padding outside is left out)."""
    t, l, b, r = clip_box(box, img.shape[1:])
    return img[:, t:b + 1, l:r + 1].copy()


@torch.no_grad()
def top_patches(model: nn.Module, images: torch.Tensor, preprocess, layers: Sequence[str], *,
                channels: int = 4, per_channel: int = 6, batch_size: int = 128) -> dict[str, list[ChannelPatches]]:
    """For each layer, its `channels` most active channels on average over `images` (uint8 N×C×H×W, already
    at the model's channels and size, normalised by `preprocess`), and for each the `per_channel` images whose
    strongest unit in that channel fires hardest, cut out by that unit's receptive field (one patch per image).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    peak: dict[str, list[torch.Tensor]] = {n: [] for n in layers}  # per image: max over positions, N×C
    where: dict[str, list[torch.Tensor]] = {n: [] for n in layers}  # argmax position (flat)
    mean_act: dict[str, torch.Tensor] = {}
    shapes: dict[str, tuple[int, int]] = {}
    try:
        for s in range(0, len(images), batch_size):
            x = preprocess.normalize(images[s:s + batch_size].to(device))
            for name, a in stage_maps(model, x, layers).items():
                flat = a.flatten(2)  # B×C×hw
                v, ix = flat.max(2)
                peak[name].append(v.cpu())
                where[name].append(ix.cpu())
                mean_act[name] = mean_act.get(name, 0) + flat.mean(2).sum(0).cpu()
                shapes[name] = (a.shape[2], a.shape[3])
    finally:
        model.train(was_training)
    shape = tuple(images.shape[1:])
    result: dict[str, list[ChannelPatches]] = {}
    for name in layers:
        v, ix = torch.cat(peak[name]), torch.cat(where[name])  # N×C
        avg = mean_act[name] / len(images)
        rf = receptive_field(model, shape, name)
        rows = []
        for c in torch.argsort(avg, descending=True, stable=True)[:channels].tolist():
            order = torch.argsort(v[:, c], descending=True, stable=True)[:per_channel].tolist()
            boxes, patches = [], []
            for n in order:
                i, j = divmod(int(ix[n, c]), shapes[name][1])
                box = rf.box(i, j)
                boxes.append([int(round(b)) for b in box])
                patches.append(_cut(images[n].cpu().numpy(), box))
            rows.append(ChannelPatches(name, c, float(avg[c]), patches, [float(v[n, c]) for n in order], order, boxes))
        result[name] = rows
    return result
