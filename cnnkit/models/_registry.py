"""The model registry, as timm does it: `@register_model` on a builder, `create_model(name, **kw)`."""
from __future__ import annotations

import importlib
import inspect
from typing import Callable, Iterable

import torch.nn as nn

from ..errors import CnnkitError, UnknownNameError


class ModelArgumentError(CnnkitError, TypeError):
    """A builder argument the model does not take, or a value it refuses (a user's --model-kwargs)."""

_MODELS: dict[str, Callable[..., nn.Module]] = {}
# Models whose module is imported on first use: `classic` needs torchvision, whose import (1.4 s, it pulls in
# torch._dynamo) would otherwise be paid by every command, `cnnkit train --preset fast` included.
_LAZY: dict[str, str] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a builder under its function name. Builders take keyword-only arguments."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model '{fn.__name__}' is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def register_lazy(module: str, names: Iterable[str]) -> None:
    """Declare models that `module` registers when imported; it is imported when one of them is first built."""
    for name in names:
        _LAZY[name] = module


def get_builder(name: str) -> Callable[..., nn.Module]:
    """The builder registered under `name` (importing its module if it is lazy); unknown names fail."""
    if name not in _MODELS and name in _LAZY:
        importlib.import_module(_LAZY[name])
        if name not in _MODELS:
            raise RuntimeError(f"{_LAZY[name]} was declared to register model '{name}' but did not")
    if name not in _MODELS:
        raise UnknownNameError("model", name, list_models())
    return _MODELS[name]


def list_models() -> list[str]:
    """The registered model names, sorted.

    >>> 'resnet50' in list_models()
    True
    """
    return sorted(set(_MODELS) | set(_LAZY))


def create_model(name: str, *, num_classes: int | None = None, in_channels: int = 3,
                 pretrained: bool | str = False, weights: str | None = None, download: bool = False,
                 **kwargs) -> nn.Module:
    """Build a registered model by name.

    `pretrained=True` loads torchvision's ImageNet weights (found offline: models/pretrained.py), `weights=FILE`
    a weight file, `download=True` lets torchvision fetch them when they are not on this machine. The first
    convolution is adapted to `in_channels`, the head is new when `num_classes` is not 1000, and the standard
    stem is kept (small images are upsampled instead); `model.pretrained_info` holds the weights' metadata.

    `num_classes` defaults to the model's own (1000 for the ImageNet architectures, 10 for simplecnn and
    lenet5, 2 for simplecnn_bn). `input_size=(H, W)` lets a model pick its stem (the small-input stem below 64 pixels);
    `small_input=True/False` forces it. Unknown names fail with the valid ones.

    >>> m = create_model('simplecnn', num_classes=10)
    >>> sum(p.numel() for p in m.parameters())
    545098
    """
    builder = get_builder(name)
    if num_classes is None:
        num_classes = inspect.signature(builder).parameters["num_classes"].default
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
    accepted = set(inspect.signature(builder).parameters)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ModelArgumentError(f"{name} takes no argument {unknown[0]!r}; it accepts: {', '.join(sorted(accepted))}")
    if (pretrained or weights) and kwargs.get("small_input") is None:
        kwargs["small_input"] = False  # the pretrained stem, at the resolution it learned at
    if kwargs.get("input_size") is not None:
        kwargs["input_size"] = tuple(int(v) for v in kwargs["input_size"])[-2:]
    try:
        model = builder(num_classes=num_classes, in_channels=in_channels, **kwargs)
    except CnnkitError:
        raise
    except (TypeError, ValueError, OverflowError) as e:  # a value of the extra arguments the builder cannot use
        extra = {k: v for k, v in kwargs.items() if k not in ("input_size", "small_input")}
        if not extra and kwargs.get("small_input") in (None, True, False):
            raise
        first = " ".join(str(e).split())[:160]
        raise ModelArgumentError(f"{name} cannot be built with {kwargs} ({first}); check --model-kwargs") from None
    model.model_name = name
    # every argument, defaults included, so that model.json pins the architecture even if a default changes later
    defaults = {k: p.default for k, p in inspect.signature(builder).parameters.items()
                if p.default is not inspect.Parameter.empty}
    model.model_kwargs = {**defaults, "num_classes": num_classes, "in_channels": in_channels, **kwargs}
    if pretrained or weights:
        from .pretrained import load_pretrained

        model.pretrained_info = load_pretrained(model, name, pretrained=pretrained or True, weights=weights,
                                                download=download)
    return model
