"""DICOM files in: pixels as a radiologist's viewer shows them, with pydicom doing the DICOM maths.

A `.dcm` (or `.dicom`) file becomes a PIL image like any PNG, so everything after it (the image cache,
`Preprocess`, predict, explain) is the same code:
- grayscale (MONOCHROME1/2, 8–16 bits): stored values → the modality LUT (RescaleSlope/Intercept, pydicom's
  `apply_modality_lut`) → a window: `--window C,W` if given, else the file's own VOI LUT or first
  WindowCenter/Width (pydicom's `apply_voi_lut`), else the whole range its stored bits hold (BitsStored, through
  the rescale; the same for every image, so brightness still means something) → display values 0–255 as a float image ("F", marked `windowed`), so that resizing happens
  before anything is rounded to 8 bits; MONOCHROME1 (bright = low values, common for CR) is inverted;
- colour (RGB, YBR converted by pydicom, PALETTE COLOR through its LUT): 8-bit RGB.
Refused with one line naming the file: no pixel data, more than one frame, a compressed transfer syntax whose
decoder is not installed here (naming the packages that would decode it), an unsupported photometric
interpretation, an image over the pixel limit.

No patient tag is ever printed or returned: `header` reads the patient's name only to check that the file's
path does not contain it (a path is written into a run's split.json); the error then masks it.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import CnnkitError

DICOM_EXTENSIONS = (".dcm", ".dicom")
_UNSUPPORTED_HINT = "convert it to PNG, or save it uncompressed"


class DicomError(CnnkitError):
    """A DICOM file cannot be used; the message names the file and the reason (never a patient tag)."""


class PatientNameInPath(CnnkitError):
    """A DICOM file's path contains its patient's name: the run would write it into split.json."""


def parse_window(value) -> tuple[float, float]:
    """`--window C,W` → (center, width).

    >>> parse_window('40,400')
    (40.0, 400.0)
    """
    if isinstance(value, (tuple, list)) and len(value) == 2:
        parts = list(value)
    else:
        parts = str(value).replace(" ", "").split(",")
    try:
        center, width = (float(v) for v in parts)
    except (TypeError, ValueError):
        raise CnnkitError(f"--window {value!r}: give CENTER,WIDTH in the image's units, e.g. --window 40,400 "
                          "(a CT soft-tissue window) or --window 550,1024") from None
    if not (np.isfinite(center) and np.isfinite(width)) or width < 1:
        raise CnnkitError(f"--window {value!r}: the width must be a number of at least 1")
    return center, width


def is_dicom(path) -> bool:
    return Path(path).suffix.lower() in DICOM_EXTENSIONS


def _pydicom():
    try:
        import pydicom
    except ImportError:  # a dependency of cnnkit; missing only in a broken environment
        raise CnnkitError("reading DICOM files needs pydicom: pip install pydicom") from None
    return pydicom


def _read(path: str, pixels: bool):
    """The dataset (pixel data deferred unless `pixels`), or DicomError saying why not."""
    import warnings

    pydicom = _pydicom()
    try:
        with warnings.catch_warnings():  # pydicom's warnings can quote element values: never printed
            warnings.simplefilter("ignore")
            return pydicom.dcmread(path, defer_size=None if pixels else 1024)
    except FileNotFoundError:
        raise
    except pydicom.errors.InvalidDicomError:
        raise DicomError("not a DICOM file (no 'DICM' preamble); give DICOM Part 10 files") from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError, EOFError) as e:
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise DicomError(f"corrupt or truncated DICOM ({first})") from None


def _check(ds, max_pixels: int) -> tuple[str, tuple[int, int]]:
    """(PIL-like mode, (W, H)) of a usable single-frame image; DicomError otherwise."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        kind = getattr(ds, "Modality", "") or "non-image"
        raise DicomError(f"no pixel data (a {kind} object, not an image); leave it out of the image folder")
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DicomError(f"a multi-frame DICOM ({frames} frames); cnnkit classifies single 2-D images: save each "
                         "frame as its own file")
    rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    if rows < 1 or cols < 1:
        raise DicomError("no Rows/Columns: the image size is unknown")
    if rows * cols > max_pixels:
        raise DicomError(f"{cols}x{rows} = {rows * cols:,} pixels is over the limit of {max_pixels:,}")
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        mode = "I;16"
    elif photometric in ("RGB", "PALETTE COLOR") or photometric.startswith("YBR"):
        mode = "RGB"
    else:
        raise DicomError(f"photometric interpretation {photometric} is not supported (MONOCHROME1/2, RGB, YBR, "
                         f"PALETTE COLOR are); {_UNSUPPORTED_HINT}")
    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if tsyntax is not None and tsyntax.is_compressed:
        from pydicom.pixels import get_decoder

        try:
            decoder = get_decoder(tsyntax)
        except NotImplementedError:
            raise DicomError(f"pixel data compressed as {tsyntax.name}, which pydicom cannot decode; "
                             f"{_UNSUPPORTED_HINT}") from None
        if not decoder.is_available:
            raise DicomError(f"pixel data compressed as {tsyntax.name}, which no installed plugin decodes; install "
                             f"one of: {'; '.join(decoder.missing_dependencies)} (or {_UNSUPPORTED_HINT})")
    return mode, (cols, rows)


def header(path: str, max_pixels: int, check_name: bool = False) -> tuple[str, tuple[int, int]]:
    """(mode, (W, H)) without decoding the pixels; DicomError if the file cannot be used; with `check_name`,
    PatientNameInPath if its path contains its patient's name."""
    ds = _read(path, pixels=False)
    out = _check(ds, max_pixels)
    masked = mask_patient_name(path, getattr(ds, "PatientName", None)) if check_name else path
    if masked != path:
        raise PatientNameInPath(f"{masked}: this DICOM file's path contains its patient's name (masked here), "
                                "which a run writes into split.json and reports; rename the folders or files to "
                                "pseudonymous IDs first")
    return out


def mask_patient_name(path: str, name) -> str:
    """`path` with each part of the patient's name (3+ letters, as a whole word, any case) replaced by
    <patient>. PersonName parts are family^given^middle^prefix^suffix.

    >>> mask_patient_name('/data/doe_john/1.dcm', 'Doe^John')
    '/data/<patient>_<patient>/1.dcm'
    >>> mask_patient_name('/data/P001/1.dcm', 'Doe^John')
    '/data/P001/1.dcm'
    """
    if name is None:
        return path
    parts = [p.strip() for p in re.split(r"[\^=\s]+", str(name)) if len(p.strip()) >= 3]
    for part in parts:
        path = re.sub(rf"(?<![A-Za-z0-9]){re.escape(part)}(?![A-Za-z0-9])", "<patient>", path, flags=re.IGNORECASE)
    return path


def read(path: str, max_pixels: int, window: tuple[float, float] | None = None):
    """The image as a PIL image: grayscale as float display values 0–255 (mode F, info['windowed']), colour as
    8-bit RGB. DicomError naming the reason if it cannot be read."""
    from PIL import Image

    ds = _read(path, pixels=True)
    mode, _ = _check(ds, max_pixels)
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except (RuntimeError, NotImplementedError, ValueError, AttributeError, TypeError) as e:
        first = " ".join(str(e).split())[:240] or type(e).__name__
        raise DicomError(f"its pixel data cannot be decoded ({first})") from None
    if mode == "RGB":
        return Image.fromarray(_to_rgb8(arr, ds), "RGB")
    im = Image.fromarray(display_values(arr, ds, window).astype(np.float32), "F")
    im.info["windowed"] = True
    return im


def display_values(arr: np.ndarray, ds, window: tuple[float, float] | None = None) -> np.ndarray:
    """Stored grayscale values → float display values 0–255 (modality LUT, window, MONOCHROME1 inverted)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(arr, ds).astype(np.float64)
    if window is not None:
        shown = _linear_window(values, *window)
    elif "VOILUTSequence" in ds or "WindowCenter" in ds:
        out = apply_voi_lut(values, ds, index=0)
        lo, hi = _voi_range(ds, values)
        shown = (np.asarray(out, np.float64) - lo) / max(hi - lo, 1e-12) * 255.0
    else:  # no window in the file: the whole range its stored bits can hold, the same for every image
        lo, hi = _stored_range(ds)
        shown = (values - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(values)
    shown = np.clip(shown, 0.0, 255.0)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        shown = 255.0 - shown
    return shown


def _stored_range(ds) -> tuple[float, float]:
    """The lowest and highest value BitsStored allows (signed or not), through the modality LUT (rescale)."""
    from pydicom.pixels import apply_modality_lut

    bits = int(getattr(ds, "BitsStored", 0) or getattr(ds, "BitsAllocated", 16) or 16)
    signed = int(getattr(ds, "PixelRepresentation", 0) or 0) == 1
    ends = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] if signed else [0, 2 ** bits - 1], dtype=np.int64)
    out = np.asarray(apply_modality_lut(ends, ds), dtype=np.float64)
    return float(out.min()), float(out.max())


def _linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM's linear VOI function (PS3.3 C.11.2.1.2.1) onto 0–255, for `--window C,W`."""
    width = max(float(width), 1.0)
    return ((values - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0 if width > 1 else \
        np.where(values > center - 0.5, 255.0, 0.0)


def _voi_range(ds, values: np.ndarray) -> tuple[float, float]:
    """The output range of the file's VOI transform: where pydicom's window clips the lowest and highest
    possible value (a window), or the LUT's entry range (a VOI LUT)."""
    from pydicom.pixels import apply_voi_lut

    if "VOILUTSequence" in ds:
        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        return 0.0, float(2 ** bits - 1)
    probe = apply_voi_lut(np.array([-1e30, 1e30], dtype=np.float64), ds, index=0)
    return float(probe[0]), float(probe[1])


def _to_rgb8(arr: np.ndarray, ds) -> np.ndarray:
    photometric = str(getattr(ds, "PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    else:
        bits = int(getattr(ds, "BitsStored", 8) or 8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if bits > 8 or arr.dtype != np.uint8:
        arr = np.rint(arr.astype(np.float64) * (255.0 / (2 ** bits - 1))).clip(0, 255)
    return np.ascontiguousarray(arr.astype(np.uint8))
