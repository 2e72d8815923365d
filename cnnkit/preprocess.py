"""One preprocessing, used by everything that feeds a model: training, evaluation, predict, explain, export.

`Preprocess` is the whole recipe from an image to the network's input, saved in model.json:
- **pixels** (`image`, `load`): an image file, a PIL image or a uint8 array → uint8 C×H×W at the model's
  channels and size. Grayscale ↔ RGB, alpha composited on white, EXIF orientation applied, then the shorter
  side resized to the target and the centre cropped (`ImageOps.fit`, bilinear with antialiasing); with
  `crop` < 1, resized to target/crop first and the centre `crop` kept (ImageNet evaluation's resize 256,
  crop 224: `crop=0.875`, what a pretrained network's weights ask for). 16-bit PNG/TIFF grayscale becomes 8 bits
  first, by one fixed scale, v / (2^`bits` − 1) × 255 (`bits` 16, or the data set's depth: 12 for 0–4095 data),
  so a 16-bit copy (v × 257) of an 8-bit image gives exactly that image, in a 1- or a 3-channel model; DICOM and
  `window` map through the window as floats, rounded after the resize. Images of
  the built-in array sources (IDX, CIFAR) take this same path, so a PNG written from one of them predicts
  exactly as its training sample was seen. Large JPEGs are decoded at a reduced scale first (libjpeg's DCT
  scaling, `Image.draft`), never below the target size: a 4,000×3,000 photo for a 224 model decodes at
  500×375, 8–16× faster and in 1/64 of the memory; training and predict both do it, so they agree;
- **tensor** (`normalize`, `module`): uint8 (or 0–255 float) → float, `(x/255 − mean)/std`. `module()` is the
  same as an `nn.Module`, which the exported ONNX and TorchScript models carry in front of the network.

>>> import numpy as np
>>> p = Preprocess(channels=1, size=(4, 4), mean=(0.5,), std=(0.25,))
>>> p.image(np.full((1, 8, 8), 255, np.uint8)).shape
(1, 4, 4)
>>> float(p.normalize(torch.full((1, 1, 4, 4), 255, dtype=torch.uint8))[0, 0, 0, 0])
2.0
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from .errors import CnnkitError

INT_HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")  # 16-bit PNG/TIFF grayscale (and 32-bit integer)
HIGH_BIT_MODES = (*INT_HIGH_BIT_MODES, "F")
HIGH_BIT_DEPTHS = (8, 10, 12, 14, 16)  # `bits`: the depths sensors and files use
GRAY_MODES = ("1", "L", "LA", *HIGH_BIT_MODES)  # a data set of only these is 1-channel
MAX_SIDE = 4096  # pixels per side: a 3x4096x4096 float image is 201 MB, a batch of 64 of them 13 GB; the
#                  largest input any registered model was designed for is 600 px (ImageNet's biggest: 224-600)
RESIZE_POLICIES = ("fit",)  # shorter side to the target, then centre crop (the aspect ratio is kept)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    channels: int
    size: tuple[int, int]  # H, W
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: str = "fit"
    crop: float = 1.0  # the share of the resized image kept (centre crop); 1: all of it
    window: tuple[float, float] | None = None  # (center, width) for DICOM and 16-bit images; None: their own
    bits: int | None = None  # significant bits of 16-bit PNG/TIFF values (12: 0-4095 is black to white); None: 16

    def __post_init__(self):
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "crop", float(self.crop))
        if self.window is not None:
            object.__setattr__(self, "window", tuple(float(v) for v in self.window))
        problem = self._problem()
        if problem:
            raise CnnkitError(f"preprocessing {self.to_dict()}: {problem}")

    def _problem(self) -> str | None:
        if self.channels not in (1, 3):
            return f"channels must be 1 or 3, got {self.channels}"
        if len(self.size) != 2 or min(self.size) < 1:
            return f"size must be two positive integers (H, W), got {list(self.size)}"
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            return f"mean and std need one value per channel ({self.channels})"
        if not all(math.isfinite(v) for v in self.mean) or not all(math.isfinite(v) and v > 0 for v in self.std):
            return "mean must be finite and std positive"
        if not 0.1 <= self.crop <= 1:
            return f"crop must be between 0.1 and 1, got {self.crop}"
        if self.window is not None and (len(self.window) != 2 or not all(math.isfinite(v) for v in self.window)
                                        or self.window[1] < 1):
            return f"window must be (center, width) with width at least 1, got {list(self.window)}"
        if self.bits is not None and self.bits not in HIGH_BIT_DEPTHS:
            return f"bits must be one of {', '.join(map(str, HIGH_BIT_DEPTHS))}, got {self.bits!r}"
        if self.resize not in RESIZE_POLICIES:
            return f"resize must be one of {', '.join(RESIZE_POLICIES)}, got {self.resize!r}"
        return None

    # --- saved in model.json ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        out = {"channels": self.channels, "size": list(self.size), "mean": list(self.mean), "std": list(self.std),
               "resize": self.resize, "crop": self.crop}
        if self.window is not None:
            out["window"] = list(self.window)
        if self.bits is not None:
            out["bits"] = self.bits
        return out

    @classmethod
    def from_dict(cls, d: Any, where: str = "preprocess") -> "Preprocess":
        """Build from model.json's `preprocess` object; a missing or malformed field is named."""
        if not isinstance(d, dict):
            raise CnnkitError(f"{where} must be an object, got {type(d).__name__}")
        for key in ("channels", "size", "mean", "std"):
            if key not in d:
                raise CnnkitError(f"{where} lacks '{key}'")
        try:
            window, bits = d.get("window"), d.get("bits")
            if bits is not None and type(bits) is not int:
                raise TypeError(f"bits must be an integer, got {bits!r}")
            return cls(int(d["channels"]), tuple(d["size"]), tuple(d["mean"]), tuple(d["std"]),
                       str(d.get("resize", "fit")), float(d.get("crop", 1.0)),
                       tuple(window) if window is not None else None, bits)
        except (TypeError, ValueError) as e:
            raise CnnkitError(f"{where} is malformed ({e})") from None
        except CnnkitError as e:
            # the constructor names itself with its whole field dict first: keep only what it says is wrong
            raise CnnkitError(f"{where}: {str(e).rsplit('}: ', 1)[-1]}") from None

    # --- pixels ------------------------------------------------------------------------------------------
    def image(self, im) -> np.ndarray:
        """A PIL image or a uint8 array (C×H×W, H×W or H×W×C) → uint8 C×H×W at this channels and size."""
        from PIL import Image

        if isinstance(im, np.ndarray):
            im = _array_to_pil(im)
        if not isinstance(im, Image.Image):
            raise CnnkitError(f"expected an image (file path, PIL image or uint8 array), got {type(im).__name__}")
        if im.mode in INT_HIGH_BIT_MODES and self.window is None:  # 16-bit PNG/TIFF: to 8 bits first, then
            im = self._to_8_bits(im)  # as an 8-bit image: a 16-bit copy (v×257) of an image is that image
        elif im.mode in HIGH_BIT_MODES:  # DICOM, --window: windowed and resized as floats, rounded to 8 bits last
            return self._high_bit(im)
        if im.mode in ("RGBA", "LA", "P", "PA") or "transparency" in im.info:  # transparent → white
            im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im.convert("RGBA"))
        im = self._fit_crop(im.convert("L" if self.channels == 1 else "RGB"))
        a = np.asarray(im, dtype=np.uint8)
        return a[None].copy() if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))

    def _to_8_bits(self, im):
        """A 16-bit (or 32-bit integer) grayscale image → 8-bit "L": v / (2^bits − 1) × 255, rounded, with `bits`
        16 unless the data set said otherwise (a 12-bit camera's 0–4095). The same for every image, so brightness
        keeps its meaning across images, and a 16-bit copy of an 8-bit image (v × 257) gives that image back."""
        from PIL import Image

        a = np.asarray(im, dtype=np.float64) * (255.0 / (2 ** (self.bits or 16) - 1))
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")

    def _high_bit(self, im) -> np.ndarray:
        """A DICOM's display values, or a 16/32-bit grayscale image with `window`: windowed to 0–255 as floats
        (`window`, else a DICOM's own window, else, for a float image, its min to max), resized and cropped as
        floats, then rounded."""
        from PIL import Image

        if not (im.mode == "F" and im.info.get("windowed")):  # a DICOM was windowed when read (data/dicom.py)
            a = np.asarray(im, dtype=np.float64)
            if self.window is not None:
                from .data.dicom import _linear_window

                a = _linear_window(a, *self.window)
            else:
                lo, hi = float(a.min()), float(a.max())
                a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
            im = Image.fromarray(np.clip(a, 0, 255).astype(np.float32), "F")
        im = self._fit_crop(im)
        a = np.clip(np.rint(np.asarray(im, dtype=np.float32)), 0, 255).astype(np.uint8)
        return np.repeat(a[None], self.channels, axis=0)

    def _fit_crop(self, im):
        """The shorter side resized to the target (or target/crop), then the centre crop."""
        from PIL import Image, ImageOps

        h, w = self.size
        fw, fh = self.fit_size()
        if im.size != (fw, fh):
            im = ImageOps.fit(im, (fw, fh), method=Image.Resampling.BILINEAR)
        if (fw, fh) != (w, h):  # the centre crop
            left, top = (fw - w) // 2, (fh - h) // 2
            im = im.crop((left, top, left + w, top + h))
        return im

    def load(self, path: str | os.PathLike, *, max_pixels: int | None = None, data: bytes | None = None) -> np.ndarray:
        """An image file → uint8 C×H×W, read safely (a bad file raises BadImagesError naming it). `data`: the
        file's bytes, decoded in memory (an upload; `path` then only names it)."""
        from .data.images import open_image

        return self.image(open_image(path, max_pixels=max_pixels, draft=self.draft_size(), window=self.window,
                                     data=data))

    def fit_size(self) -> tuple[int, int]:
        """(W, H) the image is resized to before the centre crop: the size itself, or size/crop."""
        h, w = self.size
        if self.crop >= 1:
            return w, h
        return max(w, round(w / self.crop)), max(h, round(h / self.crop))

    def draft_size(self) -> tuple[int, int]:
        """(W, H) below which a JPEG is never decoded (see the module docstring)."""
        return self.fit_size()

    # --- tensor ------------------------------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (or 0–255 float) N×C×H×W → the network's float input."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        return (x.float() / 255.0 - mean) / std

    def module(self) -> nn.Module:
        """The normalisation as a module (for exported models, which take 0–255 pixels)."""
        return Normalize(self.mean, self.std)



class Normalize(nn.Module):
    """(x/255 − mean)/std on N×C×H×W 0–255 input; what `Preprocess.normalize` does, as a layer."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std


def _array_to_pil(a: np.ndarray):
    from PIL import Image

    if a.dtype != np.uint8:
        raise CnnkitError(f"an image array must be uint8 (0-255), got {a.dtype}")
    if a.ndim == 3 and a.shape[0] in (1, 3, 4):
        a = a.transpose(1, 2, 0)  # cnnkit's C×H×W (what the data sources give) → PIL's H×W×C
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(a), "L")
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(a), "RGB" if a.shape[2] == 3 else "RGBA")
    raise CnnkitError(f"an image array must be H×W, C×H×W or H×W×C with 1, 3 or 4 channels, got shape {a.shape}")

