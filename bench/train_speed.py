"""Time to 92% Fashion-MNIST t10k accuracy on the CPU, against the tools a user would pick instead.

Contenders, each run in its own process (so imports, threads and peak memory do not mix):
  a  cnnkit --preset fast          (also timed as the real command, `cnnkit train --preset fast`, once per seed
                                   for --cli-seeds: start to saved checkpoint, and that checkpoint's t10k)
  b  cnnkit with its defaults
  c  the official PyTorch MNIST example (its two-conv net, Adadelta lr 1.0, StepLR 0.7, batch 64,
     a DataLoader over torchvision's FashionMNIST with ToTensor + Normalize)
  d  fastai, documented defaults (Learner + fit_one_cycle: Adam, lr 1e-3, batch 64) on (a)'s network
  e  Keras 3 on its PyTorch backend, documented defaults (adam, batch 32) on (a)'s network
t10k is checked after every epoch with the clock paused. Time counts from the contender's start (data
loading included, Python start-up and imports excluded) to the end of the epoch that first reaches the
target. Prints a table last and writes bench/results/train_speed.json.

    python bench/train_speed.py            # all five, (a) as a command 3 times: ~20 min on 2 cores
    python bench/train_speed.py --quick    # a short check: 12k images, 1-2 epochs, target 0.80 (train_speed_quick.json)
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

from _common import ROOT, machine, print_table, write_results

DEFAULT_DATA = ROOT.parent.parent / "shared" / "data" / "fashion-mnist"
CONTENDERS = {"a": "cnnkit --preset fast", "b": "cnnkit defaults", "c": "PyTorch MNIST example",
              "d": "fastai defaults", "e": "Keras 3 (torch) defaults"}


class Clock:
    """Wall time since start, minus the paused t10k checks."""

    def __init__(self):
        self.start, self.paused = time.perf_counter(), 0.0

    def now(self) -> float:
        return time.perf_counter() - self.start - self.paused


class Tracker:
    def __init__(self, target: float, x_test, y_test, mean, std):
        import torch

        self.clock, self.target = Clock(), target
        self.x = ((x_test.float() / 255.0 - mean) / std).contiguous()
        self.y = y_test
        self.curve, self.reached = [], None
        self.torch = torch

    def check(self, predict, epoch: int) -> float:
        t0 = time.perf_counter()
        elapsed = self.clock.now()
        acc = float((predict(self.x).argmax(1) == self.y).float().mean())
        self.curve.append({"epoch": epoch, "seconds": round(elapsed, 2), "t10k_acc": round(acc, 4)})
        if self.reached is None and acc >= self.target:
            self.reached = elapsed
        self.clock.paused += time.perf_counter() - t0
        return acc

    def torch_predict(self, model):
        def predict(x):
            model.eval()
            with self.torch.no_grad():
                out = self.torch.cat([model(x[i:i + 1000]) for i in range(0, len(x), 1000)])
            model.train()
            return out
        return predict


def load_fmnist(data: Path, quick: bool):
    import torch

    from cnnkit.data.sources import read_idx

    def idx(name):
        return torch.from_numpy(read_idx(data / name).copy())

    xtr, ytr = idx("train-images-idx3-ubyte.gz"), idx("train-labels-idx1-ubyte.gz").long()
    xte, yte = idx("t10k-images-idx3-ubyte.gz"), idx("t10k-labels-idx1-ubyte.gz").long()
    if quick:
        xtr, ytr = xtr[:12000], ytr[:12000]
    return xtr[:, None], ytr, xte[:, None], yte


# --- the contenders (each runs in a child process) ---------------------------------------------------------
def run_cnnkit(args, preset: str) -> dict:
    import cnnkit
    from cnnkit.engine import Callback

    xtr, ytr, xte, yte = load_fmnist(args.data, args.quick)
    mean, std = float(xtr.float().mean() / 255), float(xtr.float().std() / 255)
    tracker = Tracker(args.target, xte, yte, mean, std)

    class T10k(Callback):
        order = 50

        def after_epoch(self):
            t = self.trainer
            t.model.eval()
            tracker.check(tracker.torch_predict(t.model), t.epoch)

    spec = f"fashion-mnist:{args.data}" if not args.quick else f"fashion-mnist:{args.quick_dir}"
    opts = {"epochs": 2} if args.quick else {}
    out = Path(tempfile.mkdtemp()) / "run"
    result = cnnkit.train(spec, preset=preset, out=str(out), quiet=True, callbacks=[T10k()], **opts)
    return {"epochs": result["epochs"], "images_per_s": _ips(out), "curve": tracker.curve,
            "time_to_target": tracker.reached}


def _ips(run_dir: Path) -> float:
    import csv

    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    return round(sum(float(r["images_per_s"]) for r in rows) / len(rows), 1)


def run_cnnkit_cli(args, seed: int) -> dict:
    """(a) as a user runs it: from the command's start to its last checkpoint on disk, and that checkpoint's
    t10k accuracy. `command_seconds` is the whole command (the report is written after the checkpoint)."""
    import torch

    out = Path(tempfile.mkdtemp()) / "run"
    spec = f"fashion-mnist:{args.data}" if not args.quick else f"fashion-mnist:{args.quick_dir}"
    cmd = [sys.executable, "-m", "cnnkit", "train", "--data", spec, "--preset", "fast", "--out", str(out), "--json",
           "--seed", str(seed)]
    if args.quick:
        cmd += ["--epochs", "2"]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    total = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    wall = (out / "model.safetensors").stat().st_mtime - t0
    import cnnkit

    _, _, xte, yte = load_fmnist(args.data, args.quick)
    tm = cnnkit.load_model(out)
    acc = float((tm.probs(xte).argmax(1) == yte).float().mean())
    shutil.rmtree(out.parent, ignore_errors=True)
    return {"seed": seed, "wall_seconds": round(wall, 2), "command_seconds": round(total, 2),
            "t10k_acc": round(acc, 4), "epochs": json.loads(proc.stdout)["epochs"]}


class ExampleNet:  # built lazily: torch is imported in the child only
    @staticmethod
    def build():
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        class Net(nn.Module):  # verbatim from pytorch/examples mnist/main.py
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


def run_pytorch_example(args) -> dict:
    import torch
    import torch.nn.functional as F
    from torchvision import datasets, transforms

    root = Path(tempfile.mkdtemp())
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    src = args.quick_dir if args.quick else args.data
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(gzip.decompress((src / f"{name}.gz").read_bytes()))
    clock_start = time.perf_counter()  # the files are in place, as after the example's download
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train = datasets.FashionMNIST(str(root), train=True, download=False, transform=transform)
    _, _, xte, yte = load_fmnist(args.data, False)
    tracker = Tracker(args.target, xte, yte, 0.1307, 0.3081)
    tracker.clock.start = clock_start
    loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True)
    torch.manual_seed(1)
    model = ExampleNet.build()
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    epochs = 1 if args.quick else 14
    seen, t_train = 0, 0.0
    for epoch in range(1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        for data, target in loader:
            opt.zero_grad()
            loss = F.nll_loss(model(data), target)
            loss.backward()
            opt.step()
            seen += len(target)
        t_train += time.perf_counter() - t0
        sched.step()
        tracker.check(tracker.torch_predict(model), epoch)
        if tracker.reached is not None or tracker.clock.now() > args.max_seconds:
            break
    shutil.rmtree(root)
    return {"epochs": epoch, "images_per_s": round(seen / t_train, 1), "curve": tracker.curve,
            "time_to_target": tracker.reached}


def _fast_net():
    import cnnkit

    return cnnkit.create_model("fastcnn", num_classes=10, in_channels=1, input_size=(28, 28))


def run_fastai(args) -> dict:
    import torch
    import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle, as `from fastai.vision.all import *` does)
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.callback.core import Callback as FCallback
    from fastai.metrics import accuracy

    clock = Clock()
    xtr, ytr, xte, yte = load_fmnist(args.data, args.quick)
    mean, std = float(xtr.float().mean() / 255), float(xtr.float().std() / 255)
    tracker = Tracker(args.target, xte, yte, mean, std)
    tracker.clock = clock
    xtr_f = (xtr.float() / 255 - mean) / std
    train_ds = list(zip(xtr_f, ytr))
    valid_ds = list(zip(tracker.x[:1000], yte[:1000]))
    dls = DataLoaders.from_dsets(train_ds, valid_ds, bs=64, device=torch.device("cpu"))
    torch.manual_seed(0)
    model = _fast_net()

    class T10k(FCallback):
        order = 90

        def after_epoch(self):
            tracker.check(tracker.torch_predict(self.learn.model), self.epoch + 1)

    learn = Learner(dls, model, loss_func=torch.nn.CrossEntropyLoss(), metrics=accuracy, cbs=[T10k()])
    from fastai.callback.progress import ProgressCallback

    learn.remove_cb(ProgressCallback)  # no bars in the benchmark's log; everything else as documented
    learn.recorder.silent = True
    n = 1 if args.quick else 5
    t0 = time.perf_counter()
    learn.fit_one_cycle(n)
    ips = len(train_ds) * n / (time.perf_counter() - t0 - tracker.clock.paused)
    return {"epochs": n, "images_per_s": round(ips, 1), "curve": tracker.curve, "time_to_target": tracker.reached}


def run_keras(args) -> dict:
    os.environ["KERAS_BACKEND"] = "torch"
    import keras
    import numpy as np

    clock = Clock()
    xtr, ytr, xte, yte = load_fmnist(args.data, args.quick)
    mean, std = float(xtr.float().mean() / 255), float(xtr.float().std() / 255)
    tracker = Tracker(args.target, xte, yte, mean, std)
    tracker.clock = clock
    x = ((xtr.float() / 255 - mean) / std).permute(0, 2, 3, 1).numpy()
    xt = tracker.x.permute(0, 2, 3, 1).numpy()
    keras.utils.set_random_seed(0)
    layers = [keras.Input((28, 28, 1))]
    from cnnkit.models.fast import WIDTHS

    for i, width in enumerate(WIDTHS):  # FastCNN (cnnkit/models/fast.py), layer for layer
        layers += [keras.layers.Conv2D(width, 3, strides=2 if i == 0 else 1, padding="same", use_bias=False),
                   keras.layers.BatchNormalization()]
        layers += [keras.layers.ReLU()] if i == 0 else [keras.layers.MaxPooling2D(2), keras.layers.ReLU()]
    layers += [keras.layers.Flatten(), keras.layers.Dropout(0.1), keras.layers.Dense(10)]
    model = keras.Sequential(layers)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])

    class T10k(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            tracker.check(lambda _: __import__("torch").from_numpy(np.asarray(model.predict(xt, batch_size=1000, verbose=0))),
                          epoch + 1)

    n = 1 if args.quick else 5
    t0 = time.perf_counter()
    model.fit(x, ytr.numpy(), epochs=n, verbose=0, callbacks=[T10k()])
    ips = len(x) * n / (time.perf_counter() - t0 - tracker.clock.paused)
    return {"epochs": n, "images_per_s": round(ips, 1), "curve": tracker.curve, "time_to_target": tracker.reached}


RUNNERS = {"a": lambda a: run_cnnkit(a, "fast"), "b": lambda a: run_cnnkit(a, "default"), "c": run_pytorch_example,
           "d": run_fastai, "e": run_keras}


def child(args) -> None:
    import torch

    torch.manual_seed(0)
    t0 = time.perf_counter()
    try:
        out = RUNNERS[args.run_one](args)
        if args.run_one == "a":
            out["cli"] = [run_cnnkit_cli(args, seed) for seed in range(args.cli_seeds)]
    except ImportError as e:
        out = {"error": f"not installed: {e.name} (pip install -e '.[bench]')"}
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    out["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    Path(args.json_out).write_text(json.dumps(out))


def make_quick_dir(data: Path) -> Path:
    """12,000 training images in IDX files, for --quick (cnnkit reads the same files as everyone)."""
    from cnnkit.data.sources import read_idx

    quick = Path(tempfile.mkdtemp()) / "fmnist-quick"
    quick.mkdir(parents=True)
    for name, n in (("train-images-idx3-ubyte", 12000), ("train-labels-idx1-ubyte", 12000),
                    ("t10k-images-idx3-ubyte", None), ("t10k-labels-idx1-ubyte", None)):
        arr = read_idx(data / f"{name}.gz")
        if n:
            arr = arr[:n]
        header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        (quick / f"{name}.gz").write_bytes(gzip.compress(header + arr.tobytes(), compresslevel=1))
    return quick


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the Fashion-MNIST IDX .gz files")
    p.add_argument("--target", type=float, default=None, help="t10k accuracy to reach (default 0.92; 0.80 with --quick)")
    p.add_argument("--only", default="abcde", help="which contenders, e.g. 'ac'")
    p.add_argument("--quick", action="store_true", help="a short check on 12k images")
    p.add_argument("--max-seconds", type=float, default=900, help="give up on a contender after this long")
    p.add_argument("--cli-seeds", type=int, default=3, help="how many times (seeds 0..N-1) to time (a) as a command")
    p.add_argument("--run-one", help=argparse.SUPPRESS)
    p.add_argument("--json-out", help=argparse.SUPPRESS)
    p.add_argument("--quick-dir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.target = args.target or (0.80 if args.quick else 0.92)
    if args.run_one:
        child(args)
        return 0
    if args.quick:
        args.quick_dir = make_quick_dir(args.data)
    results = {}
    for key in args.only:
        print(f"[{key}] {CONTENDERS[key]} ...", file=sys.stderr, flush=True)
        out = Path(tempfile.mkdtemp()) / "r.json"
        cmd = [sys.executable, __file__, "--run-one", key, "--json-out", str(out), "--data", str(args.data),
               "--target", str(args.target), "--max-seconds", str(args.max_seconds), "--cli-seeds", str(args.cli_seeds)]
        if args.quick:
            cmd += ["--quick", "--quick-dir", str(args.quick_dir)]
        proc = subprocess.run(cmd, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        results[key] = json.loads(out.read_text()) if out.is_file() else {"error": f"exit {proc.returncode}"}
        print(f"[{key}] {json.dumps({k: v for k, v in results[key].items() if k != 'curve'})}", file=sys.stderr, flush=True)
    base = results.get("c", {}).get("time_to_target")
    rows = []
    for key, r in results.items():
        t = r.get("time_to_target")
        best = max((c["t10k_acc"] for c in r.get("curve", [])), default=None)
        rows.append({"name": f"({key}) {CONTENDERS[key]}", "t": t, "best": best, "epochs": r.get("epochs"),
                     "ips": r.get("images_per_s"), "mem": r.get("peak_memory_mb"),
                     "ratio": (base / t) if (base and t) else None, "note": r.get("error", "")})
        for run in r.get("cli", []) if key == "a" else []:
            reached = run["t10k_acc"] >= args.target
            rows.append({"name": f"(a) as a command, seed {run['seed']}", "t": run["wall_seconds"] if reached else None,
                         "best": run["t10k_acc"], "epochs": run["epochs"],
                         "note": f"start to saved checkpoint; whole command {run['command_seconds']:.1f} s"
                         if reached else f"checkpoint below target after {run['wall_seconds']:.1f} s"})
    path = write_results("train_speed_quick" if args.quick else "train_speed", {"target": args.target, "quick": args.quick, "results": results})
    print(f"\nFashion-MNIST, time to {args.target:.0%} t10k accuracy on the CPU ({machine()['cpu']}, "
          f"{os.cpu_count()} cores); speed-up = (c)'s time / this time. Results: {path}")
    print_table(rows, [("name", "contender"), ("t", f"s to {args.target:.0%}"), ("best", "best t10k"),
                       ("epochs", "epochs"), ("ips", "img/s"), ("mem", "peak MB"), ("ratio", "speed-up vs (c)"),
                       ("note", "note")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
