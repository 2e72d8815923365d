"""`cnnkit export RUN_DIR --format onnx|torchscript [--out FILE]`: a self-describing servable model.

The file takes float32 N×C×H×W pixels in 0–255 (normalisation inside) and carries the class names and the
preprocessing, so onnxruntime alone can use it; it is checked equal to the run's eager model to 1e-4.
"""
from __future__ import annotations

import argparse

from ._common import out_file

NAME = "export"
HELP = "export a run to ONNX (dynamic batch) or TorchScript that takes 0-255 pixels, verified against eager"
DEFAULT_NAMES = {"onnx": "model.onnx", "torchscript": "model.pt"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--format", choices=tuple(DEFAULT_NAMES), default="onnx")
    p.add_argument("--out", default=None, metavar="FILE", type=out_file,
                   help="default: RUN_DIR/model.onnx or RUN_DIR/model.pt (.onnx for onnx, .pt or .ts for torchscript)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..export import check_out, export_model
    from ._common import print_json, printable

    out = Path(args.out) if args.out else Path(args.run_dir) / DEFAULT_NAMES[args.format]
    check_out(out, args.format)  # before loading the run: a refused --out costs nothing
    from ..run import Predictor

    p = Predictor.from_run(args.run_dir)
    info = export_model(p.model, p.preprocess, out, args.format, classes=p.classes, **p.export_extras())
    if args.json:
        print_json(info)
    else:
        print(f"wrote {printable(info['path'])} ({info['format']}, {len(info['classes'])} classes); max |difference| from "
              f"eager {info['max_abs_diff']:.2e}\ninput: {info['input']}")
    return 0
