"""`cnnkit train --data SPEC`: train a classifier; the run directory holds everything it made.

Its flags are made from `TrainConfig` (cnnkit/engine/config.py), one per field, with the field's reason as
the help. No flag has a default of its own: only what the user typed reaches `api.train`, so the preset and
TrainConfig's defaults apply to the rest, and `--preset fast` is never overridden by a flag left out.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing

NAME = "train"
HELP = "train an image classifier (defaults chosen from the data)"
RESUMABLE = ("data", "epochs", "device", "patience", "report")  # what --resume may change (api.resume's keywords)
_METAVARS = {int: "N", float: "X"}


def _kind(annotation) -> type:
    """The type of a field's flag: `int | None` -> int."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return typing.get_origin(annotation) or annotation


def _help(f: dataclasses.Field) -> str:
    text = f.metadata.get("help", "")
    if f.default is None:  # "None: 0.1" reads, on the command line, as "default: 0.1"
        text = text.replace("None:", "default:")
    elif isinstance(f.default, bool):
        text += f" (default: {'on' if f.default else 'off'})"
    elif f.default is not dataclasses.MISSING:
        text += f" (default: {f.default})"
    return text.replace("%", "%%")  # argparse %-formats help strings


def _one_of(choices: tuple):
    """Check a choice while parsing, with its own "did you mean": the parser's generic hint for an invalid
    choice looks in the first list of choices it finds, which is not this flag's."""
    from ..engine.config import not_one_of

    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(not_one_of(text, choices))
        return text

    return parse


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, default argparse.SUPPRESS: an option left out is absent from args."""
    from ..engine.config import TrainConfig, flag

    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        kind, meta = _kind(hints[f.name]), f.metadata
        kw = {"dest": f.name, "default": argparse.SUPPRESS, "help": _help(f)}
        if kind is bool:
            p.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, **kw)
        elif kind is dict:  # parsed in run(), so a bad JSON is one CnnkitError naming the flag
            p.add_argument(flag(f.name), metavar=meta.get("metavar") or "JSON", **kw)
        elif meta.get("choices"):
            p.add_argument(flag(f.name), type=_one_of(meta["choices"]), choices=meta["choices"],
                           metavar=meta.get("metavar"), **kw)
        else:
            p.add_argument(flag(f.name), type=kind, metavar=meta.get("metavar") or _METAVARS.get(kind), **kw)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_flags(p)
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help=f"continue a stopped run with its saved settings; only "
                        f"{', '.join('--' + k for k in RESUMABLE)} may be given (--epochs N: extend it to N in all)")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end (logs go to stderr)")


def config_options(args: argparse.Namespace) -> dict:
    """The TrainConfig options the user typed, with --model-kwargs parsed."""
    import json

    from ..engine.config import TrainConfig
    from ..errors import CnnkitError

    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    if "model_kwargs" in options:
        raw = options["model_kwargs"]
        try:
            options["model_kwargs"] = json.loads(raw)
        except json.JSONDecodeError as e:
            raise CnnkitError(f"--model-kwargs {raw!r} is not JSON ({e.msg} at character {e.pos}); "
                              "give an object, e.g. --model-kwargs '{\"small_input\": true}'") from None
    return options


def run(args: argparse.Namespace) -> int:
    import sys

    from .. import api
    from ..engine.config import TrainConfig, apply_preset, check, flag
    from ..errors import CnnkitError
    from ._common import print_json

    log = sys.stderr if args.json else sys.stdout
    options = config_options(args)
    if args.resume:
        extra = [flag(k) for k in options if k not in RESUMABLE]
        if extra:
            raise CnnkitError(f"--resume continues a run with its saved settings; drop {', '.join(extra)} "
                              f"(only {', '.join(flag(k) for k in RESUMABLE)} may change)")
        check(TrainConfig(**options))
        result = api.resume(args.resume, log_stream=log, **options)
    else:
        check(apply_preset(TrainConfig(**options)))  # a bad value fails now, not after the data has loaded
        result = api.train(log_stream=log, **options)
    if result.get("stopped"):
        print(result["stopped"], file=log)
    print(f"run directory: {result['run_dir']} (model.safetensors, model.json, metrics.csv, train_state.pt, "
          "TensorBoard events)", file=log)
    if args.json:
        print_json(result)
    else:
        print(f"val_acc={result['val_acc']:.4f}")
    return 0
