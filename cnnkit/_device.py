"""Choosing the torch device from a flag: auto, cpu, cuda, cuda:N."""
from __future__ import annotations

import torch

from .errors import CnnkitError


def pick_device(name: str) -> torch.device:
    """`auto`: CUDA if available, else the CPU. A CUDA device asked for where none exists is one clear line."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise CnnkitError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise CnnkitError(f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N") from None
