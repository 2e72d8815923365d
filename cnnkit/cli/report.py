"""`cnnkit report RUN_DIR`: (re)build the run's report.html, one self-contained file for any browser."""
from __future__ import annotations

import argparse

NAME = "report"
HELP = "build a run's report.html: curves, confusion matrix, per-class metrics, worst images with Grad-CAM"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--data", default=None, metavar="SPEC", help="default: the data the run was trained on")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..explain.report import build_report
    from ._common import print_json

    info = build_report(args.run_dir, args.data)
    if args.json:
        print_json(info)
        return 0
    print(f"{info['model']} on {info['data']}: {info['split']} accuracy {info['accuracy']:.4f}, "
          f"validation accuracy {info['val_accuracy']:.4f}")
    print(f"report: {info['report']} ({info['bytes'] / 1e6:.1f} MB; open it in a browser)")
    return 0
