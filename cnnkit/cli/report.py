"""`cnnkit report RUN_DIR`: (re)build the run's report.html, one self-contained file for any browser."""
from __future__ import annotations

import argparse

NAME = "report"
HELP = ("build a run's report.html: curves, confusion matrix, per-class metrics, misclassified images with their "
        "class activation maps and how faithful those maps are")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--data", default=None, metavar="SPEC", help="default: the data the run was trained on")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..explain.report import build_report
    from ._common import print_json, printable

    info = build_report(args.run_dir, args.data)
    if args.json:
        print_json(info)
        return 0
    print(f"{info['model']} on {printable(info['data'])}: {info['split']} accuracy {info['accuracy']:.4f}"
          + ("" if info["split"] == "val" else f", validation accuracy {info['val_accuracy']:.4f}"))
    f = info.get("faithfulness")
    if f:
        from ..explain.attribution import LABELS

        r = f["scores"]["random"]
        scored = {m: v for m, v in f["scores"].items() if m != "random" and not v.get("declined")}
        print(f"maps ({f['images']} validation images): " + ", ".join(
            f"{LABELS[m]}{' (shown)' if m == f['method'] else ''}{' at ' + v['layer'] if v.get('layer') else ''} "
            f"deletion {v['deletion']:.3f} / insertion {v['insertion']:.3f}" for m, v in scored.items())
              + f"; random order {r['deletion']:.3f} / {r['insertion']:.3f} (deletion: lower is better)")
        declined = [LABELS[m] for m, v in f["scores"].items() if v.get("declined")]
        if declined:
            print(f"declined for this model (no stage where their maps beat a random order; report.html gives the "
                  f"scores): {', '.join(declined)}")
    blanks = sum(bool(w.get("blank_pred")) + bool(w.get("blank_true")) for w in info["worst"])
    if blanks:
        print(f"{blanks} of the misclassified images' maps are blank (no positive evidence): labelled and drawn signed")
    print(f"report: {printable(info['report'])} ({info['bytes'] / 1e6:.1f} MB; open it in a browser)")
    return 0
