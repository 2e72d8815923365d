"""`make demo`: the main job, end to end, on built-in data (scikit-learn's digits), in about a minute.

Trains with the defaults, evaluates on the validation split, predicts one validation image saved as a PNG
(the way a user's own file would be), then prints where everything is. Equivalent commands:

    cnnkit train --data digits --out runs/demo
    cnnkit evaluate runs/demo
    cnnkit predict runs/demo runs/demo/sample_digit.png
    cnnkit predict mobilenet_v2 --pretrained chelsea coffee     (ImageNet weights, shipped offline)
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from PIL import Image

from . import api
from .data import load_data
from .metrics import format_report


def main(out: str = "runs/demo") -> int:
    run_dir = Path(out)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # the demo's own folder: start clean each time
    print("== 1/4 train: cnnkit train --data digits --out runs/demo", flush=True)
    result = api.train("digits", out=str(run_dir))
    print(f"val_acc={result['val_acc']:.4f} in {result['seconds']:.1f}s\n", flush=True)

    print("== 2/4 evaluate: cnnkit evaluate runs/demo", flush=True)
    rep = api.evaluate(run_dir)
    print(format_report(rep, list(rep["per_class"])) + "\n", flush=True)

    print("== 3/4 predict: cnnkit predict runs/demo runs/demo/sample_digit.png", flush=True)
    data = load_data("digits")
    i = 7
    sample = run_dir / "sample_digit.png"
    Image.fromarray(data.val.x[i, 0].numpy()).save(sample)
    (pred,) = api.load_model(run_dir).predict([str(sample)], top_k=3)
    truth = data.classes[int(data.val.y[i])]
    print(f"{sample} (true class {truth}): " + ", ".join(f"{c} {p:.4f}" for c, p in pred) + "\n")

    print("== 4/4 a pretrained network: cnnkit predict mobilenet_v2 --pretrained chelsea coffee", flush=True)
    from .errors import CnnkitError
    from .run import Predictor

    try:
        net = Predictor.pretrained("mobilenet_v2")
        for name, top in zip(("chelsea", "coffee"), net.predict(["chelsea", "coffee"], top_k=3)):
            print(f"{name}: " + ", ".join(f"{c} {p:.4f}" for c, p in top))
        print(f"({net.source}: ImageNet top-1 {net.meta['pretrained']['imagenet_top1']}%; fine-tune it on your "
              "images with cnnkit train --data DIR --pretrained)\n")
    except CnnkitError as e:  # the weights package missing: the rest of the demo stands
        print(f"skipped: {e}\n")

    print(f"run directory {run_dir}/:")
    for f in sorted(run_dir.iterdir()):
        print(f"  {f.name:40s} {f.stat().st_size:>10,} bytes")
    print("\nnext: cnnkit summary simplecnn --input 1x8x8 | tensorboard --logdir runs/demo | "
          "cnnkit train --data fashion-mnist:../shared/data/fashion-mnist")
    ok = result["val_acc"] >= 0.97
    if not ok:
        print(f"demo: val_acc {result['val_acc']:.4f} is under the 0.97 this demo promises", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
