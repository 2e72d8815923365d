"""The pictures: feature-map grids, filters beside hand-made kernels, Grad-CAM overlays, receptive-field
boxes, top-activating patches, training curves, worst-classified images.

Each function returns a matplotlib `Figure` built without pyplot (no global state, no display: the Agg
renderer); `save_png` writes it atomically, `png_bytes` gives the bytes for embedding in the report.
Images are uint8 C×H×W arrays (1 channel: gray, 3: colour); small images are enlarged without smoothing,
so a 28×28 input keeps its pixels.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

import textwrap

import numpy as np
from matplotlib import patheffects
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .._io import atomic_write

FEATURE_CMAP = "inferno"  # activations: dark = silent, bright = firing
CAM_CMAP = "jet"  # Grad-CAM's customary map: blue = no evidence, red = strongest evidence
SIGNED_CMAP = "RdBu_r"  # signed maps and filters: red > 0, white 0, blue < 0 (symmetric around 0)
MATCH_COLOUR = "#1b7f1b"  # a filter matched beyond chance (green: red and blue are the weights' signs)
BOX_COLOURS = ("#00e5ff", "#ffd400", "#ff3df5", "#4cff4c", "#ff7b00", "#ffffff")


# --- saving -----------------------------------------------------------------------------------------------
def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes. A figure with a layout engine (constrained, tight) is already laid out to its
    edges: it is drawn once, not a second time to measure a tight bounding box (half of savefig's cost)."""
    buf = io.BytesIO()
    tight = {} if fig.get_layout_engine() is not None else {"bbox_inches": "tight", "pad_inches": 0.12}
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white", **tight)
    return buf.getvalue()


def save_png(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    data = png_bytes(fig, dpi)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)


# --- helpers ----------------------------------------------------------------------------------------------
def to_display(img: np.ndarray) -> np.ndarray:
    """uint8 C×H×W → H×W (gray) or H×W×3 for imshow."""
    img = np.asarray(img)
    if img.ndim == 2:
        return img
    if img.shape[0] == 1:
        return img[0]
    if img.shape[0] == 3:
        return np.transpose(img, (1, 2, 0))
    return img.mean(0).astype(np.uint8)  # other channel counts: their mean, as gray


def show_image(ax, img: np.ndarray, **kw) -> None:
    d = to_display(img)
    small = max(d.shape[:2]) < 128
    ax.imshow(d, cmap="gray" if d.ndim == 2 else None, vmin=0, vmax=255,
              interpolation="nearest" if small else "antialiased", **kw)


def _off(ax, frame: str | None = None) -> None:
    """No ticks; no frame, or a thin one of colour `frame` (for images whose edges are white)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(frame is not None)
        if frame:
            s.set_edgecolor(frame)
            s.set_linewidth(0.8)


def _title(fig, text: str, fontsize: float = 11, **kw) -> None:
    """A suptitle wrapped to the figure's width."""
    width = fig.bbox.width / fig.figure.dpi  # a subfigure's own width
    chars = max(30, int(width * 72 / (fontsize * 0.6)))
    fig.suptitle("\n".join(textwrap.fill(line, chars) for line in text.split("\n")), fontsize=fontsize, **kw)


def _grid(n: int, max_cols: int = 8) -> tuple[int, int]:
    cols = min(max_cols, max(1, n))
    return math.ceil(n / cols), cols


def overlay(ax, img: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> None:
    """The image in gray (so the heat map's colours read clearly) with the CAM over it."""
    d = to_display(img).astype(np.float32)
    gray = d if d.ndim == 2 else d @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    ax.imshow(gray, cmap="gray", vmin=0, vmax=255, interpolation="nearest" if max(gray.shape) < 128 else "antialiased")
    ax.imshow(cam, cmap=CAM_CMAP, vmin=0, vmax=1, alpha=alpha, interpolation="bilinear")


# --- mosaics: many small images on one axes (one imshow, not one axes each: 20x faster to draw) -----------
GAP_COLOUR = (0.87, 0.9, 0.95)  # between tiles: a pale blue that no gray or heat-map value takes


def _mosaic(tiles: Sequence[np.ndarray], cols: int, label_room: float = 0.3) -> tuple[np.ndarray, list]:
    """Tiles (h×w or h×w×3, one size) in rows of `cols`, NaN between them and above each row (room for a
    label); returns the mosaic and each tile's (x0, y0) top-left corner."""
    h, w = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / cols)
    gy, gx = max(1, round(h * label_room)), max(1, round(w * 0.12))
    shape = (rows * (h + gy), cols * w + (cols - 1) * gx) + tiles[0].shape[2:]
    mos = np.full(shape, np.nan)
    corners = []
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        y0, x0 = r * (h + gy) + gy, c * (w + gx)
        mos[y0:y0 + h, x0:x0 + w] = t
        corners.append((x0, y0))
    return mos, corners


def _show_mosaic(ax, mos: np.ndarray, cmap=None, gap=GAP_COLOUR, **kw):
    if mos.ndim == 3:  # colour: paint the gaps
        mos = np.where(np.isnan(mos), np.array(gap), mos)
        return ax.imshow(mos, **{**kw, "vmin": None, "vmax": None})
    import matplotlib

    cm = matplotlib.colormaps[cmap].with_extremes(bad=gap)
    return ax.imshow(np.ma.masked_invalid(mos), cmap=cm, **kw)


# --- feature maps -----------------------------------------------------------------------------------------
def feature_map_grid(act: np.ndarray, order: Sequence[int], image: np.ndarray, *, layer: str,
                     max_channels: int = 32, title: str = "") -> Figure:
    """One layer's channels (C×h×w), in `order` (most active first), on one shared colour scale, with the
    input beside them; each labelled with its index and mean activation."""
    chans = list(order)[:max_channels]
    rows, cols = _grid(len(chans), 8)
    h, w = act.shape[-2:]
    mos, corners = _mosaic([act[c] for c in chans], cols)
    grid_w = 1.3 * cols
    grid_h = grid_w * mos.shape[0] / mos.shape[1]
    fig = Figure(figsize=(grid_w + 3.4, max(0.9 * grid_h, 2.4) + 0.55), layout="constrained")
    ax_in, ax = fig.subplots(1, 2, width_ratios=[2.4, grid_w])
    show_image(ax_in, image)
    ax_in.set_title("input", fontsize=10)
    _off(ax_in)
    vals = act[chans]
    # one scale for all, its top at the 99.5th percentile: a few outlier units would leave the rest dark
    vmin = min(0.0, float(vals.min()))
    vmax = max(float(np.percentile(vals, 99.5)), vmin + 1e-12)
    im = _show_mosaic(ax, mos, FEATURE_CMAP, gap="white", vmin=vmin, vmax=vmax,
                      interpolation="nearest" if max(h, w) < 48 else "antialiased")
    for c, (x0, y0) in zip(chans, corners):
        ax.text(x0 + w / 2 - 0.5, y0 - 0.5 - 0.04 * h, f"ch {c}  {float(act[c].mean()):.2g}", ha="center",
                va="bottom", fontsize=7.5)
    _off(ax)
    cb = fig.colorbar(im, ax=ax, shrink=0.8, fraction=0.03, extend="max" if vals.max() > vmax else "neither")
    cb.ax.tick_params(labelsize=7)
    cb.set_label("activation", fontsize=8)
    _title(fig, title or f"{layer}: {len(chans)} of {act.shape[0]} channels ({h}×{w}), the most active "
                         "(highest mean activation) first; one colour scale for all")
    return fig


# --- filters ----------------------------------------------------------------------------------------------
def _filter_image(w: np.ndarray) -> np.ndarray:
    """One filter (in×kh×kw) → kh×kw (gray: one input channel, or the mean of other than three) or kh×kw×3
    (RGB), with 0 at mid-gray, scaled by its largest weight."""
    if w.shape[0] != 3:
        w = w.mean(0, keepdims=True) if w.shape[0] != 1 else w
    scale = float(np.abs(w).max()) or 1.0
    v = 0.5 + 0.5 * w / scale
    return np.transpose(v, (1, 2, 0)) if v.shape[0] == 3 else v[0]


def filters_figure(filters: np.ndarray, kernels: dict[str, np.ndarray], matches: Sequence, *, layer: str,
                   max_filters: int = 64, random: bool = False, verdict: str = "") -> Figure:
    """The first layer's learned filters (out×in×kh×kw) and, below, each hand-made kernel beside its most
    similar learned filter (averaged over input channels) with the cosine similarity."""
    from .features import resize_kernel

    n = min(len(filters), max_filters)
    cols = 16 if n > 32 else 8
    kh, kw = filters.shape[-2:]
    mos, corners = _mosaic([_filter_image(filters[i]) for i in range(n)], cols, label_room=0.45)
    grid_w = 0.62 * cols
    grid_h = grid_w * mos.shape[0] / mos.shape[1]
    head = 0.9 + (0.55 if verdict else 0.0)  # room for the title (and the verdict's lines)
    fig = Figure(figsize=(max(grid_w, 7.6) + 0.4, grid_h + head + 4.0))
    top, bottom = fig.subfigures(2, 1, height_ratios=[grid_h + head, 4.0], hspace=0.0)
    ax = top.add_axes([0.5 - 0.5 * grid_w / top.bbox.width * top.figure.dpi, 0.02,
                       grid_w / top.bbox.width * top.figure.dpi, grid_h / (grid_h + head)])
    _show_mosaic(ax, mos, SIGNED_CMAP if filters.shape[1] != 3 else "gray", gap=(0.62, 0.62, 0.62), vmin=0, vmax=1,
                 interpolation="nearest")
    matched = {m.filter for m in matches if getattr(m, "beats_chance", True)}
    for i, (x0, y0) in enumerate(corners):
        hit = i in matched
        ax.text(x0 + kw / 2 - 0.5, y0 - 0.5 - 0.03 * kh, str(i), ha="center", va="bottom", fontsize=6.5,
                color=MATCH_COLOUR if hit else "black", fontweight="bold" if hit else "normal")
        if hit:
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), kw, kh, fill=False, edgecolor=MATCH_COLOUR, linewidth=2))
    _off(ax)
    kind = "gray: one input channel" if filters.shape[1] == 1 else (
        "colour: RGB weights" if filters.shape[1] == 3 else f"mean of {filters.shape[1]} input channels")
    zero = "mid-gray = 0" if filters.shape[1] == 3 else "white = 0, red > 0, blue < 0"
    what = "random" if random else "learned"
    _title(top, (f"{verdict}\n" if verdict else "") + f"{layer}: {n} of {len(filters)} {what} {kh}×{kw} filters "
                f"({kind}; {zero}, each scaled symmetrically by its largest |weight|; outlined: a match to a "
                "hand-made kernel that beats chance)", fontsize=10)
    axes2 = bottom.subplots(2, len(kernels), squeeze=False)
    bottom.subplots_adjust(left=0.5 - 0.11 * len(kernels), right=0.5 + 0.11 * len(kernels), top=0.74,
                           bottom=0.1, hspace=0.55, wspace=0.35)
    for col, m in enumerate(matches):
        k = kernels[m.kernel]
        shown = resize_kernel(k, (kh, kw))
        a = axes2[0, col]
        a.imshow(shown / (float(np.abs(shown).max()) or 1.0), cmap=SIGNED_CMAP, vmin=-1, vmax=1, interpolation="nearest")
        a.set_title(m.kernel + ("" if k.shape == (kh, kw) else f"\n(resized to {kh}×{kw})"), fontsize=9)
        _off(a, frame="#999999")
        g = filters[m.filter].mean(0)
        b = axes2[1, col]
        b.imshow(g / (float(np.abs(g).max()) or 1.0), cmap=SIGNED_CMAP, vmin=-1, vmax=1, interpolation="nearest")
        hit = getattr(m, "beats_chance", True)
        b.set_title(f"filter {m.filter}: cos {m.cosine:+.2f}\n" + ("a match" if hit else "no better than chance"),
                    fontsize=9, color=MATCH_COLOUR if hit else "#555555")
        b.set_xlabel(f"random filters: {m.chance[0]:.2f}\n(95%: {m.chance[1]:.2f})", fontsize=7.5, color="#555555")
        _off(b, frame="#999999")
    _title(bottom, "hand-made kernels (top) and the most similar filter (bottom, mean over its input channels); "
                   f"cosine similarity, 1 = the same pattern; below it, the best that {len(filters)} random filters "
                   "reach by chance (median, 95th percentile, simulated): a match only above the 95th", fontsize=9.5)
    return fig


# --- class activation maps ------------------------------------------------------------------------------
BLANK_COLOUR = "#c00000"


def signed_overlay(ax, img: np.ndarray, signed: np.ndarray, alpha: float = 0.6) -> None:
    """The image in gray with a signed map (in [-1, 1]) over it, red raising the score and blue lowering it."""
    d = to_display(img).astype(np.float32)
    gray = d if d.ndim == 2 else d @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    ax.imshow(gray, cmap="gray", vmin=0, vmax=255, interpolation="nearest" if max(gray.shape) < 128 else "antialiased")
    ax.imshow(signed, cmap=SIGNED_CMAP, vmin=-1, vmax=1, alpha=alpha, interpolation="bilinear")


def blank_stamp(ax, text: str = "BLANK: no positive evidence") -> None:
    """A label written across the image, so a blank map can never pass for an explanation."""
    ax.text(0.5, 0.04, text, transform=ax.transAxes, ha="center", va="bottom", fontsize=8.5, color="white",
            fontweight="bold", bbox={"boxstyle": "round,pad=0.25", "facecolor": BLANK_COLOUR, "edgecolor": "none"})


def gradcam_figure(image: np.ndarray, cam: np.ndarray, *, title: str, signed: np.ndarray | None = None,
                   blank: bool = False, label: str = "Grad-CAM") -> Figure:
    """Input | the map | overlay. A blank map (no positive evidence) is drawn as its signed map, red raising
    and blue lowering the score, and stamped BLANK on both panels."""
    fig = Figure(figsize=(10.5, 3.9), layout="constrained")
    axes = fig.subplots(1, 3)
    show_image(axes[0], image)
    axes[0].set_title("input", fontsize=10)
    if blank and signed is not None:
        im = axes[1].imshow(signed, cmap=SIGNED_CMAP, vmin=-1, vmax=1, interpolation="bilinear")
        axes[1].set_title(f"{label}: signed map (red raises, blue lowers)", fontsize=10)
        signed_overlay(axes[2], image, signed)
        axes[2].set_title("overlay (signed)", fontsize=10)
        for ax in axes[1:]:
            blank_stamp(ax)
    else:
        im = axes[1].imshow(cam, cmap=CAM_CMAP, vmin=0, vmax=1, interpolation="bilinear")
        axes[1].set_title(f"{label} (1 = strongest evidence)", fontsize=10)
        overlay(axes[2], image, cam)
        axes[2].set_title("overlay", fontsize=10)
    for ax in axes:
        _off(ax)
    cb = fig.colorbar(im, ax=list(axes), shrink=0.85, fraction=0.025)
    cb.ax.tick_params(labelsize=8)
    _title(fig, title)
    return fig


def cam_panel(ax, image: np.ndarray, cam: np.ndarray, signed: np.ndarray | None, blank: bool) -> None:
    """One overlay panel: the map, or, when blank, the signed map stamped BLANK."""
    if blank and signed is not None:
        signed_overlay(ax, image, signed)
        blank_stamp(ax, "BLANK: signed map")
    else:
        overlay(ax, image, cam)


# --- receptive fields -------------------------------------------------------------------------------------
def receptive_field_figure(image: np.ndarray, units: Sequence, *, title: str = "") -> Figure:
    """One panel per layer: the input with the receptive field of the layer's most active unit."""
    n = len(units)
    fig = Figure(figsize=(max(2.9 * n + 0.3, 6.0), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n, squeeze=False)).ravel()
    h, w = to_display(image).shape[:2]
    for k, (ax, u) in enumerate(zip(axes, units)):
        show_image(ax, image)
        top, left, bottom, right = u.box
        colour = BOX_COLOURS[k % len(BOX_COLOURS)]
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1, fill=False,
                               edgecolor=colour, linewidth=2.5,
                               path_effects=[patheffects.withStroke(linewidth=4.5, foreground="black")]))
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        rh, rw = u.rf_size
        clipped = rh > bottom - top + 1 or rw > right - left + 1
        ax.set_title(f"{u.layer}: RF {rh}×{rw}{' (clipped)' if clipped else ''}\n"
                     f"unit ({u.i}, {u.j}) of channel {u.channel}", fontsize=9)
        _off(ax)
    _title(fig, title or "the input pixels seen by each stage's most active unit")
    return fig


# --- top-activating patches -------------------------------------------------------------------------------
def patches_figure(rows: Sequence, *, layer: str, rf_size: Sequence[int], n_images: int) -> Figure:
    """Rows: channels; columns: the data set's patches that activate each channel most."""
    n_cols = max(len(r.patches) for r in rows)
    fig = Figure(figsize=(1.25 * n_cols + 1.6, 1.35 * len(rows) + 0.8), layout="constrained")
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            _off(ax)
            if c >= len(row.patches):
                ax.set_visible(False)
                continue
            show_image(ax, row.patches[c])
            ax.set_title(f"{row.activations[c]:.2g}", fontsize=7, pad=1.5)
        axes[r, 0].set_ylabel(f"ch {row.channel}", fontsize=9, rotation=0, ha="right", va="center", labelpad=6)
    _title(fig, f"{layer} (receptive field {rf_size[0]}×{rf_size[1]}): the patches of {n_images:,} images that "
                f"activate each channel most\none row per channel (the layer's most active channels on average); "
                f"number = the unit's activation", fontsize=10)
    return fig


# --- training curves and worst-classified images (the report) ---------------------------------------------
def curves_figure(history: Sequence[dict]) -> Figure:
    """Loss and accuracy per epoch, training and validation (from metrics.csv)."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    ep = [int(r["epoch"]) for r in history]
    for ax, key, label in ((axes[0], "loss", "loss (cross-entropy)"), (axes[1], "acc", "accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            vals = [float(r[f"{split}_{key}"]) for r in history]
            ax.plot(ep, vals, style, label=split, markersize=4)
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=11)
        ax.grid(alpha=0.3)
        ax.legend()
        if len(ep) <= 20:
            ax.set_xticks(ep)
    best = max(history, key=lambda r: float(r["val_acc"]))
    # the best epoch as a marker named in the legend: a text label beside the curve collides with it
    axes[1].plot([int(best["epoch"])], [float(best["val_acc"])], "*", color="#d62728", markersize=13, zorder=5,
                 label=f"best val {float(best['val_acc']):.4f} (epoch {int(best['epoch'])})")
    axes[1].legend(loc="lower right", fontsize=9)
    return fig


# --- the report's image panels: drawn with Pillow, not matplotlib (a grid of small images with a label each is
# pasting and a line of text; matplotlib's axes, layout and text engine cost 20x more for the same picture) ----
PANEL_TILE = 112  # px: the side of one image in a panel (28×28 → 4×, pixels kept)
PANEL_MAX_WIDTH = 1180  # px: the report's column width; never wider than a 1280-px window


def _font(size: int, bold: bool = False):
    """DejaVu Sans (matplotlib's font, found without importing matplotlib), else Pillow's own."""
    import importlib.util

    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")
    for where in (spec.submodule_search_locations or []) if spec else []:
        path = Path(where) / "mpl-data" / "fonts" / "ttf" / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def _tile(img: np.ndarray, side: int = PANEL_TILE):
    """A uint8 C×H×W image (or an H×W×3 float array in 0…1) as an RGB tile whose longer side is `side`: small
    images enlarged without smoothing (pixels kept), large ones reduced smoothly."""
    from PIL import Image

    d = np.asarray(img)
    if d.dtype != np.uint8:
        d = np.clip(np.asarray(d, np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)
    else:
        d = to_display(d)
    im = Image.fromarray(d).convert("RGB")
    scale = side / max(im.size)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(size, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS)


def _wrap(draw, text: str, font, width: int) -> list[str]:
    """`text` in lines no wider than `width` px (each of its own lines wrapped at words)."""
    out = []
    for para in text.split("\n"):
        line = ""
        for word in para.split(" "):
            trial = f"{line} {word}".strip()
            if line and draw.textlength(trial, font=font) > width:
                out.append(line)
                line = word
            else:
                line = trial
        out.append(line)
    return out


def _canvas(width: int, body: int, title: str, size: int = 14):
    """A white image `width` wide with `title` wrapped above a `body`-px-high area; (image, draw, body top)."""
    from PIL import Image, ImageDraw

    font = _font(size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = _wrap(probe, title, font, width - 24) if title else []
    head = 10 + len(lines) * (size + 5) + (6 if lines else 0)
    im = Image.new("RGB", (width, head + body + 10), "white")
    draw = ImageDraw.Draw(im)
    for k, line in enumerate(lines):
        draw.text((width / 2, 10 + k * (size + 5)), line, fill="black", font=font, anchor="mt")
    return im, draw, head


def _png(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=3)  # 3: a fifth of level 6's time, a few % larger
    return buf.getvalue()


def _cmap_rgb(values: np.ndarray, name: str, vmin: float, vmax: float) -> np.ndarray:
    """H×W values → H×W×3 floats in 0…1 through matplotlib's colour map `name` (its table only: no figure)."""
    import matplotlib

    v = (np.asarray(values, np.float32) - vmin) / max(vmax - vmin, 1e-12)
    return matplotlib.colormaps[name](np.clip(v, 0, 1))[..., :3]


def _map_tile(image: np.ndarray, cam: np.ndarray | None, signed: np.ndarray | None, blank: bool, side: int):
    """overlay()/cam_panel() as a tile: the map (smoothly enlarged, as imshow's bilinear draws it) over the image
    (pixels kept); a blank map drawn signed and stamped BLANK."""
    from PIL import Image

    base = _tile(image, side)
    use_signed = blank and signed is not None
    values = signed if use_signed else cam
    vmin = -1.0 if use_signed else 0.0
    heat = _cmap_rgb(np.asarray(Image.fromarray(np.asarray(values, np.float32)).resize(base.size,
                                                                                          Image.Resampling.BILINEAR)),
                     SIGNED_CMAP if use_signed else CAM_CMAP, vmin, 1.0)
    gray = np.asarray(base.convert("L"), np.float32)[..., None] / 255
    alpha = 0.6 if use_signed else 0.5
    mixed = (1 - alpha) * gray + alpha * heat
    tile = Image.fromarray(np.clip(mixed * 255 + 0.5, 0, 255).astype(np.uint8))
    if use_signed:
        from PIL import ImageDraw

        d, f = ImageDraw.Draw(tile), _font(10, bold=True)
        text = "BLANK: signed map"
        w = d.textlength(text, font=f)
        x0, y1 = (tile.width - w) / 2 - 4, tile.height - 4
        d.rounded_rectangle((x0, y1 - 16, x0 + w + 8, y1), radius=4, fill=BLANK_COLOUR)
        d.text((tile.width / 2, y1 - 8), text, fill="white", font=f, anchor="mm")
    return tile


def worst_png(items: Sequence[dict], *, label: str = "Grad-CAM") -> bytes:
    """Two per row: image | the map of the predicted class | the map of the true class; four images per row
    when cam_pred is None (a model with no feature maps, the mlp). Each item: image, cam_pred, cam_true, true,
    pred, p_pred, p_true, loss, and optionally signed_pred/signed_true and blank_pred/blank_true (a blank map
    is drawn signed and stamped BLANK). A PNG (Pillow)."""
    cams = items[0].get("cam_pred") is not None
    per = 3 if cams else 1
    cols = min(2 if cams else 4, len(items))
    side = 150 if cams else 180
    gap, cell_gap = 8, 36
    cell_w = per * side + (per - 1) * gap
    width = cols * cell_w + (cols - 1) * cell_gap + 40
    rows = math.ceil(len(items) / cols)
    cell_h = 22 + 18 + side + 14
    title = (f"misclassified validation images (highest loss first), with {label} for the predicted (red) and the "
             "true class (green)" if cams else "misclassified validation images (highest loss first)")
    im, draw, top = _canvas(width, rows * cell_h, title)
    big, small = _font(13), _font(11)
    for k, it in enumerate(items):
        r, c = divmod(k, cols)
        x0, y0 = 20 + c * (cell_w + cell_gap), top + r * cell_h
        draw.text((x0 + cell_w / 2, y0), f"true {it['true']}, predicted {it['pred']}: loss {it['loss']:.2f}",
                  fill="black", font=big, anchor="mt")
        tiles = [(_tile(it["image"], side), "image" if cams else
                  f"p({it['pred']}) {it['p_pred']:.2f}, p({it['true']}) {it['p_true']:.2f}", "black")]
        if cams:
            for key, who, colour in (("pred", it["pred"], "#c00000"), ("true", it["true"], "#006400")):
                tiles.append((_map_tile(it["image"], it[f"cam_{key}"], it.get(f"signed_{key}"),
                                        bool(it.get(f"blank_{key}")), side),
                              f"for {who} (p {it[f'p_{key}']:.2f})", colour))
        for j, (tile, caption, colour) in enumerate(tiles):
            tx = x0 + j * (side + gap)
            draw.text((tx + side / 2, y0 + 22), caption, fill=colour, font=small, anchor="mt")
            im.paste(tile, (int(tx + (side - tile.width) / 2), y0 + 40))
    return _png(im)


def batch_png(images: np.ndarray, labels: Sequence[str], *, title: str, cols: int = 8) -> bytes:
    """A training batch as the model saw it (uint8 N×C×H×W, augmentations applied), each image with its label,
    framed: a PNG (Pillow)."""
    n = len(images)
    cols = max(1, min(cols, n))
    side = min(PANEL_TILE, (PANEL_MAX_WIDTH - 40) // cols - 14)
    cell_w, cell_h = side + 14, side + 24
    rows = math.ceil(n / cols)
    width = cols * cell_w + 40
    im, draw, top = _canvas(width, rows * cell_h, title, size=13)
    font = _font(11)
    for k, (img, lab) in enumerate(zip(images, labels)):
        r, c = divmod(k, cols)
        x0, y0 = 20 + c * cell_w + 7, top + r * cell_h
        tile = _tile(img, side)
        draw.text((x0 + side / 2, y0 + 2), str(lab), fill="black", font=font, anchor="mt")
        tx, ty = int(x0 + (side - tile.width) / 2), y0 + 18
        im.paste(tile, (tx, ty))
        draw.rectangle((tx - 1, ty - 1, tx + tile.width, ty + tile.height), outline="#999999")
    return _png(im)
