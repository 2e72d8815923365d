"""Callbacks: progress, per-epoch logging, early stopping, checkpointing, TensorBoard, each one class.

A callback subclasses `Callback` and defines methods named after the trainer's events (`EVENTS`); a
misspelt event name fails at class definition, with a "did you mean".
"""
from __future__ import annotations

import csv
import difflib
import io
import sys
from pathlib import Path

from .._io import atomic_write_text

EVENTS = ("before_fit", "before_epoch", "before_batch", "after_batch", "after_train_epoch", "after_epoch",
          "after_fit")


class Callback:
    """Base class. `trainer` is set when the callback is attached."""

    order = 0
    trainer = None

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        for name in vars(cls):
            if name.startswith(("before_", "after_")) and name not in EVENTS:
                close = difflib.get_close_matches(name, EVENTS, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise TypeError(f"{cls.__name__}.{name} is not a training event.{hint} Events: {', '.join(EVENTS)}")


class ProgressBar(Callback):
    """A tqdm bar per epoch (loss, accuracy, images/s, ETA) and one summary line per epoch."""

    def __init__(self, stream=None, bar: bool | None = None):
        self.stream = stream or sys.stdout
        self.bar_enabled = bar

    def before_epoch(self):
        from tqdm.auto import tqdm

        t = self.trainer
        disable = not (self.bar_enabled if self.bar_enabled is not None else sys.stderr.isatty())
        self.bar = tqdm(total=t.steps_per_epoch, desc=f"epoch {t.epoch}/{t.cfg.epochs}", unit="batch",
                        leave=False, disable=disable, dynamic_ncols=True, file=sys.stderr)

    def after_batch(self):
        t = self.trainer
        self.bar.update(1)
        if t.batch_index % 5 == 0 or t.batch_index == t.steps_per_epoch - 1:
            self.bar.set_postfix(loss=f"{t.running['loss']:.4f}", acc=f"{t.running['acc']:.4f}",
                                 img_s=f"{t.running['images_per_s']:.0f}")

    def after_epoch(self):
        self.bar.close()
        r = self.trainer.history[-1]
        best = " *" if r["epoch"] == self.trainer.best_epoch else ""
        print(f"epoch {r['epoch']:>3}/{self.trainer.cfg.epochs}  train_loss {r['train_loss']:.4f}  "
              f"train_acc {r['train_acc']:.4f}  val_loss {r['val_loss']:.4f}  val_acc {r['val_acc']:.4f}  "
              f"lr {r['lr']:.2e}  {r['images_per_s']:.0f} img/s  {r['seconds']:.1f}s{best}",
              file=self.stream, flush=True)


class EarlyStopping(Callback):
    """Stop when val_acc has not improved for `patience` epochs."""

    def __init__(self, patience: int):
        self.patience = patience

    def after_epoch(self):
        t = self.trainer
        if t.epoch - t.best_epoch >= self.patience:
            t.stop_reason = f"early stop: no better val_acc for {self.patience} epochs (best at epoch {t.best_epoch})"
            t.should_stop = True


class MetricsCSV(Callback):
    """metrics.csv, a row per epoch, rewritten whole (atomically) from the trainer's history."""

    def after_epoch(self):
        hist = self.trainer.history
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(hist[0]))
        w.writeheader()
        w.writerows(hist)
        atomic_write_text(Path(self.trainer.run_dir) / "metrics.csv", buf.getvalue())


class TensorBoard(Callback):
    """TensorBoard event files in the run directory (`tensorboard --logdir RUN_DIR`)."""

    def before_fit(self):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.trainer.run_dir), purge_step=self.trainer.epoch + 1)

    def after_epoch(self):
        r = self.trainer.history[-1]
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s"):
            self.writer.add_scalar(key.replace("_", "/", 1), r[key], r["epoch"])
        self.writer.flush()

    def after_fit(self):
        self.writer.close()


class Checkpoint(Callback):
    """Best weights (model.safetensors + model.json) when val_acc improves; train_state.pt every epoch.

    The state is written last, so a run killed mid-write resumes from the previous whole epoch."""

    order = 10  # after the loggers

    def after_epoch(self):
        t = self.trainer
        if t.best_epoch == t.epoch:
            t.save_best()
        t.save_state()
