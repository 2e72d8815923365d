"""Reading images safely: every file is opened, size-checked and fully decoded before training starts.

A corrupt, truncated or non-image file, or one over the pixel limit (a decompression bomb), becomes a
`BadImage` naming the path and the reason, instead of a crash in the middle of an epoch.
"""
from __future__ import annotations

import io
import os
import unicodedata
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from PIL import Image, ImageOps

from ..errors import CnnkitError
from . import dicom

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".dcm", ".dicom")
T = TypeVar("T")
MAX_PIXELS = 40_000_000  # refuse larger images (decompression bombs); 40 MP is beyond any camera JPEG in practice


def control_character(text: str) -> str | None:
    """The first character of `text` that would break, forge or hide in a line of output, or None: a control
    character (a newline, an escape sequence), a format character (a bidirectional override, a zero-width space,
    a byte-order mark), a line or paragraph separator, or a lone surrogate (a file name that is not UTF-8,
    which cannot even be printed)."""
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            return ch
    return None


def shown(text) -> str:
    """`text` as it may be printed on one line: itself, or escaped as Python does (\\n, \\x1b, \\u202e) where it
    holds a character that is not printable, so a file named 'a\\ncnnkit: …' cannot forge a line of output.

    >>> shown('a\\nb.png')
    "'a\\\\nb.png'"
    """
    text = str(text)
    return text if text.isprintable() and control_character(text) is None else repr(text)


@dataclass
class BadImage:
    path: str
    reason: str
    kind: str = "corrupt"  # "format": not an image at all; "size": over the pixel limit; "corrupt": the rest

    def __str__(self) -> str:
        return f"{shown(self.path)}: {self.reason}"


class BadImagesError(CnnkitError):
    """One or more images could not be read; lists every one."""

    def __init__(self, bad: Sequence[BadImage], hint: str = ""):
        self.bad = list(bad)
        shown = "; ".join(str(b) for b in self.bad[:20])
        more = f" (and {len(self.bad) - 20} more)" if len(self.bad) > 20 else ""
        super().__init__(f"{len(self.bad)} unreadable image(s): {shown}{more}.{hint}")


def _checked(path: str, max_pixels: int | None, use: Callable[[Image.Image], T], check_name: bool = False,
             data: bytes | None = None) -> T:
    """Open `path` (or, with `data`, those bytes, `path` only naming them), refuse it over the pixel limit, and
    return `use(image)`; every failure is a BadImagesError naming the file and the reason. Bytes are recognised
    by their content (a DICOM by its 'DICM' preamble), never by a name."""
    max_pixels = max_pixels or MAX_PIXELS
    if (data[128:132] == b"DICM") if data is not None else dicom.is_dicom(path):
        return _checked_dicom(path, max_pixels, use, check_name, data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data) if data is not None else path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise BadImagesError([BadImage(path, f"{w}x{h} = {w * h:,} pixels is over the limit of "
                                                          f"{max_pixels:,} (a decompression bomb?)", "size")])
                return use(im)
    except BadImagesError:
        raise
    except FileNotFoundError:
        raise BadImagesError([BadImage(path, "no such file")]) from None
    except IsADirectoryError:
        raise BadImagesError([BadImage(path, "is a directory")]) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImagesError([BadImage(path, f"over the pixel limit ({e})", "size")]) from None
    except Image.UnidentifiedImageError:
        raise BadImagesError([BadImage(path, "not an image file (unknown format)", "format")]) from None
    except (CnnkitError, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - truncated data, bad headers, broken chunks: a decoder's any complaint
        raise BadImagesError([BadImage(path, f"corrupt or truncated ({_why(e)})")]) from None


def _why(e: BaseException) -> str:
    """A decoder's complaint as a short plain phrase (its first line; the type where it says nothing)."""
    first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
    return shown(first)


def _checked_dicom(path: str, max_pixels: int, use: Callable, check_name: bool = False,
                   data: bytes | None = None) -> T:
    """`_checked` for a DICOM file: `use` gets a DicomFile (its header, or its pixels on demand)."""
    try:
        return use(DicomFile(path, max_pixels, check_name, data))
    except dicom.DicomError as e:
        raise BadImagesError([BadImage(path, str(e), "size" if "over the limit" in str(e) else "corrupt")]) from None
    except FileNotFoundError:
        raise BadImagesError([BadImage(path, "no such file")]) from None
    except IsADirectoryError:
        raise BadImagesError([BadImage(path, "is a directory")]) from None
    except (CnnkitError, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - pydicom parses untrusted bytes: any complaint of it means a bad file
        raise BadImagesError([BadImage(path, f"corrupt or truncated DICOM ({type(e).__name__}: {_why(e)})")]) \
            from None


@dataclass
class DicomFile:
    """Stands in for a PIL image opened lazily: `mode` and `size` from the header; `pixels(window)` decodes."""
    path: str
    max_pixels: int
    check_name: bool = False  # refuse a path holding the patient's name (data for a run; not predict's inputs)
    data: bytes | None = None  # the file's bytes, when it was uploaded rather than found on disk

    def _source(self):
        return io.BytesIO(self.data) if self.data is not None else self.path

    def __post_init__(self):
        self.mode, self.size = dicom.header(self._source(), self.max_pixels,
                                            check_name=self.check_name and self.data is None)

    def pixels(self, window=None) -> Image.Image:
        return dicom.read(self._source(), self.max_pixels, window)


def open_image(path: str | os.PathLike, *, max_pixels: int | None = None,
               draft: tuple[int, int] | None = None, window: tuple[float, float] | None = None,
               data: bytes | None = None) -> Image.Image:
    """Open, check and fully decode an image; EXIF orientation applied. Raises BadImagesError.

    `data`: decode these bytes (an upload, kept in memory) instead of reading `path`, which then only names them.

    `draft` (W, H): a JPEG may be decoded at a reduced scale (1/2, 1/4, 1/8) that stays at least this size
    (see cnnkit.preprocess). A DICOM file is read by `dicom.read` (grayscale as windowed float display values;
    `window` (center, width) overrides the file's own)."""
    if (data[128:132] == b"DICM") if data is not None else dicom.is_dicom(path):
        return _checked(str(path), max_pixels, lambda f: f.pixels(window), data=data)

    def decode(im: Image.Image) -> Image.Image:
        if draft is not None and im.format == "JPEG":
            im.draft(im.mode, _draft_request(im, draft))
        im.load()  # decodes everything: a truncated file fails here
        return ImageOps.exif_transpose(im).copy()

    return _checked(str(path), max_pixels, decode, data=data)


def _draft_request(im: Image.Image, target: tuple[int, int]) -> tuple[int, int]:
    """The size to ask `draft` for so that, after EXIF rotation and the shorter-side resize, nothing is
    upscaled: the shorter side stays at least the target's larger side."""
    need = max(target)
    w, h = im.size
    scale = need / min(w, h)
    return max(1, int(w * scale + 0.999)), max(1, int(h * scale + 0.999))


def read_header(path: str, max_pixels: int | None = None) -> tuple[str, tuple[int, int]] | BadImage:
    """(mode, (W, H)) from the file's header alone (nothing decoded), or the BadImage saying why not. Reads
    the images of a data set: a DICOM file whose path holds its patient's name stops it (PatientNameInPath)."""
    try:
        return _checked(str(path), max_pixels, lambda im: (im.mode, im.size), check_name=True)
    except BadImagesError as e:
        return e.bad[0]


def read_headers(paths: Sequence[str], max_pixels: int | None = None) -> list:
    """`read_header` for every path, in threads (it is I/O-bound)."""
    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 4)) as pool:
        return list(pool.map(lambda p: read_header(p, max_pixels), paths, chunksize=64))


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
