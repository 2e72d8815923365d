"""The model zoo: the lessons' SimpleCNNs, LeNet-5, and torchvision's classics, all behind one registry."""
from . import classic, fast, lenet, simple  # noqa: F401  (registers the builders)
from ._base import CnnkitModel
from ._registry import create_model, list_models, register_model

__all__ = ["CnnkitModel", "create_model", "list_models", "register_model"]
