"""A LeNet-5-shaped CNN trained on scikit-learn's digits with the NumPy ops alone: no autograd, no PyTorch.

The data: `sklearn.datasets.load_digits`, 1,797 handwritten digits of 8×8 pixels (values 0…16, scaled to
0…1), split 80/20, stratified by class, with a fixed seed. The network keeps LeNet-5's plan at the scale
of an 8×8 image (the images are not padded to 32×32; padding 1 keeps each 3×3 convolution's size):

    conv 1→6, 3×3, pad 1 → ReLU → max-pool 2   (6×4×4)
    conv 6→16, 3×3, pad 1 → ReLU → max-pool 2  (16×2×2)
    flatten (64) → linear 64 → ReLU → linear 10

trained with softmax cross-entropy and SGD with momentum, mini-batches of 32, the learning rate lowered
along a half cosine, epoch by epoch (without the decay the last epochs jump between 94% and 97%).
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from .nn import SGD, Conv2d, CrossEntropyLoss, Flatten, Linear, MaxPool2d, ReLU, Sequential

DEFAULTS = dict(  # the defaults of `train_digits` and `cnnkit scratch-train`
    epochs=20,          # ~97% validation accuracy (96.7–98.6% over seeds 0–9), ~2 s on one CPU core
    lr=0.1,             # SGD's initial step size, lowered along a half cosine to 0 by the last epoch
    momentum=0.9,       # SGD momentum (PyTorch's formulation)
    batch_size=32,      # examples per SGD step
    seed=0,             # initial weights and batch order; the split is fixed (seed 0)
)


def digits_split(val_fraction: float = 0.2, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits as float32 N×1×8×8 in [0, 1]: (x_train, y_train, x_val, y_val), stratified.

    >>> [a.shape for a in digits_split()]
    [(1437, 1, 8, 8), (1437,), (360, 1, 8, 8), (360,)]
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    x_tr, x_val, y_tr, y_val = train_test_split(x, d.target, test_size=val_fraction, stratify=d.target,
                                                random_state=seed)
    return x_tr, y_tr.astype(np.int64), x_val, y_val.astype(np.int64)


def lenet_digits(*, seed: int = 0, dtype=np.float32, num_classes: int = 10) -> Sequential:
    """The LeNet-5-shaped network for 1×8×8 digits (see the module docstring), PyTorch-style initialised.

    >>> lenet_digits()(np.zeros((2, 1, 8, 8), dtype=np.float32)).shape
    (2, 10)
    """
    rng = np.random.default_rng(seed)
    return Sequential(
        Conv2d(1, 6, 3, padding=1, rng=rng, dtype=dtype), ReLU(), MaxPool2d(2),
        Conv2d(6, 16, 3, padding=1, rng=rng, dtype=dtype), ReLU(), MaxPool2d(2),
        Flatten(), Linear(16 * 2 * 2, 64, rng=rng, dtype=dtype), ReLU(), Linear(64, num_classes, rng=rng, dtype=dtype),
    )


def accuracy(model: Sequential, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> float:
    """The fraction of x that the model classifies as y (in eval mode, by batches)."""
    model.eval()
    correct = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    return correct / len(x)


def train_digits(*, epochs: int = DEFAULTS["epochs"], lr: float = DEFAULTS["lr"],
                 momentum: float = DEFAULTS["momentum"], batch_size: int = DEFAULTS["batch_size"],
                 seed: int = DEFAULTS["seed"], progress: bool = False,
                 on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train `lenet_digits` from scratch on the digits split; returns the history and the final accuracy.

    `progress` shows the steps, rate, ETA and loss on stderr (a bar on a terminal, else a line every 10 s:
    cnnkit._progress); `on_epoch` is called with each
    epoch's record {"epoch", "loss", "train_acc", "val_acc"}.

    >>> r = train_digits(epochs=3)  # about a second
    >>> r["val_acc"] > 0.9, len(r["history"])
    (True, 3)
    """
    from ..errors import CnnkitError

    if epochs < 1 or batch_size < 1:
        raise CnnkitError(f"epochs and batch size must be at least 1, got epochs={epochs}, batch_size={batch_size}")
    x_tr, y_tr, x_val, y_val = digits_split()
    model, loss_fn = lenet_digits(seed=seed), CrossEntropyLoss()
    opt = SGD(model.parameters(), lr=lr, momentum=momentum)
    rng = np.random.default_rng(seed)
    steps = (len(x_tr) + batch_size - 1) // batch_size
    bar = None
    if progress:
        import sys

        from .._progress import progress as show_progress

        bar = show_progress(epochs * steps, "scratch-train", "steps", stream=sys.stderr)
    history, start = [], time.perf_counter()
    try:
        for epoch in range(1, epochs + 1):
            opt.lr = lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))  # cosine decay
            model.train()
            order, total = rng.permutation(len(x_tr)), 0.0
            for i in range(0, len(x_tr), batch_size):
                idx = order[i:i + batch_size]
                opt.zero_grad()
                loss = loss_fn(model(x_tr[idx]), y_tr[idx])
                model.backward(loss_fn.backward())
                opt.step()
                total += loss * len(idx)
                if bar is not None:
                    bar.update(1, epoch=epoch, loss=float(loss))
            record = {"epoch": epoch, "loss": total / len(x_tr), "train_acc": accuracy(model, x_tr, y_tr),
                      "val_acc": accuracy(model, x_val, y_val)}
            history.append(record)
            if on_epoch is not None:
                on_epoch(record)
    finally:
        if bar is not None:
            bar.close()
    return {"val_acc": history[-1]["val_acc"], "train_acc": history[-1]["train_acc"],
            "loss": history[-1]["loss"], "epochs": epochs, "seconds": round(time.perf_counter() - start, 2),
            "params": sum(p.data.size for p in model.parameters()), "train_size": len(x_tr),
            "val_size": len(x_val), "lr": lr, "momentum": momentum, "batch_size": batch_size, "seed": seed,
            "history": history}
