"""Do the explanations hold up? Blank maps and faithfulness (deletion, insertion) per method, on Fashion-MNIST.

For each of simplecnn, fastcnn and resnet18 (small-input stem: 3×3 stride-1 conv1, no max-pool at 28×28),
one run trained briefly with `cnnkit.train` on a seeded subset of the 50,000-image train file (the
subset's own validation split held out by cnnkit.train), then, for the map of each image's predicted class:

- the share of blank maps (no positive evidence after the ReLU) per method, and how many of them came with no
  label (`silent`: the goal is 0; every blank map must carry its reason);
- the mean deletion and insertion scores (Petsiuk et al. 2018: area under p(class) as the top pixels are
  replaced by zeros in normalised space, or added into a Gaussian blur of the image, in `--steps` steps)
  per method, against a random order (each method must beat it).

Each method's layer is the one `cnnkit explain` uses (`attribution.choose_layers`): for a flatten head, chosen on
the run's validation images (the same seeded sample of `RULE_IMAGES` the explainer takes), a method faithful at
no stage declined with its reason (listed, not scored); for a global-pool head, the last stage. The default for
a head that is not a global pool (`attribution.AUTO_FLATTEN`) is chosen on the validation images (the best
mean insertion − deletion over simplecnn and fastcnn, or within two paired standard errors of it), and t10k
is then reported once, 1,000 images per model (resnet18 included: at 28×28 its forward pass is ~15x
simplecnn's on a CPU, so it takes most of the time). Accuracy: a seeded sample of 2,000 t10k images.

    python bench/explain_quality.py                              # about an hour on 2 idle cores
    python bench/explain_quality.py --images 100 --models simplecnn fastcnn   # a check: 100 images each
    python bench/explain_quality.py --quick                      # a smoke test: a few images, one epoch
"""
from __future__ import annotations

import argparse
import gzip
import struct
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, machine, print_table, write_results

DATA = ROOT.parent.parent / "shared" / "data" / "fashion-mnist"
NAME = "explain_quality"
#: model → (train images, epochs, validation images scored, t10k images scored)
PLAN = {"simplecnn": (12000, 2, 500, 1000), "fastcnn": (12000, 3, 500, 1000), "resnet18": (4000, 2, 100, 1000)}
N_ACC = 2000  # t10k images (a seeded sample) for each run's accuracy
QUICK = {"simplecnn": (2000, 1, 40, 40), "fastcnn": (2000, 1, 40, 40), "resnet18": (600, 1, 10, 10)}


def write_idx_gz(path: Path, arr) -> None:
    """An IDX file (unsigned bytes), gzipped: the format of the files in ../shared/data."""
    import numpy as np

    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    head = struct.pack(">HBB", 0, 8, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(head + arr.tobytes())


def subset(src: Path, dst: Path, n: int, seed: int = 0) -> None:
    """The first n of a seeded shuffle of the train file (t10k copied whole: cnnkit reads it as the test split)."""
    import numpy as np

    from cnnkit.data.sources import read_idx

    dst.mkdir(parents=True, exist_ok=True)
    x, y = read_idx(src / "train-images-idx3-ubyte.gz"), read_idx(src / "train-labels-idx1-ubyte.gz")
    idx = np.sort(np.random.default_rng(seed).permutation(len(x))[:n])
    write_idx_gz(dst / "train-images-idx3-ubyte.gz", x[idx])
    write_idx_gz(dst / "train-labels-idx1-ubyte.gz", y[idx])
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (dst / name).write_bytes((src / name).read_bytes())


def rule(tm, ds) -> tuple[dict, float]:
    """`choose_layers` for every method on the validation sample `cnnkit explain` takes (explainer._rule_images:
    a seeded sample of RULE_IMAGES of the run's validation split), and its seconds."""
    import torch

    from cnnkit.explain.attribution import METHODS, RULE_IMAGES, choose_layers

    val = ds.split("val")
    idx = torch.arange(len(val))
    if len(val) > RULE_IMAGES:
        idx = torch.randperm(len(val), generator=torch.Generator().manual_seed(0))[:RULE_IMAGES].sort().values
    t = time.perf_counter()
    choices = choose_layers(tm.model, tm.prepare(val.get(idx)), METHODS)
    return choices, time.perf_counter() - t


def score(tm, x, steps: int, choices: dict, batch: int = 100) -> dict:
    """Per method at its chosen layer (declined ones listed with their reason) and a random order: per-image
    deletion and insertion, blanks and silent blanks."""
    import numpy as np

    from cnnkit.explain import faithfulness as fa
    from cnnkit.explain.attribution import attribute

    kept = [m for m, c in choices.items() if not c.declined]
    out = {m: {"del": [], "ins": [], "blank": 0, "silent": 0} for m in (*kept, "random")}
    auto = None
    for s in range(0, len(x), batch):
        xb = tm.prepare(x[s:s + batch])
        first = attribute(tm.model, xb, None, method="hirescam", classes=tm.classes)  # only its targets and head
        auto = "gradcam" if first.head == "global-pool" else "hirescam"
        for m in kept:
            a = attribute(tm.model, xb, first.target, method=m, layer=choices[m].layer, head=first.head,
                          classes=tm.classes)
            sc = fa.deletion_insertion(tm.model, xb, a.signed, a.target, steps=steps, seed=s)
            # a blank map: its shown (ReLU'd) map is all zero; silent: no reason given with it
            shown_blank = (a.cam.flatten(1).amax(1) <= 0).tolist()
            out[m]["blank"] += sum(shown_blank)
            out[m]["silent"] += sum(1 for b, flag in zip(shown_blank, a.blank) if b and not flag)
            out[m]["del"] += sc.deletion.tolist()
            out[m]["ins"] += sc.insertion.tolist()
        r = fa.deletion_insertion(tm.model, xb, None, first.target, steps=steps, seed=10_000 + s)
        out["random"]["del"] += r.deletion.tolist()
        out["random"]["ins"] += r.insertion.tolist()
    res = {"auto": auto, "n": len(x), "head": first.head, "layers": {m: c.layer for m, c in choices.items()},
           "declined": {m: c.reason for m, c in choices.items() if c.declined}, "methods": {}}
    rnd_d, rnd_i = np.array(out["random"]["del"]), np.array(out["random"]["ins"])
    for m, v in out.items():
        d, i = np.array(v["del"]), np.array(v["ins"])
        diff = (i - d) - (rnd_i - rnd_d)
        res["methods"][m] = {
            "deletion": round(float(d.mean()), 4), "insertion": round(float(i.mean()), 4),
            "ins_minus_del": round(float((i - d).mean()), 4),
            "ins_minus_del_per_image": (i - d).round(5).tolist(),
            "beats_random": bool(d.mean() < rnd_d.mean() and i.mean() > rnd_i.mean()),
            "vs_random_se": round(float(diff.std(ddof=1) / np.sqrt(len(diff))), 4) if len(diff) > 1 else None,
            "blank_share": round(v["blank"] / len(x), 4) if m != "random" else None,
            "silent_blanks": v["silent"] if m != "random" else None}
    return res


def choose(val: dict[str, dict]) -> dict:
    """The method with the best mean insertion − deletion over the spatial-head models' validation images, and
    those within two paired standard errors of it."""
    import numpy as np

    from cnnkit.explain.attribution import METHODS

    methods = [m for m in METHODS if all(m in r["methods"] for r in val.values())]  # declined for none
    per = {m: np.concatenate([np.array(r["methods"][m]["ins_minus_del_per_image"]) for r in val.values()])
           for m in methods}
    best = max(methods, key=lambda m: per[m].mean())
    close = {}
    for m in methods:
        d = per[best] - per[m]
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
        close[m] = {"mean": round(float(per[m].mean()), 4), "gap_to_best": round(float(d.mean()), 4),
                    "se": round(se, 4), "within_noise": bool(d.mean() <= 2 * se)}
    return {"best": best, "methods": close, "rule": "highest mean insertion − deletion over the validation images "
            "of the spatial-head models; within noise: gap to the best ≤ 2 paired standard errors"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--images", type=int, default=None, metavar="N",
                    help="score N t10k images per model (and at most N validation images) instead of the plan's")
    ap.add_argument("--models", nargs="+", default=list(PLAN))
    args = ap.parse_args()
    import torch

    import cnnkit
    from cnnkit.data.sources import read_idx
    from cnnkit.explain.attribution import AUTO_FLATTEN, RULE, RULE_IMAGES, RULE_STEPS
    from cnnkit.run import load_run_data

    plan = dict(QUICK if args.quick else PLAN)
    if args.images:
        plan = {m: (a, b, min(c, args.images), args.images) for m, (a, b, c, _) in plan.items()}
    t0 = time.perf_counter()
    xt = torch.from_numpy(read_idx(args.data / "t10k-images-idx3-ubyte.gz").copy())[:, None]
    results, val_scores = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            n_train, epochs, n_val, n_test = plan[name]
            d = Path(tmp) / f"fmnist-{n_train}"
            if not d.is_dir():
                subset(args.data, d, n_train)
            t = time.perf_counter()
            r = cnnkit.train(f"fashion-mnist:{d}", model=name, epochs=epochs, out=str(Path(tmp) / name), quiet=True,
                             report=False, seed=0)
            train_s = time.perf_counter() - t
            tm = cnnkit.load_model(r["run_dir"])
            ds = load_run_data(tm)
            xv = ds.val.get(torch.arange(min(n_val, len(ds.val))))
            pick = torch.randperm(len(xt), generator=torch.Generator().manual_seed(0))[:n_test].sort().values
            choices, rule_s = rule(tm, ds)
            for c in choices.values():
                print(f"{name}: {c.reason}", file=sys.stderr)
            t = time.perf_counter()
            val = score(tm, xv, args.steps, choices)
            test = score(tm, xt[pick], args.steps, choices)
            yt = torch.from_numpy(read_idx(args.data / "t10k-labels-idx1-ubyte.gz").copy()).long()
            sample = torch.randperm(len(xt), generator=torch.Generator().manual_seed(1))[:N_ACC]
            acc = float((tm.decide(tm.probs(xt[sample])) == yt[sample]).float().mean())
            results[name] = {"train_images": n_train, "epochs": epochs, "train_seconds": round(train_s, 1),
                             "val_acc": r["val_acc"], "t10k_acc": round(acc, 4), "t10k_acc_images": N_ACC, "score_seconds":
                             round(time.perf_counter() - t, 1), "rule_seconds": round(rule_s, 1),
                             "rule": {m: c.to_dict() for m, c in choices.items()}, "val": val, "t10k": test}
            if val["head"] == "spatial":
                val_scores[name] = val
            print(f"{name}: trained {train_s:.0f} s (val acc {r['val_acc']:.4f}, t10k {acc:.4f}); scored "
                  f"{len(xv)} val + {len(pick)} t10k images in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    selection = choose(val_scores) if val_scores else None
    rows = []
    for name, r in results.items():
        for split in ("val", "t10k"):
            s = r[split]
            for m, v in s["methods"].items():
                default = (selection["best"] if selection and s["head"] == "spatial" else "gradcam")
                rows.append({"model": name, "split": split, "n": str(s["n"]),
                             "method": m + (" (default)" if m == default else ""),
                             "layer": s["layers"].get(m) or "-",
                             "blank": "-" if v["blank_share"] is None else f"{v['blank_share']:.1%}",
                             "silent": "-" if v["silent_blanks"] is None else str(v["silent_blanks"]),
                             "del": f"{v['deletion']:.4f}", "ins": f"{v['insertion']:.4f}",
                             "diff": f"{v['ins_minus_del']:+.4f}",
                             "beats": "-" if m == "random" else ("yes" if v["beats_random"] else "NO")})
            for m in s["declined"]:
                rows.append({"model": name, "split": split, "n": str(s["n"]), "method": m, "layer": "declined",
                             "blank": "-", "silent": "-", "del": "-", "ins": "-", "diff": "-", "beats": "-"})
    print_table(rows, [("model", "model"), ("split", "split"), ("n", "images"), ("method", "method"), ("layer", "layer"),
                       ("blank", "blank"), ("silent", "silent blanks"), ("del", "deletion ↓"),
                       ("ins", "insertion ↑"), ("diff", "ins − del"), ("beats", "beats random")])
    if selection:

        print(f"\ndefault for spatial heads, chosen on validation: {selection['best']} "
              f"({selection['rule']}); within noise: "
              + ", ".join(m for m, v in selection["methods"].items() if v["within_noise"])
              + f". cnnkit's AUTO_FLATTEN is {AUTO_FLATTEN}: "
              + ("within noise of the best" if selection["methods"][AUTO_FLATTEN]["within_noise"] else
                 "NOT within noise of the best: change it"))
        selection["auto_flatten_in_code"] = AUTO_FLATTEN
    for r in results.values():  # per-image lists: only for the selection, not the JSON
        for split in ("val", "t10k"):
            for v in r[split]["methods"].values():
                v.pop("ins_minus_del_per_image", None)
    # a check run (--quick, --images) never replaces the full run's results
    path = write_results(NAME + ("_quick" if args.quick or args.images else ""), {"protocol": {
        "steps": args.steps, "deletion_baseline": "zeros in normalised space (the data's mean pixel)",
        "insertion_baseline": "Gaussian blur of the normalised image, sigma 5 px (RISE)",
        "maps": "each image's predicted class; ranked by the signed map (ties at random, seeded)",
        "training": "cnnkit.train on a seeded subset of the train file, seed 0, its own validation split; "
                    "t10k: a seeded sample", "plan": {m: dict(zip(("train_images", "epochs", "val_images",
                                                                      "t10k_images"), plan[m])) for m in args.models},
        "quick": args.quick, "images": args.images,
        "layer_rule": {"rule": RULE, "images": RULE_IMAGES, "steps": RULE_STEPS}}, "selection": selection,
        "models": results,
        "seconds": round(time.perf_counter() - t0, 1)})
    took = time.perf_counter() - t0
    print(f"\nwrote {path}; the whole bench took {took:.0f} s ({took / 60:.1f} min) on {machine()['cpu']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
