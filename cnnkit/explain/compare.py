"""`cnnkit compare`: the lessons' claims about fully connected networks and CNNs, measured on the user's data.

Every model trains with the same budget on the same split from the same seed, without augmentation (so that
robustness to shifts comes from the architecture, not from shifted training images), then is measured:
parameters, multiply-adds, the receptive field of its last stage, training time, validation and test accuracy,
the train–validation gap (overfitting), test accuracy on images shifted by 1, 2, 4 pixels (the mean over
right, left, down, up; zeros come in), and the accuracy of the same model trained and tested on images whose
pixels are all moved by one fixed permutation: a fully connected network treats its inputs as an unordered
list and does not care, a CNN "exploits 2D structure" and does.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import CnnkitError, UnknownNameError

DEFAULT_MODELS = ("mlp", "simplecnn", "lenet5", "resnet18")
SHIFTS = (1, 2, 4)


def check_models(models: Sequence[str], channels: int | None = None, size: tuple[int, int] | None = None) -> None:
    """Unknown names (before anything is read), or models that cannot take C×H×W images, as one clear error."""
    from ..models import create_model, list_models

    for m in models:
        if m not in list_models():
            raise UnknownNameError("model in --models", m, list_models())
    if channels is None:
        return
    for m in models:
        try:
            net = create_model(m, num_classes=2, in_channels=channels, input_size=size)
            net.eval()
            with torch.no_grad():
                net(torch.zeros(2, channels, *size))
        except (ValueError, RuntimeError, CnnkitError) as e:
            first = str(e).splitlines()[0][:200]
            raise CnnkitError(f"{m} cannot take this data's {channels}x{size[0]}x{size[1]} images ({first}); "
                              "give --img-size N with a size it takes, or leave it out of --models") from None


def _permuted(ds, perm: torch.Tensor):
    """The data set with every image's pixels moved by one fixed permutation (the same for every channel)."""
    from ..data.dataset import Split

    def move(s: Split) -> Split:
        x = s.x
        n, c, h, w = x.shape
        return Split(s.y, s.keys, x=x.reshape(n, c, h * w)[:, :, perm].reshape(n, c, h, w).contiguous(),
                     paths=s.paths, origin=s.origin)

    return dataclasses.replace(ds, splits={k: move(v) for k, v in ds.splits.items()})


def _subset_train(ds, max_train: int | None, seed: int):
    """At most `max_train` training images, each class keeping its share (seeded)."""
    if not max_train or len(ds.train) <= max_train:
        return ds
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(ds.train))
    keep, _ = train_test_split(idx, train_size=max_train, stratify=ds.train.y.numpy(), random_state=seed)
    return dataclasses.replace(ds, splits={**ds.splits, "train": ds.train.subset(np.sort(keep))})


@torch.no_grad()
def _accuracy(pred, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((pred.probs(x).argmax(1) == y).float().mean())


def _shifted_accuracy(pred, x: torch.Tensor, y: torch.Tensor, s: int) -> float:
    from ..data.transforms import shift

    return float(np.mean([_accuracy(pred, shift(x, dy, dx), y) for dy, dx in ((0, s), (0, -s), (s, 0), (-s, 0))]))


def _last_rf(model, shape) -> tuple[int | None, int, int]:
    """(receptive field of the last stage in pixels, parameters, multiply-adds) for one C×H×W image."""
    from .summary import summarize

    s = summarize(model, shape)
    stages = list(getattr(model, "stage_names", ()))
    rows = {r.name: r for r in s.layers}
    rf = rows[stages[-1]].receptive_field if stages and stages[-1] in rows else None
    return rf, s.total_params, s.macs


def compare(data: str, models: Sequence[str] = DEFAULT_MODELS, *, epochs: int = 5, seed: int = 0,
            img_size: int | None = None, max_train: int | None = 10_000, out: str | Path | None = None,
            permuted: bool = True, quiet: bool = False, log=None, fit=None, load=None) -> dict:
    """Train each model alike and measure it (see the module docstring). Returns the table as a dict and
    writes OUT/compare.html, OUT/compare.json and a run directory per model (OUT/MODEL, OUT/permuted/MODEL).
    `fit(cfg, data)` trains one run on an ImageData already read and `load(run_dir)` gives its Predictor: the
    API's (`cnnkit.compare`), passed in so that explain/ does not import the API above it."""
    import sys

    from ..data import load_data
    from ..engine.config import TrainConfig
    from .._io import atomic_write_text

    log = log or sys.stdout
    models = list(dict.fromkeys(models))
    if not models:
        raise CnnkitError("--models is empty; give names such as mlp,simplecnn")
    check_models(models)
    if epochs < 1:
        raise CnnkitError(f"--epochs must be at least 1, got {epochs}")
    out = Path(out) if out else Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    try:  # claimed before the data is read: a second compare started at the same second gets its own error
        out.mkdir(parents=True)
        made = True
    except FileExistsError:
        if not out.is_dir() or any(out.iterdir()):
            raise CnnkitError(f"{out} already exists and is not an empty folder; give a new --out folder") from None
        made = False
    try:
        ds = load_data(data, img_size=img_size, seed=seed, mode="memory", log=log)
        check_models(models, ds.channels, ds.size)
    except BaseException:
        if made and not any(out.iterdir()):
            out.rmdir()  # nothing was done: nothing left behind
        raise
    ds = _subset_train(ds, max_train, seed)
    test_name = "test" if "test" in ds.splits else "val"
    h, w = ds.size
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(h * w))
    atomic_write_text(out / "permutation.json", json.dumps({"seed": seed, "height": h, "width": w,
                                                                "permutation": perm.tolist()}))
    variants = [("plain", ds)] + ([("permuted", _permuted(ds, perm))] if permuted else [])
    if not quiet:
        print(f"compare: {', '.join(models)} on {ds.describe()}; {epochs} epochs each, seed {seed}, no "
              f"augmentation; accuracy on {test_name}" + (" (no test split: val)" if test_name == "val" else ""),
              file=log, flush=True)
    rows = []
    for m in models:
        row: dict = {"model": m}
        for kind, d in variants:
            run = out / m if kind == "plain" else out / "permuted" / m
            cfg = TrainConfig(data=data, model=m, epochs=epochs, seed=seed, img_size=img_size, augment="none",
                              out=str(run), report=kind == "plain")
            if not quiet:
                print(f"-- {m} ({kind})", file=log, flush=True)
            result = fit(cfg, d)
            pred = load(result["run_dir"])
            test = d.split(test_name)
            if kind == "permuted":
                row["permuted_acc"] = round(_accuracy(pred, test.x, test.y), 4)
                row["permuted_run"] = result["run_dir"]
                continue
            rf, params, macs = _last_rf(pred.model, (ds.channels, h, w))
            row.update(params=params, macs=macs, receptive_field=rf, seconds=result["seconds"],
                       val_acc=round(_accuracy(pred, d.val.x, d.val.y), 4),
                       test_acc=round(_accuracy(pred, test.x, test.y), 4),
                       train_acc=round(_accuracy(pred, d.train.x, d.train.y), 4), run_dir=result["run_dir"])
            row["gap"] = round(row["train_acc"] - row["val_acc"], 4)
            for s in SHIFTS:
                row[f"shift{s}_acc"] = round(_shifted_accuracy(pred, test.x, test.y, s), 4)
        rows.append(row)
        if not quiet:
            print("   " + _line(row), file=log, flush=True)
    result = {"data": ds.describe(), "spec": data, "epochs": epochs, "seed": seed, "max_train": max_train,
              "train_images": len(ds.train), "evaluated_on": test_name, "augment": "none", "models": rows,
              "out": str(out)}
    atomic_write_text(out / "compare.json", json.dumps(result, indent=1))
    atomic_write_text(out / "compare.html", _page(result))
    result["page"] = str(out / "compare.html")
    return result


COLUMNS = [("model", "model", "{}"), ("params", "params", "{:,}"), ("macs", "MACs", "{:,}"),
           ("receptive_field", "RF", "{}"), ("seconds", "train s", "{:.1f}"), ("val_acc", "val", "{:.4f}"),
           ("test_acc", "test", "{:.4f}"), ("gap", "train-val gap", "{:+.4f}"),
           *[(f"shift{s}_acc", f"shift {s}px", "{:.4f}") for s in SHIFTS], ("permuted_acc", "permuted", "{:.4f}")]


def _cell(row: dict, key: str, form: str) -> str:
    v = row.get(key)
    return "n/a" if v is None else form.format(v)


def _line(row: dict) -> str:
    return ", ".join(f"{label} {_cell(row, k, f)}" for k, label, f in COLUMNS[1:])


def format_table(result: dict) -> str:
    """The comparison as a Markdown table."""
    lines = ["| " + " | ".join(label for _, label, _ in COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for row in result["models"]:
        lines.append("| " + " | ".join(_cell(row, k, f) for k, _, f in COLUMNS) + " |")
    return "\n".join(lines)


def _figure(result: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["models"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
    keys = ["test_acc", *[f"shift{s}_acc" for s in SHIFTS], "permuted_acc"]
    labels = ["plain", *[f"shifted {s}px" for s in SHIFTS], "pixels permuted"]
    width = 0.8 / len(keys)
    for i, (k, lab) in enumerate(zip(keys, labels)):
        a.bar(np.arange(len(rows)) + i * width, [r.get(k) or 0 for r in rows], width, label=lab)
    a.set_xticks(np.arange(len(rows)) + 0.4 - width / 2, [r["model"] for r in rows])
    a.set_ylabel(f"accuracy on {result['evaluated_on']}")
    a.set_ylim(0, 1)
    a.legend(fontsize=8, loc="lower left")
    a.set_title("translation and pixel order")
    for r in rows:
        b.scatter(r["params"], r["test_acc"], s=40)
        b.annotate(r["model"], (r["params"], r["test_acc"]), textcoords="offset points", xytext=(5, 5))
    b.set_xscale("log")
    b.set_xlabel("parameters")
    b.set_ylabel("test accuracy")
    b.set_title("parameters against accuracy")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _page(result: dict) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r, k, f))}</td>" for k, _, f in COLUMNS) + "</tr>"
                   for r in result["models"])
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>cnnkit compare</title>'
            "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:"
            "collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:"
            "left}img{max-width:100%}</style></head><body>"
            f"<h1>Fully connected against convolutional, on {html.escape(result['data'])}</h1>"
            f"<p>{result['epochs']} epochs each on {result['train_images']:,} training images, seed "
            f"{result['seed']}, no augmentation; accuracy on the {result['evaluated_on']} split. Shifted: the mean "
            "over moving the images right, left, down and up (zeros come in). Permuted: the same model trained and "
            "tested on images whose pixels were moved by one fixed permutation (permutation.json). Gap: training "
            "accuracy minus validation accuracy. RF: the receptive field of the last stage, in pixels.</p>"
            f"<table><tr>{head}</tr>{body}</table>"
            f'<p><img alt="accuracy under shifts and permutation; parameters against accuracy" '
            f'src="data:image/png;base64,{_figure(result)}"></p></body></html>')
