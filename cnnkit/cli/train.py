"""`cnnkit train --data SPEC`: train a classifier; the run directory holds everything it made."""
from __future__ import annotations

import argparse

NAME = "train"
HELP = "train an image classifier (defaults chosen from the data)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..data.transforms import AUGMENTS
    from ..engine.config import OPTIMIZERS, PRESETS, SCHEDULERS

    p.add_argument("--data", default=None, metavar="SPEC",
                   help="digits | fashion-mnist:DIR | mnist:DIR | cifar10:DIR | folder:DIR | csv:FILE (default: digits)")
    p.add_argument("--preset", choices=tuple(PRESETS), default="default",
                   help="fast: the quickest route to a good model on a CPU (explicit options still win)")
    p.add_argument("--model", default=None, help="a registered model (default: chosen from the image size)")
    p.add_argument("--epochs", type=int, default=None, metavar="N")
    p.add_argument("--batch-size", type=int, default=None, metavar="N")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw")
    p.add_argument("--scheduler", choices=SCHEDULERS, default="onecycle")
    p.add_argument("--augment", choices=AUGMENTS, default=None)
    p.add_argument("--img-size", type=int, default=None, metavar="PX", help="resize images to PX×PX")
    p.add_argument("--val-fraction", type=float, default=None, metavar="F",
                   help="fraction of the training images held out for validation when the data has no val split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--out", default=None, metavar="RUN_DIR", help="run directory (default: runs/<data>-<model>-<time>)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a stopped run")
    p.add_argument("--patience", type=int, default=None, metavar="N", help="stop after N epochs without improvement")
    p.add_argument("--on-bad-image", choices=("fail", "skip"), default="fail",
                   help="unreadable images: fail (list them all, the default) or skip them")
    p.add_argument("--download", action="store_true", help="download MNIST / Fashion-MNIST / CIFAR-10 when missing")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="skip report.html at the end (cnnkit report RUN_DIR writes it later)")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end (logs go to stderr)")


def run(args: argparse.Namespace) -> int:
    import sys

    from .. import api
    from ..errors import CnnkitError
    from ._common import print_json

    log = sys.stderr if args.json else sys.stdout
    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k in ("model", "epochs", "batch_size", "lr", "img_size", "out")
                 if getattr(args, k) is not None]
        if given:
            raise CnnkitError(f"--resume continues a run with its saved settings; drop {', '.join(given)}")
        result = api.resume(args.resume, data=args.data, log_stream=log)
    else:
        options = {k: getattr(args, k) for k in ("preset", "model", "epochs", "batch_size", "lr", "optimizer", "scheduler",
                                                 "augment", "img_size", "val_fraction", "seed", "device", "out",
                                                 "patience", "on_bad_image", "download", "report")}
        result = api.train(args.data or "digits", log_stream=log, **options)
    if result.get("stopped"):
        print(result["stopped"], file=log)
    print(f"run directory: {result['run_dir']} (model.safetensors, model.json, metrics.csv, train_state.pt, "
          "TensorBoard events)", file=log)
    if args.json:
        print_json(result)
    else:
        print(f"val_acc={result['val_acc']:.4f}")
    return 0
