"""`cnnkit evaluate RUN_DIR --data SPEC`: accuracy, per-class metrics, confusion matrix (table and PNG)."""
from __future__ import annotations

import argparse

from ._common import positive_int

NAME = "evaluate"
HELP = "evaluate a trained run on a data split"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="default: the data the run was trained on, split as saved in RUN_DIR/split.json")
    p.add_argument("--split", choices=("test", "val", "train", "all"), default=None,
                   help="default: test when the data has one; else val (the run's data) or all (other data)")
    p.add_argument("--top-k", type=positive_int, default=5, metavar="K")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average the predictions of the image, its shifts by 1/16 of the "
                        "side and (where the run trained with flips) its mirror image")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from .. import api
    from ..metrics import format_report
    from ._common import print_json, printable

    from ..data.images import BadImagesError

    try:
        rep = api.evaluate(args.run_dir, args.data, split=args.split, top_k=args.top_k, tta=args.tta)
    except BadImagesError as e:
        if "--on-bad-image" not in str(e):
            raise
        # the data layer's hint names train's and predict's flag, which evaluate has not: a score over the
        # readable part of a saved split would be another split's score
        raise BadImagesError(e.bad, " Fix or restore them (the run's split names them), or evaluate on other "
                                    "data with --data SPEC") from None
    if args.json:
        print_json(rep)
        return 0
    print(f"{printable(rep['data'])} / {rep['split']}: {rep['n']:,} images ({printable(rep['images'])})")
    print(format_report(*_printable_names(rep)))
    print(f"confusion matrix image: {printable(rep['confusion_matrix_png'])}")
    print(f"reliability diagram: {printable(rep['reliability_png'])}"
          + (f"; ROC and PR curves: {printable(rep['roc_pr_png'])}" if "roc_pr_png" in rep else ""))
    return 0


def _printable_names(rep: dict) -> tuple[dict, list[str]]:
    """The report with its class names printable (a name holding a newline would split the table): the report
    and the names for `format_report`. Two names that print alike get a suffix, so no row is lost."""
    from ._common import printable

    names, seen = [], set()
    for c in rep["per_class"]:
        shown, i = printable(c), 2
        while shown in seen:
            shown, i = f"{printable(c)} ({i})", i + 1
        seen.add(shown)
        names.append(shown)
    out = dict(rep, per_class=dict(zip(names, rep["per_class"].values())))
    if "positive" in out:
        out["positive"] = printable(out["positive"])
    return out, names
