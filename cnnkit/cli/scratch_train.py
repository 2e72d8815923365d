"""`cnnkit scratch-train`: train the LeNet-5-shaped network of `cnnkit.ops.scratch` on scikit-learn's digits
with the NumPy ops only: every gradient comes from the hand-written backward passes, none from autograd."""
from __future__ import annotations

import argparse

from ._common import nonneg_float, positive_float, positive_int, seed

NAME = "scratch-train"
HELP = "train a small CNN on scikit-learn's digits with cnnkit's NumPy ops: hand-written backward passes, no autograd"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..ops.scratch import DEFAULTS

    d = DEFAULTS
    p.add_argument("--epochs", type=positive_int, default=d["epochs"], help=f"passes over the data (default: {d['epochs']})")
    p.add_argument("--lr", type=positive_float, default=d["lr"],
                   help=f"initial learning rate, decayed along a half cosine (default: {d['lr']})")
    p.add_argument("--momentum", type=nonneg_float, default=d["momentum"], help=f"SGD momentum (default: {d['momentum']})")
    p.add_argument("--batch-size", type=positive_int, default=d["batch_size"],
                   help=f"examples per step (default: {d['batch_size']})")
    p.add_argument("--seed", type=seed, default=DEFAULTS["seed"], help="initial weights and batch order (default: 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object (with the per-epoch history)")


def run(args: argparse.Namespace) -> int:
    from .._progress import write
    from ..errors import CnnkitError
    from ..ops.scratch import train_digits
    from ._common import print_json

    if args.lr <= 0 or args.momentum < 0:
        raise CnnkitError(f"--lr must be positive and --momentum at least 0, got {args.lr} and {args.momentum}")
    for flag, v in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if v < 1:
            raise CnnkitError(f"{flag} must be at least 1, got {v}")

    def report(r: dict) -> None:
        if not args.json:
            write(f"epoch {r['epoch']:3d}  loss {r['loss']:.4f}  train_acc {r['train_acc']:.4f}  "
                  f"val_acc {r['val_acc']:.4f}")

    r = train_digits(epochs=args.epochs, lr=args.lr, momentum=args.momentum, batch_size=args.batch_size,
                     seed=args.seed, progress=True, on_epoch=report)
    if args.json:
        print_json(r)
        return 0
    print(f"digits: {r['train_size']} train / {r['val_size']} val images, {r['params']:,} parameters, "
          f"{r['epochs']} epochs in {r['seconds']:.1f} s")
    print(f"val_acc={r['val_acc']:.4f}")
    return 0
