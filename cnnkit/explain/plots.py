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
BOX_COLOURS = ("#00e5ff", "#ffd400", "#ff3df5", "#4cff4c", "#ff7b00", "#ffffff")


# --- saving -----------------------------------------------------------------------------------------------
def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
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


def _off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


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


# --- feature maps -----------------------------------------------------------------------------------------
def feature_map_grid(act: np.ndarray, order: Sequence[int], image: np.ndarray, *, layer: str,
                     max_channels: int = 32, title: str = "") -> Figure:
    """One layer's channels (C×h×w), in `order` (most active first), on one shared colour scale, with the
    input beside them."""
    chans = list(order)[:max_channels]
    rows, cols = _grid(len(chans), 8)
    cell = 1.35
    fig = Figure(figsize=(cell * cols + 3.0, max(cell * rows + 0.9, 3.0)))
    left, right = fig.subfigures(1, 2, width_ratios=[2.4, cell * cols + 0.6], wspace=0.0)
    ax = left.subplots()
    left.subplots_adjust(left=0.04, right=0.96)
    show_image(ax, image)
    ax.set_title("input", fontsize=10)
    _off(ax)
    vals = act[chans]
    vmin, vmax = min(0.0, float(vals.min())), max(float(vals.max()), 1e-12)
    axes = np.atleast_1d(right.subplots(rows, cols, squeeze=False)).ravel()
    right.subplots_adjust(left=0.01, right=0.9, wspace=0.1, hspace=0.3)
    im = None
    for ax, c in zip(axes, chans):
        im = ax.imshow(act[c], cmap=FEATURE_CMAP, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(f"ch {c}  {float(act[c].mean()):.2g}", fontsize=7.5, pad=2)
        _off(ax)
    for ax in axes[len(chans):]:
        ax.set_visible(False)
    if im is not None:
        cb = right.colorbar(im, ax=list(axes[:len(chans)]), shrink=0.8, pad=0.015, fraction=0.03)
        cb.ax.tick_params(labelsize=7)
        cb.set_label("activation", fontsize=8)
    h, w = act.shape[-2:]
    _title(fig, title or f"{layer}: {len(chans)} of {act.shape[0]} channels ({h}×{w}), the most active "
                         "(highest mean activation) first; one colour scale for all")
    return fig


# --- filters ----------------------------------------------------------------------------------------------
def _filter_image(w: np.ndarray) -> tuple[np.ndarray, str | None]:
    """One filter (in×kh×kw) → an image with 0 at mid-gray, scaled by its largest weight: gray for one input
    channel, colour for three, the channel mean otherwise."""
    scale = float(np.abs(w).max()) or 1.0
    v = 0.5 + 0.5 * w / scale
    if w.shape[0] == 3:
        return np.transpose(v, (1, 2, 0)).clip(0, 1), None
    return (v[0] if w.shape[0] == 1 else 0.5 + 0.5 * w.mean(0) / (float(np.abs(w.mean(0)).max()) or 1.0)), "gray"


def filters_figure(filters: np.ndarray, kernels: dict[str, np.ndarray], matches: Sequence, *, layer: str,
                   max_filters: int = 64) -> Figure:
    """The first layer's learned filters (out×in×kh×kw) and, below, each hand-made kernel beside its most
    similar learned filter (averaged over input channels) with the cosine similarity."""
    n = min(len(filters), max_filters)
    rows, cols = _grid(n, 16 if n > 32 else 8)
    cell = 0.72 if cols > 8 else 0.95
    top_h, bottom_h = cell * rows + 0.9, 3.7
    fig = Figure(figsize=(max(cell * cols, 1.9 * len(kernels)) + 0.6, top_h + bottom_h))
    top, bottom = fig.subfigures(2, 1, height_ratios=[top_h, bottom_h], hspace=0.0)
    axes = np.atleast_1d(top.subplots(rows, cols, squeeze=False)).ravel()
    matched = {m.filter for m in matches}
    for i, ax in enumerate(axes):
        if i >= n:
            ax.set_visible(False)
            continue
        img, cmap = _filter_image(filters[i])
        ax.imshow(img, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(str(i), fontsize=7, pad=1.5, color="#c00000" if i in matched else "black",
                     fontweight="bold" if i in matched else "normal")
        _off(ax)
        if i in matched:
            for s in ax.spines.values():
                s.set_visible(True)
                s.set_edgecolor("#c00000")
                s.set_linewidth(2)
    kh, kw = filters.shape[-2:]
    kind = "gray: one input channel" if filters.shape[1] == 1 else (
        "colour: RGB weights" if filters.shape[1] == 3 else f"mean of {filters.shape[1]} input channels")
    _title(top, f"{layer}: {n} of {len(filters)} learned {kh}×{kw} filters ({kind}; mid-gray = 0, each scaled "
                "by its largest weight; red: the most similar to a hand-made kernel)", fontsize=10)
    axes2 = bottom.subplots(2, len(kernels), squeeze=False)
    bottom.subplots_adjust(left=0.5 - 0.11 * len(kernels), right=0.5 + 0.11 * len(kernels), top=0.78,
                           bottom=0.02, hspace=0.45, wspace=0.35)
    from .features import resize_kernel

    for col, m in enumerate(matches):
        k = kernels[m.kernel]
        shown = resize_kernel(k, (kh, kw))
        s = float(np.abs(shown).max()) or 1.0
        a = axes2[0, col]
        a.imshow(shown / s, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        a.set_title(m.kernel + ("" if k.shape == (kh, kw) else f"\n(3×3 resized to {kh}×{kw})"), fontsize=9)
        _off(a)
        g = filters[m.filter].mean(0)
        sg = float(np.abs(g).max()) or 1.0
        b = axes2[1, col]
        b.imshow(g / sg, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        b.set_title(f"filter {m.filter}: cos {m.cosine:+.2f}", fontsize=9, color="#c00000")
        _off(b)
    _title(bottom, "the lesson's hand-made kernels (top) and the most similar learned filter (bottom, averaged "
                   "over its input channels), with their cosine similarity (1 = the same pattern)", fontsize=9.5)
    return fig


# --- Grad-CAM ---------------------------------------------------------------------------------------------
def gradcam_figure(image: np.ndarray, cam: np.ndarray, *, title: str) -> Figure:
    """Input | Grad-CAM heat map | overlay."""
    fig = Figure(figsize=(10.5, 3.9), layout="constrained")
    axes = fig.subplots(1, 3)
    show_image(axes[0], image)
    axes[0].set_title("input", fontsize=10)
    im = axes[1].imshow(cam, cmap=CAM_CMAP, vmin=0, vmax=1, interpolation="bilinear")
    axes[1].set_title("Grad-CAM (1 = strongest evidence)", fontsize=10)
    overlay(axes[2], image, cam)
    axes[2].set_title("overlay", fontsize=10)
    for ax in axes:
        _off(ax)
    cb = fig.colorbar(im, ax=list(axes), shrink=0.85, fraction=0.025)
    cb.ax.tick_params(labelsize=8)
    _title(fig, title)
    return fig


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
    axes[1].annotate(f"best {float(best['val_acc']):.4f}", (int(best["epoch"]), float(best["val_acc"])),
                     textcoords="offset points", xytext=(0, -16), ha="center", fontsize=9)
    return fig


def worst_figure(items: Sequence[dict]) -> Figure:
    """Rows: the worst-classified images; columns: image | Grad-CAM of the predicted class | of the true class.
    Each item: image, cam_pred, cam_true, true, pred, p_pred, p_true, loss."""
    fig = Figure(figsize=(8.4, 2.55 * len(items) + 0.5), layout="constrained")
    axes = fig.subplots(len(items), 3, squeeze=False)
    for r, it in enumerate(items):
        show_image(axes[r, 0], it["image"])
        axes[r, 0].set_title(f"true {it['true']}, loss {it['loss']:.2f}", fontsize=9)
        overlay(axes[r, 1], it["image"], it["cam_pred"])
        axes[r, 1].set_title(f"predicted {it['pred']} (p {it['p_pred']:.2f})", fontsize=9, color="#c00000")
        overlay(axes[r, 2], it["image"], it["cam_true"])
        axes[r, 2].set_title(f"evidence for {it['true']} (p {it['p_true']:.2f})", fontsize=9, color="#006400")
        for ax in axes[r]:
            _off(ax)
    _title(fig, "worst-classified validation images (highest loss), with Grad-CAM")
    return fig
