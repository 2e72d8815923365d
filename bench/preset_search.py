"""How `--preset fast` was chosen: train one variant of it on Fashion-MNIST and record t10k accuracy per epoch.

Each call runs `cnnkit.train(preset="fast", **OVERRIDES)` once, in this process, checks t10k after every
epoch, appends one record to bench/results/preset_search.json, and prints the table of every record so far.
Accuracy is deterministic for a seed; the seconds depend on the machine's load at the time (on the shared
2-core VM these were taken on, the same run varies by ±15%), so compare times only between interleaved runs.

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


def run(name: str, overrides: dict, data: Path) -> dict:
    t_start = time.perf_counter()
    import torch

    import cnnkit
    from cnnkit.data.sources import read_idx
    from cnnkit.engine import Callback

    x_test = torch.from_numpy(read_idx(data / "t10k-images-idx3-ubyte.gz").copy())[:, None]
    y_test = torch.from_numpy(read_idx(data / "t10k-labels-idx1-ubyte.gz").copy()).long()
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
                          "t10k_acc": round(float((logits.argmax(1) == y_test).float().mean()), 4),
                          "val_acc": t.history[-1]["val_acc"]})

    out = Path(tempfile.mkdtemp()) / "run"
    cnnkit.train(f"fashion-mnist:{data}", preset="fast", out=str(out), quiet=True, report=False,
                 callbacks=[T10k()], **overrides)
    return {"name": name, "overrides": overrides, "curve": curve, "seconds": round(time.perf_counter() - t_start, 1),
            "date": machine()["date"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", help="a label for this variant")
    p.add_argument("overrides", nargs="?", default="{}", help="TrainConfig fields as JSON, over the fast preset")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the Fashion-MNIST IDX .gz files")
    p.add_argument("--show", action="store_true", help="print the recorded table and exit")
    args = p.parse_args()
    path = RESULTS / f"{NAME}.json"
    records = json.loads(path.read_text())["records"] if path.is_file() else []
    if not args.show:
        if not args.name:
            p.error("give a NAME and the OVERRIDES as JSON, or --show")
        try:
            overrides = json.loads(args.overrides)
        except json.JSONDecodeError as e:
            p.error(f"OVERRIDES is not JSON ({e}): {args.overrides!r}")
        records.append(run(args.name, overrides, args.data))
        write_results(NAME, {"records": records})
    rows = [{"name": r["name"], "epochs": len(r["curve"]), "t10k": " ".join(f"{c['t10k_acc']:.4f}" for c in r["curve"]),
             "final": f"{r['curve'][-1]['t10k_acc']:.4f}" if r["curve"] else None, "s": r["seconds"],
             "over": json.dumps(r["overrides"], separators=(",", ":"))} for r in records]
    print(f"--preset fast variants on Fashion-MNIST ({path}); t10k after each epoch; seconds include start-up")
    print_table(rows, [("name", "variant"), ("epochs", "epochs"), ("t10k", "t10k per epoch"), ("final", "final"),
                       ("s", "seconds"), ("over", "overrides of the preset")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
