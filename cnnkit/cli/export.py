"""`cnnkit export RUN_DIR --format onnx|torchscript --out FILE`: a servable model, checked equal to eager."""
from __future__ import annotations

import argparse

NAME = "export"
HELP = "export a trained run to ONNX (dynamic batch) or TorchScript, verified against eager to 1e-4"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--out", default=None, metavar="FILE", help="default: RUN_DIR/model.onnx or RUN_DIR/model.pt")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .. import api
    from ..export import export_model
    from ._common import print_json

    tm = api.load_model(args.run_dir)
    out = args.out or str(Path(args.run_dir) / ("model.onnx" if args.format == "onnx" else "model.pt"))
    info = export_model(tm.model, tm.channels, tm.size, out, args.format)
    if args.json:
        print_json(info)
    else:
        print(f"wrote {info['path']} ({info['format']}); max |difference| from eager {info['max_abs_diff']:.2e}")
    return 0
