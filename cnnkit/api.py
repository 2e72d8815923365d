"""The Python API under the CLI: `train`, `resume`, `evaluate`, `load_model`.

>>> import cnnkit, tempfile
>>> result = cnnkit.train(data='digits', epochs=1, out=tempfile.mkdtemp() + '/run', quiet=True)
>>> sorted(result)[:3]
['best_epoch', 'data', 'epochs']
>>> model = cnnkit.load_model(result['run_dir'])
>>> model.classes[:3]
['0', '1', '2']
"""
from __future__ import annotations

import sys
import time
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .data import load_data
from .data.images import open_image, to_array
from .data.transforms import normalize
from .engine import callbacks as cbs
from .engine import checkpoint as ckpt
from .engine.config import TrainConfig
from .engine.trainer import Trainer, pick_device
from .errors import CnnkitError


def _default_run_dir(cfg: TrainConfig, data_name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in data_name)
    base = Path("runs") / f"{safe}-{cfg.model}-{stamp}"
    path, i = base, 2
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def _callbacks(cfg: TrainConfig, quiet: bool, log_stream) -> list[cbs.Callback]:
    out: list[cbs.Callback] = [cbs.MetricsCSV(), cbs.TensorBoard(), cbs.Checkpoint()]
    if not quiet:
        out.insert(0, cbs.ProgressBar(stream=log_stream))
    if cfg.patience:
        out.append(cbs.EarlyStopping(cfg.patience))
    return out


def train(data: str = "digits", *, quiet: bool = False, log_stream=None, callbacks: Sequence[cbs.Callback] = (),
          **options) -> dict:
    """Train a model; every option is a `TrainConfig` field (model, epochs, lr, …). Returns the result dict:
    val_acc (best), epochs, seconds (from the call to the last checkpoint), run_dir, …"""
    start = time.perf_counter()
    names = {f.name for f in fields(TrainConfig)}
    bad = sorted(set(options) - names)
    if bad:
        import difflib

        close = difflib.get_close_matches(bad[0], names, n=1)
        raise CnnkitError(f"unknown training option {bad[0]!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
    from .engine.config import apply_preset

    cfg = apply_preset(TrainConfig(data=data, **options))
    if cfg.model is not None:
        from .models import list_models
        from .errors import UnknownNameError

        if cfg.model not in list_models():
            raise UnknownNameError("model", cfg.model, list_models())
    if cfg.out and (Path(cfg.out) / ckpt.META).exists():
        raise CnnkitError(f"{cfg.out} already holds a run; pick another --out, or --resume {cfg.out} to continue it")
    ds = load_data(cfg.data, img_size=cfg.img_size, val_fraction=cfg.val_fraction, seed=cfg.seed,
                   on_bad_image=cfg.on_bad_image, max_pixels=cfg.max_pixels, download=cfg.download)
    log = log_stream or sys.stdout
    if not quiet:
        print(ds.describe(), file=log, flush=True)
    from .engine.config import resolve

    resolved = resolve(cfg, n_train=len(ds.train), size=ds.size)  # the Trainer's resolve() leaves it as it is
    run_dir = Path(cfg.out) if cfg.out else _default_run_dir(resolved, ds.name)
    trainer = Trainer(resolved, ds, run_dir=run_dir, callbacks=[*_callbacks(resolved, quiet, log), *callbacks])
    if not quiet:
        t = trainer.cfg
        print(f"model {t.model} ({sum(p.numel() for p in trainer.model.parameters()):,} params) on {trainer.device}, "
              f"{t.epochs} epochs, batch {t.batch_size}, {t.optimizer} lr {t.lr:g}, {t.scheduler}, "
              f"augment {t.augment}; run dir {run_dir}", file=log, flush=True)
    result = trainer.fit()
    result["seconds"] = round(time.perf_counter() - start, 2)  # start to the last checkpoint
    if trainer.cfg.report and trainer.best_epoch:
        _write_report(result, run_dir, ds, log)
    return result


def resume(run_dir: str | Path, *, data: str | None = None, quiet: bool = False, log_stream=None,
           callbacks: Sequence[cbs.Callback] = ()) -> dict:
    """Continue a run from its train_state.pt (same config; `data` may point at a moved data folder)."""
    start = time.perf_counter()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CnnkitError(f"--resume {run_dir}: no such run directory")
    state = ckpt.load_state(run_dir / ckpt.STATE)
    cfg = TrainConfig.from_dict(state["config"])
    if data:
        cfg = cfg.replace(data=data)
    if int(state["epoch"]) >= cfg.epochs:
        raise CnnkitError(f"{run_dir} already finished its {cfg.epochs} epochs; nothing to resume")
    ds = load_data(cfg.data, img_size=cfg.img_size, val_fraction=cfg.val_fraction, seed=cfg.seed,
                   on_bad_image=cfg.on_bad_image, max_pixels=cfg.max_pixels)
    log = log_stream or sys.stdout
    trainer = Trainer(cfg, ds, run_dir=run_dir, callbacks=[*_callbacks(cfg, quiet, log), *callbacks])
    trainer.load_state(state)
    if not quiet:
        print(f"resuming {run_dir} after epoch {trainer.epoch}/{cfg.epochs} (best val_acc "
              f"{trainer.best_val_acc:.4f} at epoch {trainer.best_epoch})", file=log, flush=True)
    result = trainer.fit()
    result["seconds"] = round(time.perf_counter() - start, 2)
    if trainer.cfg.report and trainer.best_epoch:
        _write_report(result, run_dir, ds, log)
    return result


class TrainedModel:
    """A trained model with everything needed to use it: classes and preprocessing travel with it.

    `predict(images)` takes file paths, PIL images or C×H×W uint8 arrays and returns, per image, the
    top-k (class, probability) pairs.
    """

    def __init__(self, run_dir: str | Path, device: str = "cpu", engine: str = "torch"):
        if engine not in ("torch", "onnx"):
            raise CnnkitError(f"--engine {engine!r} is not one of torch, onnx")
        self.engine = engine
        self.run_dir = Path(run_dir)
        self.meta = ckpt.read_meta(self.run_dir)
        self.classes: list[str] = list(self.meta["classes"])
        inp = self.meta["input"]
        self.channels, self.size = int(inp["channels"]), tuple(int(v) for v in inp["size"])
        self.mean, self.std = inp["mean"], inp["std"]
        self.device = pick_device(device)
        self.model = ckpt.build_model(self.meta)
        ckpt.load_weights(self.model, self.run_dir / ckpt.WEIGHTS)
        self.model.to(self.device).eval()
        self.session = self._onnx_session() if engine == "onnx" else None

    def _onnx_session(self):
        """RUN_DIR/model.onnx, exported (and checked against eager) when missing or older than the weights."""
        from .export import export_model, onnx_session

        onnx_path = self.run_dir / "model.onnx"
        weights = self.run_dir / ckpt.WEIGHTS
        if not onnx_path.is_file() or onnx_path.stat().st_mtime < weights.stat().st_mtime:
            export_model(self.model, self.channels, self.size, onnx_path, "onnx")
        return onnx_session(onnx_path)

    def preprocess(self, images) -> torch.Tensor:
        """Paths / PIL images / uint8 arrays → the normalised N×C×H×W batch, exactly as in training."""
        arrays = []
        for im in images:
            if isinstance(im, (str, Path)):
                im = open_image(im)
            if isinstance(im, np.ndarray):
                a = im if im.ndim == 3 else im[None]
                if a.shape != (self.channels, *self.size):
                    raise CnnkitError(f"array of shape {a.shape} does not match the model's input "
                                      f"{(self.channels, *self.size)}")
                arrays.append(a.astype(np.uint8))
            else:
                arrays.append(to_array(im, self.channels, self.size))
        x = torch.from_numpy(np.stack(arrays)).to(self.device)
        return normalize(x, self.mean, self.std)

    @torch.no_grad()
    def predict_proba(self, images) -> torch.Tensor:
        x = self.preprocess(images)
        if self.session is not None:
            logits = torch.from_numpy(self.session.run(None, {self.session.get_inputs()[0].name: x.cpu().numpy()})[0])
        else:
            logits = self.model(x)
        return torch.softmax(logits.float(), 1).cpu()

    def predict(self, images, top_k: int = 1) -> list[list[tuple[str, float]]]:
        probs = self.predict_proba(images)
        k = max(1, min(top_k, len(self.classes)))
        top = probs.topk(k, dim=1)
        return [[(self.classes[i], float(p)) for p, i in zip(ps.tolist(), ix.tolist())]
                for ps, ix in zip(top.values, top.indices)]


def load_model(run_dir: str | Path, device: str = "cpu", engine: str = "torch") -> TrainedModel:
    """Load a run directory's best model (safetensors weights + JSON metadata; no pickle).
    `engine='onnx'` runs it with ONNX Runtime (exporting RUN_DIR/model.onnx first if needed)."""
    return TrainedModel(run_dir, device=device, engine=engine)


def load_run_data(tm: TrainedModel, spec: str | None = None):
    """The data a run was trained on (or `spec`), loaded as in training: the same split seed, validation
    fraction, size and normalisation, checked against the model's classes and input."""
    train_cfg = tm.meta.get("train", {})
    spec = spec or tm.meta.get("data", {}).get("spec")
    if not spec:
        raise CnnkitError(f"{tm.run_dir}/model.json names no data set; pass one (--data SPEC)")
    ds = load_data(spec, img_size=tm.size[0] if tm.size[0] == tm.size[1] else None,
                   val_fraction=tm.meta.get("data", {}).get("val_fraction"), seed=int(train_cfg.get("seed", 0)),
                   on_bad_image=train_cfg.get("on_bad_image", "fail"), mean=tm.mean, std=tm.std)
    check_run_data(ds, tm)
    return ds


def check_run_data(ds, tm: TrainedModel) -> None:
    """The data must have the model's classes and input shape."""
    if ds.classes != tm.classes:
        raise CnnkitError(f"the data's classes {ds.classes[:5]}… differ from the model's {tm.classes[:5]}…")
    if (ds.channels, *ds.size) != (tm.channels, *tm.size):
        raise CnnkitError(f"the data is {ds.channels}x{ds.size[0]}x{ds.size[1]}, the model takes "
                          f"{tm.channels}x{tm.size[0]}x{tm.size[1]}")


def _write_report(result: dict, run_dir: Path, ds, log) -> None:
    """report.html at the end of a run. The run is already saved: a report problem is a warning, not a failure."""
    from .explain.report import write_report

    try:
        result["report"] = str(write_report(run_dir, data=ds))
    except CnnkitError as e:
        print(f"warning: report.html not written: {e}", file=log)


def evaluate(run_dir: str | Path, data: str | None = None, *, split: str | None = None, top_k: int = 5,
             plot: bool = True) -> dict:
    """Metrics of a run's best model on a split (default: test if the data has one, else val)."""
    from .metrics import classification_report, plot_confusion_matrix

    tm = load_model(run_dir)
    ds = load_run_data(tm, data)
    split = split or ("test" if "test" in ds.splits else "val")
    s = ds.split(split)
    probs = []
    with torch.no_grad():
        for i in range(0, len(s), 512):
            x = normalize(s.x[i:i + 512].to(tm.device), tm.mean, tm.std)
            probs.append(torch.softmax(tm.model(x).float(), 1).cpu())
    probs_t = torch.cat(probs)
    rep = classification_report(s.y.numpy(), probs_t.numpy(), tm.classes, top_k=top_k)
    rep.update(split=split, data=ds.spec, run_dir=str(run_dir))
    if plot:
        png = Path(run_dir) / f"confusion_matrix_{split}.png"
        plot_confusion_matrix(rep["confusion_matrix"], tm.classes, png,
                              title=f"{tm.meta['model']['name']} on {ds.name} {split}: accuracy {rep['accuracy']:.4f}")
        rep["confusion_matrix_png"] = str(png)
    return rep
