"""`finetune_report(data, out=DIR)`: is a pretrained network worth it on *your* images, and from how many?

Three ways to train the same architecture, each at 10, 20, 50 and 100 training images per class:
- **linear probe**: ImageNet weights, frozen; only a new head learns (`--freeze-epochs` = `--epochs`);
- **fine-tune**: ImageNet weights, cnnkit's schedule (head first, then everything at discriminative rates);
- **from scratch**: the same network, random weights.

The data is read once, at the pretrained network's input (ImageNet statistics, small images upsampled), so
the three see the same pixels. The training subsets are seeded and stratified (k per class); validation is
the data's own split, capped at `val_per_class` per class (seeded) to keep the many runs affordable, and
chooses each run's best epoch; the reported accuracy is on the test split when the data has one, else on
that validation split (the report then says it is a validation number, optimistic by the choice of epoch).
Writes DIR/finetune.json, DIR/finetune.html (table and learning curve, self-contained) and one run directory
per training (DIR/runs/<strategy>-<k>/), which `cnnkit evaluate` and `cnnkit explain` read like any run.
"""
from __future__ import annotations

import dataclasses
import html
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from .._io import atomic_write_text
from ..errors import CnnkitError

STRATEGIES = ("linear probe", "fine-tune", "from scratch")
DEFAULT_SHOTS = (10, 20, 50, 100)


def _per_class(y: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Indices of k items of each class (the first k of a seeded shuffle), sorted."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        out.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    return torch.cat(out).sort().values


def check_options(model: str, shots: Sequence[int], out: str | Path, epochs: int | None) -> None:
    """Every mistake before any image is read: a model without weights, bad shots, an output that is a file."""
    from ..models.pretrained import weight_choices

    weight_choices(model)  # names the models that have weights
    if not shots or not all(isinstance(k, int) and k >= 1 for k in shots):
        raise CnnkitError(f"--shots must be positive whole numbers of images per class, e.g. 10,20,50; got {shots}")
    if epochs is not None and epochs < 1:
        raise CnnkitError(f"--epochs must be at least 1, got {epochs}")
    if Path(out).exists() and not Path(out).is_dir():
        raise CnnkitError(f"--out {out} is a file; give a folder")


def finetune_report(data: str, *, out: str | Path, model: str = "mobilenet_v2",
                    shots: Sequence[int] = DEFAULT_SHOTS, epochs: int | None = None, seed: int = 0,
                    img_size: int | None = None, val_per_class: int = 100, log=None) -> dict:
    from ..api import _pretrained_input
    from ..data import load_data
    from ..engine.config import TrainConfig
    from ..engine.trainer import Trainer
    from ..run import Predictor
    from ..run import format as fmt

    log = log or sys.stderr
    shots = sorted(set(int(k) for k in shots))
    check_options(model, shots, out, epochs)
    out = Path(out)
    stats, min_size = _pretrained_input(TrainConfig(model=model, pretrained=True))
    ds = load_data(data, img_size=img_size, seed=seed, min_size=min_size, log=log, **stats)
    val = ds.val.subset(_per_class(ds.val.y, val_per_class, seed))
    on_test = "test" in ds.splits
    scored = ds.splits["test"] if on_test else val
    counts = torch.bincount(ds.train.y, minlength=len(ds.classes))
    smallest = int(counts.min())
    used = [k for k in shots if k <= smallest]
    notes = []
    if len(used) < len(shots):
        notes.append(f"left out {', '.join(str(k) for k in shots if k > smallest)} per class: the smallest class "
                     f"has {smallest} training images")
    if not used:
        raise CnnkitError(f"{data}: the smallest class has {smallest} training images, fewer than any of --shots "
                          f"{','.join(map(str, shots))}")
    if len(val) < len(ds.val):
        notes.append(f"validation capped at {val_per_class} images per class ({len(val):,} of {len(ds.val):,})")
    if not on_test:
        notes.append("the data has no test split: accuracies are on the validation split that also chose each "
                     "run's best epoch, so they are optimistic; add DIR/test/ for an unbiased number")
    print(f"finetune-report: {ds.describe()}; {model}, {len(used) * 3} trainings ({', '.join(STRATEGIES)} × "
          f"{', '.join(map(str, used))} per class)", file=log, flush=True)
    rows = []
    for k in used:
        train = ds.train.subset(_per_class(ds.train.y, k, seed))
        sub = dataclasses.replace(ds, splits={"train": train, "val": val})
        for strategy in STRATEGIES:
            opts = {"linear probe": dict(pretrained=True), "fine-tune": dict(pretrained=True),
                    # the pretrained network's very architecture: its stem too, even on small images
                    "from scratch": dict(pretrained=False, model_kwargs={"small_input": False})}[strategy]
            cfg = TrainConfig(data=data, model=model, seed=seed, epochs=epochs, report=False, **opts)
            if strategy == "linear probe":  # every epoch head-only; epochs as resolve would choose them
                from ..engine.config import resolve

                cfg = cfg.replace(freeze_epochs=resolve(cfg, n_train=len(train), size=ds.size).epochs)
            run_dir = out / "runs" / f"{strategy.replace(' ', '-')}-{k}"
            fmt.check_unused(run_dir)
            t0 = time.perf_counter()
            trainer = Trainer(cfg, sub, run_dir=run_dir, callbacks=_checkpoint())
            result = trainer.fit()
            seconds = time.perf_counter() - t0
            pred = Predictor.from_run(run_dir)
            acc = float((pred.probs_split(scored).argmax(1) == scored.y).float().mean())
            rows.append({"strategy": strategy, "per_class": k, "train_images": len(train),
                         "accuracy": round(acc, 4), "val_acc": result["val_acc"], "epochs": trainer.cfg.epochs,
                         "best_epoch": result["best_epoch"], "seconds": round(seconds, 1), "run_dir": str(run_dir)})
            print(f"  {strategy:12s} {k:>4d}/class: {'test' if on_test else 'val'} accuracy {acc:.4f} "
                  f"({seconds:.0f} s)", file=log, flush=True)
    report = {"data": ds.spec, "model": model, "seed": seed, "input": [ds.channels, *ds.size],
              "scored_on": f"test ({len(scored):,} images)" if on_test else f"val ({len(scored):,} images)",
              "validation_images": len(val), "rows": rows, "notes": notes, "reading": _reading(rows)}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "finetune.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "finetune.html", _html(report))
    report["files"] = [str(out / "finetune.json"), str(out / "finetune.html")]
    return report


def _checkpoint():
    from ..engine import callbacks as cbs

    return [cbs.Checkpoint()]


def _reading(rows: list[dict]) -> str:
    """One plain sentence per end of the curve: the gap between fine-tuning and training from scratch."""
    acc = {(r["strategy"], r["per_class"]): r["accuracy"] for r in rows}
    ks = sorted({r["per_class"] for r in rows})
    parts = []
    for k in (ks[0], ks[-1]) if len(ks) > 1 else ks:
        best = max(STRATEGIES, key=lambda s: acc[(s, k)])
        gap = acc[("fine-tune", k)] - acc[("from scratch", k)]
        parts.append(f"at {k} images per class, {best} is best ({acc[(best, k)]:.1%}); fine-tuning is "
                     f"{abs(gap) * 100:.1f} points {'above' if gap >= 0 else 'below'} training from scratch")
    return "; ".join(parts) + "."


def _curve(rows: list[dict], scored_on: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    for strategy, style in zip(STRATEGIES, ("s--", "o-", "^:")):
        pts = sorted((r["per_class"], r["accuracy"]) for r in rows if r["strategy"] == strategy)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=strategy)
    ks = sorted({r["per_class"] for r in rows})
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("training images per class")
    ax.set_ylabel(f"accuracy ({scored_on.split(' ')[0]})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def _html(rep: dict) -> str:
    from .report import CSS, _fig

    ks = sorted({r["per_class"] for r in rep["rows"]})
    acc = {(r["strategy"], r["per_class"]): r for r in rep["rows"]}
    head = "".join(f"<th>{k}/class</th>" for k in ks)
    body = "".join(
        f"<tr><td>{html.escape(s)}</td>"
        + "".join(f"<td>{acc[(s, k)]['accuracy']:.4f}</td>" for k in ks) + "</tr>" for s in STRATEGIES)
    secs = "".join(
        f"<tr><td>{html.escape(s)}</td>" + "".join(f"<td>{acc[(s, k)]['seconds']:.0f} s</td>" for k in ks) + "</tr>"
        for s in STRATEGIES)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in rep["notes"])
    c, h, w = rep["input"]
    title = f"Pretrained or not: {rep['model']} on {rep['data']}"
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body><header><h1>{html.escape(title)}</h1><p>input {c}x{h}x{w}, seed "
            f"{rep['seed']}, accuracy on {html.escape(rep['scored_on'])}</p></header><main>"
            f"<section><h2>Accuracy by training images per class</h2><p>{html.escape(rep['reading'])}</p>"
            f"<table><tr><th>strategy</th>{head}</tr>{body}</table>"
            f"{_fig(_curve(rep['rows'], rep['scored_on']), 'learning curve: accuracy against images per class')}"
            f"<h3>Training time</h3><table><tr><th>strategy</th>{head}</tr>{secs}</table>"
            f"<p class='note'>linear probe: ImageNet weights frozen, a new head trained; fine-tune: head first, then "
            f"every layer at discriminative learning rates; from scratch: the same network, random weights. Each "
            f"run's best epoch is chosen on validation ({rep['validation_images']:,} images).</p>"
            + (f"<ul class='note'>{notes}</ul>" if notes else "") + "</section></main></body></html>\n")

