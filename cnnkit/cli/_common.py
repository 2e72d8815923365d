"""Helpers shared by the commands: shape parsing, JSON printing."""
from __future__ import annotations

import json
import re
import sys

from ..errors import CnnkitError


def parse_shape(text: str, *, flag: str = "--input") -> tuple[int, int, int]:
    """'3x224x224' (or '3,224,224') → (3, 224, 224).

    >>> parse_shape('1x28x28')
    (1, 28, 28)
    """
    parts = [p for p in re.split(r"[x×,*\s]+", text.strip().lower()) if p]
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise CnnkitError(f"{flag} '{text}' is not a shape: expected CxHxW with positive integers, e.g. 3x224x224")
    c, h, w = (int(p) for p in parts)
    return c, h, w


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=None, default=str)
    sys.stdout.write("\n")


def add_weight_flags(p) -> None:
    """--pretrained / --weights / --download for commands that take a model name (predict, explain)."""
    p.add_argument("--pretrained", action="store_true",
                   help="with a model name: its ImageNet weights (torchvision's, found on this machine), with their "
                        "preprocessing and 1000 class names")
    p.add_argument("--weights", default=None, metavar="FILE|TAG",
                   help="with a model name: load this weight file (.pth state dict or .safetensors), or pick "
                        "torchvision's weights by name (e.g. IMAGENET1K_V1)")
    p.add_argument("--download", action="store_true",
                   help="let torchvision download the weights when they are not on this machine")
