"""cnnkit: convolutional neural networks, from the NumPy convolution to fine-tuned ResNets.

The flat API (`cnnkit.train`, `cnnkit.create_model`, …) is imported on first use (PEP 562): `import cnnkit`
costs no torch, so `cnnkit --help` and the commands load only what they use.
"""
from __future__ import annotations

import importlib

from ._version import __version__
from .errors import CnnkitError

# public name -> the module that defines it (imported when the name is first read)
_LAZY = {
    "CnnkitModel": "models", "create_model": "models", "list_models": "models", "register_model": "models",
    "TrainedModel": "api", "compare": "api", "evaluate": "api", "load_model": "api", "resume": "api", "train": "api",
    "load_data": "data", "Preprocess": "preprocess", "Predictor": "run",
    "Callback": "engine", "TrainConfig": "engine", "Trainer": "engine",
    "format_summary": "explain.summary", "summarize": "explain.summary",
}

__all__ = ["CnnkitError", "__version__", *_LAZY]


def __getattr__(name: str):
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{where}", __name__), name)
    globals()[name] = value  # once: later reads are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
