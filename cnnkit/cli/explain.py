"""`cnnkit explain RUN_DIR|MODEL IMAGE|SAMPLE --out DIR`: what the network sees, as images.

Feature maps at every stage, the first layer's filters beside the hand-made kernels, Grad-CAM, the receptive
field of each stage's most active unit, and with `--data`, the patches of a data set that excite a few
channels of each layer most. With `--shift DX,DY`, equivariance: each layer's map of the image shifted, against
the original map shifted, before and after pooling (`cnnkit.explain.equivariance`).
"""
from __future__ import annotations

import argparse

NAME = "explain"
HELP = "feature maps, filters, Grad-CAM and receptive fields of a model on one image"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ._common import add_weight_flags

    p.add_argument("source", metavar="RUN_DIR|MODEL",
                   help="a run directory (the trained model) or a registered model name (with --pretrained: its "
                        "ImageNet weights; without: untrained, random weights)")
    p.add_argument("image", metavar="IMAGE|SAMPLE",
                   help="an image file, or a scikit-image sample photo: camera, astronaut, chelsea, coffee, ...")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG files")
    p.add_argument("--layers", nargs="+", default=None, metavar="LAYER",
                   help="layers to show (names as in `cnnkit summary`; space- or comma-separated); "
                        "default: every convolutional stage")
    p.add_argument("--target", default=None, metavar="CLASS",
                   help="the class Grad-CAM explains, by name or index (default: the predicted class)")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="also find each layer's top-activating patches in this data set (digits, folder:DIR, ...)")
    p.add_argument("--channels", type=int, default=4, metavar="N", help="channels per layer for --data (default 4)")
    p.add_argument("--per-channel", type=int, default=6, metavar="K", help="patches per channel for --data (default 6)")
    p.add_argument("--max-images", type=int, default=2000, metavar="N",
                   help="images of --data to search, a seeded sample (default 2000)")
    p.add_argument("--img-size", type=int, default=None, metavar="PX",
                   help="input size for an untrained MODEL (default 224); a run uses its own")
    p.add_argument("--num-classes", type=int, default=None, metavar="N",
                   help="outputs of an untrained MODEL (default 1000)")
    p.add_argument("--shift", default=None, metavar="DX,DY",
                   help="also measure equivariance: shift the image DX pixels right and DY down (negative: left, "
                        "up; write --shift=-2,0) and compare each layer's map with the original map shifted, "
                        "before and after pooling (a table, and equivariance.png)")
    add_weight_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object: the prediction and every file written")


def run(args: argparse.Namespace) -> int:
    from ..errors import CnnkitError
    from ..explain.equivariance import parse_shift, table_lines
    from ..explain.explainer import explain
    from ._common import print_json

    for flag, value in (("--channels", args.channels), ("--per-channel", args.per_channel),
                        ("--max-images", args.max_images), ("--img-size", args.img_size),
                        ("--num-classes", args.num_classes)):
        if value is not None and value < 1:
            raise CnnkitError(f"{flag} must be at least 1, got {value}")
    layers = [n for item in args.layers for n in item.split(",") if n] if args.layers else None
    shift = parse_shift(args.shift) if args.shift is not None else None
    info = explain(args.source, args.image, args.out, layers=layers, target=args.target, data=args.data,
                   img_size=args.img_size, num_classes=args.num_classes, channels=args.channels,
                   per_channel=args.per_channel, max_images=args.max_images, pretrained=args.pretrained,
                   weights=args.weights, download=args.download, shift=shift)
    if args.json:
        print_json(info)
        return 0
    pred, cam = info["prediction"], info["gradcam"]
    c, h, w = info["input"]
    what = info["model"] + ("" if info["trained"] else " (untrained: random weights; the prediction means nothing)")
    print(f"{what} on {info['image']} ({c}x{h}x{w}): predicted '{pred['class']}' with probability "
          f"{pred['probability']:.4f}")
    print(f"Grad-CAM at {cam['layer']} for '{cam['class']}' (probability {cam['probability']:.4f})")
    matches = ", ".join(f"{m['kernel']} ~ filter {m['filter']} (cos {m['cosine']:+.2f})"
                        for m in info["filters"]["matches"])
    print(f"first-layer filters ({info['filters']['layer']}), most like the hand-made kernels: {matches}")
    for u in info["receptive_fields"]:
        t, l, b, r = u["box"]
        print(f"  {u['layer']}: most active unit ({u['i']}, {u['j']}) of channel {u['channel']}, "
              f"receptive field {u['rf_size'][0]}x{u['rf_size'][1]}, rows {t}-{b}, columns {l}-{r}")
    if "equivariance" in info:
        print("\n".join(table_lines(info["equivariance"])))
    print(f"wrote {len(info['files'])} files:")
    for f in info["files"]:
        print(f"  {f}")
    return 0
