"""`cnnkit lessons`: the lessons' numbers, each computed from cnnkit's models, beside the lesson's figure."""
from __future__ import annotations

import argparse

NAME = "lessons"
HELP = "the lessons' numbers (fully connected vs convolution, weight sharing, the SimpleCNNs' sizes), computed"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object: {\"rows\": [...]}")


def run(args: argparse.Namespace) -> int:
    from ..explain.lessons import format_lessons, lessons
    from ._common import print_json

    rows = lessons()
    if args.json:
        print_json({"rows": [r.to_dict() for r in rows]})
        return 0
    format_lessons(rows)
    return 0
