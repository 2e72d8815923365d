"""Time to 92% Fashion-MNIST t10k accuracy on the CPU: cnnkit's `--preset fast` command against the tools a
user would pick instead, each fed the way its own documentation feeds it.

Contenders (every run in its own process, so imports, threads and peak memory do not mix):
  a  `cnnkit train --data fashion-mnist:DIR --preset fast --seed S` as a user runs it: start to exit, then the
     saved checkpoint's t10k accuracy. Reached = that accuracy >= the target. The preset builds report.html in
     a process of its own once the run is saved (the command says so); the bench waits for it (untimed, so it
     never overlaps the next run) and records how long it took after the command's exit.
  f  the same with --no-report-background: the report built inside the command, before it exits
  b  cnnkit with its defaults, in-process, t10k after every epoch (not in the default set: it is slow)
  c  the official PyTorch MNIST example (pytorch/examples mnist/main.py) with FashionMNIST for MNIST
  d  fastai: DataLoaders.from_dsets over TensorDatasets, Learner + fit_one_cycle, documented defaults
  e  Keras 3 on its torch backend: model.fit on NumPy arrays, documented defaults
(d) and (e) train (a)'s network (cnnkit/models/fast.py), so they measure the tool, not the architecture.
For b-e, t10k is checked after every epoch with the clock paused; time counts from after the imports (data
loading included) to the end of the epoch that first reaches the target, and a run stops there. A run that
has not reached it at its epoch cap reports its best accuracy and time. Every contender runs once per seed,
in rounds (seed 0: a c d e, seed 1: ...), so a busy neighbour slows all alike; the table gives the median
and min-max over the seeds, and the speed-up of (a)'s median command time over each peer's median.

    python bench/train_speed.py                      # a, c, d, e x 3 seeds: ~35 min on 2 idle cores
    python bench/train_speed.py --only a,c --seeds 0,1,2,3,4
    python bench/train_speed.py --quick              # 6k images, 1 epoch, seeds 0,1, target 0.80: ~5 min idle
Writes bench/results/train_speed.json (train_speed_quick.json with --quick), with the CPU and its flags.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, cpu_line, machine, print_table, spread, write_results

DEFAULT_DATA = ROOT.parent.parent / "shared" / "data" / "fashion-mnist"
CONTENDERS = {
    "a": "cnnkit train --preset fast (command)",
    "f": "the same, report built before exit",
    "b": "cnnkit defaults (in-process)",
    "c": "PyTorch MNIST example",
    "d": "fastai fit_one_cycle",
    "e": "Keras 3 (torch) model.fit",
}
FEEDING = {  # written into the JSON, so a figure says how its contender was fed
    "a": "the CLI reads the IDX files itself; --preset fast, --seed S; timed from start to exit",
    "f": "(a) with --no-report-background: report.html built inside the command, before it exits",
    "b": "cnnkit.train(preset='default', seed=S) on the IDX files",
    "c": "torchvision FashionMNIST(ToTensor, Normalize(0.1307, 0.3081)) + DataLoader(batch 64; no shuffle, as the "
         "example on a CPU), its Net, Adadelta lr 1.0, StepLR(1, 0.7), seed S",
    "d": "DataLoaders.from_dsets(TensorDataset x2, bs=64) of normalised float tensors; Learner(CrossEntropyLossFlat, "
         "Adam) + fit_one_cycle(cap) at lr 1e-3; (a)'s network",
    "e": "float32 NumPy arrays /255, NHWC; compile(adam, sparse CE); fit(batch 32, shuffle); (a)'s network in Keras layers",
}
DEFAULT_ONLY = "a,f,c,d,e"
# Epochs at most per run (a run stops at the target). From the last full run on 2 cores: (c) reached 92% at
# epoch 6 (57 s/epoch), fastai was at 91.8% after a 5-epoch cycle (19 s/epoch), Keras at 90.8% after 5 (29 s/epoch)
# and still climbing slowly at a constant lr. These caps keep 3 seeds of a, c, d, e near 35 minutes.
EPOCH_CAPS = {"b": 12, "c": 6, "d": 6, "e": 5}
QUICK_EPOCHS = {"a": 1, "f": 1, "b": 1, "c": 1, "d": 1, "e": 1}
QUICK_IMAGES = 6000  # --quick trains on this many; a check that every path runs, not a figure


class Clock:
    """Wall time since start, minus the paused t10k checks."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.start, self.paused = time.perf_counter(), 0.0

    def now(self) -> float:
        return time.perf_counter() - self.start - self.paused


class Tracker:
    """Checks t10k after an epoch (clock paused) and remembers when the target was first reached."""

    def __init__(self, target: float, x_test, y_test, mean: float, std: float, clock: Clock):
        self.clock, self.target = clock, target
        self.x = ((x_test.float() / 255.0 - mean) / std).contiguous()
        self.y = y_test
        self.curve, self.reached = [], None

    def check(self, predict, epoch: int) -> bool:
        t0 = time.perf_counter()
        elapsed = self.clock.now()
        acc = float((predict(self.x).argmax(1) == self.y).float().mean())
        self.curve.append({"epoch": epoch, "seconds": round(elapsed, 2), "t10k_acc": round(acc, 4)})
        if self.reached is None and acc >= self.target:
            self.reached = elapsed
        self.clock.paused += time.perf_counter() - t0
        return self.reached is not None

    def result(self, n_train: int, **extra) -> dict:
        epochs = len(self.curve)
        seconds = self.curve[-1]["seconds"] if self.curve else None
        return {"time_to_target": self.reached, "epochs": epochs, "seconds": seconds,
                "best_t10k": max((c["t10k_acc"] for c in self.curve), default=None),
                "images_per_s": round(n_train * epochs / seconds, 1) if seconds else None,
                "curve": self.curve, **extra}


def torch_predict(model):
    import torch

    def predict(x):
        model.eval()
        with torch.no_grad():
            out = torch.cat([model(x[i:i + 1000]) for i in range(0, len(x), 1000)])
        model.train()
        return out
    return predict


def load_fmnist(data: Path):
    """The IDX files as uint8 tensors (N, 1, 28, 28) and int64 labels."""
    import torch

    from cnnkit.data.sources import read_idx

    def idx(name):
        return torch.from_numpy(read_idx(data / name).copy())

    xtr, ytr = idx("train-images-idx3-ubyte.gz"), idx("train-labels-idx1-ubyte.gz").long()
    xte, yte = idx("t10k-images-idx3-ubyte.gz"), idx("t10k-labels-idx1-ubyte.gz").long()
    return xtr[:, None], ytr, xte[:, None], yte


# --- the contenders (each runs in a child process; imports before the clock starts) -----------------------
def run_cnnkit_command(args) -> dict:
    """(a): the command a user types, start to exit, then its checkpoint's t10k accuracy."""
    out = Path(tempfile.mkdtemp()) / "run"
    cmd = [sys.executable, "-m", "cnnkit", "train", "--data", f"fashion-mnist:{args.train_dir}", "--preset", "fast",
           "--out", str(out), "--json", "--seed", str(args.seed)] + (["--no-report-background"] if args.run_one == "f" else [])
    if args.quick:
        cmd += ["--epochs", str(QUICK_EPOCHS["a"])]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT.parent)
    total = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    to_checkpoint = (out / "model.safetensors").stat().st_mtime - t0
    result = json.loads(proc.stdout)
    pid = result.get("report_pid")  # (a): the report process the command left behind: waited for, not timed
    while pid and Path(f"/proc/{pid}").exists() and time.time() - t0 < total + 300:
        time.sleep(0.05)
    report_after = round(time.time() - t0 - total, 2) if pid else 0.0
    if not (out / "report.html").is_file():
        raise RuntimeError(f"no report.html in {out}: {(out / 'report.log').read_text()[-1500:] if pid else ''}")
    import cnnkit

    _, _, xte, yte = load_fmnist(args.data)
    acc = float((cnnkit.load_model(out).probs(xte).argmax(1) == yte).float().mean())
    shutil.rmtree(out.parent, ignore_errors=True)
    reached = acc >= args.target
    return {"time_to_target": round(total, 2) if reached else None, "seconds": round(total, 2),
            "seconds_to_checkpoint": round(to_checkpoint, 2), "t10k_acc": round(acc, 4), "best_t10k": round(acc, 4),
            "epochs": result["epochs"], "report_seconds_after_exit": report_after,
            "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


def run_cnnkit_default(args, clock: Clock) -> dict:
    import cnnkit
    from cnnkit.engine import Callback

    clock.reset()
    xtr, _, xte, yte = load_fmnist(args.train_dir)
    mean, std = float(xtr.float().mean() / 255), float(xtr.float().std() / 255)
    tracker = Tracker(args.target, xte, yte, mean, std, clock)

    class T10k(Callback):
        order = 50

        def after_epoch(self):
            t = self.trainer
            if tracker.check(torch_predict(t.model), t.epoch) or clock.now() > args.max_seconds:
                t.should_stop = True

    out = Path(tempfile.mkdtemp()) / "run"
    cnnkit.train(f"fashion-mnist:{args.train_dir}", preset="default", out=str(out), quiet=True, seed=args.seed,
                 callbacks=[T10k()], epochs=args.cap)
    shutil.rmtree(out.parent, ignore_errors=True)
    return tracker.result(len(xtr))


def example_net():
    """`Net` of pytorch/examples mnist/main.py, layer for layer."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, 1)
            self.conv2 = nn.Conv2d(32, 64, 3, 1)
            self.dropout1 = nn.Dropout(0.25)
            self.dropout2 = nn.Dropout(0.5)
            self.fc1 = nn.Linear(9216, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            x = F.relu(self.conv1(x))
            x = F.relu(self.conv2(x))
            x = F.max_pool2d(x, 2)
            x = torch.flatten(self.dropout1(x), 1)
            x = self.dropout2(F.relu(self.fc1(x)))
            return F.log_softmax(self.fc2(x), dim=1)

    return Net()


def run_pytorch_example(args, clock: Clock) -> dict:
    # Fed as pytorch/examples mnist/main.py feeds it (read at commit 77f55b9, 2025-08): transforms.Compose(
    # [ToTensor(), Normalize((0.1307,), (0.3081,))]) on torchvision's dataset; DataLoader(dataset1, **train_kwargs)
    # with train_kwargs = {'batch_size': 64}, shuffle/num_workers/pin_memory only added `if use_accel`: so no
    # shuffle on a CPU; Net(); optim.Adadelta(lr=1.0); StepLR(step_size=1, gamma=0.7); torch.manual_seed(--seed).
    import torch
    import torch.nn.functional as F
    from torchvision import datasets, transforms

    root = Path(tempfile.mkdtemp())
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(gzip.decompress((args.train_dir / f"{name}.gz").read_bytes()))
    clock.reset()  # the files are in place, as after the example's download
    torch.manual_seed(args.seed)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    dataset1 = datasets.FashionMNIST(str(root), train=True, download=False, transform=transform)
    _, _, xte, yte = load_fmnist(args.train_dir)
    tracker = Tracker(args.target, xte, yte, 0.1307, 0.3081, clock)
    train_loader = torch.utils.data.DataLoader(dataset1, batch_size=64)
    model = example_net()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    for epoch in range(1, args.cap + 1):
        model.train()
        for data, target in train_loader:
            optimizer.zero_grad()
            loss = F.nll_loss(model(data), target)
            loss.backward()
            optimizer.step()
        scheduler.step()
        if tracker.check(torch_predict(model), epoch) or clock.now() > args.max_seconds:
            break
    shutil.rmtree(root)
    return tracker.result(len(dataset1))


def fast_net():
    import cnnkit

    return cnnkit.create_model("fastcnn", num_classes=10, in_channels=1, input_size=(28, 28))


def run_fastai(args, clock: Clock) -> dict:
    # Fed as fastai's docs feed tensors (docs.fast.ai/data.core.html, DataLoaders.from_dsets: "Create a
    # DataLoaders object from ds", bs=64, dl_type=TfmdDL, shuffle and drop_last on the first (training) set) over
    # torch TensorDatasets; Learner(dls, model, loss_func, metrics=accuracy) and learn.fit_one_cycle(n) as in
    # docs.fast.ai/examples/migrating_pytorch.html ("Pure PyTorch to fastai": DataLoaders + Learner +
    # fit_one_cycle); defaults: opt_func=Adam, lr=defaults.lr=1e-3 (docs.fast.ai/learner.html), set_seed(seed).
    # The valid set is 1,000 training images (fastai's loop validates every epoch; no t10k image is shown to it).
    import fastai.callback.progress  # noqa: F401  (ProgressCallback and Learner.no_bar, as `fastai.vision.all` has)
    import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle)
    from fastai.callback.core import CancelFitException, Callback as FCallback
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    from fastai.torch_core import set_seed
    from torch.utils.data import TensorDataset

    clock.reset()
    xtr, ytr, xte, yte = load_fmnist(args.train_dir)
    mean, std = float(xtr.float().mean() / 255), float(xtr.float().std() / 255)
    tracker = Tracker(args.target, xte, yte, mean, std, clock)
    x = (xtr.float() / 255 - mean) / std
    set_seed(args.seed)
    dls = DataLoaders.from_dsets(TensorDataset(x, ytr), TensorDataset(x[-1000:], ytr[-1000:]), bs=64)

    class T10k(FCallback):
        order = 90  # after the Recorder

        def after_epoch(self):
            if tracker.check(torch_predict(self.learn.model), self.epoch + 1) or clock.now() > args.max_seconds:
                raise CancelFitException()

    learn = Learner(dls, fast_net(), loss_func=CrossEntropyLossFlat(), metrics=accuracy, cbs=[T10k()])
    with learn.no_bar(), learn.no_logging():  # no progress bar in the bench's log; the loop is unchanged
        learn.fit_one_cycle(args.cap)
    return tracker.result(len(x))


def run_keras(args, clock: Clock) -> dict:
    # Fed as Keras documents it: Model.fit's docstring (keras/src/trainers/trainer.py, rendered at
    # keras.io/api/models/model_training_apis): "x: Input data. It can be: - A NumPy array", "If unspecified,
    # batch_size will default to 32", shuffle=True; the arrays prepared as keras.io/examples/vision/mnist_convnet
    # prepares them (astype("float32") / 255, np.expand_dims(x, -1): NHWC, the default image_data_format) and
    # compiled with optimizer="adam" as there (Adam's default lr 1e-3); integer labels with a sparse loss.
    os.environ["KERAS_BACKEND"] = "torch"
    import keras
    import numpy as np
    import torch

    from cnnkit.models.fast import WIDTHS

    clock.reset()
    xtr, ytr, xte, yte = load_fmnist(args.train_dir)
    x_train = np.expand_dims(xtr[:, 0].numpy().astype("float32") / 255, -1)
    y_train = ytr.numpy()
    tracker = Tracker(args.target, xte, yte, 0.0, 1.0, clock)
    x_test = tracker.x.permute(0, 2, 3, 1).numpy()
    keras.utils.set_random_seed(args.seed)
    layers = [keras.Input((28, 28, 1))]
    for i, width in enumerate(WIDTHS):  # FastCNN (cnnkit/models/fast.py), layer for layer
        layers += [keras.layers.Conv2D(width, 3, strides=2 if i == 0 else 1, padding="same", use_bias=False),
                   keras.layers.BatchNormalization()]
        layers += [keras.layers.ReLU()] if i == 0 else [keras.layers.MaxPooling2D(2), keras.layers.ReLU()]
    layers += [keras.layers.Flatten(), keras.layers.Dropout(0.1), keras.layers.Dense(10)]
    model = keras.Sequential(layers)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    params = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    torch_params = sum(p.numel() for p in fast_net().parameters())

    class T10k(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            def predict(_):
                return torch.from_numpy(np.asarray(model.predict(x_test, batch_size=1000, verbose=0)))
            if tracker.check(predict, epoch + 1) or clock.now() > args.max_seconds:
                model.stop_training = True

    model.fit(x_train, y_train, epochs=args.cap, verbose=0, callbacks=[T10k()])
    return tracker.result(len(x_train), params=params,
                          note="" if params == torch_params else f"params {params} != FastCNN's {torch_params}")


RUNNERS = {"b": run_cnnkit_default, "c": run_pytorch_example, "d": run_fastai, "e": run_keras}


def child(args) -> None:
    """One contender, one seed, in this process; its result goes to --json-out."""
    t0 = time.perf_counter()
    try:
        if args.run_one in ("a", "f"):
            out = run_cnnkit_command(args)
        else:
            import torch  # noqa: F401  (imports are not the contender's time; see import_seconds)

            clock = Clock()
            out = RUNNERS[args.run_one](args, clock)
            out["import_seconds"] = round(clock.start - t0, 2)
            out["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    except ImportError as e:
        out = {"error": f"not installed: {e.name} (pip install fastai keras)"}
    except Exception as e:  # noqa: BLE001  (one failed run is reported in the table, the others go on)
        out = {"error": f"{type(e).__name__}: {str(e)[-1500:]}"}
    out["seed"] = args.seed
    out["process_seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.json_out).write_text(json.dumps(out))


def make_quick_dir(data: Path) -> Path:
    """QUICK_IMAGES training images in IDX files, for --quick (every contender reads the same files)."""
    from cnnkit.data.sources import read_idx

    quick = Path(tempfile.mkdtemp()) / "fmnist-quick"
    quick.mkdir(parents=True)
    for name, n in (("train-images-idx3-ubyte", QUICK_IMAGES), ("train-labels-idx1-ubyte", QUICK_IMAGES),
                    ("t10k-images-idx3-ubyte", None), ("t10k-labels-idx1-ubyte", None)):
        arr = read_idx(data / f"{name}.gz")
        if n:
            arr = arr[:n]
        header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        (quick / f"{name}.gz").write_bytes(gzip.compress(header + arr.tobytes(), compresslevel=1))
    return quick


def summarize(runs: list[dict]) -> dict:
    """Median and min-max over the seeds: of the time to target where every run reached it, else of how far
    the runs got (best accuracy, epochs, seconds) without it."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0].get("error") if runs else "no runs"}
    reached = [r["time_to_target"] for r in ok if r.get("time_to_target") is not None]
    s = {"runs": len(ok), "reached": len(reached), "best_t10k": spread([r["best_t10k"] for r in ok]),
         "seconds": spread([r["seconds"] for r in ok]), "epochs": spread([r["epochs"] for r in ok])}
    if reached:
        s["time_to_target"] = spread(reached)
    return s


def _pct(v: dict) -> str:
    return f"{v['median']:.2%}" if v["min"] == v["max"] else f"{v['median']:.2%} ({v['min']:.2%}-{v['max']:.2%})"


def _secs(v: dict) -> str:
    return f"{v['median']:.1f} ({v['min']:.1f}-{v['max']:.1f})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the Fashion-MNIST IDX .gz files")
    p.add_argument("--target", type=float, default=None, help="t10k accuracy to reach (default 0.92; 0.80 with --quick)")
    p.add_argument("--only", default=DEFAULT_ONLY, help=f"contenders, comma-separated, of {', '.join(CONTENDERS)} "
                   f"(default {DEFAULT_ONLY})")
    p.add_argument("--seeds", default=None, help="one run of every contender per seed (default 0,1,2; 0,1 with --quick)")
    p.add_argument("--quick", action="store_true", help=f"a short check: {QUICK_IMAGES:,} images, 1 epoch, target 0.80")
    p.add_argument("--max-seconds", type=float, default=600, help="stop a run after this long (clock time)")
    p.add_argument("--run-one", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--cap", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--json-out", help=argparse.SUPPRESS)
    p.add_argument("--train-dir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.target = args.target or (0.80 if args.quick else 0.92)
    if args.run_one:
        child(args)
        return 0
    only = [k for k in args.only.replace(",", "") if k.strip()]
    bad = [k for k in only if k not in CONTENDERS]
    if bad or not only:
        p.error(f"--only {args.only!r}: expected letters from {', '.join(CONTENDERS)} (e.g. --only a,c)")
    try:
        seeds = [int(s) for s in (args.seeds or ("0,1" if args.quick else "0,1,2")).split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds {args.seeds!r}: expected whole numbers separated by commas (e.g. --seeds 0,1,2)")
    if not seeds:
        p.error("--seeds: give at least one seed (3 or more for a median worth the name)")
    train_dir = make_quick_dir(args.data) if args.quick else args.data
    caps = {k: (QUICK_EPOCHS if args.quick else EPOCH_CAPS).get(k) for k in only}
    mach = machine()
    print(f"CPU: {cpu_line(mach)}; seeds {seeds}; contenders {', '.join(only)}", file=sys.stderr, flush=True)
    runs = {k: [] for k in only}
    for seed in seeds:  # rounds: every contender once per seed, so machine noise falls on all alike
        for key in only:
            out = Path(tempfile.mkdtemp()) / "r.json"
            cmd = [sys.executable, __file__, "--run-one", key, "--seed", str(seed), "--json-out", str(out),
                   "--data", str(args.data), "--train-dir", str(train_dir), "--target", str(args.target),
                   "--max-seconds", str(args.max_seconds), "--cap", str(caps[key] or 1)] + (["--quick"] if args.quick else [])
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            r = json.loads(out.read_text()) if out.is_file() else {"error": f"exit {proc.returncode}", "seed": seed}
            shutil.rmtree(out.parent, ignore_errors=True)
            runs[key].append(r)
            brief = {k: v for k, v in r.items() if k not in ("curve",)}
            print(f"[{key} seed {seed}, {time.perf_counter() - t0:.0f} s] {json.dumps(brief)}", file=sys.stderr, flush=True)
    if args.quick:
        shutil.rmtree(train_dir.parent, ignore_errors=True)

    summary = {k: summarize(v) for k, v in runs.items()}
    ours = summary.get("a", {})
    ours_t = ours["time_to_target"]["median"] if ours.get("reached") == ours.get("runs") and ours.get("runs") else None
    rows, speedup = [], {}
    for key in only:
        s = summary[key]
        row = {"name": f"({key}) {CONTENDERS[key]}", "note": s.get("error", "")}
        if "error" not in s:
            row.update(runs=f"{s['reached']}/{s['runs']}", best=_pct(s["best_t10k"]),
                       epochs=f"{s['epochs']['median']:g}" if s["epochs"]["min"] == s["epochs"]["max"]
                       else f"{s['epochs']['median']:g} ({s['epochs']['min']:g}-{s['epochs']['max']:g})")
            if s["reached"] == s["runs"]:
                row["t"] = _secs(s["time_to_target"])
            else:
                row["t"] = "not reached" if not s["reached"] else f"{s['reached']} of {s['runs']} reached"
                row["note"] = (f"best {_pct(s['best_t10k'])} after {row['epochs']} epoch{'' if row['epochs'] == '1' else 's'}, "
                               f"{_secs(s['seconds'])} s")
            if key not in ("a", "f") and ours_t:
                if s["reached"] == s["runs"]:
                    ratio = s["time_to_target"]["median"] / ours_t
                    speedup[key] = {"ratio": round(ratio, 2), "bound": "exact"}
                    row["ratio"] = f"{ratio:.2f}x"
                else:  # the peer spent this long without reaching the target: (a) is at least this much faster
                    ratio = s["seconds"]["median"] / ours_t
                    speedup[key] = {"ratio": round(ratio, 2), "bound": "lower (peer did not reach the target)"}
                    row["ratio"] = f">{ratio:.2f}x"
            if key in ("a", "f"):
                ok = [r for r in runs[key] if "error" not in r]
                row["note"] = (("whole command; its report process then took "
                                f"{_secs(spread([r['report_seconds_after_exit'] for r in ok]))} s more; "
                                if key == "a" else "whole command, report built before exit; ") + "t10k per seed " +
                               ", ".join(f"{r['seed']}: {r['t10k_acc']:.2%}" for r in ok) +
                               f"; to checkpoint {_secs(spread([r['seconds_to_checkpoint'] for r in ok]))} s")
            notes = {r.get("note") for r in runs[key] if r.get("note")}
            row["note"] = "; ".join(filter(None, [row["note"], *notes]))
        rows.append(row)
    if "a" in only and ours_t is None:
        rows.append({"name": "(a) did not reach the target with every seed: no speed-ups"})
    path = write_results("train_speed_quick" if args.quick else "train_speed", {
        "target": args.target, "quick": args.quick, "seeds": seeds, "epoch_caps": caps,
        "contenders": {k: {"name": CONTENDERS[k], "feeding": FEEDING[k]} for k in only},
        "summary": summary, "speedup_of_a": speedup, "runs": runs})
    print(f"\nFashion-MNIST{f' (quick: {QUICK_IMAGES:,} images, 1 epoch)' if args.quick else ''}, time to {args.target:.0%} t10k accuracy on "
          f"{cpu_line(mach)}. Median (min-max) of seeds {', '.join(map(str, seeds))}; (a) from command start to exit, "
          f"b-e from after their imports; speed-up = the peer's median / (a)'s median. Results: {path}")
    print_table(rows, [("name", "contender"), ("t", f"s to {args.target:.0%}"), ("runs", "reached"),
                       ("best", "best t10k"), ("epochs", "epochs"), ("ratio", "(a) faster by"), ("note", "note")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
