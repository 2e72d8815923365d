"""`cnnkit models`: list the registered models."""
from __future__ import annotations

import argparse

NAME = "models"
HELP = "list the registered model names, and which ImageNet weights are on this machine"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..models import get_builder, list_models
    from ..models.pretrained import availability, hub_dir
    from ._common import print_json

    weights = availability()
    if args.json:
        print_json({"models": list_models(), "pretrained": weights})
        return 0
    for name in list_models():
        doc = " ".join((get_builder(name).__doc__ or "").split("\n\n")[0].split())
        print(f"{name:18s} {doc}")
    print(f"\nImageNet weights (--pretrained), looked for in {hub_dir()} and installed weight packages:")
    for name, rows in weights.items():
        here = [r for r in rows if r["path"]]
        state = f"here: {here[0]['weights']} ({here[0]['path']})" if here else \
            f"not here (put {rows[0]['file']} in the folder above, or use --download)"
        print(f"  {name:16s} {state}")
    return 0
