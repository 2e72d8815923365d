"""One interface for every cnnkit model (timm's): features, head, and feature maps by layer name.

Summary, feature maps, receptive fields and Grad-CAM rely on this interface alone, so they work for every
registered model without per-model code:

- `forward_features(x)`: the convolutional trunk, returning the last spatial feature map (N, C, h, w);
- `forward_head(f)`: pooling/flatten and the classifier, returning logits;
- `feature_maps(x, layers)`: the outputs of named layers, in one forward pass;
- `stage_names`: the names of the modules that end each convolutional stage (edges first, objects last);
- `get_classifier()` / `reset_classifier(n)`: the last linear layer, for fine-tuning.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn as nn

from ..errors import InputSizeError, UnknownNameError

SMALL_INPUT_BELOW = 64  # an input smaller than this (in H or W) gets the small-input stem


def wants_small_stem(input_size: Sequence[int] | None, small_input: bool | None) -> bool:
    """The small-input stem is chosen by `small_input`, else from `input_size` (H, W), else not."""
    if small_input is not None:
        return bool(small_input)
    if input_size is None:
        return False
    return min(input_size[-2:]) < SMALL_INPUT_BELOW


class CnnkitModel(nn.Module):
    """Mixin base for cnnkit models. Subclasses define `forward_features`, `forward_head`, `stage_names`."""

    stage_names: tuple[str, ...] = ()
    classifier_name: str = ""
    min_input_size: int = 1  # the smallest H and W the network accepts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))

    def check_input(self, x: torch.Tensor) -> None:
        """Fail with a clear message, before any layer runs, on a wrong shape."""
        name = getattr(self, "model_name", type(self).__name__)
        if x.dim() != 4:
            raise InputSizeError(f"{name} expects a batch N×C×H×W, got a tensor of shape {tuple(x.shape)}")
        expected_c = getattr(self, "in_channels", x.shape[1])
        if x.shape[1] != expected_c:
            raise InputSizeError(
                f"{name} was built for {expected_c} input channel(s), got {x.shape[1]} (shape {tuple(x.shape)}); "
                f"build it with in_channels={x.shape[1]}"
            )
        if min(x.shape[-2:]) < self.min_input_size:
            raise InputSizeError(
                f"input {x.shape[1]}x{x.shape[2]}x{x.shape[3]} is too small for {name}: it needs at least "
                f"{self.min_input_size}x{self.min_input_size}; resize the images (--img-size) or pick a smaller model"
            )

    def get_classifier(self) -> nn.Linear:
        return self.get_submodule(self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last linear layer with a fresh one of `num_classes` outputs (for fine-tuning)."""
        old = self.get_classifier()
        new = nn.Linear(old.in_features, num_classes)
        parent_name, _, attr = self.classifier_name.rpartition(".")
        parent = self.get_submodule(parent_name) if parent_name else self
        setattr(parent, attr, new)
        if hasattr(self, "model_kwargs"):
            self.model_kwargs["num_classes"] = num_classes

    def layer_names(self) -> list[str]:
        return [n for n, _ in self.named_modules() if n]

    def feature_maps(self, x: torch.Tensor, layers: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Outputs of the named layers (default: every stage) for input `x`, in one forward pass.

        >>> from cnnkit import create_model
        >>> m = create_model('simplecnn').eval()
        >>> {k: tuple(v.shape) for k, v in m.feature_maps(torch.zeros(1, 3, 32, 32)).items()}
        {'pool1': (1, 32, 16, 16), 'pool2': (1, 64, 8, 8)}
        """
        layers = list(layers) if layers is not None else list(self.stage_names)
        modules = dict(self.named_modules())
        for name in layers:
            if name not in modules or not name:
                raise UnknownNameError("layer", name, [n for n in modules if n])
        out: dict[str, torch.Tensor] = {}
        handles = [
            modules[name].register_forward_hook(lambda _m, _i, o, name=name: out.__setitem__(name, o))
            for name in layers
        ]
        try:
            self(x)
        finally:
            for h in handles:
                h.remove()
        return {name: out[name] for name in layers if name in out}
