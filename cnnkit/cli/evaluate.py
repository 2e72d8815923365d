"""`cnnkit evaluate RUN_DIR --data SPEC`: accuracy, per-class metrics, confusion matrix (table and PNG)."""
from __future__ import annotations

import argparse

NAME = "evaluate"
HELP = "evaluate a trained run on a data split"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="default: the data the run was trained on, split as saved in RUN_DIR/split.json")
    p.add_argument("--split", choices=("test", "val", "train", "all"), default=None,
                   help="default: test when the data has one; else val (the run's data) or all (other data)")
    p.add_argument("--top-k", type=int, default=5, metavar="K")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average the predictions of the image, its shifts by 1/16 of the "
                        "side and (where the run trained with flips) its mirror image")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from .. import api
    from ..metrics import format_report
    from ._common import print_json

    rep = api.evaluate(args.run_dir, args.data, split=args.split, top_k=args.top_k, tta=args.tta)
    if args.json:
        print_json(rep)
        return 0
    print(f"{rep['data']} / {rep['split']}: {rep['n']:,} images ({rep['images']})")
    print(format_report(rep, list(rep["per_class"])))
    print(f"confusion matrix image: {rep['confusion_matrix_png']}")
    print(f"reliability diagram: {rep['reliability_png']}" + (f"; ROC and PR curves: {rep['roc_pr_png']}"
                                                              if "roc_pr_png" in rep else ""))
    return 0
