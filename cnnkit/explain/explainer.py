"""`explain(source, image, out)`: every picture of what a network sees, for one image, written to a folder.

`source` is a run directory (the trained model, with its classes and preprocessing) or a registered model
name (an untrained network: random weights, ImageNet normalisation, 1000 classes unless told); `image` is a
file or a scikit-image sample photo. Written: a feature-map grid per layer, the first layer's filters beside
the hand-made kernels (a match only where it beats chance; random weights called random), the class
activation map (`attribution.py`: method from the head, or named; a blank map labelled and drawn signed)
with its deletion and insertion scores against random orders (`faithfulness.py`), receptive-field boxes,
and with `data`, the top-activating patches per layer. `sanity`: Adebayo et al.'s model randomisation.

>>> info = explain('simplecnn', 'camera', '/tmp/cnnkit-explain-doctest', img_size=32)
>>> info['trained'], info['prediction']['index'] in range(1000), len(info['files'])
(False, True, 5)
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import CnnkitError, UnknownNameError
from ..data.samples import SAMPLES  # noqa: F401  (re-exported: the names `explain` takes)
from ..run.predictor import Predictor, load_image, load_predictor  # noqa: F401  (load_image: part of this module's API)


def load_subject(source: str | Path, **kw) -> Predictor:
    """What `explain` looks at: a run, a pretrained model or an untrained one (run.predictor.load_predictor)."""
    return load_predictor(source, **kw)


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


def _load_patch_data(sub: Predictor, spec: str, max_images: int) -> tuple[torch.Tensor, str]:
    """Up to `max_images` validation images (else training; a seeded sample) of a data set, as the model sees
    them. A run's own data comes through its saved split; other files are decoded once at the model's size;
    other arrays stay at their own size and only the sample is resized (all of Fashion-MNIST at 224×224
    would take GBs)."""
    from ..data import load_data
    from ..data.sources import parse_spec
    from ..run.predictor import is_own_data, load_run_data

    own = sub.trained and (spec is None or is_own_data(sub, spec))  # None: the run's own data
    files = spec is not None and parse_spec(spec)[0] in ("folder", "csv")
    if own:
        ds = load_run_data(sub)  # the run's own split
    else:  # files decoded once at the model's size; arrays at their own size, and only the sample resized
        ds = load_data(spec, on_bad_image="skip", preprocess=sub.preprocess if files else None)
    split = "val" if "val" in ds.splits else "train"
    s = ds.split(split)
    idx = torch.arange(len(s))
    if len(s) > max_images:
        idx = torch.randperm(len(s), generator=torch.Generator().manual_seed(0))[:max_images].sort().values
    x = s.get(idx)
    if tuple(x.shape[1:]) != (sub.channels, *sub.size):
        x = torch.from_numpy(np.stack([sub.preprocess.image(a) for a in x.numpy()]))
    return x, f"{ds.name} {split}"


def _rule_images(sub: Predictor, data: str | None) -> tuple[torch.Tensor | None, str]:
    """Normalised validation images on which `attribution.choose_layers` measures the layer (`--data`'s, else
    the run's own split; a seeded sample), or None and why there are none."""
    from .attribution import RULE_IMAGES

    if not sub.trained:
        return None, "an untrained model: no validation images"
    try:
        images, where = _load_patch_data(sub, data, RULE_IMAGES)
    except (CnnkitError, OSError) as e:
        return None, f"its data could not be read: {str(e).splitlines()[0][:200]}"
    if not where.endswith(" val"):
        return None, f"{where.rsplit(' ', 1)[0]} has no validation split"
    return sub.prepare(images), where


def layer_choices(sub: Predictor, x: torch.Tensor, method: str = "auto", data: str | None = None,
                  compare: bool = False) -> dict:
    """`attribution.choose_layers` for the method asked (`auto` resolved from the head; first in the dict), and
    with `compare` every method: measured on validation images (`data`'s, else the run's own: the same seeded
    sample every caller gets) for a flatten head, the last stage for a global-pool head. `x`: one normalised
    image (its shape and the head are read from it). report.html and the server should take their layers here."""
    from .attribution import METHODS, choose_layers, default_choice, head_kind, resolve_method

    head = head_kind(sub.model, x)
    want = resolve_method(method, head)
    methods = [want] + [m for m in METHODS if m != want] if compare else [want]
    if head == "global-pool":
        return choose_layers(sub.model, x, methods)
    xv, why = _rule_images(sub, data)
    if xv is None:
        return {m: default_choice(sub.model, x, m, why) for m in methods}
    return choose_layers(sub.model, xv, methods)


def _faithfulness(model: torch.nn.Module, x: torch.Tensor, a, compare: bool, choices: dict | None = None,
                  randoms: int = 4) -> dict:
    """Deletion and insertion of the map (and, with `compare`, of the other methods, each at its chosen layer
    or declined with its reason) against the mean of `randoms` random orders, for one image."""
    from . import faithfulness as fa
    from .attribution import METHODS, attribute

    scores = {a.method: {**fa.deletion_insertion(model, x, a.signed, a.target).summary(), "layer": a.layer}}
    declined = {}
    if compare:
        for m in METHODS:
            if m == a.method:
                continue
            c = (choices or {}).get(m)
            if c is not None and c.declined:
                declined[m] = {"declined": True, "reason": c.reason}
                continue
            layer = c.layer if c is not None else a.layer
            b = attribute(model, x, a.target, method=m, layer=layer, head=a.head)
            scores[m] = {**fa.deletion_insertion(model, x, b.signed, b.target).summary(), "layer": layer}
    r = fa.deletion_insertion(model, x.expand(randoms, *x.shape[1:]), None, a.target * randoms)
    rnd = {"deletion": round(float(r.deletion.mean()), 4), "insertion": round(float(r.insertion.mean()), 4),
           "orders": randoms}
    own = scores[a.method]
    return {"deletion": own["deletion"], "insertion": own["insertion"], "random": rnd,
            "verdict": fa.verdict(own, rnd),
            "methods": {**{k: {"deletion": v["deletion"], "insertion": v["insertion"], "layer": v["layer"]}
                           for k, v in scores.items()}, **declined},
            "deletion_baseline": fa.DELETION_BASELINE, "insertion_baseline": fa.INSERTION_BASELINE,
            "note": "deletion: area under p(class) as the top pixels are removed (lower is better); insertion: as "
                    "they are added to the blurred image (higher is better); Petsiuk et al. 2018"}


def _faith_line(f: dict | None) -> str:
    if not f:
        return ""
    r = f["random"]
    return (f"\ndeletion {f['deletion']:.3f} (random {r['deletion']:.3f}, lower is better), insertion "
            f"{f['insertion']:.3f} (random {r['insertion']:.3f}, higher is better): {f['verdict']}")


def explain(source: str | Path, image: str | Path, out: str | Path, *, layers: Sequence[str] | None = None,
            target: str | int | None = None, data: str | None = None, img_size: int | None = None,
            num_classes: int | None = None, channels: int = 4, per_channel: int = 6,
            max_images: int = 2000, pretrained: bool | str = False, weights: str | None = None,
            download: bool = False, shift: tuple[int, int] | str | None = None, method: str = "auto",
            faithfulness: bool = True, compare: bool = False, sanity: bool = False) -> dict:
    """Write the explanation images for one image to `out`; return what was found and the files written.
    `shift` (dx, dy): also measure and draw equivariance (`equivariance.py`), in result['equivariance'].
    `method`: the class activation map (`attribution.CHOICES`; auto: from the model's head), at the layer
    `attribution.choose_layers` picks (for a flatten head: on validation images, `data`'s or the run's own;
    a method faithful at no stage is refused with the measured reason). `faithfulness`:
    its deletion and insertion scores against random orders (`faithfulness.py`); `compare`: the other
    methods' scores too; `sanity`: Adebayo et al.'s cascading model randomisation (`sanity.py`)."""
    from . import features as feat
    from . import plots
    from .attribution import CHOICES, attribute
    from .gradcam import resolve_target

    sub = load_subject(source, img_size=img_size, num_classes=num_classes, pretrained=pretrained, weights=weights,
                       download=download)
    # the fully connected mlp: one clear line, nothing written
    feat.require_feature_maps(sub.model, "explain (feature maps, filters, receptive fields, Grad-CAM)")
    asked_layers = layers  # what --shift measures; by default the layers before and after each pooling
    layers = _check_layers(sub.model, layers)
    target_idx = resolve_target(target, sub.classes)
    if method not in CHOICES:
        raise UnknownNameError("attribution method", method, list(CHOICES))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CnnkitError(f"--out {out} is a file; give a folder for the PNG files (it is created if missing)")
    img = sub.image(image)  # C×H×W uint8: what the model sees
    x = sub.prepare(torch.from_numpy(img)[None])
    shape = (sub.channels, *sub.size)
    if shift is not None:  # measured first: a bad shift fails before anything is written
        from . import equivariance
        eq = equivariance.measure(sub.model, img, shift, prepare=sub.prepare, layers=asked_layers)
    files: list[str] = []
    label = f"{sub.name}" + ("" if sub.trained else " (untrained: random weights)")

    def save(fig, name: str) -> None:
        files.append(str(plots.save_png(fig, out / name)))

    # the prediction as predict gives it (calibrated; a two-class run decides at its operating point), then
    # the class activation map for that class unless --target names another
    probs = sub.probs(torch.from_numpy(img)[None])[0]
    pred = int(sub.decide(probs[None])[0])
    # the map's layer: the last stage for a global-pool head; for a flatten head, chosen on validation images
    # (attribution.choose_layers), where a method that is faithful at no stage is declined, before anything is drawn
    choices = layer_choices(sub, x, method, data, compare)
    chosen = next(iter(choices.values()))
    if chosen.declined:
        raise CnnkitError(f"--method {method}: {chosen.reason}; use --method auto or another method")
    a = attribute(sub.model, x, pred if target_idx is None else target_idx, method=chosen.method, layer=chosen.layer,
                  head=chosen.head, classes=sub.classes)
    tgt = a.target[0]
    top = probs.topk(min(5, len(probs)))
    cam_info = {"layer": a.layer, "class": sub.classes[tgt], "index": tgt, "probability": round(float(probs[tgt]), 6),
                **a.info(0), "layer_choice": chosen.to_dict()}
    if compare:
        cam_info["declined"] = {m: c.reason for m, c in choices.items() if c.declined}
    if faithfulness:
        cam_info["faithfulness"] = _faithfulness(sub.model, x, a, compare, choices)
    cam_title = (f"{label}: {a.label} at {a.layer} for class '{sub.classes[tgt]}' (p = {float(probs[tgt]):.3f})"
                 + ("" if tgt == pred else f"; predicted '{sub.classes[pred]}' (p = {float(probs[pred]):.3f})")
                 + (f"\n{a.reasons[0]}" if a.blank[0] else "") + _faith_line(cam_info.get("faithfulness")))
    save(plots.gradcam_figure(img, a.cam[0].numpy(), title=cam_title, signed=a.signed[0].numpy(), blank=a.blank[0],
                              label=a.label), "gradcam.png")

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
    structure = feat.filter_structure(w)
    verdict = feat.filters_verdict(matches, structure, trained=sub.trained)
    save(plots.filters_figure(w, kernels, matches, layer=f"{label}, {conv_name}", verdict=verdict,
                              random=not sub.trained), "filters.png")

    result = {
        "model": sub.name, "trained": sub.trained, "source": sub.source, "image": str(image),
        "input": list(shape),
        "prediction": {"class": sub.classes[pred], "index": pred, "probability": round(float(probs[pred]), 6)},
        "top5": [{"class": sub.classes[i], "probability": round(float(p), 6)}
                 for p, i in zip(top.values.tolist(), top.indices.tolist())],
        "attribution": cam_info,
        "gradcam": cam_info,  # the same dict, under its old name
        "feature_maps": fm_info,
        "receptive_fields": [u.to_dict() for u in units],
        "filters": {"layer": conv_name, "shape": list(w.shape), "matches": [m.to_dict() for m in matches],
                    "random": not sub.trained or (structure["random_like"] and not any(m.beats_chance for m in matches)),
                    "structure": structure, "verdict": verdict},
    }
    if sanity:
        from .sanity import cascade

        result["sanity"] = cascade(sub.model, x, [tgt], method=a.method, layer=a.layer)
    if not sub.trained:
        result["note"] = "untrained: random weights, ImageNet normalisation; the prediction means nothing"

    if data:
        images, where = _load_patch_data(sub, data, max_images)
        found = feat.top_patches(sub.model, images, sub.preprocess, layers, channels=channels,
                                 per_channel=per_channel)
        result["patches"] = {"data": where, "images": len(images), "layers": {}}
        for layer, rows in found.items():
            rf = feat.receptive_field(sub.model, shape, layer)
            save(plots.patches_figure(rows, layer=layer, rf_size=rf.size, n_images=len(images)),
                 f"patches_{_safe(layer)}.png")
            result["patches"]["layers"][layer] = [
                {"channel": r.channel, "mean_activation": round(r.mean_activation, 4),
                 "activations": [round(a, 4) for a in r.activations], "images": r.images} for r in rows]
    if shift is not None:
        save(equivariance.figure(eq, label=label), "equivariance.png")
        result["equivariance"] = eq.to_dict()
    result["files"] = files
    return result
