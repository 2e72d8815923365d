"""How `--preset fast` is chosen: train one variant of it on Fashion-MNIST and record its accuracy per epoch on a
held-out part of the TRAINING file, never on t10k.

Selection protocol: the 50,000 training images are split once (stratified, seed 0) into 40,000 to train on
and 10,000 held out; both are written as IDX files into a cache folder (`--workdir`), the held-out part in
the place of t10k, so `cnnkit.train("fashion-mnist:WORKDIR", preset="fast", ...)` trains on the 40,000 (less its
own 4% validation split) and this script scores the 10,000 after every epoch. t10k is read by no variant:
it is scored once, for the chosen preset, by bench/train_speed.py. (Until issue 16 the preset was chosen by
looking at t10k: selection on the test set; those records were dropped from the JSON.)

Each call runs `cnnkit.train(preset="fast", **OVERRIDES)` once, in this process, appends one record to
bench/results/preset_search.json, and prints the table of every record so far. Accuracy is deterministic for
a seed and precision; the seconds depend on the machine's load at the time, so compare times only between
runs on an idle machine (bench/train_speed.py times the chosen preset).

    python bench/preset_search.py base '{}'                                  # the preset as it is
    python bench/preset_search.py e4 '{"epochs": 4, "seed": 1}'
    python bench/preset_search.py w163296 '{"model_kwargs": {"widths": [16, 32, 96]}}'
    python bench/preset_search.py --show                                     # the table only
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, ROOT, machine, print_table, write_results

DEFAULT_DATA = ROOT.parent.parent / "shared" / "data" / "fashion-mnist"
NAME = "preset_search"
HOLDOUT = 10_000  # images of the training file held out for selection (1,000 per class)


def _write_idx(path: Path, a) -> None:
    import numpy as np

    head = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    path.write_bytes(head + np.ascontiguousarray(a, dtype=np.uint8).tobytes())


def holdout_data(data: Path, workdir: Path) -> Path:
    """WORKDIR with the training file split into train (40,000) and a held-out 'test' (10,000), made once."""
    import numpy as np

    from cnnkit.data.sources import read_idx
    from cnnkit.data.splits import stratified_split

    done = workdir / "t10k-labels-idx1-ubyte"
    if done.is_file():
        return workdir
    workdir.mkdir(parents=True, exist_ok=True)
    x, y = read_idx(data / "train-images-idx3-ubyte.gz"), read_idx(data / "train-labels-idx1-ubyte.gz")
    tr, ho = stratified_split(y.astype(np.int64), HOLDOUT / len(y), 0)
    for prefix, idx in (("train", tr), ("t10k", ho)):
        _write_idx(workdir / f"{prefix}-images-idx3-ubyte", x[idx])
        _write_idx(workdir / f"{prefix}-labels-idx1-ubyte.tmp", y[idx])
        (workdir / f"{prefix}-labels-idx1-ubyte.tmp").rename(workdir / f"{prefix}-labels-idx1-ubyte")
    return workdir


def run(name: str, overrides: dict, data: Path) -> dict:
    t_start = time.perf_counter()
    import torch

    import cnnkit
    from cnnkit.data.sources import read_idx
    from cnnkit.engine import Callback

    # the held-out part of the training file (holdout_data), never t10k
    x_test = torch.from_numpy(read_idx(data / "t10k-images-idx3-ubyte").copy())[:, None]
    y_test = torch.from_numpy(read_idx(data / "t10k-labels-idx1-ubyte").copy()).long()
    curve = []

    class T10k(Callback):
        order = 50

        def after_epoch(self):
            t = self.trainer
            t.model.eval()
            with torch.no_grad():
                x = t.preprocess.normalize(x_test).contiguous(memory_format=t.memory_format)
                logits = torch.cat([t.model(x[i:i + 1000]) for i in range(0, len(x), 1000)])
            curve.append({"epoch": t.epoch, "seconds": round(time.perf_counter() - t_start, 1),
                          "holdout_acc": round(float((logits.argmax(1) == y_test).float().mean()), 4),
                          "val_acc": t.history[-1]["val_acc"]})

    out = Path(tempfile.mkdtemp()) / "run"
    cnnkit.train(f"fashion-mnist:{data}", preset="fast", out=str(out), quiet=True, report=False,
                 callbacks=[T10k()], **overrides)
    return {"name": name, "overrides": overrides, "curve": curve, "seconds": round(time.perf_counter() - t_start, 1),
            "date": machine()["date"]}


PROTOCOL = (f"train on 40,000 images of Fashion-MNIST's training file (less the preset's validation split), score "
            f"the other {HOLDOUT:,} (stratified, seed 0) after every epoch; t10k is never read here")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", help="a label for this variant")
    p.add_argument("overrides", nargs="?", default="{}", help="TrainConfig fields as JSON, over the fast preset")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the Fashion-MNIST IDX .gz files")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cnnkit-preset-select",
                   help="where the 40,000 / 10,000 split of the training file is written (once)")
    p.add_argument("--show", action="store_true", help="print the recorded table and exit")
    args = p.parse_args()
    path = RESULTS / f"{NAME}.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    records = old.get("records", []) if old.get("protocol") == PROTOCOL else []  # never the t10k-selected ones
    if not args.show:
        if not args.name:
            p.error("give a NAME and the OVERRIDES as JSON, or --show")
        try:
            overrides = json.loads(args.overrides)
        except json.JSONDecodeError as e:
            p.error(f"OVERRIDES is not JSON ({e}): {args.overrides!r}")
        records.append(run(args.name, overrides, holdout_data(args.data, args.workdir)))
        write_results(NAME, {"protocol": PROTOCOL, "records": records})
    rows = [{"name": r["name"], "epochs": len(r["curve"]),
             "acc": " ".join(f"{c['holdout_acc']:.4f}" for c in r["curve"]),
             "final": f"{r['curve'][-1]['holdout_acc']:.4f}" if r["curve"] else None, "s": r["seconds"],
             "over": json.dumps(r["overrides"], separators=(",", ":"))} for r in records]
    print(f"--preset fast variants on Fashion-MNIST ({path}): accuracy on 10,000 images held out of the training "
          "file, after each epoch; seconds include start-up")
    print_table(rows, [("name", "variant"), ("epochs", "epochs"), ("acc", "held-out accuracy per epoch"), ("final", "final"),
                       ("s", "seconds"), ("over", "overrides of the preset")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
