"""Training images/s on this CPU: 1 process x 1 thread, 2 processes x 1 thread (torchrun + DDP, gloo), and 1
process x 2 threads, same model, data and global batch.

Each configuration is a real `cnnkit train` run; its speed is the training images/s of epochs 2..E (epoch 1 warms
up) from the run's metrics.csv: train images x epochs / training seconds, evaluation and checkpoints excluded.
Median and range of --runs runs, the configurations interleaved so a change in the machine's load hits all alike.

    python bench/ddp_speed.py            # digits at 28x28 (1,437 training images), fastcnn, 3 epochs, 3 runs
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, machine, print_table, spread, write_results

CONFIGS = [("1 process x 1 thread", 1, 1), ("2 processes x 1 thread", 2, 1), ("1 process x 2 threads", 1, 2)]


def one_run(nproc: int, threads: int, args, out: Path) -> float:
    train = ["train", "--data", args.data, "--img-size", str(args.img_size), "--model", args.model, "--epochs",
             str(args.epochs), "--batch-size", str(args.batch_size), "--augment", "none", "--no-report",
             "--no-calibrate", "--device", "cpu", "--out", str(out)]
    if nproc == 1:
        cmd = [sys.executable, "-m", "cnnkit", *train]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "cnnkit", *train]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT.parent))
    p = subprocess.run(cmd, cwd=ROOT.parent, env=env, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{(p.stdout + p.stderr)[-2000:]}")
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))[1:]  # epoch 1 warms up
    images = sum(float(r["images_per_s"]) * float(r["seconds"]) for r in rows)
    return images / sum(float(r["seconds"]) for r in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--img-size", type=int, default=28)
    p.add_argument("--model", default="fastcnn")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64, help="the global batch, the same in every configuration")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    speeds: dict[str, list[float]] = {name: [] for name, _, _ in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for name, nproc, threads in CONFIGS:
                speeds[name].append(one_run(nproc, threads, args, Path(tmp) / f"{run}-{nproc}-{threads}"))
                print(f"run {run + 1}/{args.runs}  {name}: {speeds[name][-1]:,.0f} images/s", flush=True)
    base = spread(speeds[CONFIGS[0][0]])["median"]
    rows = []
    for name, nproc, threads in CONFIGS:
        s = spread(speeds[name])
        rows.append({"config": name, "processes": nproc, "threads_each": threads, **s,
                     "range": f"{s['min']:,.0f}-{s['max']:,.0f}", "speedup": round(s["median"] / base, 2),
                     "all": speeds[name]})
    m = machine()
    print(f"\n{args.data} {args.img_size}x{args.img_size}, {args.model}, global batch {args.batch_size}, training "
          f"images/s of epochs 2-{args.epochs}, median of {args.runs} runs; CPU: {m['cpu']} ({m['cores']} cores); "
          f"no GPU used")
    print_table(rows, [("config", "configuration"), ("median", "images/s"), ("range", "min-max"),
                       ("speedup", "x 1x1")])
    write_results("ddp_speed", {"settings": vars(args), "results": rows, "gpu": "none (no GPU lent to this task)"})


if __name__ == "__main__":
    main()
