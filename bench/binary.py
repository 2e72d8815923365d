"""The binary medical workflow (issue 13), measured: an imbalanced two-class task from Fashion-MNIST, a
decision threshold chosen for a sensitivity, calibration, class balancing, TTA, and DICOM input.

Data (written once under --workdir, default /tmp/cnnkit-binary; seeded, deterministic, existing files kept):
'Shirt' is the positive class at 10% prevalence against its three look-alikes, T-shirt/top, Pullover and
Coat. Each split takes every look-alike image of its IDX file as a negative and a seeded random subset of its
Shirt images as positives, as many as makes them 10% (train: 15,000 + 1,667 from the 50,000-image train
file; test: 3,000 + 333 from t10k), written twice with the same images and names:
  png/{train,test}/{negative,shirt}/NNNNN.png     8-bit grayscale (NNNNN: the image's index in its IDX file)
  dicom/{train,test}/{negative,shirt}/NNNNN.dcm   16-bit MONOCHROME1 Secondary Capture, 12 bits stored as
      (255 - p) * 16, RescaleSlope 0.5, RescaleIntercept -100, and a window (C 920.5, W 2041) that maps the
      rescaled range -100..1940 exactly onto 0..255; a viewer (rescale, window, invert MONOCHROME1) shows p.
      The encoding is checked on sampled files with pydicom's own LUT functions (max |difference| printed).
cnnkit reads DIR/train and DIR/test as splits and cuts its stratified validation split from train itself:
the threshold and the temperature are chosen on validation, and the test split is only reported.

Runs, each with --positive shirt --operating-point sensitivity=0.95 and cnnkit's default epochs (--epochs to
change), once per --seed, each evaluated on test with and without TTA:
  none, weights, sampler   --balance none / weights / sampler, on PNG
  png-default, dicom       no --balance (cnnkit's default choice), on PNG and on DICOM: a like-for-like pair

Checks (the issue's acceptance): (1) the test sensitivity's 95% CI contains 0.95, each run; (2) ECE after
temperature scaling is below ECE before, each run; (3) balanced accuracy at 0.5 with weights and with
sampler is at least that with none, each seed; (4) TTA's ROC-AUC gain, reported (positive or not);
(5) |accuracy on DICOM - accuracy on PNG| <= 0.005, each seed.

    python bench/binary.py --data-only   # build both folders and check the DICOM encoding (~3 min)
    python bench/binary.py --quick       # smoke run: 1/5 of the data, 3 epochs, seed 0 -> binary_quick.json
    python bench/binary.py               # the table (five trainings per seed; long on 2 cores) -> binary.json

Each run caches its row in RUN_DIR/bench_row.json: an interrupted sweep resumes where it stopped. The exit
status is 1 when a check fails (or could not be judged).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from _common import machine, print_table, spread, write_results  # noqa: E402  (puts the checkout on sys.path)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fashion-mnist"
NEGATIVE_LABELS, SHIRT = (0, 2, 4), 6  # T-shirt/top, Pullover, Coat; Shirt
PREVALENCE = 0.10
DATA_SEED = 13  # the number: which shirts are drawn (and which images --quick keeps)
OPERATING_POINT, TARGET_SENSITIVITY = "sensitivity=0.95", 0.95
ACCURACY_TOLERANCE = 0.005  # DICOM against PNG
# DICOM encoding: stored = (255 - p) * STEP in 12 bits; value = SLOPE * stored + INTERCEPT
STEP, SLOPE, INTERCEPT = 16, 0.5, -100.0
V_LO, V_HI = INTERCEPT, SLOPE * 255 * STEP + INTERCEPT  # -100 .. 1940: the rescaled range of p = 255 .. 0
# DICOM's LINEAR window maps c - 0.5 - (w-1)/2 .. c - 0.5 + (w-1)/2 onto the output range: make that V_LO..V_HI
WINDOW_WIDTH = V_HI - V_LO + 1  # 2041
WINDOW_CENTER = (V_LO + V_HI) / 2 + 0.5  # 920.5
PATIENT_NAME = "Anonymous^Bench"
# name, data format, balance (None: pass nothing, cnnkit's default)
CONFIGS = (("none", "png", "none"), ("weights", "png", "weights"), ("sampler", "png", "sampler"),
           ("png-default", "png", None), ("dicom", "dicom", None))
REPORT_KEYS = ("accuracy", "prevalence", "threshold", "sensitivity", "specificity", "ppv", "npv", "f1",
               "balanced_accuracy", "roc_auc", "pr_auc", "ece", "ece_uncalibrated", "ci95", "at_half")


# -- data ---------------------------------------------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    import gzip

    raw = gzip.open(path).read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def select(y: np.ndarray, split: str, fraction: float) -> dict[str, np.ndarray]:
    """{'negative': indices, 'shirt': indices} into one IDX file: every look-alike (or a seeded `fraction` of
    them) and round(negatives / 9) seeded shirts, so that shirts are 10% of the split."""
    rng = np.random.default_rng([DATA_SEED, ("train", "test").index(split)])
    neg = np.flatnonzero(np.isin(y, NEGATIVE_LABELS))
    if fraction < 1:
        neg = np.sort(rng.choice(neg, round(len(neg) * fraction), replace=False))
    n_pos = round(len(neg) * PREVALENCE / (1 - PREVALENCE))
    pos = np.sort(rng.choice(np.flatnonzero(y == SHIRT), n_pos, replace=False))
    return {"negative": neg, "shirt": pos}


def _atomic(path: Path, write) -> None:
    """write(tmp) then rename: an interrupted build never leaves a half file that a rerun would skip."""
    tmp = path.with_name(path.name + ".part")
    write(tmp)
    os.replace(tmp, path)


def write_png(a: np.ndarray, path: Path) -> None:
    from PIL import Image

    _atomic(path, lambda tmp: Image.fromarray(a, "L").save(tmp, format="PNG"))


def write_dicom(a: np.ndarray, path: Path, key: str, number: int) -> None:
    """One 8-bit image as a 16-bit MONOCHROME1 Secondary Capture file (see the module docstring)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    uid = lambda *parts: generate_uid(entropy_srcs=["cnnkit-bench-binary", *map(str, parts)])  # noqa: E731
    split, cls = key.split("/")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage  # 1.2.840.10008.5.1.4.1.1.7
    meta.MediaStorageSOPInstanceUID = uid(key, number)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid(split), uid(split, cls)
    ds.Modality, ds.ConversionType = "OT", "WSD"
    # pseudonymous, one "patient" per image, unique across the splits; never in the path
    ds.PatientName, ds.PatientID = PATIENT_NAME, f"BENCH{(split == 'test') * 100000 + number:06d}"
    ds.InstanceNumber = number
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.Rows, ds.Columns = a.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = SLOPE, INTERCEPT, "US"
    ds.WindowCenter, ds.WindowWidth = WINDOW_CENTER, WINDOW_WIDTH
    stored = (255 - a.astype(np.uint16)) * STEP  # MONOCHROME1: bright is low; 0..4080 fits 12 bits
    ds.add_new(0x7FE00010, "OW", stored.astype("<u2").tobytes())
    _atomic(path, lambda tmp: ds.save_as(tmp, enforce_file_format=True))


def dicom_roundtrip(path: Path, p: np.ndarray) -> dict:
    """Max |display - p| of one file: pydicom's modality LUT, then its VOI LUT (the window), scaled from the
    window's output range (pydicom's: the rescaled stored range) to 0..255, then MONOCHROME1 inverted; and the
    same through cnnkit's own DICOM reader where this cnnkit has it."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    values = apply_modality_lut(ds.pixel_array, ds)
    shown = np.asarray(apply_voi_lut(values, ds, index=0), np.float64)
    lo = float(ds.RescaleIntercept)  # pydicom's window output range: stored 0 .. 2**BitsStored - 1, rescaled
    hi = (2 ** int(ds.BitsStored) - 1) * float(ds.RescaleSlope) + lo
    display = 255.0 - (shown - lo) / (hi - lo) * 255.0
    out = {"pydicom": float(np.abs(display - p).max())}
    try:
        from cnnkit.data.dicom import display_values
    except ImportError:
        return out
    out["cnnkit"] = float(np.abs(display_values(ds.pixel_array, ds) - p).max())
    return out


def check_workdir(work: Path) -> None:
    """cnnkit refuses a DICOM file whose path holds its patient's name: fail here, before an hour of work."""
    for part in re.split(r"\^", PATIENT_NAME):
        if re.search(rf"(?<![A-Za-z0-9]){part}(?![A-Za-z0-9])", str(work.resolve()), re.IGNORECASE):
            raise SystemExit(f"--workdir {work}: its path contains {part!r}, the DICOM files' (pseudonymous) "
                             "patient name, which cnnkit refuses in a path; choose another folder")


def prepare(root: Path, fraction: float) -> dict:
    """root/{png,dicom}/{train,test}/{negative,shirt}/: write what is missing, count, check the DICOM encoding."""
    t0 = time.perf_counter()
    info = {"fraction": fraction, "data_seed": DATA_SEED, "counts": {}, "written": 0}
    samples = []
    for split, stem in (("train", "train"), ("test", "t10k")):
        x = read_idx(DATA / f"{stem}-images-idx3-ubyte.gz")
        y = read_idx(DATA / f"{stem}-labels-idx1-ubyte.gz")
        sel = select(y, split, fraction)
        rng = np.random.default_rng([DATA_SEED, 99, len(samples)])
        for cls, idx in sel.items():
            key = f"{split}/{cls}"
            for fmt in ("png", "dicom"):
                (root / fmt / key).mkdir(parents=True, exist_ok=True)
            for i in idx:
                png, dcm = root / "png" / key / f"{i:05d}.png", root / "dicom" / key / f"{i:05d}.dcm"
                for path, write in ((png, lambda: write_png(x[i], png)),
                                    (dcm, lambda: write_dicom(x[i], dcm, key, int(i)))):
                    if not path.exists():
                        write()
                        info["written"] += 1
                        if info["written"] % 2000 == 0:
                            print(f"  {info['written']:,} files written ({time.perf_counter() - t0:.0f} s)",
                                  flush=True)
            samples += [(root / "png" / key / f"{i:05d}.png", root / "dicom" / key / f"{i:05d}.dcm", x[i])
                        for i in rng.choice(idx, min(8, len(idx)), replace=False)]
            for fmt, ext in (("png", ".png"), ("dicom", ".dcm")):
                found = sum(1 for f in (root / fmt / key).iterdir() if f.suffix == ext)
                if found != len(idx):
                    raise SystemExit(f"{root / fmt / key}: {found} files, expected {len(idx)}; delete the folder "
                                     "and run again")
            info["counts"][key] = len(idx)
    from PIL import Image

    diffs = {"png": 0.0}
    for png, dcm, a in samples:
        diffs["png"] = max(diffs["png"], float(np.abs(np.asarray(Image.open(png), np.float64) - a).max()))
        for k, v in dicom_roundtrip(dcm, a).items():
            diffs[f"dicom via {k}"] = max(diffs.get(f"dicom via {k}", 0.0), v)
    info["roundtrip"] = {"files": len(samples), "max_abs_diff": diffs}
    info["seconds"] = round(time.perf_counter() - t0, 1)
    counts = ", ".join(f"{k} {v:,}" for k, v in info["counts"].items())
    print(f"data under {root} ({info['written']:,} files written, {info['seconds']} s): {counts}; "
          f"round trip on {len(samples)} images, max |difference| in 0..255 units: "
          + ", ".join(f"{k} {v:g}" for k, v in diffs.items()), flush=True)
    if max(diffs.values()) > 1:
        raise SystemExit("the DICOM files do not give back their PNG pixels within 1; fix write_dicom")
    return info


# -- runs ---------------------------------------------------------------------------------------------------

def _pick(rep: dict) -> dict:
    return {k: rep.get(k) for k in REPORT_KEYS}


def run(data: Path, out: Path, *, seed: int, epochs: int | None, balance: str | None) -> dict:
    """Train one configuration quietly and evaluate it on test, without and with TTA; cached in
    out/bench_row.json."""
    import cnnkit
    from cnnkit import api

    done = out / "bench_row.json"
    if done.is_file():
        row = json.loads(done.read_text())
        print(f"  {out.name} (trained before): val_acc {row['val_acc']}", flush=True)
        return row
    if out.exists():  # a run that stopped before its row was saved: start it again
        import shutil

        shutil.rmtree(out)
    options = dict(positive="shirt", operating_point=OPERATING_POINT, seed=seed)
    if balance is not None:
        options["balance"] = balance
    if epochs is not None:
        options["epochs"] = epochs
    with contextlib.redirect_stdout(io.StringIO()):
        r = cnnkit.train(str(data), out=str(out), quiet=True, report=False, **options)
    model = json.loads((out / "model.json").read_text())
    row = {"val_acc": r["val_acc"], "train_seconds": r.get("seconds"), "best_epoch": r.get("best_epoch"),
           "epochs": r.get("epochs"), "options": options,
           "balance_used": (model.get("train") or {}).get("balance"), "decision": model.get("decision"),
           "calibration": model.get("calibration")}
    for key, tta in (("test", False), ("test_tta", True)):
        t0 = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):
            rep = api.evaluate(out, split="test", tta=tta, plot=False)
        row[key] = _pick(rep)
        row[f"{key}_seconds"] = round(time.perf_counter() - t0, 1)
    missing = sorted(k for k in REPORT_KEYS if row["test"][k] is None)
    if missing:
        print(f"  warning: the binary report lacks {', '.join(missing)}", file=sys.stderr)
    done.write_text(json.dumps(row, indent=1, default=str))
    t = row["test"]
    print(f"  {out.name}: val_acc {row['val_acc']}, test accuracy {t['accuracy']}, sensitivity {t['sensitivity']}"
          f", AUC {t['roc_auc']} (TTA {row['test_tta']['roc_auc']}), {row['train_seconds']} s", flush=True)
    return row


def _ci(rep: dict, key: str) -> str:
    lo, hi = (rep.get("ci95") or {}).get(key) or (None, None)
    v = rep.get(key)
    return "-" if v is None else f"{v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")


def table_row(name: str, seed: int, row: dict) -> dict:
    t, tt = row["test"], row["test_tta"]
    gain = None if t["roc_auc"] is None or tt["roc_auc"] is None else round(tt["roc_auc"] - t["roc_auc"], 4)
    return {"run": f"{name} s{seed}", "balance": row.get("balance_used"), "val_acc": row["val_acc"],
            "acc": t["accuracy"], "thr": t["threshold"],
            "sens": _ci(t, "sensitivity"), "spec": _ci(t, "specificity"), "bal": t["balanced_accuracy"],
            "bal_half": (t.get("at_half") or {}).get("balanced_accuracy"), "auc": t["roc_auc"],
            "auc_tta": tt["roc_auc"], "gain": gain, "pr_auc": t["pr_auc"], "ece_before": t["ece_uncalibrated"],
            "ece_after": t["ece"], "seconds": row["train_seconds"]}


COLUMNS = [("run", "run"), ("balance", "balance"), ("val_acc", "val acc"), ("acc", "test acc"), ("thr", "threshold"),
           ("sens", "sensitivity [95% CI]"), ("spec", "specificity [95% CI]"), ("bal", "bal acc"),
           ("bal_half", "bal acc @0.5"), ("auc", "ROC-AUC"), ("auc_tta", "AUC TTA"), ("gain", "TTA gain"),
           ("pr_auc", "PR-AUC"), ("ece_before", "ECE before"), ("ece_after", "ECE after"), ("seconds", "train s")]


def checks(rows: dict[tuple[str, int], dict], seeds: list[int]) -> list[dict]:
    """The issue's acceptance, one entry per run (or per seed), with the numbers it was judged on."""
    out = []
    add = lambda crit, who, ok, numbers: out.append({"check": crit, "run": who, "status": ok, "numbers": numbers})  # noqa: E731
    for (name, seed), row in rows.items():
        t = row["test"]
        lo, hi = (t.get("ci95") or {}).get("sensitivity") or (None, None)
        add("1 sensitivity CI contains 0.95", f"{name} s{seed}",
            None if lo is None else lo <= TARGET_SENSITIVITY <= hi,
            f"sensitivity {t['sensitivity']} [{lo}, {hi}], threshold {t['threshold']}")
    for (name, seed), row in rows.items():
        t = row["test"]
        ok = None if t["ece"] is None or t["ece_uncalibrated"] is None else t["ece"] < t["ece_uncalibrated"]
        add("2 ECE after < before", f"{name} s{seed}", ok, f"after {t['ece']}, before {t['ece_uncalibrated']} "
            f"(T {(row.get('calibration') or {}).get('temperature')})")
    half = lambda r: (r["test"].get("at_half") or {}).get("balanced_accuracy")  # noqa: E731
    for seed in seeds:
        if ("none", seed) not in rows:
            continue
        base = half(rows[("none", seed)])
        for name in ("weights", "sampler"):
            if (name, seed) in rows:
                v = half(rows[(name, seed)])
                at_op = (rows[(name, seed)]["test"]["balanced_accuracy"], rows[("none", seed)]["test"]["balanced_accuracy"])
                add("3 bal acc @0.5 with balance >= none", f"{name} s{seed}",
                    None if v is None or base is None else v >= base,
                    f"{v} against {base} (at the operating point: {at_op[0]} against {at_op[1]})")
    gains = []
    for (name, seed), row in rows.items():
        a, b = row["test"]["roc_auc"], row["test_tta"]["roc_auc"]
        if a is not None and b is not None:
            gains.append(b - a)
            add("4 TTA ROC-AUC gain (reported)", f"{name} s{seed}", "REPORT",
                f"{b - a:+.4f} ({a:.4f} -> {b:.4f})")
    if gains:
        add("4 TTA ROC-AUC gain (reported)", "median", "REPORT",
            f"{statistics.median(gains):+.4f} over {len(gains)} runs, {sum(g > 0 for g in gains)} positive")
    for seed in seeds:
        if ("dicom", seed) in rows and ("png-default", seed) in rows:
            d, p = rows[("dicom", seed)], rows[("png-default", seed)]
            diff = abs(d["test"]["accuracy"] - p["test"]["accuracy"])
            half_acc = [(r["test"].get("at_half") or {}).get("accuracy") for r in (d, p)]
            add("5 |DICOM - PNG accuracy| <= 0.005", f"s{seed}", round(diff, 6) <= ACCURACY_TOLERANCE,
                f"{diff:.4f}: DICOM {d['test']['accuracy']:.4f}, PNG {p['test']['accuracy']:.4f} (val "
                f"{d['val_acc']} / {p['val_acc']}; threshold {d['test']['threshold']} / {p['test']['threshold']}; "
                f"accuracy at 0.5 {half_acc[0]} / {half_acc[1]})")
    return out


def summary(rows: dict[tuple[str, int], dict], names: list[str]) -> list[dict]:
    """Several seeds: the median (min-max) of each configuration's headline numbers."""
    keys = (("acc", "test acc"), ("bal_half", "bal acc @0.5"), ("auc", "ROC-AUC"), ("gain", "TTA gain"),
            ("ece_after", "ECE after"))
    out = []
    for name in names:
        flat = [table_row(name, s, r) for (n, s), r in rows.items() if n == name]
        entry = {"config": name}
        for k, _ in keys:
            vals = [f[k] for f in flat if f[k] is not None]
            if vals:
                s = spread(vals)
                entry[k] = f"{s['median']:.4f} ({s['min']:.4f}-{s['max']:.4f})"
        out.append(entry)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="/tmp/cnnkit-binary", help="data and runs (default %(default)s)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default 0)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per run (default: cnnkit's own)")
    ap.add_argument("--runs", nargs="+", choices=[c[0] for c in CONFIGS], default=None,
                    help="only these configurations (default all)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1/5 of the data (its own folder), 3 epochs, seed 0; writes binary_quick.json")
    ap.add_argument("--data-only", action="store_true", help="build the data and check the DICOM encoding, then stop")
    args = ap.parse_args()
    work = Path(args.workdir)
    check_workdir(work)
    root = work / "quick" if args.quick else work
    seeds = args.seeds or [0]
    epochs = args.epochs if args.epochs is not None else (3 if args.quick else None)
    os.environ.setdefault("CNNKIT_CACHE", str(work / "cache"))
    t0 = time.perf_counter()
    data_info = prepare(root, 0.2 if args.quick else 1.0)
    if args.data_only:
        return 0
    configs = [c for c in CONFIGS if args.runs is None or c[0] in args.runs]
    rows: dict[tuple[str, int], dict] = {}
    for seed in seeds:
        for name, fmt, balance in configs:
            tag = f"{name}-s{seed}" + (f"-e{epochs}" if epochs is not None else "")
            rows[(name, seed)] = run(root / fmt, root / "runs" / tag, seed=seed, epochs=epochs, balance=balance)
    flat = [table_row(n, s, r) for (n, s), r in rows.items()]
    found = checks(rows, seeds)
    names = [c[0] for c in configs]
    path = write_results("binary_quick" if args.quick else "binary", {
        "settings": {"positive": "shirt", "operating_point": OPERATING_POINT, "prevalence": PREVALENCE,
                     "epochs": epochs or "cnnkit default", "seeds": seeds, "quick": args.quick,
                     "configs": {n: {"data": f, "balance": b or "cnnkit default"} for n, f, b in configs}},
        "data": data_info, "runs": {f"{n} s{s}": r for (n, s), r in rows.items()}, "table": flat,
        "summary": summary(rows, names) if len(seeds) > 1 else None, "checks": found,
        "seconds": round(time.perf_counter() - t0)})
    counts = data_info["counts"]
    print(f"\nFashion-MNIST 'shirt' against T-shirt/top, Pullover and Coat at {PREVALENCE:.0%} prevalence: train "
          f"{counts['train/negative']:,} + {counts['train/shirt']:,} (validation cut from it), test "
          f"{counts['test/negative']:,} + {counts['test/shirt']:,}; --operating-point {OPERATING_POINT}, "
          f"{epochs or 'default'} epochs; {machine()['cpu']}")
    print_table(flat, COLUMNS)
    if len(seeds) > 1:
        print("\nmedian (min-max) over seeds")
        print_table(summary(rows, names), [("config", "config"), ("acc", "test acc"), ("bal_half", "bal acc @0.5"),
                                           ("auc", "ROC-AUC"), ("gain", "TTA gain"), ("ece_after", "ECE after")])
    print("\nchecks")
    for c in found:
        status = {True: "PASS", False: "FAIL", None: "n/a"}.get(c["status"], c["status"])
        print(f"  {status:6} {c['check']:38} {c['run']:16} {c['numbers']}")
    print(f"wrote {path}")
    return 0 if all(c["status"] in (True, "REPORT") for c in found) else 1


if __name__ == "__main__":
    raise SystemExit(main())
