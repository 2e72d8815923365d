"""Data of any size (issue 10): the decoded-image cache, streaming against in-memory data, and predict on
large photos, as the number of images doubles.

Data, written once into --workdir (default /tmp/cnnkit-data-scale) and reused: Fashion-MNIST training images
as 256×256 RGB JPEGs (bicubic upscale, quality 90) in ImageFolders DIR/CLASS/NNNNN.jpg of 10k, 20k and 40k
images (hard links into one pool), and --predict-images (500) 4000×3000 photos (crops of scikit-image's
astronaut, chelsea and coffee, upscaled, with ±12 grey levels of noise so they stay ~3 MB JPEGs).

Every measurement runs in a fresh child process with CNNKIT_CACHE=<workdir>/cache-N, so its peak RSS (VmHWM)
is that of the measured work. A child that loads data first records the peak of `load_data`, then resets the
peak (/proc/self/clear_refs) so the measured step's own peak is reported beside it.

  build    a cold `load_data(DIR, img_size=224, mode='stream')` (the cache folder deleted first): img/s of the
           cache build (decode + resize + write), timed around cnnkit's `open_or_build`; the whole call
           (header scan, build, channel stats) in the JSON.
  pass     one pass over the training split at 224, batches of 128, in a shuffled order (as training reads
           it), no model; load_data is given mean/std (the channel statistics are timed in `first`).
           stream/warm: the cache file in the page cache; stream/evicted: the file's pages dropped first
           (posix_fadvise DONTNEED on that file only), so records come from the disk; memory: where
           2 × decoded size fits in 70% of the available RAM (load_data holds the cache's copy and the
           splits' copies at once).
  first    a second run (the cache reused): load_data + the first training batch, inside the child;
           imports and process start excluded (the whole process is in the JSON).
  train    `cnnkit train --data DIR --data-mode stream|memory --img-size 64 --model simplecnn_bn --epochs 1`
           on the smallest folder (its 64-px cache built beforehand), the two modes alternating: the
           training loop's img/s from metrics.csv (validation excluded) and the command's peak RSS.
  predict  `cnnkit predict RUN LARGE/ --batch-size 64 --save-csv FILE` with the stream run from `train`:
           img/s over the whole command (start-up included) and its peak RSS.

Timings are medians over --runs (3) with their range; a measurement whose first run takes over --long-s
(60 s; train 150 s, predict 300 s) is run once with its peers, and the table says so. Prints a table last;
writes bench/results/data_scale.json. `--only train` (or scale, predict) measures those sections again into
the existing JSON, keeping the others' results (the JSON's `measured` says when and at which commit).

    python bench/data_scale.py            # 10k, 20k, 40k images: ~25 min on 2 cores, ~9 GB of disk at most
    python bench/data_scale.py --quick    # 1k, 2k, 4k images, 40 photos, 1 run each: ~4 min (data_scale_quick.json)
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, ROOT, machine, peak_rss_mb, print_table, reset_peak_rss, spread, write_results

REPO = ROOT.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "fashion-mnist"
SIDE = 224  # the pass, first-batch and build measurements: ImageNet-sized input
TRAIN_SIDE = 64  # the training comparison: small enough for whole epochs in seconds, so the data path shows
BATCH = 128
JPEG_SIDE, JPEG_QUALITY = 256, 90


# --- the data (written once, reused) -----------------------------------------------------------------------
def _class_dirs() -> list[str]:
    from cnnkit.data.sources import FASHION_CLASSES

    return [f"{i}_{c.replace('/', '-')}" for i, c in enumerate(FASHION_CLASSES)]


def _write_small(job) -> int:
    from PIL import Image

    pool, items = job
    for i, label, pixels in items:
        path = Path(pool) / label / f"{i:05d}.jpg"
        if not path.is_file():
            im = Image.fromarray(pixels, "L").resize((JPEG_SIDE, JPEG_SIDE), Image.Resampling.BICUBIC)
            tmp = path.with_suffix(".tmp")
            im.convert("RGB").save(tmp, "JPEG", quality=JPEG_QUALITY)
            os.replace(tmp, path)
    return len(items)


def write_folders(data: Path, work: Path, sizes: list[int]) -> dict[int, Path]:
    """ImageFolders of the first n Fashion-MNIST training images, n in sizes (hard links into one pool)."""
    import numpy as np
    from concurrent.futures import ProcessPoolExecutor

    from cnnkit.data.sources import read_idx

    folders = {n: work / "jpeg" / f"fmnist-{n}" for n in sizes}
    todo = [n for n in sizes if not (work / "jpeg" / f"fmnist-{n}.done").is_file()]
    if not todo:
        return folders
    x = read_idx(data / "train-images-idx3-ubyte.gz")
    y = read_idx(data / "train-labels-idx1-ubyte.gz").astype(np.int64)
    if max(sizes) > len(x):
        raise SystemExit(f"--sizes: Fashion-MNIST has {len(x):,} training images, asked for {max(sizes):,}")
    classes = _class_dirs()
    pool = work / "jpeg" / "pool"
    for c in classes:
        (pool / c).mkdir(parents=True, exist_ok=True)
    n = max(todo)
    t0 = time.perf_counter()
    jobs = [(str(pool), [(i, classes[y[i]], x[i]) for i in range(s, min(n, s + 1000))]) for s in range(0, n, 1000)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as ex:
        done = 0
        for k in ex.map(_write_small, jobs):
            done += k
            print(f"\r  writing {n:,} JPEGs: {done:,}", end="", file=sys.stderr, flush=True)
    print(f" ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    for m in todo:
        folder = folders[m]
        shutil.rmtree(folder, ignore_errors=True)
        for c in classes:
            (folder / c).mkdir(parents=True)
        for i in range(m):
            name = f"{classes[y[i]]}/{i:05d}.jpg"
            os.link(pool / name, folder / name)
        (work / "jpeg" / f"fmnist-{m}.done").write_text(str(m))
    return folders


def _write_large(job) -> int:
    import numpy as np
    from PIL import Image
    from skimage import data as samples

    folder, indices, (w, h), seed = job
    sources = [samples.astronaut(), samples.chelsea(), samples.coffee()]
    rng = np.random.default_rng(seed)
    noise = rng.integers(-12, 13, size=(h + 32, w + 32, 3), dtype=np.int16)
    for i in indices:
        path = Path(folder) / f"{i:04d}.jpg"
        if path.is_file():
            continue
        src = sources[i % len(sources)]
        sh, sw = src.shape[:2]
        ch = int(min(sh, sw * h / w) * rng.uniform(0.6, 1.0))  # a random 4:3 crop, 60-100% of the largest
        cw = int(ch * w / h)
        y0, x0 = rng.integers(0, sh - ch + 1), rng.integers(0, sw - cw + 1)
        im = Image.fromarray(src[y0:y0 + ch, x0:x0 + cw]).resize((w, h), Image.Resampling.BICUBIC)
        dy, dx = rng.integers(0, 33), rng.integers(0, 33)
        a = np.asarray(im, dtype=np.int16) + noise[dy:dy + h, dx:dx + w]
        tmp = path.with_suffix(".tmp")
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(tmp, "JPEG", quality=JPEG_QUALITY)
        os.replace(tmp, path)
    return len(indices)


def write_large(work: Path, count: int, size: tuple[int, int]) -> Path:
    from concurrent.futures import ProcessPoolExecutor

    folder = work / f"large-{size[0]}x{size[1]}-{count}"
    marker = folder.with_suffix(".done")
    if marker.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    workers = os.cpu_count() or 1
    t0 = time.perf_counter()
    jobs = [(str(folder), list(range(k, count, workers * 4)), size, k) for k in range(workers * 4)]
    with ProcessPoolExecutor(max_workers=workers) as ex:
        done = 0
        for k in ex.map(_write_large, jobs):
            done += k
            print(f"\r  writing {count} {size[0]}x{size[1]} JPEGs: {done}", end="", file=sys.stderr, flush=True)
    print(f" ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    marker.write_text(str(count))
    return folder


# --- the children -------------------------------------------------------------------------------------------
def _fincore_mb(path: Path) -> float | None:
    """MB of `path` in the OS page cache (util-linux fincore), or None where it is not installed."""
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                             capture_output=True, text=True, check=True).stdout.split()
        return round(int(out[0]) / 2**20, 1)
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return None


def _cache_files() -> list[Path]:
    from cnnkit.data.cache import cache_root

    return sorted(cache_root().glob("*/images.u8"))


def child_build(p: dict) -> dict:
    import cnnkit.data.dataset as dataset
    from cnnkit.data import load_data

    timing = {}
    original = dataset.open_or_build

    def timed(*a, **kw):  # the build alone, between the header scan and the channel statistics
        t = time.perf_counter()
        out = original(*a, **kw)
        timing.update(build_s=time.perf_counter() - t, built=out[1], build_peak_mb=peak_rss_mb())
        return out

    dataset.open_or_build = timed
    t0 = time.perf_counter()
    ds = load_data(p["dir"], img_size=SIDE, mode="stream", log=io.StringIO())
    total = time.perf_counter() - t0
    n = sum(len(s) for s in ds.splits.values())
    if not timing.get("built"):
        raise RuntimeError("the cache was not cold: load_data found it already built")
    return {"images": n, "build_s": timing["build_s"], "images_per_s": n / timing["build_s"],
            "load_data_s": total, "build_peak_mb": timing["build_peak_mb"], "peak_mb": peak_rss_mb(),
            "cache_mb": sum(f.stat().st_size for f in _cache_files()) / 2**20}


def child_pass(p: dict) -> dict:
    import torch

    from cnnkit.data import load_data

    t0 = time.perf_counter()
    # mean/std given: the channel statistics (timed in the `first` rows) are no part of a pass
    ds = load_data(p["dir"], img_size=SIDE, mode=p["mode"], mean=(0.5,) * 3, std=(0.25,) * 3, log=io.StringIO())
    load_s = time.perf_counter() - t0
    load_peak = peak_rss_mb()
    reset = reset_peak_rss()
    files = _cache_files()
    if p.get("evict"):
        for f in files:
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    resident = sum(filter(None, (_fincore_mb(f) for f in files))) if files else None
    split = ds.train
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))
    seen, t = 0, time.perf_counter()
    for x, _ in split.batches(BATCH, order):
        seen += len(x)
    seconds = time.perf_counter() - t
    step_peak = peak_rss_mb()
    return {"mode": ds.mode, "images": seen, "seconds": seconds, "images_per_s": seen / seconds,
            "load_data_s": load_s, "load_peak_mb": load_peak, "step_peak_mb": step_peak if reset else None,
            "peak_mb": max(load_peak, step_peak), "cache_resident_mb_before": resident}


def child_first(p: dict, started: float) -> dict:
    t0 = time.perf_counter()
    import torch

    from cnnkit.data import load_data

    t1 = time.perf_counter()
    ds = load_data(p["dir"], img_size=SIDE, mode=p["mode"], log=io.StringIO())
    t2 = time.perf_counter()
    order = torch.randperm(len(ds.train), generator=torch.Generator().manual_seed(0))
    batches = ds.train.batches(BATCH, order)
    x, _ = next(batches)
    t3 = time.perf_counter()
    batches.close()
    return {"mode": ds.mode, "batch": list(x.shape), "since_child_start_s": t0 - started, "import_s": t1 - t0,
            "load_data_s": t2 - t1, "first_batch_s": t3 - t1, "peak_mb": peak_rss_mb()}


def _command(cmd: list[str]) -> tuple[subprocess.CompletedProcess, float, float, float]:
    """Run a cnnkit command; (process, seconds, its peak RSS in MB, its CPU seconds). This child has no other
    children, so RUSAGE_CHILDREN is that command's."""
    import resource

    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-1500:]}")
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return proc, seconds, ru.ru_maxrss / 1024, ru.ru_utime + ru.ru_stime


def child_train(p: dict) -> dict:
    import csv

    out = Path(tempfile.mkdtemp(prefix=f"{p['mode']}-", dir=p["runs_dir"])) / "run"
    cmd = [sys.executable, "-m", "cnnkit", "train", "--data", p["dir"], "--data-mode", p["mode"],
           "--img-size", str(TRAIN_SIDE), "--model", "simplecnn_bn", "--epochs", "1", "--seed", "0",
           "--no-report", "--out", str(out), "--json"]
    proc, seconds, peak, cpu = _command(cmd)
    row = list(csv.DictReader(open(out / "metrics.csv")))[-1]
    result = json.loads(proc.stdout)
    return {"mode": p["mode"], "images_per_s": float(row["images_per_s"]), "epoch_s": float(row["seconds"]),
            "val_acc": float(row["val_acc"]), "command_s": seconds, "command_cpu_s": cpu, "peak_mb": peak,
            "run_dir": str(out),
            "batch_size": result.get("batch_size"), "cmd": " ".join(cmd[2:])}


def child_predict(p: dict) -> dict:
    import csv

    out = Path(p["csv"])
    cmd = [sys.executable, "-m", "cnnkit", "predict", p["run"], p["dir"], "--batch-size", "64", "--save-csv", str(out)]
    _, seconds, peak, cpu = _command(cmd)
    rows = list(csv.reader(open(out)))[1:]
    out.unlink()
    return {"images": len(rows), "command_s": seconds, "command_cpu_s": cpu, "images_per_s": len(rows) / seconds,
            "peak_mb": peak,
            "cmd": " ".join(cmd[2:])}


def child_warmup(p: dict) -> dict:
    from cnnkit.data import load_data

    t = time.perf_counter()
    load_data(p["dir"], img_size=p["img_size"], mode="stream", log=io.StringIO())
    return {"load_data_s": time.perf_counter() - t, "peak_mb": peak_rss_mb()}


def child_baseline(p: dict) -> dict:
    import cnnkit  # noqa: F401
    import cnnkit.data  # noqa: F401

    return {"peak_mb": peak_rss_mb()}


CHILDREN = {"build": child_build, "pass": child_pass, "train": child_train, "predict": child_predict,
            "baseline": child_baseline,
            "warmup": child_warmup}


def child(kind: str, params: dict, json_out: str) -> None:
    started = time.perf_counter()
    out = child_first(params, started) if kind == "first" else CHILDREN[kind](params)
    Path(json_out).write_text(json.dumps(out))


# --- the parent ---------------------------------------------------------------------------------------------
def run_child(kind: str, params: dict, cache: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        env = {**os.environ, "CNNKIT_CACHE": str(cache), "PYTHONWARNINGS": "ignore",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        cmd = [sys.executable, __file__, "--child", kind, "--params", json.dumps(params), "--json-out", str(out)]
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if proc.returncode != 0 or not out.is_file():
            last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
            why = (f"killed by signal {-proc.returncode} (out of memory?)" if proc.returncode < 0
                   else f"exit {proc.returncode}: {last}")
            print(proc.stderr[-3000:], file=sys.stderr)
            return {"error": why, "process_s": wall}
        return {**json.loads(out.read_text()), "process_s": wall}


class Bench:
    def __init__(self, args):
        self.args = args
        self.results: dict = {}
        self.partial = args.workdir / "partial.json"

    def save(self) -> None:
        self.partial.write_text(json.dumps(self.results, indent=1, default=str))

    def measure(self, key: str, label: str, plan: list[tuple[str, str, dict, Path]], *, before=None,
                long_s: float | None = None) -> None:
        """Run each (name, kind, params, cache) of `plan` --runs times, interleaved round by round. The entries
        of a plan are peers: when one of them took over `long_s` (default --long-s) in the first round, they all
        stop there, so every entry has as many runs as its peers. A failed entry stops alone.
        `before(name)` runs before each child (e.g. a cache clear)."""
        store = self.results.setdefault(key, {})
        active = [name for name, *_ in plan]
        for r in range(self.args.runs):
            if r == 1 and any(store[name][0]["process_s"] > (long_s or self.args.long_s) for name in active):
                break
            for name, kind, params, cache in plan:
                if name not in active:
                    continue
                if before:
                    before(name)
                res = run_child(kind, params, cache)
                store.setdefault(name, []).append(res)
                brief = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in res.items()
                         if k in ("images_per_s", "first_batch_s", "peak_mb", "step_peak_mb", "process_s", "error",
                                  "cache_resident_mb_before")}
                print(f"  {label} {name} run {r + 1}: {brief}", file=sys.stderr, flush=True)
                if "error" in res:
                    active.remove(name)
            self.save()


def mem_available() -> int:
    from cnnkit.data.dataset import available_memory

    return available_memory()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the Fashion-MNIST IDX .gz files")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/cnnkit-data-scale"),
                   help="where the JPEGs and caches go (reused when already written)")
    p.add_argument("--sizes", default=None, help="comma-separated image counts (default 10000,20000,40000)")
    p.add_argument("--quick", action="store_true", help="1k, 2k, 4k images and 40 photos: a check in minutes")
    p.add_argument("--runs", type=int, default=None, help="repeats of each timing (default 3; 1 with --quick)")
    p.add_argument("--long-s", type=float, default=60, help="a measurement whose first run takes longer runs once")
    p.add_argument("--predict-images", type=int, default=None, help="large JPEGs for predict (default 500; 40 quick)")
    p.add_argument("--large-size", default="4000x3000", help="W x H of the predict JPEGs")
    p.add_argument("--only", default=None, help=f"measure only these sections ({', '.join(SECTIONS)}), "
                   "keeping the others' results from the existing JSON")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--params", help=argparse.SUPPRESS)
    p.add_argument("--json-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, json.loads(args.params), args.json_out)
        return 0
    args.runs = args.runs or (1 if args.quick else 3)  # --quick checks that everything runs; figures take 3
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    if only - set(SECTIONS):
        p.error(f"--only {args.only}: the sections are {', '.join(SECTIONS)}")
    name = "data_scale_quick" if args.quick else "data_scale"
    sizes = sorted(int(s) for s in (args.sizes or ("1000,2000,4000" if args.quick else "10000,20000,40000")).split(","))
    n_large = args.predict_images or (40 if args.quick else 500)
    large_size = tuple(int(v) for v in args.large_size.lower().split("x"))
    args.workdir.mkdir(parents=True, exist_ok=True)
    work = args.workdir
    t_start = time.time()

    print(f"data in {work}", file=sys.stderr)
    folders = write_folders(args.data, work, sizes)
    large = write_large(work, n_large, large_size) if "predict" in only else None
    bench = Bench(args)
    measured: dict = {}
    if args.only:  # the other sections' results, as the last full run left them
        try:
            prev = json.loads((RESULTS / f"{name}.json").read_text())
        except OSError:
            p.error(f"--only needs an earlier run's {RESULTS / f'{name}.json'}; run without --only first")
        bench.results = {k: v for k, v in prev["results"].items() if _section(k) not in only}
        measured = {k: v for k, v in prev.get("measured", {}).items() if k not in only}
        for sec in set(SECTIONS) - only:
            measured.setdefault(sec, {"commit": prev.get("cnnkit_commit"), "date": prev["machine"]["date"],
                                      "runs": prev.get("runs")})
    for sec in only:
        measured[sec] = {"commit": _git_commit(), "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": args.runs}
    cache = lambda n: work / f"cache-{n}"  # noqa: E731  (one CNNKIT_CACHE per folder: a cold start deletes it)
    decoded = lambda n, side=SIDE: n * 3 * side * side  # noqa: E731

    if "scale" in only:
        print("baseline (import cnnkit)", file=sys.stderr)
        bench.measure("baseline", "baseline", [("import", "baseline", {}, cache("none"))])
        base_mb = max(r["peak_mb"] for r in bench.results["baseline"]["import"])

        for n in sizes:
            d = str(folders[n])
            print(f"{n:,} images ({decoded(n) / 1e9:.2f} GB decoded at {SIDE}px)", file=sys.stderr, flush=True)
            bench.measure(f"{n}/build", f"[{n:,}]", [("build", "build", {"dir": d}, cache(n))],
                          before=lambda _name, n=n: shutil.rmtree(cache(n), ignore_errors=True))
            plan = [("stream warm", "pass", {"dir": d, "mode": "stream"}, cache(n)),
                    ("stream evicted", "pass", {"dir": d, "mode": "stream", "evict": True}, cache(n))]
            bench.measure(f"{n}/pass", f"[{n:,}] pass", plan)
            # memory mode: load_data holds the cache's copy and the splits' copies at once, plus what a
            # stream load_data needs beyond an idle child
            stream_load = max(r.get("load_peak_mb", 0) for r in bench.results[f"{n}/pass"]["stream warm"])
            need = 2 * decoded(n) + max(0.0, stream_load - base_mb) * 2**20
            fits = need < 0.7 * mem_available()
            bench.results[f"{n}/memory_fits"] = {"need_gb": need / 1e9, "available_gb": mem_available() / 1e9,
                                                 "fits": fits}
            if fits:
                bench.measure(f"{n}/pass", f"[{n:,}] pass",
                              [("memory", "pass", {"dir": d, "mode": "memory"}, cache(n))])
            first = [("stream", "first", {"dir": d, "mode": "stream"}, cache(n))]
            if fits:
                first.append(("memory", "first", {"dir": d, "mode": "memory"}, cache(n)))
            bench.measure(f"{n}/first", f"[{n:,}] first batch", first)
            shutil.rmtree(cache(n), ignore_errors=True)  # its disk (up to 6 GB) and page cache, freed for the next

    base_mb = max(r["peak_mb"] for r in bench.results["baseline"]["import"])

    n0 = sizes[0]
    if "train" in only:
        print(f"training at {TRAIN_SIDE}px on {n0:,} images", file=sys.stderr, flush=True)
        runs_dir = work / "runs"
        shutil.rmtree(runs_dir, ignore_errors=True)
        runs_dir.mkdir()
        warm = run_child("warmup", {"dir": str(folders[n0]), "img_size": TRAIN_SIDE}, cache("train"))
        bench.results["train_cache_warmup"] = warm  # builds the 64-px cache, so no training run pays for it
        bench.measure("train", "train", [(m, "train", {"dir": str(folders[n0]), "mode": m, "runs_dir": str(runs_dir)},
                                          cache("train")) for m in ("stream", "memory")],
                      long_s=max(args.long_s, 150))  # about a minute a run, and the target: worth 3 runs
    stream_runs = [r for r in bench.results.get("train", {}).get("stream", [])
                   if "run_dir" in r and Path(r["run_dir"]).is_dir()]
    if "predict" in only and not stream_runs:
        print("predict: no trained run from the train section on disk; run with --only train,predict",
              file=sys.stderr)
    if "predict" in only and stream_runs:
        print(f"predict over {n_large} {large_size[0]}x{large_size[1]} JPEGs", file=sys.stderr, flush=True)
        params = {"run": stream_runs[0]["run_dir"], "dir": str(large), "csv": str(work / "predict.csv")}
        bench.measure("predict", "predict", [("predict", "predict", params, cache("train"))],
                      long_s=max(args.long_s, 300))  # a few minutes at most: worth its 3 runs
    rows = table_rows(bench.results, sizes, n_large, large_size, base_mb)
    mach = machine()
    payload = {"cnnkit_commit": _git_commit(), "measured": measured, "quick": args.quick, "sizes": sizes,
               "img_size": SIDE, "train_img_size": TRAIN_SIDE, "batch": BATCH,
               "workdir": str(work), "predict_images": n_large, "large_size": list(large_size),
               "ram_gb": _ram_gb(), "minutes": round((time.time() - t_start) / 60, 1), "runs": args.runs,
               "long_s": args.long_s, "table": rows, "results": bench.results}
    path = write_results(name, payload)
    flags = "avx512" if mach["avx512"] else ("avx2" if _has_flag("avx2") else "no avx2")
    print(f"\ncnnkit data layer as the image count doubles; {mach['cpu']} ({flags}), {mach['cores']} cores, "
          f"{_ram_gb():.0f} GB RAM, torch {mach['torch']}. Medians over the runs shown (range min-max); peak RSS "
          f"is the largest over those runs; an idle child that imports cnnkit peaks at {base_mb:,.0f} MB. "
          f"Results: {path}")
    if args.only:
        print("Sections measured: " + "; ".join(f"{k} {v['date']} (cnnkit {v['commit']}, runs {v['runs']})"
                                                 for k, v in sorted(measured.items())))
    print_table(rows, [("n", "images"), ("what", "measurement"), ("median", "median"), ("range", "range"),
                       ("unit", "unit"), ("runs", "runs"), ("peak", "peak RSS MB"), ("step_peak", "step peak MB"),
                       ("decoded", "decoded GB"), ("note", "note")])
    return 0


SECTIONS = ("scale", "train", "predict")


def _section(key: str) -> str:
    """Which section a results key belongs to: scale ('baseline', 'N/...'), train, predict."""
    return "scale" if key == "baseline" or key[:1].isdigit() else ("train" if key.startswith("train") else key)


def _git_commit() -> str | None:
    """The commit measured, with '+dirty' when cnnkit/ has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "cnnkit"], cwd=REPO, capture_output=True,
                               text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def _ram_gb() -> float:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) / 2**20


def _has_flag(flag: str) -> bool:
    with open("/proc/cpuinfo") as f:
        return any(line.startswith("flags") and f" {flag}" in line for line in f)


# --- the table ---------------------------------------------------------------------------------------------
def _fmt(v: float, unit: str) -> str:
    return f"{v:,.2f}" if unit == "s" else f"{v:,.0f}"


def _row(n, what, runs: list[dict], key: str, unit: str, *, decoded=None, note="", step_key=None) -> dict:
    ok = [r for r in runs if "error" not in r and r.get(key) is not None]
    if not ok:
        return {"n": f"{n:,}" if isinstance(n, int) else n, "what": what,
                "note": "; ".join(r["error"] for r in runs) or note}
    s = spread([r[key] for r in ok])
    step = [r[step_key] for r in ok if r.get(step_key) is not None] if step_key else []
    once = len(ok) == 1
    return {"n": f"{n:,}" if isinstance(n, int) else n, "what": what, "median": _fmt(s["median"], unit),
            "range": "once" if once else f"{_fmt(s['min'], unit)}-{_fmt(s['max'], unit)}", "unit": unit,
            "runs": s["runs"], "peak": f"{max(r['peak_mb'] for r in ok):,.0f}",
            "step_peak": f"{max(step):,.0f}" if step else None,
            "decoded": f"{decoded / 1e9:.2f}" if decoded else None, "note": note,
            "stats": s}


def table_rows(results: dict, sizes: list[int], n_large: int, large_size, base_mb: float) -> list[dict]:
    rows = []
    for n in sizes:
        dec = n * 3 * SIDE * SIDE
        build = results.get(f"{n}/build", {}).get("build", [])
        ok = [r for r in build if "error" not in r]
        note = (f"load_data {spread([r['load_data_s'] for r in ok])['median']:.1f} s in all; "
                f"cache {ok[0]['cache_mb'] / 1024:.2f} GB" if ok else "")
        if len(ok) == 1:
            note += f"; once (took {ok[0]['process_s']:.0f} s)"
        rows.append(_row(n, "cache build, cold", build, "images_per_s", "img/s", decoded=dec, note=note,
                         step_key="build_peak_mb"))
        passes = results.get(f"{n}/pass", {})
        for name in ("stream warm", "stream evicted", "memory"):
            runs = passes.get(name)
            if runs is None:
                if name == "memory":
                    fit = results.get(f"{n}/memory_fits", {})
                    rows.append({"n": f"{n:,}", "what": "pass, memory", "decoded": f"{dec / 1e9:.2f}",
                                 "note": f"not run: would need ~{fit.get('need_gb', 0):.1f} GB of "
                                         f"{fit.get('available_gb', 0):.1f} GB available"})
                continue
            ok = [r for r in runs if "error" not in r]
            res = [r.get("cache_resident_mb_before") for r in ok if r.get("cache_resident_mb_before") is not None]
            note = "step peak: the pass alone, after load_data"
            if res and name.startswith("stream"):
                note += f"; cache in page cache at start: {min(res):,.0f}-{max(res):,.0f} MB"
            rows.append(_row(n, f"pass, {name}", runs, "images_per_s", "img/s", decoded=dec, note=note,
                             step_key="step_peak_mb"))
        for name, runs in results.get(f"{n}/first", {}).items():
            ok = [r for r in runs if "error" not in r]
            note = ""
            if ok:
                note = (f"load_data (mean/std included) + first batch, in the child; + imports "
                        f"{spread([r['import_s'] for r in ok])['median']:.1f} s, whole process "
                        f"{spread([r['process_s'] for r in ok])['median']:.1f} s")
            rows.append(_row(n, f"first batch, 2nd run, {name}", runs, "first_batch_s", "s", decoded=dec, note=note))
    train = results.get("train", {})
    for name, runs in train.items():
        ok = [r for r in runs if "error" not in r]
        note = ""
        if ok:
            note = (f"cnnkit train --img-size {TRAIN_SIDE} simplecnn_bn, 1 epoch; val_acc "
                    f"{spread([r['val_acc'] for r in ok])['median']:.3f}")
            cpu = [r["command_cpu_s"] for r in ok if "command_cpu_s" in r]
            if cpu:
                wall = spread([r["command_s"] for r in ok])["median"]
                note += f"; command: CPU {spread(cpu)['median']:.0f} s, wall {wall:.0f} s"
        rows.append(_row(f"{sizes[0]:,}", f"train 1 epoch, {name}", runs, "images_per_s", "img/s",
                         decoded=sizes[0] * 3 * TRAIN_SIDE * TRAIN_SIDE, note=note))
    s, m = train.get("stream"), train.get("memory")
    if s and m:  # the runs alternate stream, memory: each round's ratio compares peers run side by side
        pairs = [(a["images_per_s"], b["images_per_s"]) for a, b in zip(s, m) if "error" not in a and "error" not in b]
        if pairs:
            r = spread([a / b for a, b in pairs])
            rows.append({"n": f"{sizes[0]:,}", "what": "train: stream / memory", "median": f"{r['median']:.3f}",
                         "range": f"{r['min']:.3f}-{r['max']:.3f}" if r["runs"] > 1 else "once", "unit": "ratio",
                         "runs": r["runs"], "note": "per round (stream run / the memory run after it); "
                                                   "issue 10's target: within 10% (>= 0.90)"})
    pred = results.get("predict", {}).get("predict", [])
    rows.append(_row(f"{n_large} photos", f"predict {large_size[0]}x{large_size[1]} JPEGs", pred, "images_per_s",
                     "img/s", note="cnnkit predict --batch-size 64 --save-csv, whole command incl. start-up; "
                                   "8.5 GB peak before the rewrite (issue 10)"))
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
