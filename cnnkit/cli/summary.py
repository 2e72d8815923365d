"""`cnnkit summary MODEL --input CxHxW`: the per-layer table of a registered model."""
from __future__ import annotations

import argparse

from ._common import nonneg_int, positive_int

NAME = "summary"
HELP = "per-layer table: output shapes, parameters, multiply-adds, receptive fields"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a registered model name (see `cnnkit models`)")
    p.add_argument("--input", default=None, metavar="CxHxW",
                   help="input shape, e.g. 3x224x224 (default: 3x32x32, 1x32x32 for lenet5)")
    p.add_argument("--num-classes", type=positive_int, default=None, metavar="N", help="classifier outputs (default: the model's)")
    p.add_argument("--compare-fc", type=positive_int, default=None, metavar="N",
                   help="compare a fully connected layer from the input to N neurons with the first convolution")
    p.add_argument("--depth", type=nonneg_int, default=None, metavar="D", help="show modules up to this nesting depth")
    p.add_argument("--small-input", choices=("auto", "yes", "no"), default="auto",
                   help="the small-input stem: chosen from the input size (auto), or forced")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..explain.summary import compare_fc, format_summary, summarize
    from ..models import create_model, list_models
    from ..errors import CnnkitError, InputSizeError, UnknownNameError
    from ._common import check_memory, parse_shape, print_json

    if args.model not in list_models():
        raise UnknownNameError("model", args.model, list_models())
    shape = parse_shape(args.input) if args.input else ((1, 32, 32) if args.model == "lenet5" else (3, 32, 32))
    c, h, w = shape
    # one forward pass at that size: the input, and the first layers' maps (up to 64 channels at full size)
    check_memory(4 * h * w * (c + 2 * max(c, 64)), f"--input {c}x{h}x{w}", "give a smaller --input")
    if args.num_classes is not None:  # the head alone: up to 4096 features (vgg) times the classes, float32
        check_memory(4 * 4096 * args.num_classes, f"--num-classes {args.num_classes}", "give fewer --num-classes")
    kw = {"in_channels": shape[0], "input_size": shape[1:]}
    if args.num_classes is not None:
        if args.num_classes < 1:
            raise CnnkitError(f"--num-classes must be at least 1, got {args.num_classes}")
        kw["num_classes"] = args.num_classes
    if args.small_input != "auto":
        kw["small_input"] = args.small_input == "yes"
    try:
        model = create_model(args.model, **kw)
    except ValueError as e:  # a builder refusing the size or options it was given: those are the flags'
        if isinstance(e, CnnkitError) and not isinstance(e, InputSizeError):
            raise
        raise CnnkitError(f"--input {c}x{h}x{w}: {e}; give a larger --input or another model") from None
    s = summarize(model, shape, name=args.model)
    fc = None
    if args.compare_fc is not None:
        if args.compare_fc < 1:
            raise CnnkitError(f"--compare-fc must be at least 1 neuron, got {args.compare_fc}")
        first_conv = next((r for r in s.layers if r.type == "Conv2d"), None)
        fc = compare_fc(shape, args.compare_fc, first_conv)
    if args.json:
        d = s.to_dict()
        d["layers"] = [{k: v for k, v in r.items()} for r in d["layers"]]
        if fc:
            d["compare_fc"] = fc
        print_json(d)
        return 0
    format_summary(s, depth=args.depth)
    if fc:
        print()
        print(f"A fully connected layer from the {'x'.join(map(str, shape))} input ({fc['input_values']:,} values) "
              f"to {fc['neurons']:,} neurons: {fc['fc_params']:,} parameters (weights and biases).")
        if "conv_params" in fc:
            print(f"The first convolution ({fc['conv_name']}): {fc['conv_params']:,} parameters, "
                  f"{fc['ratio']:,.0f}x fewer: its weights are shared across every position of the image.")
    return 0
