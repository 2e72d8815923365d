"""scikit-image's bundled photos (no download needed), usable by name wherever an image is asked for."""
from __future__ import annotations

import numpy as np

from ..errors import CnnkitError, UnknownNameError

SAMPLES = ("astronaut", "brick", "camera", "cat", "cell", "checkerboard", "chelsea", "clock", "coffee", "coins",
           "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo",
           "microaneurysms", "moon", "page", "retina", "rocket", "shepp_logan_phantom", "text")


def load_sample(name: str) -> np.ndarray:
    """The named sample as a uint8 array (H×W or H×W×C).

    >>> load_sample('camera').shape
    (512, 512)
    """
    if name not in SAMPLES:
        raise UnknownNameError("sample image", name, SAMPLES)
    import skimage.data
    from skimage.util import img_as_ubyte

    try:
        return img_as_ubyte(np.asarray(getattr(skimage.data, name)()))
    except Exception as e:  # a sample missing from this scikit-image install
        raise CnnkitError(f"cannot load the scikit-image sample '{name}': {e}") from None
