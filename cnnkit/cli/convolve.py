"""`cnnkit convolve IMAGE|SAMPLE --kernel NAME|MATRIX --out FILE.png`: one kernel over one image, with the
NumPy convolution (`cnnkit.ops.conv2d`), the feature map written as a PNG and its statistics printed.

Colour images are converted to grayscale first (Rec. 709 luminance, as `skimage.color.rgb2gray`; a
transparent background becomes white), with values in 0…1; the kernel then sees one channel, as in the
lessons. The PNG is scaled for viewing: a map with both signs (an edge detector's) maps 0 to mid-grey and
±max|value| to black and white; a one-signed map (a blur's) maps its min…max to black…white. The raw
values are what the statistics report.
"""
from __future__ import annotations

import argparse

NAME = "convolve"
HELP = "convolve an image (or a scikit-image sample photo) with a kernel; write the feature map as a PNG"

from ._common import out_file, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..data.samples import SAMPLES  # here: importing cnnkit.data costs torch, which `cnnkit --help` need not pay

    p.add_argument("image", metavar="IMAGE|SAMPLE",
                   help=f"an image file, or a scikit-image sample: {', '.join(SAMPLES)}")
    p.add_argument("--kernel", required=True, metavar="NAME|MATRIX",
                   help="a named kernel (sobel_x, sobel_y, horizontal_edge, prewitt_x, prewitt_y, laplacian, "
                        "sharpen, box, gaussian, …) or a matrix, e.g. '[[1,0,-1],[2,0,-2],[1,0,-1]]'")
    p.add_argument("--stride", type=positive_int, default=1, metavar="S", help="step between windows (default: 1)")
    p.add_argument("--padding", default="valid", metavar="valid|same|N",
                   help="zeros around the image: none (valid, the default), enough to keep the size (same), "
                        "or N pixels on each side")
    p.add_argument("--out", required=True, metavar="FILE.png", type=out_file, help="where to write the feature map")
    p.add_argument("--side-by-side", action="store_true", help="write the input and the feature map side by side")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def load_gray(spec: str):
    """An image file or a sample name → (float64 H×W array in 0…1, description)."""
    import os

    import numpy as np

    from ..data.samples import SAMPLES
    from ..errors import CnnkitError, UnknownNameError

    if os.path.isfile(spec):
        from ..data.images import open_image

        img = open_image(spec)  # checked and fully decoded: a bad file is one line naming it
        if img.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
            a = np.asarray(img, dtype=np.float64) / 65535
        elif img.mode in ("I", "F"):
            a = np.asarray(img, dtype=np.float64)
            a = (a - a.min()) / (np.ptp(a) or 1)  # 32-bit data: no fixed range, so its own
        else:
            alpha = "A" in img.mode or "transparency" in img.info
            a = np.asarray(img.convert("RGBA" if alpha else "RGB"), dtype=np.float64) / 255
        source = spec
    elif spec in SAMPLES:
        from ..data.samples import load_sample

        a = load_sample(spec).astype(np.float64) / 255
        source = f"sample {spec}"
    elif os.sep in spec or "." in os.path.basename(spec):
        raise CnnkitError(f"no such image file: '{spec}' (or give a sample name: {', '.join(SAMPLES)})")
    else:
        raise UnknownNameError("image file or sample", spec, SAMPLES)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        from skimage.color import rgb2gray, rgba2rgb

        a = rgb2gray(rgba2rgb(a) if a.shape[2] == 4 else a)
        source += " (grayscale)"
    if a.ndim != 2:
        raise CnnkitError(f"'{spec}' has shape {a.shape}: expected a grayscale or RGB(A) image")
    return a, source


def scale_for_viewing(m):
    """The feature map → (uint8 image, how it was scaled). See the module docstring."""
    import numpy as np

    lo, hi = float(m.min()), float(m.max())
    if lo < 0 < hi:
        r = max(-lo, hi)
        return np.round(127.5 + 127.5 * m / r).astype(np.uint8), f"-{r:.4g}…{r:.4g} → black…white, 0 is mid-grey"
    if hi > lo:
        return np.round(255 * (m - lo) / (hi - lo)).astype(np.uint8), f"{lo:.4g}…{hi:.4g} → black…white"
    return np.zeros(m.shape, np.uint8), f"constant {lo:.4g} → black"


def write_png(path: str, image) -> None:
    """Write a uint8 H×W array as a PNG, atomically (cnnkit._io: a temp file, then a rename)."""
    from PIL import Image

    from .._io import atomic_write

    atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


def side_by_side(left, right, gap: int = 8):
    """Two uint8 images in one, the right one resized (nearest) to the left one's height, white between."""
    import numpy as np
    from PIL import Image

    h = left.shape[0]
    if right.shape[0] != h:
        w = max(1, round(right.shape[1] * h / right.shape[0]))
        right = np.asarray(Image.fromarray(right).resize((w, h), Image.NEAREST))
    canvas = np.full((h, left.shape[1] + gap + right.shape[1]), 255, np.uint8)
    canvas[:, :left.shape[1]] = left
    canvas[:, left.shape[1] + gap:] = right
    return canvas


def conv_bytes(image_shape: tuple[int, int], kernel_shape: tuple[int, int], stride: int, padding) -> int:
    """What `ops.conv2d` and this command allocate, in bytes (float64): the padded image, im2col's columns (one
    window per output position, plus the bias row), the map and its copies for viewing.

    >>> conv_bytes((512, 512), (3, 3), 1, 100000) > 298 * 2**30
    True
    """
    (h, w), (kh, kw) = image_shape, kernel_shape
    ph, pw = ((kh - 1) // 2 + 1, (kw - 1) // 2 + 1) if padding == "same" else \
        (0, 0) if padding == "valid" else (padding, padding)
    ho, wo = max(0, (h + 2 * ph - kh) // stride + 1), max(0, (w + 2 * pw - kw) // stride + 1)
    return 8 * ((h + 2 * ph) * (w + 2 * pw) + (kh * kw + 1) * ho * wo + 4 * ho * wo)


def _padding(text: str):
    from ..errors import CnnkitError
    from ._common import printable

    t = text.strip().lower()
    if t in ("valid", "same"):
        return t
    if t.isdigit():
        return int(t)
    raise CnnkitError(f"--padding '{printable(text)}': expected valid, same or a number of pixels (0, 1, 2, …)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..errors import CnnkitError
    from ..ops import KERNELS, conv2d, resolve_kernel
    from ._common import check_memory, print_json, printable

    if not args.out.lower().endswith(".png"):
        raise CnnkitError(f"--out '{args.out}': expected a .png file name, e.g. edges.png")
    if args.stride < 1:
        raise CnnkitError(f"--stride must be at least 1, got {args.stride}")
    padding = _padding(args.padding)
    if padding == "same" and args.stride != 1:
        raise CnnkitError(f"--padding same keeps the image size, so it needs --stride 1 (got {args.stride}); "
                          "give --padding as a number instead")
    kname, kernel = resolve_kernel(args.kernel)
    image, source = load_gray(args.image)
    kh, kw = kernel.shape
    pad = 0 if padding in ("valid", "same") else padding
    if padding != "same" and (image.shape[0] + 2 * pad < kh or image.shape[1] + 2 * pad < kw):
        raise CnnkitError(f"--kernel is {kh}×{kw}, larger than the image {image.shape[0]}×{image.shape[1]} "
                          f"with padding {pad}; use a smaller kernel or --padding same")
    check_memory(conv_bytes(image.shape, kernel.shape, args.stride, padding),
                 f"--padding {padding} with --stride {args.stride} on this {image.shape[0]}×{image.shape[1]} image",
                 "give a smaller --padding (or a larger --stride)")
    with np.errstate(all="ignore"):  # an overflow is said below, in our words, not as numpy's warning
        fmap = conv2d(image[None, None], kernel[None, None], stride=args.stride, padding=padding)[0, 0]
        finite = np.isfinite(fmap).all() and np.isfinite(fmap.std())
    if not finite:  # never "max inf, std nan" with exit 0
        raise CnnkitError(f"--kernel {printable(args.kernel)[:60]}: its values are too large, the feature map "
                          "overflows (infinite values); use kernel values within ±1e6")
    stats = {"min": float(fmap.min()), "max": float(fmap.max()), "mean": float(fmap.mean()),
             "std": float(fmap.std())}
    view, scaling = scale_for_viewing(fmap)
    if args.side_by_side:
        view = side_by_side(np.round(image * 255).astype(np.uint8), view)
    write_png(args.out, view)
    if args.json:
        print_json({"input": args.image, "source": source, "input_shape": list(image.shape), "kernel": kname,
                    "kernel_matrix": kernel.tolist(), "stride": args.stride, "padding": padding,
                    "shape": list(fmap.shape), "stats": stats, "scaling": scaling, "out": args.out,
                    "side_by_side": args.side_by_side})
        return 0
    rows = "; ".join(" ".join(f"{v:g}" for v in r) for r in kernel)
    print(f"input   {printable(source)}: {image.shape[0]}×{image.shape[1]}, values 0…1")
    print(f"kernel  {kname if kname in KERNELS else 'matrix'} {kh}×{kw}: [{rows}] (cross-correlation, as PyTorch)")
    print(f"output  {fmap.shape[0]}×{fmap.shape[1]} (stride {args.stride}, padding {padding})")
    print(f"raw     min {stats['min']:.4g}  max {stats['max']:.4g}  mean {stats['mean']:.4g}  std {stats['std']:.4g}")
    print(f"wrote   {printable(args.out)}{' (input | feature map)' if args.side_by_side else ''}, scaled for viewing: {scaling}")
    return 0
