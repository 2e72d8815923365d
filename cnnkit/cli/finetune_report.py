"""`cnnkit finetune-report --data SPEC --out DIR`: linear probe vs fine-tune vs from scratch, on your data.

Trains the three (cnnkit/explain/finetune.py) at 10, 20, 50 and 100 images per class and writes
DIR/finetune.html (a table and the learning curve) and DIR/finetune.json.
"""
from __future__ import annotations

import argparse

from ._common import img_size, out_dir, positive_int, seed

NAME = "finetune-report"
HELP = "is a pretrained network worth it on your data? linear probe vs fine-tune vs scratch, 10 to 100 per class"


def _shots(text: str) -> list[int]:
    parts = [p.strip() for p in text.replace(" ", ",").split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of positive whole numbers, e.g. 10,20,50,100")
    return [int(p) for p in parts]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="SPEC", help="as for cnnkit train (a folder, a CSV, digits, ...)")
    p.add_argument("--out", required=True, metavar="DIR", type=out_dir, help="folder for finetune.html, finetune.json and the runs")
    p.add_argument("--model", default="mobilenet_v2", help="a model with ImageNet weights (default mobilenet_v2)")
    p.add_argument("--shots", type=_shots, default=[10, 20, 50, 100], metavar="K,K,...",
                   help="training images per class (default 10,20,50,100)")
    p.add_argument("--epochs", type=positive_int, default=None, metavar="N", help="per training; default: cnnkit's for the size")
    p.add_argument("--img-size", type=img_size, default=None, metavar="PX",
                   help="default: the images' own size, small ones upsampled to 96")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..explain.finetune import STRATEGIES, finetune_report
    from ._common import check_img_size, print_json, printable

    if args.img_size is not None:
        check_img_size(args.img_size, batch=64)  # before any image is resized
    rep = finetune_report(args.data, out=args.out, model=args.model, shots=args.shots, epochs=args.epochs,
                          seed=args.seed, img_size=args.img_size, log=sys.stderr)
    if args.json:
        print_json(rep)
        return 0
    ks = sorted({r["per_class"] for r in rep["rows"]})
    acc = {(r["strategy"], r["per_class"]): r["accuracy"] for r in rep["rows"]}
    print(f"{rep['model']} on {printable(rep['data'])}, accuracy on {rep['scored_on']}:")
    print(f"{'':14s}" + "".join(f"{str(k) + '/class':>11s}" for k in ks))
    for s in STRATEGIES:
        print(f"{s:14s}" + "".join(f"{acc[(s, k)]:>11.4f}" for k in ks))
    print(rep["reading"])
    for note in rep["notes"]:
        print(f"note: {note}")
    print(f"report: {printable(rep['files'][1])}")
    return 0
