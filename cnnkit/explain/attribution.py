"""Class activation maps that fit the model, and that say so when they are empty.

Four methods, each a map over a convolutional layer's output A (C×h×w) and the gradient G = dy_c/dA of the
target class's score y_c, upsampled (bilinear) to the input size:

- ``gradcam``: Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
  Localization": ReLU(sum_k mean_ij(G_k) A_k). Through Captum's `LayerGradCam` (`gradcam.py`).
- ``hirescam``: Draelos & Carin 2020, "Use HiResCAM instead of Grad-CAM for faithful explanations of
  convolutional neural networks": ReLU(sum_k G_k ⊙ A_k). Where the head is flatten + linear, this is each
  position's exact contribution to the score; Grad-CAM's averaging of the gradient moves evidence to where
  it was not.
- ``gradcam++``: Chattopadhay et al. 2018, "Grad-CAM++: Improved Visual Explanations for Deep Convolutional
  Networks": channel weights sum_ij alpha_ij ReLU(G_ij), alpha = G^2 / (2 G^2 + sum_ab A_ab G^3) (the
  closed form for an exponential of the score, as in the paper's section 3.2).
- ``layercam``: Jiang et al. 2021, "LayerCAM: Exploring Hierarchical Class Activation Maps for
  Localization": ReLU(sum_k ReLU(G_k) ⊙ A_k).

Captum 0.9 has Grad-CAM only (`LayerGradCam`); the other three are a line each over the same A and G, so
they are written here on forward hooks rather than pulling in pytorch-grad-cam (and OpenCV).

``auto`` picks from the head. A global-pool head (the logits do not change when the layer's positions are
permuted: ResNet's GAP + fc) makes Grad-CAM exactly CAM (Zhou et al. 2016) up to a constant, so Grad-CAM;
any other head (flatten + linear: simplecnn, fastcnn) gets `AUTO_FLATTEN`, chosen by deletion/insertion
on validation images (bench/explain_quality.py).

The layer (`choose_layers`). For a global-pool head, the last stage: there Grad-CAM is CAM, exact. For any
other head no layer is right by construction (the channel-averaged gradient of Grad-CAM, Grad-CAM++ and
LayerCAM's weighting assume a gradient that does not depend on position, which a flatten + linear head
breaks), so it is measured, on the model's own validation images: each method goes to the stage (with more
than one position) whose maps have the best mean insertion − deletion (faithfulness.py), among the stages
where they beat a random order on both scores by more than two paired standard errors; where no stage does,
the method is declined for that model, with the numbers that say why.

A map with no positive evidence (ReLU of a map that is <= 0 everywhere) is never shown as if it were an
explanation: `blank` is set with a reason, and `signed` holds the map before the ReLU (scaled by its largest
magnitude, sign kept: what raises the score > 0, what lowers it < 0), which the figures draw instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CnnkitError, UnknownNameError

METHODS = ("gradcam", "hirescam", "gradcam++", "layercam")
CHOICES = ("auto", *METHODS)
LABELS = {"gradcam": "Grad-CAM", "hirescam": "HiResCAM", "gradcam++": "Grad-CAM++", "layercam": "LayerCAM"}
#: `auto` on a head that is not a global pool: the method with the best deletion + insertion on Fashion-MNIST
#: validation images (bench/explain_quality.py, bench/results/explain_quality.json)
AUTO_FLATTEN = "hirescam"
AUTO_POOLED = "gradcam"  # == CAM for a GAP + linear head: exact, and nothing to choose
RULE_IMAGES = 64  # validation images (a seeded sample) on which `choose_layers` measures each stage
RULE_STEPS = 10  # deletion/insertion steps there (bench/explain_quality.py uses the same)
RULE = ("the stage whose maps have the best mean insertion − deletion on validation images, among those that beat "
        "a random order on both scores by more than 2 paired standard errors; none: the method is declined")


@dataclass
class Attribution:
    method: str  # one of METHODS (what `auto` resolved to)
    layer: str
    head: str  # "global-pool" or "spatial" (flatten + linear, or anything else that keeps positions)
    cam: torch.Tensor  # N×H×W in [0, 1]: ReLU'd, each scaled to its peak; all zero where blank
    signed: torch.Tensor  # N×H×W in [-1, 1]: before the ReLU, each scaled by its largest magnitude
    raw: torch.Tensor  # N×h×w at the layer's resolution, before the ReLU, unscaled
    target: list[int]
    probs: torch.Tensor  # N×classes, softmax of the logits
    blank: list[bool] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)

    @property
    def label(self) -> str:
        return LABELS[self.method]

    def info(self, k: int, classes: Sequence[str] | None = None) -> dict:
        """Image k's map as plain data (no arrays): method, layer, head, blank and why."""
        return {"method": self.method, "layer": self.layer, "head": self.head, "blank": self.blank[k],
                "reason": self.reasons[k], "shown": "signed map" if self.blank[k] else "positive evidence"}


def _resolve_layer(model: nn.Module, x: torch.Tensor, layer: str | None) -> tuple[str, nn.Module]:
    from .gradcam import cam_layer

    layer = layer or cam_layer(model, x)
    module = dict(model.named_modules()).get(layer)
    if module is None or not layer:
        raise UnknownNameError("layer", layer, [n for n, _ in model.named_modules() if n])
    return layer, module


def _swap_output(module: nn.Module, fn):
    """A forward hook that replaces the module's output by fn(output) (the same tensor type)."""
    def hook(_m, _i, o):
        return fn(o[0] if isinstance(o, (tuple, list)) else o)
    return module.register_forward_hook(hook)


@torch.no_grad()
def head_kind(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> str:
    """'global-pool' when the logits do not depend on where in `layer`'s map a value sits (its positions
    permuted, the same permutation for every channel: a global average- or max-pool head), else 'spatial'.

    >>> from cnnkit import create_model
    >>> x = torch.randn(1, 1, 28, 28)
    >>> head_kind(create_model('resnet18', in_channels=1, input_size=(28, 28)).eval(), x)
    'global-pool'
    >>> head_kind(create_model('simplecnn', in_channels=1, input_size=(28, 28)).eval(), x)
    'spatial'
    """
    was = model.training
    model.eval()
    try:
        layer, module = _resolve_layer(model, x, layer)
        x1 = x[:1]
        ref = model(x1).float()
        g = torch.Generator().manual_seed(0)

        def permute(o):
            n, c, h, w = o.shape
            if h * w == 1:
                return o
            p = torch.randperm(h * w, generator=g).to(o.device)
            return o.flatten(2)[:, :, p].view(n, c, h, w)
        handle = _swap_output(module, permute)
        try:
            moved = model(x1).float()
        finally:
            handle.remove()
    finally:
        model.train(was)
    tol = 1e-4 * float(ref.abs().max().clamp_min(1.0))
    return "global-pool" if float((moved - ref).abs().max()) <= tol else "spatial"


def resolve_method(method: str, head: str) -> str:
    """`auto` → the method for the head (see the module docstring); others checked against METHODS."""
    if method == "auto":
        return AUTO_POOLED if head == "global-pool" else AUTO_FLATTEN
    if method not in METHODS:
        raise UnknownNameError("attribution method", method, list(CHOICES))
    return method


def activations_and_gradients(model: nn.Module, module: nn.Module, x: torch.Tensor,
                              targets: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A (N×C×h×w, the module's output), G = d logit[target] / dA and the logits, in one forward and backward.
    The hook hands on a copy of A, so an in-place op after the layer cannot change the A kept here."""
    got = {}

    def keep(o):
        a = o.clone()
        got["a"] = a
        return a
    handle = _swap_output(module, keep)
    try:
        xin = x.detach().clone().requires_grad_(True)  # a graph even when the weights are frozen
        with torch.enable_grad():
            out = model(xin)
            a = got["a"]
            score = out.float()[torch.arange(len(x)), torch.as_tensor(list(targets), device=out.device)].sum()
            (g,) = torch.autograd.grad(score, a)
    finally:
        handle.remove()
    if a.dim() != 4:
        raise CnnkitError(f"the layer gives a {a.dim()}-d output; a class activation map needs a convolutional layer")
    return a.detach().float(), g.detach().float(), out.detach().float()


def layer_map(method: str, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The signed N×h×w map (before the ReLU) of `method` from activations A and gradients G (N×C×h×w)."""
    if method == "gradcam":
        return (g.mean((2, 3), keepdim=True) * a).sum(1)
    if method == "hirescam":
        return (g * a).sum(1)
    if method == "layercam":
        return (g.clamp_min(0) * a).sum(1)
    if method == "gradcam++":
        g2 = g * g
        denom = 2 * g2 + a.sum((2, 3), keepdim=True) * g2 * g
        alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)),
                            torch.zeros_like(g))
        w = (alpha * g.clamp_min(0)).sum((2, 3), keepdim=True)
        return (w * a).sum(1)
    raise UnknownNameError("attribution method", method, list(METHODS))


def _targets(target, probs: torch.Tensor, n: int) -> list[int]:
    if target is None:
        targets = probs.argmax(1).tolist()
    elif isinstance(target, int):
        targets = [int(target)] * n
    else:
        targets = [int(t) for t in target]
    if len(targets) != n or not all(0 <= t < probs.shape[1] for t in targets):
        raise CnnkitError(f"targets {targets} do not fit {n} image(s) and {probs.shape[1]} classes")
    return targets


def _scale(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ReLU'd map / its peak, zero where no peak; signed map / its largest magnitude)."""
    tiny = torch.finfo(m.dtype).tiny
    peak = m.flatten(1).amax(1).view(-1, 1, 1)
    cam = torch.where(peak > 0, m.clamp_min(0) / peak.clamp_min(tiny), torch.zeros_like(m))
    mag = m.flatten(1).abs().amax(1).view(-1, 1, 1)
    signed = torch.where(mag > 0, m / mag.clamp_min(tiny), torch.zeros_like(m))
    return cam.clamp(0, 1), signed.clamp(-1, 1)


def blank_reason(method: str, layer: str, cls: str, raw: torch.Tensor) -> str | None:
    """Why a map shows nothing, or None when it has positive evidence."""
    if float(raw.max()) > 0:
        return None
    label = LABELS.get(method, method)
    if float(raw.abs().max()) == 0:
        return (f"blank: {label} for '{cls}' is zero everywhere at {layer} (the gradient or the activations are "
                "zero there: dead or saturated units), so it explains nothing")
    return (f"blank: no positive evidence — {label} for '{cls}' is ≤ 0 everywhere at {layer} (every region "
            "lowers the score or leaves it unchanged); shown instead: the signed map (red raises, blue lowers)")


def attribute(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | None = None, *,
              method: str = "auto", layer: str | None = None, classes: Sequence[str] | None = None,
              head: str | None = None) -> Attribution:
    """Class activation maps for a normalised batch `x` (N×C×H×W): for `target` (one class for all, one per
    image, or None for each image's predicted class), by `method` (METHODS, or 'auto'), at `layer` (default:
    `gradcam.cam_layer`). Changes no model state.

    >>> from cnnkit import create_model
    >>> m = create_model('simplecnn', in_channels=1, input_size=(28, 28))
    >>> a = attribute(m, torch.randn(2, 1, 28, 28), target=3)
    >>> a.method, a.head, a.layer, tuple(a.cam.shape), len(a.blank)
    ('hirescam', 'spatial', 'pool2', (2, 28, 28), 2)
    """
    from .gradcam import gradcam

    if method not in CHOICES:
        raise UnknownNameError("attribution method", method, list(CHOICES))
    was = model.training
    model.eval()
    try:
        layer, module = _resolve_layer(model, x, layer)
        head = head or head_kind(model, x, layer)
        method = resolve_method(method, head)
        if method == "gradcam":  # Captum's LayerGradCam; before its ReLU, so that both maps come from one call
            g = gradcam(model, x, target, layer=layer, relu=False)
            raw, probs, targets = g.raw.float(), g.probs, g.target
        else:
            with torch.no_grad():
                probs = torch.softmax(model(x).float(), 1)
            targets = _targets(target, probs, len(x))
            a, grad, _ = activations_and_gradients(model, module, x, targets)
            raw = layer_map(method, a, grad).cpu()
            probs = probs.cpu()
    finally:
        model.train(was)
    up = F.interpolate(raw[:, None], size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
    cam, signed = _scale(up)
    names = list(classes) if classes is not None else [str(t) for t in range(probs.shape[1])]
    reasons = [blank_reason(method, layer, names[t], up[k]) for k, t in enumerate(targets)]  # as shown
    return Attribution(method, layer, head, cam, signed, raw, list(targets), probs,
                       [r is not None for r in reasons], reasons)


@dataclass
class LayerChoice:
    """Where `method` is applied for a model (`choose_layers`), or why it is declined (`layer` None)."""
    method: str
    layer: str | None  # None: declined for this model
    head: str
    reason: str  # one line: how the layer was chosen, or the measured reason for declining
    images: int = 0  # validation images measured (0: nothing to measure, e.g. a global-pool head)
    random: dict | None = None  # the random order's mean deletion and insertion on those images
    stages: dict = field(default_factory=dict)  # stage → deletion, insertion, their paired SEs vs random, beats

    @property
    def declined(self) -> bool:
        return self.layer is None

    def to_dict(self) -> dict:
        return {"method": self.method, "layer": self.layer, "declined": self.declined, "head": self.head,
                "reason": self.reason, "images": self.images, "random": self.random, "stages": self.stages,
                "rule": RULE if self.images else None}


def _fmt_stage(name: str, v: dict) -> str:
    return f"{name} {v['deletion']:.3f}/{v['insertion']:.3f}"


def choose_layers(model: nn.Module, x: torch.Tensor, methods: Sequence[str] = METHODS, *,
                  steps: int = RULE_STEPS, seed: int = 0) -> dict[str, LayerChoice]:
    """For each of `methods`, the layer where it is faithful for this model, measured on `x` (normalised
    validation images, N×C×H×W; each map explains the image's predicted class); see the module docstring.

    >>> from cnnkit import create_model
    >>> m = create_model('resnet18', in_channels=1, input_size=(28, 28))
    >>> choose_layers(m, torch.randn(4, 1, 28, 28), ['layercam'])['layercam'].layer
    'layer4'
    """
    import numpy as np

    from . import faithfulness as fa
    from .features import stage_maps

    for m in methods:
        resolve_method(m, "spatial")  # a typo fails here, named
    was = model.training
    model.eval()
    try:
        last, _ = _resolve_layer(model, x, None)
        head = head_kind(model, x, last)
        if head == "global-pool":
            why = "a global-pool head: the last stage, where Grad-CAM is CAM (exact)"
            return {m: LayerChoice(m, last, head, f"{LABELS[m]} at {last}: {why}") for m in methods}
        shapes = stage_maps(model, x[:1], list(model.stage_names))
        stages = [s for s in model.stage_names if s in shapes and shapes[s].dim() == 4
                  and shapes[s].shape[-1] * shapes[s].shape[-2] > 1]
        with torch.no_grad():
            targets = model(x).argmax(1).tolist()
        rnd = fa.deletion_insertion(model, x, None, targets, steps=steps, seed=seed + 1)
        n = len(x)
        random = {"deletion": round(float(rnd.deletion.mean()), 4), "insertion": round(float(rnd.insertion.mean()), 4)}
        out = {}
        for m in methods:
            scored = {}
            for s in stages:
                a = attribute(model, x, targets, method=m, layer=s, head=head)
                sc = fa.deletion_insertion(model, x, a.signed, targets, steps=steps, seed=seed)
                dd, di = sc.deletion - rnd.deletion, sc.insertion - rnd.insertion
                se_d = float(dd.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
                se_i = float(di.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
                scored[s] = {"deletion": round(float(sc.deletion.mean()), 4),
                             "insertion": round(float(sc.insertion.mean()), 4),
                             "ins_minus_del": round(float((sc.insertion - sc.deletion).mean()), 4),
                             "deletion_se": round(se_d, 4), "insertion_se": round(se_i, 4),
                             "beats_random": bool(dd.mean() + 2 * se_d < 0 and di.mean() - 2 * se_i > 0)}
            ok = [s for s in stages if scored[s]["beats_random"]]
            label = LABELS[m]
            if ok:
                best = max(ok, key=lambda s: scored[s]["ins_minus_del"])
                v = scored[best]
                reason = (f"{label} at {best}: chosen on {n} validation images, deletion {v['deletion']:.3f} "
                          f"(random {random['deletion']:.3f}), insertion {v['insertion']:.3f} (random "
                          f"{random['insertion']:.3f}); the best of {len(ok)} of {len(stages)} stages that beat "
                          "a random order")
                out[m] = LayerChoice(m, best, head, reason, n, random, scored)
            else:
                reason = (f"{label} is declined for this model: on {n} validation images its maps beat a random "
                          f"order on both deletion and insertion (by > 2 standard errors) at none of its stages "
                          f"(deletion/insertion: " + ", ".join(_fmt_stage(s, scored[s]) for s in stages)
                          + f"; random {random['deletion']:.3f}/{random['insertion']:.3f})")
                out[m] = LayerChoice(m, None, head, reason, n, random, scored)
        return out
    finally:
        model.train(was)


def default_choice(model: nn.Module, x: torch.Tensor, method: str, why: str) -> LayerChoice:
    """The layer when there are no validation images to measure on: the last stage, saying why."""
    layer, _ = _resolve_layer(model, x, None)
    return LayerChoice(method, layer, head_kind(model, x, layer),
                       f"{LABELS[method]} at {layer}, the last stage: not chosen on validation images ({why})")
