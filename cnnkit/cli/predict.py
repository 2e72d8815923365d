"""`cnnkit predict RUN_DIR INPUT...`: class probabilities, preprocessed exactly as in training.

`cnnkit predict MODEL --pretrained INPUT...` uses a model's ImageNet weights instead, with their own
preprocessing and class names (`cnnkit predict mobilenet_v2 --pretrained chelsea`: a tabby cat).

INPUT is an image file, a folder (its images, recursively), a glob (`'photos/*.jpg'`) or a scikit-image sample
name. Images are decoded `--batch-size` at a time, so memory stays bounded however many are given; with
`--save-csv FILE` every prediction is also written to a CSV (written atomically at the end).
"""
from __future__ import annotations

import argparse

NAME = "predict"
HELP = "classify images (files, folders, globs, sample names) with a trained run or a pretrained model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ._common import add_weight_flags, out_file, positive_int

    p.add_argument("run_dir", metavar="RUN_DIR|MODEL", help="a run directory, or a model name with --pretrained")
    p.add_argument("images", nargs="+", metavar="INPUT", help="image files, folders, globs or sample names")
    p.add_argument("--top-k", type=positive_int, default=3, metavar="K")
    p.add_argument("--batch-size", type=positive_int, default=64, metavar="N", help="images decoded at a time (default 64)")
    p.add_argument("--engine", choices=("torch", "onnx", "openvino", "auto"), default="torch",
                   help="onnx: ONNX Runtime; openvino: OpenVINO (both export RUN_DIR/model.onnx first if needed); "
                        "auto: the fastest of the installed engines for this model and batch, measured on the "
                        "first batch (a probe of ~0.3 s)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="OpenVINO's precision (--engine openvino or auto): auto (default) is bf16 on a CPU with "
                        "AVX-512 BF16 or AMX, as OpenVINO's own default (faster; probabilities within ~1e-2), "
                        "fp32 elsewhere; torch and onnx always compute in fp32")
    p.add_argument("--on-bad-image", choices=("fail", "skip"), default="fail",
                   help="an unreadable image: stop, naming it (default), or report it and go on")
    p.add_argument("--save-csv", default=None, metavar="FILE", type=out_file, help="also write path,class,probability rows")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average over the image, its small shifts and (where the run "
                        "trained with flips) its mirror image")
    add_weight_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    import csv
    import io
    import sys

    from .. import api
    from .._io import atomic_write_text
    from ..errors import CnnkitError
    from ..run import expand_inputs
    from ._common import print_json, printable

    if args.top_k < 1:
        raise CnnkitError(f"--top-k must be at least 1, got {args.top_k}")
    if args.batch_size < 1:
        raise CnnkitError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.save_csv:
        _check_csv_path(args.save_csv)  # before any image is classified: nothing computed is then lost
    inputs = expand_inputs(args.images)
    from pathlib import Path

    if args.pretrained or args.weights or not Path(args.run_dir).is_dir():
        from ..run.predictor import load_predictor

        model = load_predictor(args.run_dir, pretrained=args.pretrained, weights=args.weights,
                               download=args.download, untrained=False, engine=args.engine,
                               precision=args.precision)
    else:
        model = api.load_model(args.run_dir, engine=args.engine, precision=args.precision)
    errors: list[dict] = []

    def on_error(item, exc):
        errors.append({"image": str(item), "error": str(exc)})
        print(f"warning: {printable(exc)}", file=sys.stderr)

    results = []
    rule = model.decision_text()  # a two-class run with an operating point: the class is decided by it
    if rule and not args.json:
        print(f"decision: {printable(rule)}", file=sys.stderr)
    for item, top, decided in model.predict_iter(inputs, top_k=args.top_k, batch_size=args.batch_size,
                                                 on_error=on_error if args.on_bad_image == "skip" else None,
                                                 tta=args.tta, decisions=True):
        if top is None:
            continue
        row = {"image": str(item), "top": [{"class": c, "probability": round(p, 6)} for c, p in top]}
        if rule:
            row["decision"] = decided
        if not args.json:
            # a file or class name is data: its control characters escaped, so it cannot forge or split a line
            print(f"{printable(item)}: " + ", ".join(f"{printable(c)} {p:.4f}" for c, p in top)
                  + (f" -> {printable(decided)}" if rule else ""), flush=True)
        results.append(row)
    if args.save_csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        k = min(args.top_k, len(model.classes))  # as many columns as each row has
        w.writerow(["image"] + [f"{name}{i + 1}" for i in range(k) for name in ("class", "probability")]
                   + (["decision"] if rule else []))
        for r in results:
            w.writerow([r["image"]] + [v for t in r["top"] for v in (t["class"], t["probability"])]
                       + ([r["decision"]] if rule else []))
        atomic_write_text(args.save_csv, buf.getvalue())
    if args.json:
        out = {"run_dir": args.run_dir, "engine": args.engine, "precision": model.precision, "predictions": results,
               **({"decision_rule": rule} if rule else {})}
        if model.auto_choices:  # --engine auto: what it measured and chose, per batch-size class
            out["auto"] = [{k: v for k, v in c.items() if k != "skipped" or v} for c in model.auto_choices.values()]
        if errors:
            out["unreadable"] = errors
        if args.save_csv:
            out["csv"] = args.save_csv
        print_json(out)
    elif args.save_csv:
        print(f"wrote {len(results)} predictions to {printable(args.save_csv)}", file=sys.stderr)
    return 0


def _check_csv_path(path: str) -> None:
    """--save-csv must name a new or replaceable file in an existing, writable folder, never a run's own file."""
    import os
    from pathlib import Path

    from ..errors import CnnkitError
    from ..run.format import META, RUN_FILES

    p = Path(path)
    if p.is_dir():
        raise CnnkitError(f"--save-csv {path} is a folder; give a file name, e.g. {p / 'predictions.csv'}")
    if p.name in RUN_FILES and (p.parent / META).is_file():
        raise CnnkitError(f"--save-csv {path} would overwrite a file of the run in {p.parent}; pick another name")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise CnnkitError(f"--save-csv {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise CnnkitError(f"--save-csv {path}: not writable here; pick another place")
