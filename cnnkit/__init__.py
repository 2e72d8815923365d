"""cnnkit: convolutional neural networks, from the NumPy convolution to fine-tuned ResNets."""
from ._version import __version__
from .errors import CnnkitError
from .models import CnnkitModel, create_model, list_models, register_model

__all__ = ["CnnkitError", "CnnkitModel", "create_model", "list_models", "register_model", "__version__"]
from .api import TrainedModel, compare, evaluate, load_model, resume, train  # noqa: E402
from .data import load_data  # noqa: E402
from .preprocess import Preprocess  # noqa: E402
from .run import Predictor  # noqa: E402
from .engine import Callback, TrainConfig, Trainer  # noqa: E402
from .explain.summary import format_summary, summarize  # noqa: E402

__all__ += ["Callback", "compare", "Predictor", "Preprocess", "TrainConfig", "TrainedModel", "Trainer", "evaluate", "format_summary", "load_data",
            "load_model", "resume", "summarize", "train"]
