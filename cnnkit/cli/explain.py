"""`cnnkit explain RUN_DIR|MODEL IMAGE|SAMPLE --out DIR`: what the network sees, as images.

Feature maps at every stage, the first layer's filters beside the hand-made kernels, Grad-CAM, the receptive
field of each stage's most active unit, and with `--data`, the patches of a data set that excite a few
channels of each layer most. With `--shift DX,DY`, equivariance: each layer's map of the image shifted, against
the original map shifted, before and after pooling (`cnnkit.explain.equivariance`).

The class activation map: `--method auto` picks it from the model's head (Grad-CAM, which is CAM, for a
global-pool head; HiResCAM for flatten + linear), or name one. For a flatten head each method's layer is
chosen on validation images (the run's own, or --data's; `attribution.choose_layers`), and a method faithful at
no stage is declined with the numbers that say why. Its deletion and insertion scores (Petsiuk et
al. 2018) are printed beside a random order's; a map with no positive evidence is labelled blank, never
drawn as an explanation. `--sanity`: Adebayo et al.'s cascading model randomisation, as a table and a verdict.
"""
from __future__ import annotations

import argparse

NAME = "explain"
HELP = "feature maps, filters, Grad-CAM and receptive fields of a model on one image"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..explain.attribution import CHOICES
    from ._common import add_weight_flags, img_size, out_dir_not_run, positive_int

    p.add_argument("source", metavar="RUN_DIR|MODEL",
                   help="a run directory (the trained model) or a registered model name (with --pretrained: its "
                        "ImageNet weights; without: untrained, random weights)")
    p.add_argument("image", metavar="IMAGE|SAMPLE",
                   help="an image file, or a scikit-image sample photo: camera, astronaut, chelsea, coffee, ...")
    p.add_argument("--out", required=True, type=out_dir_not_run, metavar="DIR", help="folder for the PNG files")
    p.add_argument("--layers", nargs="+", default=None, metavar="LAYER",
                   help="layers to show (names as in `cnnkit summary`; space- or comma-separated); "
                        "default: every convolutional stage")
    p.add_argument("--target", default=None, metavar="CLASS",
                   help="the class the map explains, by name or index (default: the predicted class)")
    p.add_argument("--method", default="auto", choices=CHOICES,
                   help="class activation map: auto (from the head: Grad-CAM = CAM for a global-average-pool head, "
                        "HiResCAM for flatten + linear), gradcam, hirescam, gradcam++ or layercam (default auto); for a "
                        "flatten head, at the stage chosen on validation images, or declined with the measured reason")
    p.add_argument("--compare", action="store_true",
                   help="also score the other methods' maps by deletion and insertion, for this image")
    p.add_argument("--no-faithfulness", dest="faithfulness", action="store_false",
                   help="skip the deletion and insertion scores (a few hundred forward passes)")
    p.add_argument("--sanity", action="store_true",
                   help="also run the model-randomisation sanity check (Adebayo et al. 2018): re-initialise the "
                        "layers from the top, and print the Spearman correlation of each map with the trained one")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="also find each layer's top-activating patches in this data set (digits, folder:DIR, ...)")
    p.add_argument("--channels", type=positive_int, default=4, metavar="N", help="channels per layer for --data (default 4)")
    p.add_argument("--per-channel", type=positive_int, default=6, metavar="K", help="patches per channel for --data (default 6)")
    p.add_argument("--max-images", type=positive_int, default=2000, metavar="N",
                   help="images of --data to search, a seeded sample (default 2000)")
    p.add_argument("--img-size", type=img_size, default=None, metavar="PX",
                   help="input size for an untrained MODEL (default 224); a run uses its own")
    p.add_argument("--num-classes", type=positive_int, default=None, metavar="N",
                   help="outputs of an untrained MODEL (default 1000)")
    p.add_argument("--shift", default=None, metavar="DX,DY",
                   help="also measure equivariance: shift the image DX pixels right and DY down (negative: left, "
                        "up; write --shift=-2,0) and compare each layer's map with the original map shifted, "
                        "before and after pooling (a table, and equivariance.png)")
    add_weight_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object: the prediction and every file written")


def run(args: argparse.Namespace) -> int:
    from ..explain.equivariance import parse_shift, table_lines
    from ..explain.explainer import explain
    from ._common import check_img_size, check_memory, print_json, printable

    if args.img_size:
        check_img_size(args.img_size)
    if args.num_classes:  # the head's weights, before they are allocated
        check_memory(4 * 4096 * args.num_classes, f"--num-classes {args.num_classes}", "give fewer --num-classes")
    layers = [n for item in args.layers for n in item.split(",") if n] if args.layers else None
    shift = parse_shift(args.shift) if args.shift is not None else None
    info = explain(args.source, args.image, args.out, layers=layers, target=args.target, data=args.data,
                   img_size=args.img_size, num_classes=args.num_classes, channels=args.channels,
                   per_channel=args.per_channel, max_images=args.max_images, pretrained=args.pretrained,
                   weights=args.weights, download=args.download, shift=shift, method=args.method,
                   faithfulness=args.faithfulness, compare=args.compare, sanity=args.sanity)
    if args.json:
        print_json(info)
        return 0
    pred, cam = info["prediction"], info["gradcam"]
    c, h, w = info["input"]
    what = info["model"] + ("" if info["trained"] else " (untrained: random weights; the prediction means nothing)")
    print(f"{what} on {printable(info['image'])} ({c}x{h}x{w}): predicted '{printable(pred['class'])}' with probability "
          f"{pred['probability']:.4f}")
    from ..explain.attribution import LABELS
    from ..explain.sanity import table_lines as sanity_lines

    print(f"{LABELS[cam['method']]} at {cam['layer']} ({cam['head']} head) for '{printable(cam['class'])}' "
          f"(probability {cam['probability']:.4f})")
    print(f"  layer: {cam['layer_choice']['reason']}")
    for m, why in cam.get("declined", {}).items():
        print(f"  {why}")
    if cam["blank"]:
        print(f"  {cam['reason']}")
    f = cam.get("faithfulness")
    if f:
        r = f["random"]
        print(f"  deletion {f['deletion']:.3f} (random order {r['deletion']:.3f}; lower is better), insertion "
              f"{f['insertion']:.3f} (random {r['insertion']:.3f}; higher is better): {f['verdict']}")
        for m, v in f["methods"].items():
            if m != cam["method"] and not v.get("declined"):
                print(f"  {LABELS[m]:<11} at {v['layer']}: deletion {v['deletion']:.3f}, insertion {v['insertion']:.3f}")
    filters = info["filters"]
    print(f"first-layer filters ({filters['layer']}): {filters['verdict']}")
    print("  best cosine to each hand-made kernel: " + ", ".join(
        f"{m['kernel']} ~ filter {m['filter']} (cos {m['cosine']:+.2f}, "
        f"{'a match' if m['beats_chance'] else 'no better than chance'}: random 95% {m['chance'][1]:.2f})"
        for m in filters["matches"]))
    if "sanity" in info:
        print("\n".join(sanity_lines(info["sanity"])))
    for u in info["receptive_fields"]:
        t, l, b, r = u["box"]
        print(f"  {printable(u['layer'])}: most active unit ({u['i']}, {u['j']}) of channel {u['channel']}, "
              f"receptive field {u['rf_size'][0]}x{u['rf_size'][1]}, rows {t}-{b}, columns {l}-{r}")
    if "equivariance" in info:
        print("\n".join(table_lines(info["equivariance"])))
    print(f"wrote {len(info['files'])} files:")
    for f in info["files"]:
        print(f"  {printable(f)}")
    return 0
