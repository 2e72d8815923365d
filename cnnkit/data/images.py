"""Reading images safely: every file is opened, size-checked and fully decoded before training starts.

A corrupt, truncated or non-image file, or one over the pixel limit (a decompression bomb), becomes a
`BadImage` naming the path and the reason, instead of a crash in the middle of an epoch.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

from ..errors import CnnkitError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
MAX_PIXELS = 40_000_000  # refuse larger images (decompression bombs); 40 MP is beyond any camera JPEG in practice


@dataclass
class BadImage:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class BadImagesError(CnnkitError):
    """One or more images could not be read; lists every one."""

    def __init__(self, bad: Sequence[BadImage], hint: str = ""):
        self.bad = list(bad)
        shown = "; ".join(str(b) for b in self.bad[:20])
        more = f" (and {len(self.bad) - 20} more)" if len(self.bad) > 20 else ""
        super().__init__(f"{len(self.bad)} unreadable image(s): {shown}{more}.{hint}")


def open_image(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open, check and fully decode an image; EXIF orientation applied. Raises BadImagesError."""
    path = str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise BadImagesError([BadImage(path, f"{w}x{h} = {w * h:,} pixels is over the limit of "
                                                          f"{max_pixels:,} (a decompression bomb?)")])
                im.load()  # decodes everything: a truncated file fails here
                im = ImageOps.exif_transpose(im)
                return im.copy()
    except BadImagesError:
        raise
    except FileNotFoundError:
        raise BadImagesError([BadImage(path, "no such file")]) from None
    except IsADirectoryError:
        raise BadImagesError([BadImage(path, "is a directory")]) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImagesError([BadImage(path, f"over the pixel limit ({e})")]) from None
    except Image.UnidentifiedImageError:
        raise BadImagesError([BadImage(path, "not an image file (unknown format)")]) from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated data, bad headers, broken chunks
        raise BadImagesError([BadImage(path, f"corrupt or truncated ({str(e).splitlines()[0]})")]) from None


def is_grayscale(im: Image.Image) -> bool:
    return im.mode in ("1", "L", "LA", "I", "I;16", "F")


def to_array(im: Image.Image, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """C×H×W uint8: grayscale or RGB (alpha composited on white), resized (shorter side) and centre-cropped."""
    if channels == 1:
        im = im.convert("L") if im.mode not in ("I", "I;16", "F") else im.point(lambda v: v / 256).convert("L")
    else:
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA")
            background = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(background, im)
        im = im.convert("RGB")
    if size is not None and im.size != (size[1], size[0]):
        im = ImageOps.fit(im, (size[1], size[0]), method=Image.Resampling.BILINEAR)
    a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def read_images(paths: Sequence[str], *, max_pixels: int = MAX_PIXELS,
                workers: int | None = None) -> tuple[list[Image.Image | None], list[BadImage]]:
    """Open every path in parallel threads (PIL decodes without the GIL). Returns images (None where bad)
    and the list of bad ones."""
    def one(p: str):
        try:
            return open_image(p, max_pixels=max_pixels), None
        except BadImagesError as e:
            return None, e.bad[0]

    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, paths))
    return [r[0] for r in results], [r[1] for r in results if r[1] is not None]


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
