"""The Python API under the CLI: `train`, `resume`, `evaluate`, `load_model`.

`train` and `resume` are one code path (`_fit`): a resumed run loads its data through the split it saved and
the preprocessing it recorded, then continues the same loop; `resume(run, epochs=N)` extends it.

>>> import cnnkit, tempfile
>>> result = cnnkit.train(data='digits', epochs=1, out=tempfile.mkdtemp() + '/run', quiet=True)
>>> sorted(result)[:3]
['best_epoch', 'calibration', 'data']
>>> model = cnnkit.load_model(result['run_dir'])
>>> model.classes[:3]
['0', '1', '2']
"""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Sequence

import torch

from ._io import NoSpaceError, remove_stale_temps
from .data import load_data
from .engine import callbacks as cbs
from .engine import distributed as ddp
from .engine.config import TrainConfig, apply_preset, config_argv, reference_batch, resolve
from .engine.trainer import Trainer
from .errors import CnnkitError, UnknownNameError
from .run import Predictor, load_run_data
from .run.predictor import is_own_data
from .run import format as fmt

TrainedModel = Predictor  # the name this class had before it became the one Predictor


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
    cfg = apply_preset(TrainConfig(data=data, **options))
    if cfg.model is not None:
        from .models import list_models

        if cfg.model not in list_models():
            raise UnknownNameError("model", cfg.model, list_models())
    if cfg.weights and not Path(cfg.weights).is_file() and not cfg.weights.replace("_", "").isalnum():
        raise CnnkitError(f"--weights {cfg.weights}: no such file (give a .pth or .safetensors file, or a "
                          "torchvision weights name such as IMAGENET1K_V1)")
    if cfg.pretrained or cfg.weights:  # the weight file is here (or may be downloaded): before the data is read
        from .engine.config import PRETRAINED_MODEL
        from .models.pretrained import locate

        locate(cfg.model or PRETRAINED_MODEL, weights=cfg.weights, download=cfg.download)
    if cfg.operating_point:
        from .decision import parse_rule

        parse_rule(cfg.operating_point)  # a malformed rule: before the data is read
    if cfg.window is not None:
        from .data.dicom import parse_window

        parse_window(cfg.window)
    env = ddp.read_env()
    if (cfg.nproc or 1) > 1 and not env.enabled and env.run_id is None:  # started here: through torchrun
        # (without --nproc: torchrun would take it for its own --nproc-per-node; the processes record their number)
        options = {k: v for k, v in options.items() if k != "nproc"}
        return _relaunch(["train", *config_argv({"data": data, **options})], cfg.nproc, cfg.device, log_stream)
    if cfg.out is None and env.stable_id:  # under torchrun: a name that elastic restarts find again
        cfg = cfg.replace(out=str(Path("runs") / f"{_safe(Path(cfg.data.split(':')[-1]).name or cfg.data)}-"
                                                 f"{env.stable_id}"))
    with ddp.session(cfg.device) as env:
        if cfg.out and env.restart_count:  # an elastic restart: on from the last checkpoint, if one was written
            if ddp.on_main(lambda: (Path(cfg.out) / fmt.STATE).is_file()):
                return resume(cfg.out, quiet=quiet, log_stream=log_stream, callbacks=callbacks)
        elif cfg.out:
            ddp.on_main(fmt.check_unused, cfg.out)  # before the data is read: fail fast
        return _fit(cfg, None, None, quiet=quiet, log_stream=log_stream, callbacks=callbacks, start=start)


def _relaunch(argv: list[str], nproc: int, device: str, log) -> dict:
    """--nproc N outside torchrun: the same training through torchrun's launcher on this machine; rank 0's result
    (the processes' log lines pass through to `log`; a failure is one line, cnnkit.engine.launch)."""
    from .engine import launch

    return launch.run(nproc, argv, device=device, log=log or sys.stdout)


def resume(run_dir: str | Path, *, data: str | None = None, epochs: int | None = None, device: str | None = None,
           patience: int | None = None, report: bool | None = None, nproc: int | None = None, quiet: bool = False,
           log_stream=None, callbacks: Sequence[cbs.Callback] = ()) -> dict:
    """Continue a run from its train_state.pt, with its saved split and preprocessing. `epochs=N` extends it
    to N epochs in all (a finished run too); `data` points at a moved data folder; `nproc=N` continues it on N
    processes (under torchrun, the processes torchrun started; rank 0 reads the run directory)."""
    start = time.perf_counter()
    run_dir = Path(run_dir)
    env = ddp.read_env()
    if (nproc or 1) > 1 and not env.enabled and env.run_id is None:  # started here: through torchrun
        options = {"epochs": epochs, "device": device, "patience": patience, "report": report}
        if data is not None:
            options["data"] = data
        return _relaunch(["train", "--resume", str(run_dir), *config_argv(options)], nproc, device or "auto",
                         log_stream)
    saved_device = device or "auto"
    with contextlib.suppress(Exception):  # the device the run trained on, where this node can read its state
        saved_device = device or fmt.load_state(run_dir / fmt.STATE)["config"]["device"]
    with ddp.session(saved_device):
        return _resume(run_dir, data=data, epochs=epochs, device=device, patience=patience, report=report,
                       nproc=nproc, quiet=quiet, log_stream=log_stream, callbacks=callbacks, start=start)


def _resume(run_dir: Path, *, data, epochs, device, patience, report, nproc, quiet, log_stream, callbacks,
            start) -> dict:
    def read() -> dict:  # rank 0's run directory: other machines may have none
        if not run_dir.is_dir():
            raise CnnkitError(f"--resume {run_dir}: no such run directory")
        state = fmt.load_state(run_dir / fmt.STATE)  # its structure checked (cnnkit.run.format.state_problem)
        spec = state["config"].get("data")
        if data is None:  # the data the state names is read only if this user's training recorded it
            fmt.check_saved_spec(spec, state.get("data_mac") or _meta_mac(run_dir, spec), run_dir / fmt.STATE)
        return state

    state = ddp.on_main(read)
    saved = dict(state["config"])
    saved.setdefault("balance", "none")  # a run from before --balance trained without any: it goes on so
    cfg = TrainConfig.from_dict(saved)
    changes = {k: v for k, v in (("data", data), ("epochs", epochs), ("device", device), ("patience", patience),
                                 ("report", report), ("nproc", nproc)) if v is not None}
    cfg = cfg.replace(**changes)
    done = int(state["epoch"])
    if epochs is not None and epochs < done:
        raise CnnkitError(f"--epochs {epochs}: {run_dir} has already trained {done} epochs; give more than that")
    if done >= (cfg.epochs or 0):
        raise CnnkitError(f"{run_dir} already finished its {cfg.epochs} epochs; add --epochs N (more than {done}) "
                          "to train it further")
    return _fit(cfg, run_dir, state, quiet=quiet, log_stream=log_stream, callbacks=callbacks, start=start)


def _meta_mac(run_dir: Path, spec: str) -> str | None:
    """model.json's signature of `spec` (runs whose train_state.pt predates its own signature)."""
    try:
        data = fmt.read_meta(run_dir).get("data", {})
    except CnnkitError:
        return None
    return data.get("spec_mac") if data.get("spec") == spec else None


def _names(classes) -> str:
    classes = list(classes)
    return fmt.shown(repr(classes[:12])[:-1] + (", …]" if len(classes) > 12 else "]"), 300)


def _fit(cfg: TrainConfig, run_dir: Path | None, state: dict | None, *, quiet: bool, log_stream, callbacks,
         start: float, data=None) -> dict:
    """`data`: an ImageData already read (compare trains several models on one), else read from cfg.data.
    Several processes (torchrun): every rank reads the data (local rank 0 first, so a cache is built once per
    machine), rank 0 alone claims and writes the run directory, and every rank checks it was started alike."""
    log = log_stream or sys.stdout
    env = ddp.read_env()
    quiet = quiet or not env.is_main  # one copy of every line: rank 0's
    if data is not None:
        ds = data
    elif state is None:
        stats, min_size = _pretrained_input(cfg)
        with ddp.local_first(env):
            ds = load_data(cfg.data, img_size=cfg.img_size, val_fraction=cfg.val_fraction, seed=cfg.seed,
                           on_bad_image=cfg.on_bad_image, max_pixels=cfg.max_pixels, download=cfg.download,
                           mode=cfg.data_mode, min_size=min_size, window=cfg.window, group_by=cfg.group_by,
                           log=log, **stats)
    else:  # resuming: the same images, split and preprocessing as when the run started (rank 0's run directory)
        meta, manifest = ddp.on_main(lambda: (fmt.read_meta(run_dir) if (run_dir / fmt.META).is_file() else None,
                                              fmt.read_split(run_dir)))
        from .preprocess import Preprocess

        prep = Preprocess.from_dict(meta["preprocess"]) if meta else None
        with ddp.local_first(env):
            ds = load_data(cfg.data, img_size=cfg.img_size, val_fraction=cfg.val_fraction, seed=cfg.seed,
                           on_bad_image=cfg.on_bad_image, max_pixels=cfg.max_pixels, mode=cfg.data_mode,
                           manifest=manifest, preprocess=prep, log=log)
        trained_on = state.get("classes") or (meta["classes"] if meta else None)
        if trained_on is not None and list(ds.classes) != list(trained_on):
            raise CnnkitError(f"--data {fmt.shown(cfg.data)} has the classes {_names(ds.classes)}, but {run_dir} was "
                              f"trained on {_names(trained_on)}; resume with the data the run was trained on, or train "
                              "a new run on this data")
    if not quiet:
        print(ds.describe() + f" ({'in memory' if ds.mode == 'memory' else 'streamed from the image cache'})",
              file=log, flush=True)
    _check_decision(cfg, ds)  # --positive and --operating-point fit these classes: before any training
    resolved = resolve(cfg, n_train=len(ds.train), size=ds.size)
    if ddp.world()[1] > 1 or (resolved.nproc or 1) > 1:  # saved: the number of processes that trained it
        resolved = resolved.replace(nproc=ddp.world()[1])
    if ddp.world()[1] > 1:
        from .engine.config import flag

        ddp.check_same({**{flag(k): v for k, v in resolved.to_dict().items()}, "data": ds.spec, "classes": ds.classes,
                        "split sizes": {k: len(v) for k, v in ds.splits.items()},
                        "split manifest sha256": ddp.digest(ds.manifest())})
    new = run_dir is None
    if new:
        name = f"{ds.name}-{resolved.model}"
        restarted = env.restart_count > 0 and cfg.out is not None
        # an elastic restart takes back the folder its first attempt claimed (the lock below still guards it)
        run_dir = Path(ddp.on_main(lambda: str(Path(cfg.out) if restarted and Path(cfg.out).is_dir()
                                               else fmt.claim_run_dir(cfg.out, name))))
    with fmt.training_lock(run_dir) if env.is_main else contextlib.nullcontext():
        try:
            if new and env.is_main:
                fmt.save_split(ds.manifest(), run_dir / fmt.SPLIT)
            return _train(resolved, cfg, ds, run_dir, state, quiet=quiet, log=log, callbacks=callbacks, start=start)
        except BaseException:
            if new and env.is_main:
                fmt.release_unsaved(run_dir)
            raise


def _pretrained_input(cfg: TrainConfig) -> tuple[dict, int | None]:
    """For a run from pretrained weights: the weights' mean/std (not the data's: the network learned with
    ImageNet's) and the side small images are upsampled to (the pretrained stem is kept, not replaced)."""
    if not (cfg.pretrained or cfg.weights):
        return {}, None
    from .engine.config import PRETRAINED_MIN_SIDE, PRETRAINED_MODEL
    from .models.pretrained import PRETRAINED, weight_choices

    model = cfg.model or PRETRAINED_MODEL
    if model not in PRETRAINED and cfg.weights:  # a file for a model torchvision has no weights for: the data's
        return {}, None
    t = weight_choices(model)[0].transforms()  # every torchvision ImageNet weight: same stats
    return {"mean": list(t.mean), "std": list(t.std)}, PRETRAINED_MIN_SIDE


def _train(resolved: TrainConfig, cfg: TrainConfig, ds, run_dir: Path, state: dict | None, *, quiet: bool, log,
           callbacks, start: float) -> dict:
    trainer = Trainer(resolved, ds, run_dir=run_dir, callbacks=[*_callbacks(resolved, quiet, log), *callbacks],
                      load_pretrained=state is None)
    if state is not None:
        trainer.load_state(state)
    if not quiet:
        t = trainer.cfg
        flips = ("flips" if t.flips else "no flips") if t.augment != "none" else "no flips (no augmentation)"
        why = "" if cfg.flips is not None else f" ({ds.flips_reason}; --{'no-' if t.flips else ''}flips to change)"
        world = trainer.world
        batch = f"{t.batch_size}" + (f" (global: {t.batch_size / world:g} per process x {world} processes"
                                     f"{', sync-bn' if t.sync_bn else ''})" if world > 1 else "")
        lr = f"{trainer.lr:g}" + (f" (--lr {t.lr:g} x {t.batch_size}/{reference_batch(len(ds.train))}, linear "
                                  "scaling)" if t.lr_scaling == "linear" else "")
        print(f"model {t.model} ({sum(p.numel() for p in trainer.model.parameters()):,} params) on {trainer.device} "
              f"in {trainer.precision} ({trainer.precision_reason}) {'NHWC' if t.channels_last else 'NCHW'}, "
              f"{t.epochs} epochs, batch {batch}, {t.optimizer} lr {lr}, {t.scheduler}, "
              f"augment {t.augment}, {flips}{why if t.augment != 'none' else ''}; run dir {run_dir}",
              file=log, flush=True)
        if trainer.pretrained_info and state is None:
            info = trainer.pretrained_info
            print(f"pretrained: {info['weights'] or info['file']} ({info['found']}); "
                  f"{t.freeze_epochs} epoch(s) head only, then all layers at lr/{t.lr_mult:g} (first) to lr (head); "
                  f"BatchNorm {t.bn}" + "".join(f"; {n}" for n in info["adapted"]), file=log, flush=True)
        if state is not None:
            print(f"resuming {run_dir} after epoch {trainer.epoch}/{t.epochs} (best val_acc "
                  f"{trainer.best_val_acc:.4f} at epoch {trainer.best_epoch})", file=log, flush=True)
        print(_balance_line(trainer, ds), file=log, flush=True)
    result = trainer.fit()
    if not trainer.is_main:  # rank 0 calibrates and writes the report
        return result
    seen: dict = {}  # probabilities already computed (calibration's validation split): the report reuses them
    if trainer.best_epoch:
        try:
            result.update(_calibrate(run_dir, ds, trainer.cfg, log=None if quiet else log, probs_out=seen))
        except NoSpaceError as e:
            raise e.add(f"the trained model is saved in {run_dir} (its best epoch, uncalibrated): free some space "
                        f"and run cnnkit calibrate {run_dir} to finish it") from None
    result["seconds"] = round(time.perf_counter() - start, 2)  # start to the last checkpoint
    if trainer.cfg.report and trainer.best_epoch:
        if trainer.cfg.report_background:
            _report_in_background(result, run_dir, None if quiet else log)
        else:
            _write_report(result, run_dir, ds, log, probs=seen)
    return result


def _check_decision(cfg: TrainConfig, ds) -> None:
    from .decision import parse_rule, positive_index

    counts = torch.bincount(ds.train.y.cpu(), minlength=len(ds.classes)).tolist()
    positive_index(ds.classes, cfg.positive, counts)
    if len(ds.classes) != 2 and parse_rule(cfg.operating_point)[0] != "argmax":
        raise CnnkitError(f"--operating-point {cfg.operating_point}: an operating point is for two classes; this data "
                          f"has {len(ds.classes)}")


def _balance_line(trainer: Trainer, ds) -> str:
    """The class balance of train (the prevalence, for two classes) and what is done about it."""
    from .decision import positive_index

    counts = trainer.class_counts.tolist()
    n = max(sum(counts), 1)
    cfg = trainer.cfg
    if len(counts) == 2:
        pos = positive_index(ds.classes, cfg.positive, counts)
        head = (f"prevalence: {ds.classes[pos]} {counts[pos] / n:.1%} of train ({counts[pos]:,} of {n:,}); "
                f"positive class {ds.classes[pos]}{'' if cfg.positive else ' (the rarer; --positive to change)'}, "
                f"operating point {cfg.operating_point}")
    else:
        lo, hi = min(range(len(counts)), key=counts.__getitem__), max(range(len(counts)), key=counts.__getitem__)
        head = (f"classes in train: rarest {ds.classes[lo]} {counts[lo] / n:.1%}, commonest {ds.classes[hi]} "
                f"{counts[hi] / n:.1%}")
    return f"{head}; balance {cfg.balance} ({trainer.balance_reason})"


def calibrate(run_dir: str | Path, *, operating_point: str | None = None, positive: str | None = None,
              data: str | None = None, log=None) -> dict:
    """(Re)fit a run's temperature and operating point on its validation split, without training: what `train`
    does at its end. `operating_point`/`positive` default to the run's own."""
    from .decision import parse_rule

    meta = fmt.read_meta(run_dir)
    train_cfg = TrainConfig.from_dict(meta.get("train", {}))
    decision = meta.get("decision") or {}
    cfg = train_cfg.replace(operating_point=operating_point or decision.get("rule") or train_cfg.operating_point,
                            positive=positive or decision.get("positive") or train_cfg.positive)
    parse_rule(cfg.operating_point)
    remove_stale_temps(run_dir)  # model.json is rewritten here: what killed writes of it left behind goes
    pred = load_model(run_dir)
    ds = load_run_data(pred, data)
    _check_decision(cfg, ds)
    return _calibrate(Path(run_dir), ds, cfg, log=log)


def _calibrate(run_dir: Path, ds, cfg: TrainConfig, log=None, probs_out: dict | None = None) -> dict:
    """After training: the temperature (on the best model's validation logits) and, for two classes, the
    threshold of the operating point, both written into model.json. A target the validation split cannot reach
    keeps the run (saved) with argmax and says what was reached. `probs_out` receives {'val': the calibrated
    validation probabilities}, which the report would otherwise predict again."""
    from .decision import calibration_error, choose_threshold, fit_temperature, positive_index

    pred = load_model(run_dir)
    pred.temperature = 1.0  # the network's own logits: fitted afresh
    logits = torch.cat([pred.logits(x) for x, _ in ds.val.batches(256)])
    y = ds.val.y.cpu()
    temperature = fit_temperature(logits, y) if cfg.calibrate else 1.0
    counts = torch.bincount(ds.train.y.cpu(), minlength=len(ds.classes)).tolist()
    pos = positive_index(ds.classes, cfg.positive, counts)
    calibrated = torch.softmax(logits / temperature, 1)
    if probs_out is not None:
        probs_out["val"] = calibrated
    before, after = torch.softmax(logits, 1).numpy(), calibrated.numpy()
    calibration = {"temperature": temperature, "ece_before": calibration_error(before, y.numpy(), pos),
                   "ece_after": calibration_error(after, y.numpy(), pos), "fitted_on": f"val ({len(y):,} images)",
                   "method": "temperature scaling (Guo et al. 2017)" if cfg.calibrate else "none (--no-calibrate)"}
    meta = fmt.read_meta(run_dir)
    meta["calibration"] = calibration
    out: dict = {"calibration": calibration}
    if pos is not None:
        try:
            chosen = choose_threshold(y.numpy() == pos, after[:, pos], cfg.operating_point)
        except CnnkitError as e:
            chosen = choose_threshold(y.numpy() == pos, after[:, pos], "argmax")
            chosen["unreached"] = cfg.operating_point
            if log is not None:
                print(f"warning: {e}. The run keeps argmax (0.5); choose another with cnnkit calibrate {run_dir} "
                      "--operating-point RULE", file=log, flush=True)
        meta["decision"] = {"positive": ds.classes[pos], "threshold": chosen["threshold"], "rule": chosen["rule"],
                            "val": chosen["val"], **({"unreached": chosen["unreached"]} if "unreached" in chosen else {})}
        out["decision"] = meta["decision"]
    fmt.save_meta(meta, run_dir / fmt.META)
    if log is not None:
        line = (f"calibration: temperature {temperature:.3f}, val ECE {calibration['ece_before']:.4f} -> "
                f"{calibration['ece_after']:.4f}")
        if pos is not None:
            v = meta["decision"]["val"]
            line += (f"; operating point {meta['decision']['rule']}: {ds.classes[pos]} when p >= "
                     f"{meta['decision']['threshold']:.4g} (val sensitivity {v['sensitivity']}, specificity "
                     f"{v['specificity']})")
        print(line, file=log, flush=True)
    return out


def compare(data: str, models: Sequence[str] | None = None, **options) -> dict:
    """Train each model alike on `data` and measure what the lessons claim (`cnnkit.explain.compare`): parameters,
    MACs, receptive field, time, accuracy, overfitting, shifted and pixel-permuted accuracy."""
    from .explain.compare import DEFAULT_MODELS, compare as run

    def fit(cfg: TrainConfig, ds) -> dict:
        return _fit(cfg, None, None, quiet=True, log_stream=options.get("log"), callbacks=(),
                    start=time.perf_counter(), data=ds)

    return run(data, models or DEFAULT_MODELS, fit=fit, load=load_model, **options)


def load_model(run_dir: str | Path, device: str = "cpu", engine: str = "torch", precision: str = "auto") -> Predictor:
    """Load a run directory's best model (safetensors weights + validated JSON metadata; no pickle).
    `engine='onnx'` runs it with ONNX Runtime, `'openvino'` with OpenVINO (`pip install openvino`), both
    exporting RUN_DIR/model.onnx first if needed; `'auto'` measures the installed engines on the first batch of
    each size and keeps the fastest (`Predictor.auto_choices` says what it measured). `precision` is OpenVINO's:
    'auto' is bf16 on a CPU with AVX-512 BF16 or AMX (as OpenVINO's own default; probabilities within ~1e-2),
    fp32 elsewhere; 'fp32' or 'bf16' force it. torch and onnx compute in fp32 ('bf16' with them is an error).
    `Predictor.precision` says which was used."""
    return Predictor.from_run(run_dir, device=device, engine=engine, precision=precision)


REPORT_LOG = "report.log"


def _report_in_background(result: dict, run_dir: Path, log) -> None:
    """report.html built by `cnnkit report RUN_DIR` in a process of its own, started once the run is saved (the
    command then ends at once; the report process outlives it). Its output goes to RUN_DIR/report.log; a report
    problem can never touch the run, which is complete without it."""
    import subprocess

    try:
        with open(run_dir / REPORT_LOG, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "cnnkit", "report", str(run_dir)],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    except OSError as e:  # a full disk, no process left to start: the run is saved all the same
        print(f"warning: report.html not started ({e.strerror or e}); the run in {run_dir} is complete: "
              f"cnnkit report {run_dir} writes it later", file=log or sys.stderr, flush=True)
        return
    result["report"] = str(run_dir / "report.html")
    result["report_pid"] = proc.pid
    if log is not None:
        print(f"report.html: being built in the background (pid {proc.pid}, a few seconds; the run is saved and "
              f"complete without it; --no-report-background waits for it; its output: {run_dir / REPORT_LOG})",
              file=log, flush=True)


def _write_report(result: dict, run_dir: Path, ds, log, probs: dict | None = None) -> None:
    """report.html at the end of a run. The run is already saved: a report problem is a warning, not a failure."""
    from .explain.report import write_report

    try:
        result["report"] = str(write_report(run_dir, data=ds, probs=probs))
    except CnnkitError as e:
        print(f"warning: report.html not written: {e}", file=log)


SPLITS = ("test", "val", "train", "all")


def evaluate(run_dir: str | Path, data: str | None = None, *, split: str | None = None, top_k: int = 5,
             plot: bool = True, tta: bool = False, seed: int = 0) -> dict:
    """Metrics of a run's best model on a split. The run's own data: its saved split (default test if it has
    one, else val). Other data (`data`): that data's test split, or all of it with split='all' (the default
    when it has no test split). Probabilities are calibrated (the run's temperature) and, for two classes,
    classes are decided at the run's operating point; `tta` averages test-time augmentation's views."""
    from .decision import binary_report, calibration_error, decision_plots
    from .metrics import classification_report, plot_confusion_matrix

    if split is not None and split not in SPLITS:
        raise CnnkitError(f"--split {split!r} is not one of {', '.join(SPLITS)}")
    pred = load_model(run_dir)
    own = is_own_data(pred, data)
    ds = load_run_data(pred, data)
    default = "test" if "test" in ds.splits else ("val" if own else "all")
    split = split or default
    if split == "all":
        parts = [ds.splits[k] for k in ("train", "val", "test") if k in ds.splits]
        ys = torch.cat([s.y for s in parts])
        probs = torch.cat([pred.probs_split(s, tta=tta) for s in parts])
        used = ", ".join(f"{k} {len(v):,}" for k, v in ds.splits.items())
    else:
        s = ds.split(split)
        ys, probs = s.y, pred.probs_split(s, tta=tta)
        used = f"{split} {len(s):,}"
    y = ys.numpy()
    rep = classification_report(y, probs.numpy(), pred.classes, top_k=top_k, y_pred=pred.decide(probs).numpy())
    how = "the run's saved split" if own and fmt.read_split(run_dir) is not None else "the data's own splits"
    rep.update(split=split, data=ds.spec, run_dir=str(run_dir), images=f"{used} ({how})", tta=tta)
    # calibration: the ECE of these probabilities, and of the network's own (temperature undone)
    positive = pred.positive if pred.positive is not None else (1 if len(pred.classes) == 2 else None)
    raw = torch.softmax(torch.log(probs.clamp_min(1e-38)) * pred.temperature, 1)
    rep.update(temperature=pred.temperature, ece=calibration_error(probs.numpy(), y, positive),
               ece_uncalibrated=calibration_error(raw.numpy(), y, positive))
    if len(pred.classes) == 2:
        decision = pred.meta.get("decision") or {}
        rep.update(positive=pred.classes[positive], rule=decision.get("rule", "argmax"),
                   **binary_report(y, probs.numpy(), positive, pred.threshold if pred.positive is not None else 0.5,
                                   seed=seed))
    tag = split if own else f"{_safe(ds.name)}_{split}"
    tag += "_tta" if tta else ""
    if plot:  # another data set's matrix never replaces the run's own
        png = Path(run_dir) / f"confusion_matrix_{tag}.png"
        plot_confusion_matrix(rep["confusion_matrix"], pred.classes, png,
                              title=f"{pred.name} on {ds.name} {split}: accuracy {rep['accuracy']:.4f}")
        rep["confusion_matrix_png"] = str(png)
        rep.update(decision_plots(pred, run_dir, tag, y, probs, raw, positive, ds.name, split))
    return rep


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)
