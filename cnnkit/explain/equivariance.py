"""Equivariance, shown and measured: shift the image and see whether each layer's map shifts with it.

The lesson's claims: a convolution is *equivariant* (shift the pattern and its high activation shifts by as
much), and pooling gives only *approximate* translation invariance. For each layer we compare A(shift(x)), the
map of the shifted image, with shift(A(x)), the original map moved by the same amount in map cells: dx / s,
where s, the layer's stride, is its cumulative downsampling (the receptive field's jump). When the shift is a
multiple of the stride the two agree exactly on the valid interior; when it is not, no whole number of cells is
right, we compare at the nearest (halves rounded away from zero), and the correlation drops below 1: that gap
is the price of pooling.

- The shift: dx right, dy down (negative: left, up), in whole pixels of the image as the model sees it (after
  resizing). The uncovered border is filled with black (zeros in uint8, before normalisation), as training's
  random shifts and test-time augmentation do (`data.transforms.shift`, reused). The fill changes no number
  below: every unit that sees it is left out; it only shows in the figure.
- The valid interior: the units whose receptive field, in the shifted image, lies wholly in the part that holds
  the original's pixels, and whose partner in the original map sees only pixels that survive the shift. The
  others see the fill, or pixels pushed out of the frame, and differ for a reason that is not the network's. On
  an axis that is not shifted no unit is left out (zero padding meets zero padding). Receptive fields are the
  full ones (`receptive_field`), so a deep layer of a small image may have no valid interior at all.
- The number: Pearson's correlation over the valid interior, each channel centred on its own mean and the
  channels pooled (a variance-weighted mean of the per-channel spatial correlations), so channels that merely
  sit at different levels do not count as agreement. Beside it, the correlation with the unshifted map at the
  same positions: how *invariant* the map is.
- The layers: for each stage, the last layer before the stage downsamples ("before pooling": relu1 for
  simplecnn) and the stage itself ("after pooling": pool1); a model without stages: every layer that
  downsamples and the one before it; or the layers asked for.

>>> import torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
>>> img = (torch.rand(1, 24, 24, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
>>> [(r.layer, r.kind, r.exact, round(r.correlation, 6)) for r in measure(net, img, (2, 0)).layers]
[('1', 'before pooling', True, 1.0), ('2', 'after pooling', True, 1.0)]
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..errors import CnnkitError, UnknownNameError
from .receptive_field import RF, ReceptiveFieldMode

_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d, nn.LPPool2d)


def parse_shift(text: str, *, flag: str = "--shift") -> tuple[int, int]:
    """'2,0' (or '2,-1', '2x0', '2 0') → (dx, dy) in pixels.

    >>> parse_shift('2,-1')
    (2, -1)
    """
    parts = [p for p in re.split(r"[,x×\s]+", str(text).strip().lower()) if p]
    if len(parts) != 2 or not all(re.fullmatch(r"[+-]?\d+", p) for p in parts):
        raise CnnkitError(f"{flag} '{text}' is not a shift: expected DX,DY in whole pixels (DX right, DY down; "
                          f"negative: left, up), e.g. {flag} 2,0 or {flag}=-1,3")
    dx, dy = (int(p) for p in parts)
    if dx == 0 and dy == 0:
        raise CnnkitError(f"{flag} '{text}' does not move the image; give a non-zero DX or DY, e.g. {flag} 2,0")
    return dx, dy


def check_shift(shift: tuple[int, int], size: tuple[int, int], *, flag: str = "--shift") -> None:
    """Fail unless the shifted image keeps part of the original: |dx| < W and |dy| < H."""
    dx, dy = shift
    h, w = size
    if abs(dx) >= w or abs(dy) >= h:
        raise CnnkitError(f"{flag} {dx},{dy} moves the whole image out of its {h}x{w} frame (the size the model "
                          f"sees); use |DX| < {w} and |DY| < {h}, a few pixels, e.g. {flag} 2,0")


def check_model(model: nn.Module) -> None:
    """Fail on a model without convolutions: it has no feature map to shift."""
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        name = getattr(model, "model_name", type(model).__name__)
        raise CnnkitError(f"{name} has no convolution, so no feature map to shift: --shift measures how a "
                          "convolution's map moves with the image; pick a CNN (simplecnn, lenet5, resnet18)")


# --- the layers -------------------------------------------------------------------------------------------
@dataclass
class _Rec:
    name: str
    leaf: bool
    pool: bool
    hw: tuple[int, int]
    rf: RF


def _trace(model: nn.Module, x: torch.Tensor) -> list[_Rec]:
    """Every named module's 4-D output for `x` (one image), in the order the forward pass finishes them, each
    with its receptive field."""
    recs: list[_Rec] = []
    with torch.no_grad(), ReceptiveFieldMode(x) as mode:
        def hook(name, m, _i, o):
            o = o[0] if isinstance(o, (tuple, list)) and o else o
            entry = mode._rf.get(id(o)) if isinstance(o, torch.Tensor) else None  # (RF, its map's H, W)
            # only N×C×H×W maps: a ConvNeXt block's channels-last (N×H×W×C) tensors are passed over
            if entry is None or o.dim() != 4 or tuple(o.shape[-2:]) != tuple(entry[1]):
                return
            hw = tuple(o.shape[-2:])
            pool = isinstance(m, _POOLS) and hw != (1, 1)  # a global pool (squeeze-excitation) is no stage's pooling
            recs.append(_Rec(name, not any(True for _ in m.children()), pool, hw, entry[0]))
        handles = [m.register_forward_hook(lambda m, i, o, name=name: hook(name, m, i, o))
                   for name, m in model.named_modules() if name]
        try:
            model(x)
        finally:
            for h in handles:
                h.remove()
    return recs


def _auto_layers(recs: list[_Rec], stage_names: Sequence[str], input_hw: tuple[int, int]) -> list[tuple[str, str]]:
    """(layer, kind) pairs: per stage, the last leaf layer at a finer resolution than the stage's output
    ('before pooling') and the stage ('after pooling'); layers called more than once are passed over (which
    call would be meant?)."""
    calls = Counter(r.name for r in recs)
    last = {r.name: i for i, r in enumerate(recs)}
    area = lambda hw: hw[0] * hw[1]  # noqa: E731
    ends = [s for s in stage_names if s in last]
    if not ends:  # no stages: every leaf layer that shrinks the map
        prev, ends = area(input_hw), []
        for r in recs:
            if r.leaf and calls[r.name] == 1 and area(r.hw) < prev:
                ends.append(r.name)
            if r.leaf:
                prev = area(r.hw)
    out: list[tuple[str, str]] = []
    start = 0
    for s in ends:
        i = last[s]
        before = [k for k in range(start, i) if recs[k].leaf and calls[recs[k].name] == 1
                  and area(recs[k].hw) > area(recs[i].hw) and recs[k].name not in ends]
        if before:
            b = before[-1]
            what = "pooling" if any(r.pool for r in recs[b + 1:i + 1]) else "downsampling"
            out += [(recs[b].name, f"before {what}"), (s, f"after {what}")]
        else:
            out.append((s, "stage output"))
        start = i + 1
    seen: set[str] = set()
    return [(n, k) for n, k in out if not (n in seen or seen.add(n))]


def _capture(model: nn.Module, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The named layers' outputs for batch `x`, copied as they are made (a later in-place ReLU would change
    them otherwise)."""
    modules = dict(model.named_modules())
    out: dict[str, torch.Tensor] = {}

    def keep(name, o):
        o = o[0] if isinstance(o, (tuple, list)) else o
        out[name] = o.detach().double().clone()

    handles = [modules[n].register_forward_hook(lambda _m, _i, o, n=n: keep(n, o)) for n in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return out


# --- the measurement --------------------------------------------------------------------------------------
def _round_half_away(v: float) -> int:
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def _valid(n: int, left: float, right: float, jump: float, size: int, d: int, k: int) -> np.ndarray:
    """Along one axis: which of the shifted map's n units j are in the valid interior, for an image of `size`
    pixels shifted by d and the original map shifted by k cells (unit j is compared with unit j - k)."""
    j = np.arange(n)
    if d == 0 and k == 0:
        return np.ones(n, bool)
    lo, hi = left + j * jump, right + j * jump  # unit j's receptive field, in input pixels
    ok = (lo >= max(0, d)) & (hi <= min(size, size + d) - 1)  # sees only the shifted copy of real pixels
    i = j - k
    lo_i, hi_i = left + i * jump, right + i * jump
    ok &= (i >= 0) & (i < n) & (lo_i >= max(0, -d)) & (hi_i <= min(size, size - d) - 1)  # partner: pixels kept
    return ok


def centred_correlation(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Pearson's correlation of two C×h×w maps, each channel centred on its own mean, channels pooled;
    None when either map is constant in every channel.

    >>> a = torch.tensor([[[0., 1.], [2., 3.]], [[10., 10.], [10., 11.]]])
    >>> centred_correlation(a, a + 5), round(centred_correlation(a, -a), 6)
    (1.0, -1.0)
    """
    a = a.double().flatten(1)
    b = b.double().flatten(1)
    if a.shape[1] < 2:
        return None
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / den if den > 0 else None


@dataclass
class LayerShift:
    layer: str
    kind: str  # 'before pooling', 'after pooling', 'stage output', 'layer' (asked for by name)
    shape: list[int]  # C, h, w
    stride: list[float]  # x, y: input pixels per map cell (the receptive field's jump)
    expected: list[float]  # dx / stride_x, dy / stride_y: the map shift the input shift implies, in cells
    compared: list[int]  # the whole-cell shift compared with (expected, halves rounded away from zero)
    exact: bool  # expected == compared: a shift the map can follow exactly
    valid: list[int]  # rows, columns of the valid interior (0: none)
    rf_size: list[int]  # H, W of a unit's receptive field
    correlation: float | None  # A(shift x) against shift(A(x)) over the valid interior
    unshifted_correlation: float | None  # A(shift x) against A(x) at the same positions
    channel: int  # the channel drawn: the original map's most active
    maps: dict = field(default_factory=dict, repr=False)  # h×w arrays for the figure

    def to_dict(self) -> dict:
        d = asdict(replace(self, maps={}))
        d.pop("maps")
        for key in ("correlation", "unshifted_correlation"):
            d[key] = None if d[key] is None else round(d[key], 6)
        d["expected"] = [round(v, 4) for v in d["expected"]]
        d["stride"] = [int(v) if float(v).is_integer() else round(v, 4) for v in d["stride"]]
        if d["correlation"] is None:
            d["note"] = (f"no unit's receptive field ({self.rf_size[0]}x{self.rf_size[1]}) lies inside the pixels "
                         "both images share: nothing to compare")
        return d


@dataclass
class Equivariance:
    shift: tuple[int, int]  # dx, dy in input pixels
    input: list[int]  # C, H, W
    layers: list[LayerShift]
    images: tuple[np.ndarray, np.ndarray] = field(repr=False, default=None)  # uint8 C×H×W: original, shifted

    def to_dict(self) -> dict:
        return {"shift": list(self.shift), "input": self.input,
                "fill": "black (zeros before normalisation); units that see it are left out",
                "layers": [r.to_dict() for r in self.layers]}


def _resolve_layers(model: nn.Module, recs: list[_Rec], layers: Sequence[str] | None,
                    input_hw: tuple[int, int]) -> list[tuple[str, str]]:
    if not layers:
        picked = _auto_layers(recs, getattr(model, "stage_names", ()) or (), input_hw)
        if not picked:
            raise CnnkitError("found no layer that downsamples to measure; name the layers with --layers")
        return picked
    names = [n for n, _ in model.named_modules() if n]
    seen = {r.name for r in recs}
    for n in layers:
        if n not in names:
            raise UnknownNameError("layer", n, names)
        if n not in seen:
            raise CnnkitError(f"layer '{n}' gives no feature map N×C×H×W (it never runs, or its output is not "
                              "spatial); pick a convolutional layer (default: before and after each pooling)")
    return [(n, "layer") for n in layers]


@torch.no_grad()
def measure(model: nn.Module, image, shift: tuple[int, int] | str, *,
            prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
            layers: Sequence[str] | None = None) -> Equivariance:
    """Shift `image` (uint8 C×H×W, at the model's size) by `shift` = (dx, dy) pixels (or 'DX,DY') and compare,
    layer by layer, the shifted image's map with the original map shifted (see the module docstring). `prepare`
    turns a uint8 N×C×H×W batch into the model's input (a Predictor's `prepare`; default: float, unscaled)."""
    img = (image.detach().cpu().clone() if isinstance(image, torch.Tensor)
           else torch.from_numpy(np.array(image)))  # a copy: the caller's array may be read-only
    if img.dim() != 3:
        raise CnnkitError(f"expected one image C×H×W, got shape {tuple(img.shape)}")
    dx, dy = parse_shift(shift) if isinstance(shift, str) else (int(v) for v in shift)
    c, h, w = img.shape
    check_shift((dx, dy), (h, w))
    check_model(model)
    from ..data.transforms import shift as shift_batch

    moved = shift_batch(img[None], dy, dx)[0]
    prepare = prepare or (lambda t: t.float())
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = prepare(torch.stack([img, moved]).to(dev))
    was_training = model.training
    model.eval()
    try:
        recs = _trace(model, x[:1])
        picked = _resolve_layers(model, recs, layers, (h, w))
        maps = _capture(model, x, [n for n, _ in picked])
    finally:
        model.train(was_training)
    rf_of = {r.name: r.rf for r in recs}  # the last call's, as _capture keeps the last call's output

    rows = []
    for name, kind in picked:
        a = maps[name].cpu()
        orig, new = a[0], a[1]  # C×h×w: A(x), A(shift x)
        rf = rf_of[name]
        (jy, jx), (ly, lx), (ry, rx) = rf.jump, rf.left, rf.right
        ex, ey = dx / jx, dy / jy
        kx, ky = _round_half_away(ex), _round_half_away(ey)
        vy = _valid(orig.shape[1], ly, ry, jy, h, dy, ky)
        vx = _valid(orig.shape[2], lx, rx, jx, w, dx, kx)
        rows_j, cols_j = np.flatnonzero(vy), np.flatnonzero(vx)
        corr = inv = None
        if len(rows_j) and len(cols_j):
            sub = lambda t, r, q: t[:, r][:, :, q]  # noqa: E731
            new_v = sub(new, rows_j, cols_j)
            corr = centred_correlation(new_v, sub(orig, rows_j - ky, cols_j - kx))
            inv = centred_correlation(new_v, sub(orig, rows_j, cols_j))
        ch = int(torch.argmax(orig.flatten(1).mean(1)))
        expected_map = shift_batch(orig[None, ch:ch + 1], ky, kx)[0, 0]  # zeros come in, as in the image
        box = None
        if len(rows_j) and len(cols_j):
            box = (int(rows_j[0]), int(cols_j[0]), int(rows_j[-1]), int(cols_j[-1]))
        rows.append(LayerShift(
            layer=name, kind=kind, shape=list(orig.shape), stride=[jx, jy], expected=[ex, ey], compared=[kx, ky],
            exact=(kx * jx == dx and ky * jy == dy), valid=[len(rows_j), len(cols_j)], rf_size=list(rf.size),
            correlation=corr, unshifted_correlation=inv, channel=ch,
            maps={"original": orig[ch].numpy(), "shifted_image": new[ch].numpy(),
                  "original_shifted": expected_map.numpy(), "box": box}))
    return Equivariance((dx, dy), [c, h, w], rows, (img.numpy(), moved.numpy()))


# --- the table and the figure -----------------------------------------------------------------------------
def _fmt_shift(e: float, k: int) -> str:
    return str(k) if e == k else f"{e:g}~{k}"


def table_lines(eq: Equivariance | dict) -> list[str]:
    """The measurement (or its `to_dict()`, as `explain` returns it) as text lines for the CLI."""
    eq = eq.to_dict() if isinstance(eq, Equivariance) else eq
    dx, dy = eq["shift"]
    f = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    pair = lambda a, b: f"{a:g}" if a == b else f"{a:g},{b:g}"  # noqa: E731
    rows = [("layer", "kind", "stride", "map shift", "r shifted", "r unshifted", "valid units")]
    odd = []
    for r in eq["layers"]:
        cells = []
        for e, k in zip(r["expected"], r["compared"]):
            cells.append(f"{k}" if e == k else f"{e:g}~{k}")
            if e != k:
                odd.append((e, k))
        rows.append((r["layer"], r["kind"], pair(*r["stride"]), ",".join(cells), f(r["correlation"]),
                     f(r["unshifted_correlation"]), f"{r['valid'][0]}x{r['valid'][1]}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = [f"equivariance: the image shifted by dx,dy = {dx},{dy} px (dx right, dy down; black fills the uncovered "
           "border)",
           "  r shifted: the shifted image's map against the original map moved by the map shift; r unshifted: "
           "against the original map where it was; both over the valid units (those that see only pixels both "
           "images share)"]
    for row in rows:  # names and kinds to the left, numbers to the right
        out.append("  " + "  ".join(c.ljust(wd) if i < 2 else c.rjust(wd)
                                    for i, (c, wd) in enumerate(zip(row, widths))))
    if odd:
        e, k = odd[0]
        out.append(f"  {e:g}~{k}: at that stride the image's shift is {e:g} map cells, not a whole number, so no "
                   f"shift of the map matches it; compared at the nearest, {k} (pooling makes equivariance "
                   "approximate)")
    if any(r["correlation"] is None for r in eq["layers"]):
        out.append("  -: no unit of that map sees only shared pixels (its receptive field is too large for this "
                   "image and shift)")
    return out


def _words(dx: int, dy: int) -> str:
    """(2, -1) → '2 px right, 1 px up'."""
    parts = [f"{abs(d)} px {pos if d > 0 else neg}" for d, pos, neg in ((dx, "right", "left"), (dy, "down", "up")) if d]
    return ", ".join(parts)


def figure(eq: Equivariance, *, label: str = ""):
    """Rows: the two images, then one per layer; columns: the original map (its most active channel), the
    shifted image's map, the original map shifted, their difference; the valid interior outlined. `label`
    names the model in the title."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from .plots import FEATURE_CMAP, _off, _title, show_image

    n = len(eq.layers)
    fig = Figure(figsize=(10.5, 2.55 * (n + 1) + 0.7), layout="constrained")
    subs = np.atleast_1d(fig.subfigures(n + 1, 1, hspace=0.02))
    dx, dy = eq.shift
    img, moved = eq.images
    h, w = img.shape[1:]
    ax = subs[0].subplots(1, 4)
    show_image(ax[0], img)
    ax[0].set_title("image x", fontsize=9)
    show_image(ax[1], moved)
    ax[1].set_title(f"shift(x): {_words(dx, dy)}", fontsize=9)
    top, left = max(0, dy), max(0, dx)
    ax[1].add_patch(Rectangle((left - 0.5, top - 0.5), w - abs(dx), h - abs(dy), fill=False, edgecolor="#00e5ff",
                              linewidth=1.5))
    for a in ax:
        _off(a)
    ax[2].set_visible(False)
    ax[3].set_visible(False)
    subs[0].text(0.52, 0.5, "cyan: the pixels both images share\n(black comes in at the uncovered border)\n\n"
                 "each row below: one layer's most active channel;\ngreen box: the units that see only shared "
                 "pixels,\nwhere r is measured", fontsize=8.5, va="center", ha="left")
    for sf, r in zip(subs[1:], eq.layers):
        m = r.maps
        panels = [m["original"], m["shifted_image"], m["original_shifted"]]
        vmax = max(max(float(np.abs(p).max()) for p in panels), 1e-12)
        vmin = min(0.0, min(float(p.min()) for p in panels))
        diff = m["shifted_image"] - m["original_shifted"]
        axes = sf.subplots(1, 4)
        interp = "nearest" if max(panels[0].shape) < 64 else "antialiased"
        for a, p in zip(axes[:3], panels):
            a.imshow(p, cmap=FEATURE_CMAP, vmin=vmin, vmax=vmax, interpolation=interp)
        axes[3].imshow(diff, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation=interp)  # the maps' scale
        kx, ky = r.compared
        names = ("A(x)", "A(shift x)", f"A(x) moved {kx},{ky} cells", "A(shift x) − moved (white: 0)")
        for a, t in zip(axes, names):
            a.set_title(t, fontsize=8.5)
            _off(a)
            if m["box"] is not None and a is not axes[0]:
                t0, l0, b0, r0 = m["box"]
                a.add_patch(Rectangle((l0 - 0.5, t0 - 0.5), r0 - l0 + 1, b0 - t0 + 1, fill=False,
                                      edgecolor="#4cff4c", linewidth=1.5))
        s = f"{r.stride[0]:g}" if r.stride[0] == r.stride[1] else f"{r.stride[0]:g}×{r.stride[1]:g}"
        want = "" if r.exact else f" (the shift is {r.expected[0]:g},{r.expected[1]:g} cells: not whole)"
        corr = ("r = —: no unit sees only shared pixels" if r.correlation is None else
                f"r = {r.correlation:.4f} with the moved map, {r.unshifted_correlation:.4f} unmoved")
        sf.suptitle(f"{r.layer} ({r.kind}, stride {s}, channel {r.channel} of {r.shape[0]}){want}: {corr}",
                    fontsize=9.5)
    _title(fig, f"{label + ': ' if label else ''}does each layer's map move with the image ({_words(dx, dy)})?")
    return fig
