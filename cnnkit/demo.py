"""`make demo`: the lessons' two models, summarised (training comes with the main-job issue)."""
from __future__ import annotations

from .explain.summary import format_summary, summarize
from .models import create_model


def main() -> int:
    for name, shape in (("simplecnn", (3, 32, 32)), ("simplecnn_bn", (3, 224, 224))):
        format_summary(summarize(create_model(name, input_size=shape[1:]), shape))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
