"""`cnnkit predict RUN_DIR IMAGE...`: class probabilities, preprocessed exactly as in training."""
from __future__ import annotations

import argparse

NAME = "predict"
HELP = "classify images with a trained run"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=int, default=3, metavar="K")
    p.add_argument("--engine", choices=("torch", "onnx"), default="torch",
                   help="onnx: ONNX Runtime (exports RUN_DIR/model.onnx first if needed)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from .. import api
    from ..data.images import open_image
    from ..errors import CnnkitError
    from ._common import print_json

    if args.top_k < 1:
        raise CnnkitError(f"--top-k must be at least 1, got {args.top_k}")
    model = api.load_model(args.run_dir, engine=args.engine)
    images = [open_image(p) for p in args.images]  # a bad file fails here, by name, before any prediction
    preds = model.predict(images, top_k=args.top_k)
    if args.json:
        print_json({"run_dir": args.run_dir, "predictions": [
            {"image": path, "top": [{"class": c, "probability": round(p, 6)} for c, p in top]}
            for path, top in zip(args.images, preds)]})
        return 0
    for path, top in zip(args.images, preds):
        print(f"{path}: " + ", ".join(f"{c} {p:.4f}" for c, p in top))
    return 0
