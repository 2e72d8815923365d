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
