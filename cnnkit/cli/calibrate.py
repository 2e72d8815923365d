"""`cnnkit calibrate RUN_DIR [--operating-point RULE] [--positive CLASS]`: refit the temperature and choose the
operating point on the run's validation split, without training again (what `cnnkit train` does at its end).

For a screening test that must miss few positives: `cnnkit calibrate runs/xray --operating-point sensitivity=0.95`.
"""
from __future__ import annotations

import argparse

NAME = "calibrate"
HELP = "refit a run's temperature and choose its operating point (two classes) on its validation split"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--operating-point", default=None, metavar="RULE",
                   help="argmax, youden, f1, sensitivity=X or specificity=X; default: the run's own")
    p.add_argument("--positive", default=None, metavar="CLASS", help="the positive class; default: the run's own")
    p.add_argument("--data", default=None, metavar="SPEC", help="the run's data moved elsewhere")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    import sys

    from .. import api
    from ._common import print_json

    out = api.calibrate(args.run_dir, operating_point=args.operating_point, positive=args.positive, data=args.data,
                        log=sys.stderr if args.json else sys.stdout)
    if args.json:
        print_json(out)
    return 0
