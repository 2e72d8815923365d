"""A trained network as plain data, for the page of `cnnkit serve` (CNN Explainer's view of the user's own model).

`network_view(pred)` describes the network once: its stages (shape, receptive field, the convolution whose
kernels made each stage's channels), the first layer's filters beside the lessons' hand-made kernels.
`inspect(pred, image)` runs one image: the calibrated top-k, each stage's most active feature maps (PNG and
numbers) with their kernels, and the class activation map's overlay (method auto, `attribution.py`, at the layer
`explainer.layer_choices` picks: measured on validation images for a flatten head, once per loaded model and
kept; a blank map is flagged with its reason and its signed map; a declined method answers its reason).
`explanation` is the TorchServe-style answer, and `convolve_view` the lesson's convolution on a small grid, by the NumPy `conv2d` of `cnnkit.ops`.
Everything here reads a Predictor and changes no model state.
"""
from __future__ import annotations

import base64
import io
import threading
import weakref
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from ..errors import CnnkitError


def data_url(img: np.ndarray) -> str:
    """uint8 H×W or H×W×3 → a PNG data URL.

    >>> data_url(np.zeros((2, 2), np.uint8))[:22]
    'data:image/png;base64,'
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _hwc(x: np.ndarray) -> np.ndarray:
    """uint8 C×H×W → H×W (one channel) or H×W×3."""
    return x[0] if x.shape[0] == 1 else np.ascontiguousarray(x[:3].transpose(1, 2, 0))


def _rounded(a: np.ndarray, digits: int = 4) -> list:
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


def _stage_convs(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Each stage's output shape, and the last Conv2d run before it whose output channels match it (the
    convolution whose kernels made that stage's channels), found by hooks in the order modules run."""
    modules = dict(model.named_modules())
    order: list[tuple[str, object]] = []
    hooks = []
    for name in model.stage_names:
        hooks.append(modules[name].register_forward_hook(
            lambda m, i, o, n=name: order.append(("stage", n, tuple((o[0] if isinstance(o, tuple) else o).shape)))))
    for name, m in modules.items():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(lambda m, i, o, n=name: order.append(("conv", n, m.out_channels))))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    shapes, kernel_of, convs = {}, {}, []
    for kind, name, info in order:
        if kind == "conv":
            convs.append((name, info))
        elif name not in shapes:
            shapes[name] = info
            c = info[1] if len(info) == 4 else None
            kernel_of[name] = next((n for n, out in reversed(convs) if out == c), convs[-1][0] if convs else None)
    return shapes, kernel_of


def _mean_kernel(model: nn.Module, layer: str | None, channel: int) -> list | None:
    """The kh×kw kernel of one output channel of a Conv2d, averaged over its input channels."""
    if layer is None:
        return None
    w = dict(model.named_modules())[layer].weight.detach().float().cpu()
    return _rounded(w[channel].mean(0).numpy())


def network_view(pred) -> dict:
    """The network as the page draws it (the stages' shapes and receptive fields, the first layer's filters,
    the lesson's kernels and the honest matches between them).

    >>> from cnnkit.run import Predictor
    >>> v = network_view(Predictor.untrained('simplecnn'))
    >>> [(s['name'], s['channels'], s['height'], s['rf']['size']) for s in v['stages']]
    [('pool1', 32, 112, [4, 4]), ('pool2', 64, 56, [10, 10])]
    """
    from .features import filter_structure, filters_verdict, first_conv, handmade_kernels, learned_filters, match_kernels
    from .receptive_field import receptive_field

    model, prep = pred.model, pred.preprocess
    c, (h, w) = prep.channels, prep.size
    shapes, kernel_of = _stage_convs(model, torch.zeros(1, c, h, w, device=pred.device))
    stages = []
    for name in model.stage_names:
        shape = shapes.get(name)
        if shape is None or len(shape) != 4:
            continue
        rf = receptive_field(model, (c, h, w), name)
        stages.append({"name": name, "channels": shape[1], "height": shape[2], "width": shape[3],
                       "rf": {"size": list(rf.size), "stride": [float(j) for j in rf.jump],
                              "start": [float(v) for v in rf.left]},
                       "kernel_layer": kernel_of.get(name)})
    conv = first_conv(model)
    filters = learned_filters(model)
    layer = next(n for n, m in model.named_modules() if m is conv)
    kernels = handmade_kernels()
    matches = []
    found = match_kernels(filters, kernels)
    for m in found:
        matches.append({"kernel": m.kernel, "filter": m.filter, "cosine": m.cosine, "chance_median": m.chance[0],
                        "chance95": m.chance[1], "beats_chance": m.beats_chance})
    trained = (pred.meta or {}).get("train") is not None or (pred.meta or {}).get("pretrained") is not None
    return {"model": pred.name, "architecture": getattr(model, "model_name", type(model).__name__),
            "classes": list(pred.classes), "input": {"channels": c, "height": h, "width": w},
            "stages": stages,
            "first_conv": {"layer": layer, "in_channels": conv.in_channels, "size": list(conv.kernel_size),
                           "filters": [_rounded(f) for f in filters.mean(axis=1)], "random": not trained,
                           "verdict": filters_verdict(found, filter_structure(filters), trained=trained)},
            "kernels": {k: v.tolist() for k, v in kernels.items()}, "matches": matches,
            "decision": pred.decision_text()}


def _map_png(a: np.ndarray) -> tuple[str, float, float]:
    lo, hi = float(a.min()), float(a.max())
    g = ((a - lo) / (hi - lo) * 255.0) if hi > lo else np.zeros_like(a)
    return data_url(np.clip(np.rint(g), 0, 255).astype(np.uint8)), lo, hi


def cam_overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """uint8 C×H×W image and an H×W map in [0, 1] → uint8 H×W×3, the map in matplotlib's 'jet' over the image."""
    from matplotlib import colormaps

    base = _hwc(image).astype(np.float64)
    base = np.repeat(base[..., None], 3, axis=2) if base.ndim == 2 else base
    heat = colormaps["jet"](np.clip(cam, 0, 1))[..., :3] * 255.0
    return np.clip(np.rint((1 - alpha) * base + alpha * heat), 0, 255).astype(np.uint8)


# model → {method: LayerChoice}: `explainer.layer_choices` measures a flatten head's stages on validation images
# (seconds), so once per loaded model and method; weak, so a model let go takes its entry with it
_CHOICES: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_CHOICES_LOCK = threading.Lock()


def layer_choice(pred, x: torch.Tensor, method: str = "auto"):
    """`explainer.layer_choices(pred, x, method)`'s choice for `method` (`auto` resolved), computed once per
    loaded model and method and kept. `x`: one normalised image (its shape and the head are read from it)."""
    from .explainer import layer_choices

    with _CHOICES_LOCK:  # one measurement per model, even when two requests ask at once
        kept = _CHOICES.setdefault(pred.model, {})
        if method not in kept:
            choice = next(iter(layer_choices(pred, x, method).values()))
            kept[method] = kept[choice.method] = choice
        return kept[method]


def _gradcam(pred, x: np.ndarray, target: int | None, method: str = "auto") -> dict:
    """The class activation map (`attribution.attribute`, method auto: from the head) of one image, at the layer
    `layer_choice` picks for the model (with the reason it was picked, `layer_reason`), with `blank` and its
    reason where there is no positive evidence, and the signed map to show instead. A method declined for the
    model: no map, `declined` and its measured `reason`."""
    from .attribution import LABELS, attribute

    xt = pred.prepare(torch.from_numpy(x)[None])
    c = layer_choice(pred, xt, method)
    if c.declined:
        return {"declined": True, "method": c.method, "label": LABELS[c.method], "head": c.head, "layer": None,
                "reason": c.reason, "layer_reason": c.reason}
    a = attribute(pred.model, xt, target, method=c.method, layer=c.layer, head=c.head, classes=pred.classes)
    return {"target": a.target[0], "class": pred.classes[a.target[0]], "layer": a.layer, "method": a.method,
            "label": a.label, "head": a.head, "blank": a.blank[0], "reason": a.reasons[0],
            "layer_reason": c.reason, "cam": a.cam[0].numpy(), "signed": a.signed[0].numpy()}


def signed_overlay(image: np.ndarray, signed: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """uint8 C×H×W image and an H×W signed map in [-1, 1] → uint8 H×W×3: red raises the score, blue lowers it."""
    from matplotlib import colormaps

    base = _hwc(image).astype(np.float64)
    base = np.repeat(base[..., None], 3, axis=2) if base.ndim == 2 else base
    heat = colormaps["RdBu_r"]((np.clip(signed, -1, 1) + 1) / 2)[..., :3] * 255.0
    return np.clip(np.rint((1 - alpha) * base + alpha * heat), 0, 255).astype(np.uint8)


def _cam_answer(x: np.ndarray, g: dict) -> dict:
    """The map's fields for the page: never a blank picture passed off as an explanation (`overlay` is the
    map over the image; when blank, `signed_overlay` and `reason` say what there is instead; a declined method:
    `declined` and its `reason`, no picture)."""
    if g.get("declined"):
        return {k: g[k] for k in ("declined", "method", "label", "head", "layer", "reason", "layer_reason")}
    out = {"class": g["class"], "layer": g["layer"], "method": g["method"], "label": g["label"], "head": g["head"],
           "blank": g["blank"], "reason": g["reason"], "layer_reason": g["layer_reason"], "declined": False,
           "overlay": data_url(cam_overlay(x, g["cam"]))}
    if g["blank"]:
        out["signed_overlay"] = data_url(signed_overlay(x, g["signed"]))
    return out


def explanation(pred, x: np.ndarray, target: int | str | None = None, method: str = "auto") -> dict:
    """The class activation map for one uint8 C×H×W image: for `target` (a class name or index), else the
    decided class. A blank map comes with `blank: true`, a `reason`, the `signed` map and its overlay; a method
    declined for the model (`explainer.layer_choices`) with `declined: true` and its `reason`, and no map."""
    from .gradcam import resolve_target

    probs = pred.probs(torch.from_numpy(x)[None])
    t = resolve_target(target, pred.classes)
    t = int(pred.decide(probs)[0]) if t is None else t
    g = _gradcam(pred, x, t, method)
    if g.get("declined"):  # no map: the measured reason instead
        return {"probability": round(float(probs[0, t]), 6), "target": t, "class": pred.classes[t], **_cam_answer(x, g)}
    out = {"probability": round(float(probs[0, t]), 6), "target": t, **_cam_answer(x, g), "cam": _rounded(g["cam"])}
    if g["blank"]:
        out["signed"] = _rounded(g["signed"])
    return out


def inspect(pred, x: np.ndarray, channels: int = 8, top_k: int = 5) -> dict:
    """One uint8 C×H×W image through the network: the top-k, each stage's `channels` most active feature maps
    (most active first, with the kernel that made each), and Grad-CAM for the decided class."""
    from .features import rank_channels, stage_maps

    model = pred.model
    probs = pred.probs(torch.from_numpy(x)[None])
    decided = int(pred.decide(probs)[0])
    maps = stage_maps(model, pred.prepare(torch.from_numpy(x)[None]))
    _, kernel_of = _stage_convs(model, pred.prepare(torch.from_numpy(x)[None]))
    stages = []
    for name, t in maps.items():
        act = t[0].cpu()
        shown = []
        for ch in rank_channels(act)[:channels]:
            a = act[ch].numpy()
            png, lo, hi = _map_png(a)
            shown.append({"channel": ch, "min": round(lo, 4), "max": round(hi, 4), "png": png, "values": _rounded(a),
                          "kernel": {"layer": kernel_of.get(name),
                                     "weights": _mean_kernel(model, kernel_of.get(name), ch)}})
        stages.append({"name": name, "channels": int(act.shape[0]), "height": int(act.shape[1]),
                       "width": int(act.shape[2]), "maps": shown})
    g = _gradcam(pred, x, decided)
    return {"top": [{"class": c, "probability": round(p, 6)} for c, p in pred.top(probs, top_k)[0]],
            "decision": pred.classes[decided] if pred.decision_text() else None,
            "input": data_url(_hwc(x)),
            "gradcam": _cam_answer(x, g),
            "stages": stages}


LIMITS = {"size": 64, "kernel": 7, "stride": 8, "padding": 8}


def _matrix(value, what: str, most: int) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CnnkitError(f"{what} must be a matrix of numbers (a list of equal-length rows)") from None
    if a.ndim != 2 or a.size == 0:
        raise CnnkitError(f"{what} must be a 2-D matrix, got shape {a.shape}")
    if max(a.shape) > most:
        raise CnnkitError(f"{what} is {a.shape[0]}x{a.shape[1]}; at most {most}x{most} here")
    if not np.isfinite(a).all():
        raise CnnkitError(f"{what} holds a value that is not a finite number")
    return a


def convolve_view(*, input: Sequence | None = None, sample: str | None = None, size: int = 32,
                  kernel: str | Sequence = "sobel_x", stride: int = 1, padding: int = 0) -> dict:
    """The lesson's convolution on a small grid, computed by `cnnkit.ops.conv2d` (a cross-correlation, zeros
    around the image). `input` a matrix, or `sample` a scikit-image photo in grayscale at size×size.

    >>> convolve_view(input=np.arange(1, 26).reshape(5, 5).tolist(), kernel=[[1, 0, -1], [2, 0, -2], [1, 0, -1]])['output'][0][0]
    -8.0
    """
    from ..ops.conv import conv2d
    from ..ops.kernels import get_kernel

    for name, v, lo in (("stride", stride, 1), ("padding", padding, 0), ("size", size, 2)):
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= LIMITS[name]:
            raise CnnkitError(f"{name} must be a whole number from {lo} to {LIMITS[name]}, got {v!r}")
    if sample is not None:
        from PIL import Image

        from ..data.samples import load_sample

        im = Image.fromarray(load_sample(str(sample))).convert("L").resize((size, size), Image.Resampling.BILINEAR)
        x = np.asarray(im, dtype=np.float64)
    elif input is not None:
        x = _matrix(input, "input", LIMITS["size"])
    else:
        raise CnnkitError("give an input matrix or a sample name")
    k = get_kernel(kernel) if isinstance(kernel, str) else _matrix(kernel, "kernel", LIMITS["kernel"])
    if x.shape[0] + 2 * padding < k.shape[0] or x.shape[1] + 2 * padding < k.shape[1]:
        raise CnnkitError(f"the {k.shape[0]}x{k.shape[1]} kernel does not fit the {x.shape[0]}x{x.shape[1]} "
                          f"input with padding {padding}; pad more or use a smaller kernel")
    out = conv2d(x[None, None], k[None, None], stride=stride, padding=padding)[0, 0]
    return {"input": x.tolist(), "kernel": k.tolist(), "output": np.round(out, 6).tolist(),
            "stride": stride, "padding": padding}
