"""`cnnkit compare --data SPEC --models mlp,simplecnn,lenet5,resnet18`: the lessons' claims about fully connected
networks and CNNs, measured on your data: each model trained alike, then one table (parameters, MACs, receptive
field, time, val/test accuracy, overfitting, accuracy on shifted images and on pixel-permuted images) and one
HTML page with its plots (OUT/compare.html). The run directories are kept (OUT/MODEL, OUT/permuted/MODEL).
"""
from __future__ import annotations

import argparse

from ._common import img_size, nonneg_int, out_dir, positive_int, seed

NAME = "compare"
HELP = "train several models alike and compare them: parameters, accuracy, overfitting, shifts, pixel order"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="digits", metavar="SPEC", help="the data, as for train (default digits)")
    p.add_argument("--models", default="mlp,simplecnn,lenet5,resnet18", metavar="A,B,...",
                   help="comma-separated model names (default mlp,simplecnn,lenet5,resnet18)")
    p.add_argument("--epochs", type=positive_int, default=5, metavar="N", help="epochs for every model (default 5)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--img-size", type=img_size, default=None, metavar="N", help="resize images to N×N (default: as is)")
    p.add_argument("--max-train", type=nonneg_int, default=10_000, metavar="N",
                   help="train on at most N images, each class keeping its share (default 10000; 0: all)")
    p.add_argument("--no-permuted", action="store_true", help="skip the pixel-permuted training (halves the time)")
    p.add_argument("--out", default=None, metavar="DIR", type=out_dir, help="a new folder for the runs and compare.html")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    import sys

    from .. import api
    from ..errors import CnnkitError
    from ..explain.compare import format_table
    from ._common import check_img_size, print_json, printable

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.max_train < 0:
        raise CnnkitError(f"--max-train must be 0 (all) or more, got {args.max_train}")
    if args.img_size is not None and args.img_size < 4:
        raise CnnkitError(f"--img-size must be at least 4, got {args.img_size}")
    if args.img_size is not None:
        check_img_size(args.img_size, batch=64)  # a batch as train's defaults make it, before any image is resized
    result = api.compare(args.data, models, epochs=args.epochs, seed=args.seed, img_size=args.img_size,
                         max_train=args.max_train or None, out=args.out, permuted=not args.no_permuted,
                         quiet=False, log=sys.stderr if args.json else sys.stdout)
    if args.json:
        print_json(result)
    else:
        print(format_table(result))
        print(f"page: {printable(result['page'])}")
    return 0
