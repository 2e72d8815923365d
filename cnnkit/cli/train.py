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
# what --resume may change (api.resume's keywords)
RESUMABLE = ("data", "epochs", "device", "patience", "report", "nproc")
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


def _type(name: str, kind: type):
    """The argparse type of a field's flag: a value out of its range (or NaN, which slips past every comparison
    in `check`) is refused while parsing, naming the flag. Ranges that depend on other flags stay in `check`."""
    from . import _common as c

    named = {"epochs": c.positive_int, "batch_size": c.positive_int, "patience": c.positive_int,
             "max_pixels": c.positive_int, "nproc": c.positive_int, "freeze_epochs": c.nonneg_int,
             "img_size": c.img_size, "seed": c.seed,
             "lr": c.positive_float, "val_fraction": c.positive_float, "weight_decay": c.nonneg_float,
             "momentum": c.nonneg_float, "label_smoothing": c.nonneg_float, "lr_mult": c.positive_float,
             "device": c.device, "out": c.out_dir}
    return named.get(name) or {int: c.integer, float: c.finite_float}.get(kind, kind)


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
            p.add_argument(flag(f.name), type=_type(f.name, kind), metavar=meta.get("metavar") or _METAVARS.get(kind),
                           **kw)


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
    import os
    import sys

    from .. import api
    from ..engine.config import TrainConfig, apply_preset, check, flag
    from ..errors import CnnkitError
    from ._common import check_img_size, print_json, printable

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
        cfg = check(apply_preset(TrainConfig(**options)))  # a bad value fails now, not after the data has loaded
        if cfg.img_size is not None:
            check_img_size(cfg.img_size, batch=cfg.batch_size or 64)  # 64: resolve's smallest default
            _check_model_size(cfg)
        result = api.train(log_stream=log, **options)
    from ..engine.distributed import read_env
    from ..engine.launch import CHILD_VAR

    if not read_env().is_main:  # under torchrun: rank 0 says it, once
        return 0
    if not os.environ.get(CHILD_VAR):  # under --nproc, the command that started the processes says it
        if result.get("stopped"):
            print(printable(result["stopped"]), file=log)
        print(f"run directory: {printable(result['run_dir'])} (model.safetensors, model.json, metrics.csv, "
              "train_state.pt, TensorBoard events)", file=log)
    if args.json:
        print_json(result)
    else:
        print(f"val_acc={result['val_acc']:.4f}")
    return 0


def _check_model_size(cfg) -> None:
    """--img-size below what --model accepts: one line naming both, before any data is read. The model is built
    (no weights) to ask it, since some models' minimum depends on their options; a model that cannot be built
    here is left for training to report."""
    from ..engine.config import PRETRAINED_MODEL
    from ..errors import CnnkitError, InputSizeError
    from ..models import create_model, list_models
    from ..models._registry import ModelArgumentError

    side = cfg.img_size
    name = cfg.model or (PRETRAINED_MODEL if (cfg.pretrained or cfg.weights) else
                         "simplecnn" if side <= 32 else "simplecnn_bn")
    if name not in list_models():
        return
    kw = dict(cfg.model_kwargs)
    if (cfg.pretrained or cfg.weights) and kw.get("small_input") is None:
        kw["small_input"] = False  # what create_model does for pretrained weights
    try:
        import torch

        with torch.device("meta"):  # the shapes only: no memory, no initialisation time
            model = create_model(name, in_channels=3, num_classes=2, input_size=(side, side), **kw)
        low = int(getattr(model, "min_input_size", 1) or 1)
    except ModelArgumentError as e:  # --model-kwargs, not the size
        raise CnnkitError(f"--model-kwargs: {e}") from None
    except InputSizeError as e:  # the builder's own word on this size
        raise CnnkitError(f"--img-size {side} is too small for {name} ({e}); give a larger --img-size or another "
                          "--model") from None
    except CnnkitError as e:
        raise CnnkitError(f"--img-size {side}: {e}") from None
    except Exception as e:  # noqa: BLE001 - a builder's own complaint; only one about this size is ours
        if not isinstance(e, ValueError) or f"{side}x{side}" not in str(e):
            return
        raise CnnkitError(f"--img-size {side} is too small for {name} ({e}); give a larger --img-size or another "
                          "--model") from None
    if side < low:
        raise CnnkitError(f"--img-size {side} is too small for {name}: it needs at least {low}x{low}; give "
                          f"--img-size {low} or more, or another --model")
