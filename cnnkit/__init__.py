"""cnnkit: convolutional neural networks, from the NumPy convolution to fine-tuned ResNets."""
from .errors import CnnkitError
from .models import CnnkitModel, create_model, list_models, register_model

__version__ = "0.1.0"
__all__ = ["CnnkitError", "CnnkitModel", "create_model", "list_models", "register_model", "__version__"]
