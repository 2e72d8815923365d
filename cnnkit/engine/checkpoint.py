"""Run directories: what a training run writes, written atomically, and read back safely.

- `model.safetensors`: the best weights (safetensors: tensors only, nothing that can run code);
- `model.json`: architecture and arguments, classes, input size and normalisation, metrics, versions,
  the command line — everything `load_model` needs, so predicting takes no flags;
- `train_state.pt`: the latest weights, optimizer, scheduler, epoch, history and RNG states for exact
  resume; loaded with `torch.load(weights_only=True)`, which refuses pickled code.
"""
from __future__ import annotations

import json
import pickle
import platform
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .._io import atomic_write, atomic_write_json
from ..errors import CnnkitError

FORMAT = "cnnkit-run/1"
WEIGHTS, META, STATE = "model.safetensors", "model.json", "train_state.pt"


def versions() -> dict:
    import numpy
    import torchvision

    from .. import __version__

    return {"cnnkit": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def save_weights(model: torch.nn.Module, path: Path) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))


def save_meta(meta: dict, path: Path) -> None:
    atomic_write_json(path, {"format": FORMAT, **meta, "versions": versions(), "command": sys.argv})


def save_state(state: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path) -> dict:
    """Load train_state.pt. Only tensors and plain Python values are accepted (weights_only=True)."""
    if not path.is_file():
        raise CnnkitError(f"{path} not found: nothing to resume (the run stopped before its first epoch ended?)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsafe content"
        raise CnnkitError(f"refusing to load {path}: it holds more than tensors and plain values, so it could run "
                          f"code ({first[:160]}). Only resume from run directories you made.") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CnnkitError(f"{path} is not a readable training state ({str(e).splitlines()[0][:160]})") from None


def read_meta(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    path = run_dir / META
    if not run_dir.is_dir():
        raise CnnkitError(f"{run_dir} is not a run directory (no such folder); give the folder `cnnkit train` wrote")
    if not path.is_file():
        raise CnnkitError(f"{run_dir} has no {META}: not a cnnkit run directory, or its first epoch never finished")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CnnkitError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CnnkitError(f"{path} is not a {FORMAT} file (format: {meta.get('format') if isinstance(meta, dict) else '?'})")
    for key in ("model", "classes", "input"):
        if key not in meta:
            raise CnnkitError(f"{path} lacks '{key}'")
    return meta


def build_model(meta: dict) -> torch.nn.Module:
    from ..models import create_model

    spec = meta["model"]
    kwargs = dict(spec.get("kwargs", {}))
    return create_model(spec["name"], **kwargs)


def load_weights(model: torch.nn.Module, path: Path) -> None:
    if not path.is_file():
        raise CnnkitError(f"{path} not found: the run has no saved weights yet")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CnnkitError(f"{path} is not a readable safetensors file ({e})") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of another shape: the weights were saved from another architecture
        first = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e)[:300])
        raise CnnkitError(f"{path} does not match the architecture in model.json ({first})") from None
    if missing or unexpected:
        raise CnnkitError(f"{path} does not match the architecture in model.json "
                          f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
