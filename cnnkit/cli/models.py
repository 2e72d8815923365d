"""`cnnkit models`: list the registered models."""
from __future__ import annotations

import argparse

NAME = "models"
HELP = "list the registered model names"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..models import get_builder, list_models
    from ._common import print_json

    if args.json:
        print_json({"models": list_models()})
        return 0
    for name in list_models():
        doc = " ".join((get_builder(name).__doc__ or "").split("\n\n")[0].split())
        print(f"{name:18s} {doc}")
    return 0
